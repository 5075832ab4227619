#!/usr/bin/env bash
# Runs the Rego unit tests (policies/*_test.rego) with `opa test`; fails when a test fails or
# when there is no test at all.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OPA="${OPA:-$ROOT/.tools/bin/opa}"
SRC="${POLICY_DIR:-$ROOT/policies}"

[[ -x "$OPA" ]] || { printf 'test-policy: opa not found at %s; run: bash scripts/install-tools.sh\n' "$OPA" >&2; exit 1; }

exec "$OPA" test --fail-on-empty --ignore build --ignore '.*' -v "$SRC"
