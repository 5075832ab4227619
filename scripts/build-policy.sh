#!/usr/bin/env bash
# Checks the Rego sources in policies/ and builds the wasm bundle the gateway loads:
#   policies/build/bundle.tar.gz  (policy.wasm for entrypoint envoy/authz/allow + data.json)
# Tests (*_test.rego) and the build output are not part of the bundle. Idempotent; the bundle is
# replaced atomically so a running gateway watching it never reads a half-written file.
# Environment: OPA (binary, default .tools/bin/opa), POLICY_DIR, POLICY_ENTRYPOINT,
# POLICY_EXTRA_ENTRYPOINTS (space-separated further decision paths, e.g. an OPA-Envoy drop-in
# policy's opa_envoy.path when it differs from policy.decision),
# POLICY_REVISION (written to the bundle manifest; the gateway reports it as the policy version).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OPA="${OPA:-$ROOT/.tools/bin/opa}"
SRC="${POLICY_DIR:-$ROOT/policies}"
ENTRYPOINT="${POLICY_ENTRYPOINT:-envoy/authz/allow}"
OUT_DIR="$SRC/build"
OUT="$OUT_DIR/bundle.tar.gz"

die() { printf 'build-policy: %s\n' "$*" >&2; exit 1; }

[[ -x "$OPA" ]] || die "opa not found at $OPA; run: bash scripts/install-tools.sh"
[[ -d "$SRC" ]] || die "policy directory $SRC does not exist"

IGNORE=(--ignore '*_test.rego' --ignore build --ignore '.*')

# Run from the policy directory so paths inside the bundle are relative to it.
cd "$SRC"
"$OPA" check --strict "${IGNORE[@]}" . || die "opa check failed for $SRC"

mkdir -p "$OUT_DIR"
TMP="$(mktemp "$OUT_DIR/.bundle.XXXXXX")"
trap 'rm -f "$TMP"' EXIT

ARGS=(build -t wasm -e "$ENTRYPOINT" "${IGNORE[@]}" -o "$TMP")
for extra in ${POLICY_EXTRA_ENTRYPOINTS:-}; do ARGS+=(-e "$extra"); done
if [[ -n "${POLICY_REVISION:-}" ]]; then ARGS+=(--revision "$POLICY_REVISION"); fi
"$OPA" "${ARGS[@]}" . || die "opa build failed for $SRC"

LISTING="$(tar -tzf "$TMP" 2>/dev/null)" || die "opa build wrote an unreadable archive"
grep -qE '^/?policy\.wasm$' <<<"$LISTING" || die "opa build produced no /policy.wasm"
chmod 0644 "$TMP"
mv -f "$TMP" "$OUT"
trap - EXIT

SUM="$(sha256sum "$OUT" | cut -c1-12)"
printf 'built %s (entrypoint %s, sha256:%s%s)\n' "${OUT#"$ROOT"/}" "$ENTRYPOINT" "$SUM" \
  "${POLICY_REVISION:+, revision $POLICY_REVISION}"
