#!/usr/bin/env bash
# Installs the OPA-Envoy plugin, the reference ext_authz implementation that the drop-in
# differential test and the benchmark compare portcullis against, pinned, built from source into
# .tools/bin/opa-envoy-plugin. Called by scripts/install-tools.sh (test set-up) and
# scripts/install-bench-tools.sh. Idempotent: nothing is rebuilt when the installed binary already
# reports the pinned version.
set -euo pipefail

# OPA-Envoy release tag and the Go checksum (h1:) of that module version's source archive.
OPA_ENVOY_VERSION=v1.10.0-envoy
OPA_ENVOY_SUM='h1:N+Le+sDTrGfqoBNVrSk2CoZNWWxQT9pxA94Lnq3Pn0A='
MODULE=github.com/open-policy-agent/opa-envoy-plugin

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.tools/bin"
TARGET="$BIN/opa-envoy-plugin"
STAMP="$BIN/.opa-envoy-plugin.version"
mkdir -p "$BIN"

say() { printf '%-16s %s\n' "$1" "$2"; }
die() { printf 'install-opa-envoy: %s\n' "$*" >&2; exit 1; }

# The plugin's binary reports the OPA version it embeds (v1.10.0-envoy -> 1.10.0); the stamp
# file records the exact plugin tag it was built from.
embedded_opa="${OPA_ENVOY_VERSION#v}"
embedded_opa="${embedded_opa%%-envoy*}"
# Captured, not piped into `grep -q`: an early-exiting grep would fail the pipe under pipefail.
reports_pinned() { [[ -x "$TARGET" ]] && [[ "$("$TARGET" version 2>/dev/null | sed -n 's/^Version: *//p')" == "$embedded_opa" ]]; }
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$OPA_ENVOY_VERSION" ]] && reports_pinned; then
  say opa-envoy-plugin "$OPA_ENVOY_VERSION (already installed)"
  exit 0
fi

command -v go >/dev/null || die "go is required to build $MODULE@$OPA_ENVOY_VERSION"

# Not `go install $MODULE/cmd/opa-envoy-plugin@$OPA_ENVOY_VERSION`: for a version-suffixed tag
# that also asks the module proxy for the module's version list and the checksum database for
# the tag, and either may be unavailable. Instead the source archive is fetched once and checked
# against the pinned hash above, then built inside its own module, so its go.sum pins every
# dependency exactly as a `go install` would.
json="$(GONOSUMDB="$MODULE" GOFLAGS=-mod=mod go mod download -json "$MODULE@$OPA_ENVOY_VERSION" 2>&1)" \
  || die "go mod download $MODULE@$OPA_ENVOY_VERSION failed: $json"
field() { sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}$/\1/p" <<<"$json" | head -n1; }
err="$(field Error)"
[[ -z "$err" ]] || die "go mod download $MODULE@$OPA_ENVOY_VERSION: $err"
sum="$(field Sum)"
dir="$(field Dir)"
[[ "$sum" == "$OPA_ENVOY_SUM" ]] || die "$MODULE@$OPA_ENVOY_VERSION has checksum '$sum', expected $OPA_ENVOY_SUM"
[[ -d "$dir" ]] || die "go mod download reported no source directory for $MODULE@$OPA_ENVOY_VERSION"

work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -R "$dir/." "$work/"
chmod -R u+w "$work"
say opa-envoy-plugin "building $OPA_ENVOY_VERSION (about 2 minutes on 2 cores)"
(cd "$work" && go build -trimpath -mod=readonly -o "$TARGET.tmp" ./cmd/opa-envoy-plugin) \
  || die "go build of $MODULE@$OPA_ENVOY_VERSION failed"
mv -f "$TARGET.tmp" "$TARGET"
printf '%s\n' "$OPA_ENVOY_VERSION" >"$STAMP"
reports_pinned || die "opa-envoy-plugin does not report OPA $embedded_opa after the build"
say opa-envoy-plugin "$OPA_ENVOY_VERSION (installed)"
