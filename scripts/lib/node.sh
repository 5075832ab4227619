# Sourced by the scripts that run portcullis or its tests: puts the pinned Node.js LTS that
# scripts/install-tools.sh installs (.tools/node) first on PATH, so the gateway, the tests and npm
# itself run on it whatever Node the machine has. Fails when it is not installed yet.
_portcullis_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ ! -x "$_portcullis_root/.tools/node/bin/node" ]]; then
  printf 'Node.js is not installed at %s: run "bash scripts/install-tools.sh"\n' "$_portcullis_root/.tools/node/bin/node" >&2
  return 1 2>/dev/null || exit 1
fi
export PATH="$_portcullis_root/.tools/node/bin:$PATH"
unset _portcullis_root
