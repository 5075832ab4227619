#!/usr/bin/env bash
# `npm run demo`: Envoy + portcullis + the sample tool on the default ports, all on 127.0.0.1,
# with the demo config (scripts/demo/portcullis.yaml) prepared in .demo/ (fresh signing key,
# random demo secrets, a throw-away PKI in .demo/tls/ for the mTLS channel between Envoy and
# portcullis). Envoy runs from the repository root, where envoy/envoy.yaml finds .demo/tls/. Prints ready-to-run curl commands; Ctrl-C stops everything.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEMO="$ROOT/.demo"
ENVOY_PORT=10000
ENVOY_ADMIN_PORT=9901
GRPC_PORT=9191
ADMIN_PORT=9464
TOOL_PORT=8081

die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Polls a URL until its body contains the expected text; fails with the process log otherwise.
wait_for() { # what url expected pid log
  local i
  for ((i = 0; i < 300; i++)); do
    if curl -fsS --max-time 1 "$2" 2>/dev/null | grep -q "$3"; then return 0; fi
    kill -0 "$4" 2>/dev/null || { tail -n 40 "$5" >&2; die "$1 exited during start-up (log: $5)"; }
    sleep 0.1
  done
  tail -n 40 "$5" >&2
  die "$1 not ready after 30s (log: $5)"
}

for p in $ENVOY_PORT $ENVOY_ADMIN_PORT $GRPC_PORT $ADMIN_PORT $TOOL_PORT; do
  port_busy "$p" && die "port $p on 127.0.0.1 is already in use (another demo running?)"
done
command -v curl >/dev/null || die "curl is required"

bash scripts/install-tools.sh demo
# shellcheck source=lib/node.sh
source scripts/lib/node.sh
npm run --silent build
bash scripts/build-policy.sh

rm -rf "$DEMO"
eval "$(node dist/demo/prepare.js --dir "$DEMO" --config scripts/demo/portcullis.yaml --bundle policies/build/bundle.tar.gz)"
# The env secrets (e.g. DOCS_TOKEN) the demo config references.
set -a
# shellcheck disable=SC1090
. "$PORTCULLIS_ENV_FILE"
set +a

