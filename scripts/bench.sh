#!/usr/bin/env bash
# `npm run bench`: builds portcullis and the policy bundle, makes sure the pinned OPA-Envoy
# reference is installed (scripts/install-opa-envoy.sh, idempotent), then runs bench/run.ts:
# every scenario through a real Envoy and side by side with its floors, interleaved, in about
# 6 minutes on 2 cores. Prints a table and writes bench/results/<timestamp>.json.
# Extra arguments go to bench/run.ts, e.g. `npm run bench -- --rounds 1 --duration 3`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TOOLS="$ROOT/.tools"
SCRIPT_NAME=bench
# shellcheck source=lib/common.sh
source scripts/lib/common.sh

# The demo's tools (Node.js, Envoy, OPA, node_modules), then the load generators.
bash scripts/install-tools.sh demo || die "bash scripts/install-tools.sh demo failed"
# shellcheck source=lib/node.sh
source scripts/lib/node.sh
apt_install wrk nghttp2-client

npm run --silent build || die "npm run build failed"
bash scripts/build-policy.sh >/dev/null || die "bash scripts/build-policy.sh failed"

# OPA-Envoy is the reference, not the product: if it cannot be installed, say why and measure
# everything else.
args=()
if ! out="$(bash scripts/install-opa-envoy.sh 2>&1)"; then
  printf '%s\n' "$out" >&2
  reason="$(printf '%s\n' "$out" | tail -n 1)"
  printf 'bench: OPA-Envoy unavailable, scenario F is skipped: %s\n' "$reason" >&2
  args+=(--skip-opa-envoy "$reason")
else
  printf '%s\n' "$out"
fi

# exec: the runner receives Ctrl-C itself and stops every process it started.
exec node_modules/.bin/vite-node bench/run.ts "${args[@]}" "$@"
