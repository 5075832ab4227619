import { GatewayError } from '../errors.js';
import { log } from '../log.js';
import type { AuthzMetadata } from '../authz/check.js';
import type { RequestBody } from '../inspect/requestBody.js';
import type { ExtprocDeps } from '../extproc/deps.js';
import type { RequestState, StreamState } from '../extproc/state.js';
import { headerMap, type ProtoHeaderMutation, type ProtoHttpHeaders } from '../extproc/proto.js';
import { buildPolicyInput } from '../policy/input.js';
import { isMutating, toolView } from '../tools/registry.js';
import { checkHeadersAgree, readStandardHeaders, repeatedHeaders, type StandardHeaders } from './headers.js';
import { principalFromHandoff } from './itemPolicy.js';
import { SESSION_HEADER, sessionBinder, sessionIdentity } from './session.js';

/**
 * The MCP transport rules ext_proc applies: the session id a tool returns becomes a binding to
 * the caller; the body (which only ext_proc reads whole on some routes) must agree with the
 * standard headers that reach the tool, and a call the Check decided on its headers alone is
 * decided again on its body.
 */

/** The request headers ext_proc saw, per exchange (the request state is per stream). */
interface SeenHeaders {
  readonly map: Readonly<Record<string, string>>;
  readonly standard: StandardHeaders;
}

const seen = new WeakMap<RequestState, SeenHeaders>();

/**
 * Request headers of an MCP tool: reads the standard headers once (a repeated one is refused:
 * 400), and keeps the header map (`map`, when the caller already built it) for the body phase.
 */
export function noteMcpRequestHeaders(st: StreamState, req: RequestState, h: ProtoHttpHeaders | undefined, map: Readonly<Record<string, string>> = headerMap(h)): void {
  if (!st.tool?.mcp) return;
  try {
    seen.set(req, { map, standard: readStandardHeaders(map, repeatedHeaders(h?.headers?.headers ?? [])) });
  } catch (err) {
    req.rpc.isJsonRpc = true;
    throw err;
  }
}

/** Whether the Check decided this exchange on the MCP standard headers without its body. */
export function decidedOnHeaders(st: StreamState): boolean {
  return st.meta?.mcp_decided_on === 'headers';
}

/**
 * The request body of an MCP tool, before its schema check: the standard headers ext_proc saw
 * must agree with it; a call decided on the headers must be one message, the very call the
 * Check decided on, and the policy decides again with its arguments. Throws the denial.
 */
export function checkMcpBody(deps: ExtprocDeps, st: StreamState, req: RequestState, read: RequestBody | null): void {
  const tool = st.tool;
  const meta = st.meta;
  if (!tool?.mcp || !meta) return;
  const headers = seen.get(req);
  const rpc = read?.rpc ?? null;
  req.rpc.isJsonRpc = true;
  if (rpc) {
    req.rpc.id = rpc.calls[0]?.id ?? null;
    if (rpc.batch) req.rpc.batchIds = rpc.calls.flatMap((c) => (c.id === null ? [] : [c.id]));
  }
  if (headers && rpc) checkHeadersAgree(headers.standard, rpc);
  if (!decidedOnHeaders(st)) return;
  const call = rpc?.calls[0];
  if (!rpc || rpc.batch || !call || !headers) {
    throw new GatewayError('invalid_request', 'a request decided on its Mcp-Method header must carry that one JSON-RPC message as its body', { rule: 'mcp.header_mismatch' });
  }
  // The standard headers are unchanged between the phases, so this holds; checked again so a
  // decision never applies to a call other than the one it was made for.
  if (call.method !== meta.mcp_method || (call.tool ?? null) !== (meta.mcp_tool ?? null)) {
    throw new GatewayError('invalid_request', 'the request body is not the call the authorization decision was made on', { rule: 'mcp.header_mismatch' });
  }
  // The request headers as the list filter's item inputs see them: without the credentials and
  // identity headers the gateway set upstream, which are not the caller's.
  const http = { method: req.method, path: req.path, headers: { ...(req.mcp.headers ?? {}) }, body: read?.text ?? '' };
  const input = buildPolicyInput(
    { attributes: { request: { http } } },
    {
      identity: principalFromHandoff(meta),
      tool: toolView(tool, isMutating(tool, req.method, call.tool ? [call.tool] : [])),
      mcp: call,
      body: read?.text ?? null,
      parsedBody: read?.value,
      truncated: false,
    },
  );
  const decision = deps.policy.evaluate(input);
  if (decision.allowed) return;
  const err = new GatewayError(meta.user || meta.agent ? 'forbidden' : 'unauthenticated', decision.reason ?? `policy denied the call to tool "${tool.name}"`, {
    rule: decision.rule ?? 'policy.deny',
    httpStatus: decision.httpStatus ?? undefined,
  });
  if (deps.config.policy.dry_run || tool.dry_run) {
    log.warn({ request_id: req.requestId, tool: tool.name, rule: err.rule, reason: err.message }, 'dry run: policy would deny the call read from the body; allowing');
    return;
  }
  throw err;
}

/**
 * Response headers of an MCP tool: the server's `Mcp-Session-Id` is replaced by a binding to the
 * caller and the tool (see session.ts), so the id the agent holds is refused to anyone else.
 * Edits `mutation` in place (one value, overwriting whatever the header scan set).
 */
export function bindResponseSession(deps: ExtprocDeps, st: StreamState, h: ProtoHttpHeaders | undefined, mutation: ProtoHeaderMutation): void {
  const tool = st.tool;
  const meta = st.meta;
  if (!tool?.mcp || !meta) return;
  const values = (h?.headers?.headers ?? []).filter((x) => x.key.toLowerCase() === SESSION_HEADER);
  if (values.length === 0) return;
  const first = values[0]!;
  const serverId = first.rawValue && first.rawValue.length > 0 ? first.rawValue.toString('utf8') : (first.value ?? '');
  if (values.length > 1) throw new GatewayError('internal', `tool "${tool.name}" returned more than one Mcp-Session-Id`, { rule: 'mcp.session_server_id' });
  const bound = sessionBinder(deps.handoff).bind(sessionIdentity(principalFromHandoff(meta)), tool.name, serverId.trim());
  mutation.setHeaders = [
    ...(mutation.setHeaders ?? []).filter((s) => s.header.key.toLowerCase() !== SESSION_HEADER),
    { header: { key: SESSION_HEADER, rawValue: Buffer.from(bound, 'utf8') }, append: { value: false } },
  ];
  mutation.removeHeaders = (mutation.removeHeaders ?? []).filter((k) => k.toLowerCase() !== SESSION_HEADER);
}
