#!/usr/bin/env bash
# Installs what `npm run bench` needs beyond scripts/install-tools.sh: the load generators wrk
# and h2load (Debian packages wrk and nghttp2-client), which nothing else uses, and the pinned
# OPA-Envoy reference (scripts/install-opa-envoy.sh). Idempotent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
SCRIPT_NAME=install-bench-tools
# shellcheck source=lib/common.sh
source "$ROOT/scripts/lib/common.sh"

apt_install wrk nghttp2-client
bash "$ROOT/scripts/install-opa-envoy.sh"
