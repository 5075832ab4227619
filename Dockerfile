# portcullis: the ext_authz / ext_proc gRPC service Envoy calls, as a container image.
#
#   docker build -t portcullis:0.1.0 .
#
# Stages: OPA (pinned, the version scripts/install-tools.sh installs) built from source; a build
# stage that compiles the TypeScript and the policy bundle; production dependencies only; then a
# slim Node.js 22 (LTS) runtime with nothing but dist/, those dependencies, the bundle and the default
# (demo) config, running as an unprivileged user.
#
# Ports: 9191 gRPC (Envoy's ext_authz and ext_proc), 9464 admin (/healthz, /readyz, /metrics).
# Probes: liveness GET /healthz, readiness GET /readyz on the admin port (neither needs the admin
# token); the HEALTHCHECK below is the liveness one for plain Docker.

ARG NODE_IMAGE=node:22.23.5-bookworm-slim

FROM golang:1.26.8-bookworm AS opa
ARG OPA_VERSION=1.22.2
RUN GOBIN=/out go install "github.com/open-policy-agent/opa@v${OPA_VERSION}" \
  && /out/opa version | grep -qx "Version: ${OPA_VERSION}"

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json ./
COPY src ./src
COPY policies ./policies
COPY scripts/build-policy.sh ./scripts/build-policy.sh
COPY --from=opa /out/opa /usr/local/bin/opa
RUN npm run build && OPA=/usr/local/bin/opa bash scripts/build-policy.sh

FROM ${NODE_IMAGE} AS deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /src/node_modules ./node_modules
COPY package.json ./
COPY --from=build /src/dist ./dist
COPY --from=build /src/policies/build/bundle.tar.gz ./policies/build/bundle.tar.gz
COPY scripts/demo ./scripts/demo
# The one writable place the demo setup needs (compose prepares .demo/ here); everything else
# is root-owned and read-only for the runtime user, so a read-only root filesystem works.
RUN mkdir -p /app/.demo && chown 1000:1000 /app/.demo
# Numeric, so Kubernetes' runAsNonRoot can verify it without a passwd lookup (uid 1000 is the
# image's `node` user).
USER 1000:1000
EXPOSE 9191 9464
HEALTHCHECK --interval=10s --timeout=2s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9464/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM starts the drain (server.shutdown_grace_ms); node handles it as PID 1 itself.
STOPSIGNAL SIGTERM
CMD ["node", "dist/main.js", "serve", "--config", "/etc/portcullis/portcullis.yaml"]