PIDS=()
cleanup() {
  trap - INT TERM EXIT
  if ((${#PIDS[@]})); then
    echo
    echo "stopping demo..."
    kill "${PIDS[@]}" 2>/dev/null || true
    wait "${PIDS[@]}" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

node dist/demo/sampleTool.js --port "$TOOL_PORT" >"$DEMO/sample-tool.log" 2>&1 &
PIDS+=($!)
wait_for "sample tool" "http://127.0.0.1:$TOOL_PORT/healthz" ok $! "$DEMO/sample-tool.log"

node dist/main.js serve --config "$PORTCULLIS_CONFIG" >"$DEMO/portcullis.log" 2>&1 &
PIDS+=($!)
wait_for portcullis "http://127.0.0.1:$ADMIN_PORT/readyz" '"ready":true' $! "$DEMO/portcullis.log"

.tools/bin/envoy -c envoy/envoy.yaml --concurrency 1 -l warning --disable-hot-restart >"$DEMO/envoy.log" 2>&1 &
PIDS+=($!)
wait_for envoy "http://127.0.0.1:$ENVOY_ADMIN_PORT/ready" LIVE $! "$DEMO/envoy.log"

token() { node dist/main.js token --config "$PORTCULLIS_CONFIG" --key "$PORTCULLIS_KEY" "$@"; }
SUPPORT_TOKEN="$(token --agent helpdesk --user alice --tenant acme --roles support)"
VIEWER_TOKEN="$(token --agent reporter --user bob --tenant acme --roles viewer)"
READONLY_TOKEN="$(token --agent helpdesk --user carol --tenant acme --roles viewer)"
URL="http://127.0.0.1:$ENVOY_PORT"

cat <<EOT

portcullis demo is running (logs in .demo/: envoy.log, portcullis.log, sample-tool.log, audit.log)
  Envoy       $URL          (admin http://127.0.0.1:$ENVOY_ADMIN_PORT)
  portcullis  gRPC 127.0.0.1:$GRPC_PORT (mTLS: only Envoy's certificate, .demo/tls/envoy.crt, is answered)
              metrics http://127.0.0.1:$ADMIN_PORT/metrics   reload: curl -X POST http://127.0.0.1:$ADMIN_PORT/reload
  sample tool http://127.0.0.1:$TOOL_PORT

Tokens (1 hour; mint more with: .tools/node/bin/node dist/main.js token --config .demo/portcullis.yaml --key "$PORTCULLIS_KEY" --agent A --user U --tenant T --roles r1,r2):
  export SUPPORT_TOKEN='$SUPPORT_TOKEN'
  export VIEWER_TOKEN='$VIEWER_TOKEN'
  export READONLY_TOKEN='$READONLY_TOKEN'

Try:
  # allowed: weather forecast (the tool receives the weather API key; the agent never sees it)
  curl -s -H "authorization: Bearer \$VIEWER_TOKEN" '$URL/tools/weather/forecast?city=Berlin'

  # allowed: create a ticket in your own tenant (support role may write)
  curl -s -H "authorization: Bearer \$SUPPORT_TOKEN" -H 'content-type: application/json' \\
       -d '{"title":"VPN is down","priority":"high"}' $URL/tools/tickets/tenants/acme/tickets

  # DLP: the ticket's notes carry a card number and a cloud key; they arrive redacted
  curl -s -H "authorization: Bearer \$SUPPORT_TOKEN" $URL/tools/tickets/tenants/acme/tickets/T-1001

  # denied: another tenant's tickets (403 tenant.mismatch)
  curl -s -H "authorization: Bearer \$SUPPORT_TOKEN" $URL/tools/tickets/tenants/globex/tickets

  # denied: read-only role writing (403 role.read_only)
  curl -s -H "authorization: Bearer \$READONLY_TOKEN" -H 'content-type: application/json' \\
       -d '{"title":"x","priority":"low"}' $URL/tools/tickets/tenants/acme/tickets

  # denied: agent not bound to the tool (403 agent.not_bound: reporter may not use tickets)
  curl -s -H "authorization: Bearer \$VIEWER_TOKEN" $URL/tools/tickets/tenants/acme/tickets

  # MCP: search documents (allowed), delete one as a viewer (denied)
  curl -s -H "authorization: Bearer \$VIEWER_TOKEN" -H 'content-type: application/json' \\
       -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{"query":"vpn","tenant":"acme"}}}' $URL/tools/docs/
  curl -s -H "authorization: Bearer \$VIEWER_TOKEN" -H 'content-type: application/json' \\
       -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_doc","arguments":{"doc_id":"d1","tenant":"acme"}}}' $URL/tools/docs/

  # MCP lists filtered by policy: the viewer sees search_docs only, support sees delete_doc too
  curl -s -H "authorization: Bearer \$VIEWER_TOKEN" -H 'content-type: application/json' \\
       -d '{"jsonrpc":"2.0","id":3,"method":"tools/list"}' $URL/tools/docs/
  curl -s -H "authorization: Bearer \$SUPPORT_TOKEN" -H 'content-type: application/json' \\
       -d '{"jsonrpc":"2.0","id":4,"method":"tools/list"}' $URL/tools/docs/

  # denied: no credentials (401), unknown tool (404)
  curl -s '$URL/tools/weather/forecast?city=Berlin'
  curl -s -H "authorization: Bearer \$VIEWER_TOKEN" $URL/tools/payroll/

Press Ctrl-C to stop.
EOT

# Stop when any component dies, so a crash is not hidden behind a half-working demo.
wait -n "${PIDS[@]}" || true
echo "demo: a component exited; see the logs in .demo/" >&2
exit 1
