import { createHash } from 'node:crypto';
import { GatewayError } from '../errors.js';
import type { AuthzMetadata } from '../authz/check.js';
import type { ToolConfig } from '../config/types.js';
import { readHandoff, type HandoffResult } from '../authz/handoff.js';
import { parseJsonRpc } from '../inspect/mcp.js';
import { isJsonTool, readRequestBody, type RequestBody } from '../inspect/requestBody.js';
import { checkBatchSize } from '../inspect/mcp.js';
import { applyDlp } from '../dlp/index.js';
import { childSpan } from '../tracing/scope.js';
import type { ExtprocDeps } from './deps.js';
import { noteFindings, type RequestState, type StreamState } from './state.js';
import { noteHeaders, noteRequests } from '../mcp/exchange.js';
import { injectedHeaders } from '../tools/registry.js';
import { checkMcpBody, decidedOnHeaders, noteMcpRequestHeaders } from '../mcp/transport.js';
import { noteDefinitionEvents } from '../mcp/definitionEvents.js';
import { headerMap, setHeader, type ProcessingRequest, type ProcessingResponse, type ProtoHttpBody, type ProtoProcessingMode } from './proto.js';

/** Bodies are inspected only through the modes the exchange asks for (each phase is a round trip). */
export function baseMode(requestBody: 'NONE' | 'BUFFERED'): ProtoProcessingMode {
  return {
    requestHeaderMode: 'SEND',
    responseHeaderMode: 'SEND',
    requestBodyMode: requestBody,
    responseBodyMode: 'NONE',
    requestTrailerMode: 'SKIP',
    responseTrailerMode: 'SKIP',
  };
}

/** The ext_authz decision forwarded by Envoy with this message, verified (see handoff.ts). */
export function readMetadata(deps: ExtprocDeps, msg: ProcessingRequest): HandoffResult {
  return readHandoff(msg.metadataContext?.filterMetadata, deps.handoff);
}

/** The denial for a message that carries no verified decision: fail closed, say why. */
export function noDecision(problem: string): GatewayError {
  return new GatewayError('internal', `no verified authorization decision for this request (hand-off ${problem})`, { rule: `handoff.${problem}` });
}

function needsRequestBody(deps: ExtprocDeps, st: StreamState): boolean {
  const t = st.tool;
  if (!t) return false;
  return Boolean(t.request.schema) || Boolean(t.mcp) || t.request.injection !== 'off' || (t.external && t.request.dlp) || deps.config.audit.payload.mode !== 'off';
}

/**
 * Starts an exchange from the ext_authz decision: which tool, and what the audit record needs.
 * Routes that skip the request-header phase start here from the response headers.
 */
export function joinDecision(deps: ExtprocDeps, st: StreamState, req: RequestState, meta: AuthzMetadata): void {
  req.seen = true;
  st.meta = meta;
  req.method = meta.method ?? '';
  req.path = meta.path ?? '';
  req.requestId = meta.request_id;
  req.traceparent = meta.traceparent ?? null;
  st.tool = meta.tool ? (deps.tools.get(meta.tool) ?? null) : null;
  if (!st.tool) throw new GatewayError('internal', `tool "${String(meta.tool)}" is not configured on this replica`, { rule: 'extproc.unknown_tool' });
}

/**
 * Request headers: join the ext_authz decision (forwarded metadata), remember what the audit
 * record needs, ask the upstream for an uncompressed response, and enable the body phase only
 * when this tool inspects request bodies.
 */
export function onRequestHeaders(deps: ExtprocDeps, st: StreamState, req: RequestState, msg: ProcessingRequest): ProcessingResponse {
  const h = headerMap(msg.requestHeaders);
  // Envoy's own view of the request, for the audit record even when there is no decision.
  req.requestId = h['x-request-id'] ?? null;
  req.method = h[':method'] ?? '';
  req.path = h[':path'] ?? '';
  const handoff = readMetadata(deps, msg);
  if (!handoff.ok) throw noDecision(handoff.problem);
  const meta = handoff.meta;
  // ext_proc must only ever see requests ext_authz allowed; anything else is a misconfiguration.
  if (!meta.allowed || !meta.tool) throw noDecision('not_allowed');
  // The decision belongs to this request: Envoy chose the request id before ext_authz ran.
  const rid = h['x-request-id'];
  if (rid !== undefined && meta.request_id !== null && rid !== meta.request_id) throw noDecision('other_request');
  joinDecision(deps, st, req, meta);
  req.method = h[':method'] ?? req.method;
  req.path = h[':path'] ?? req.path;
  req.requestId = h['x-request-id'] ?? req.requestId;
  // req.traceparent stays the decision's (signed hand-off): the request's header is the caller's.
  req.contentType = h['content-type'] ?? null;
  if (st.tool?.mcp) noteHeaders(req.mcp, h, injectedHeaders(st.tool));
  noteMcpRequestHeaders(st, req, msg.requestHeaders, h);
  const inspectBody = !msg.requestHeaders?.endOfStream && needsRequestBody(deps, st);
  return {
    requestHeaders: {
      response: {
        status: 'CONTINUE',
        // Identity encoding lets the response be inspected without decompressing it.
        headerMutation: { setHeaders: [setHeader('accept-encoding', 'identity')] },
      },
    },
    modeOverride: baseMode(inspectBody ? 'BUFFERED' : 'NONE'),
  };
}

function jsonPath(pointer: string): string {
  return pointer === '' ? '$' : `$${pointer.replace(/\/([^/]*)/g, (_m, seg: string) => (/^\d+$/.test(seg) ? `[${seg}]` : `.${seg.replace(/~1/g, '/').replace(/~0/g, '~')}`))}`;
}

function schemaError(req: RequestState, errors: readonly { path: string; message: string }[], what: string): GatewayError {
  req.schema = 'invalid';
  req.schemaErrors = errors.map((e) => `${jsonPath(e.path)}: ${e.message}`);
  return new GatewayError('invalid_request', `${what} does not match the tool's schema: ${req.schemaErrors.slice(0, 5).join('; ')}`, {
    rule: 'inspect.schema',
    details: { errors: errors.map((e) => ({ path: jsonPath(e.path), message: e.message })) },
  });
}

/** A value to scan for prompt injection, with the JSON-RPC call it came from. */
interface Scanned {
  readonly id: string | number | null;
  readonly value: unknown;
}

/**
 * Validates the parsed body: MCP `tools/call` arguments against each MCP tool's input schema,
 * or a plain JSON body against the tool's schema. Returns the values to scan for injection.
 */
async function validate(deps: ExtprocDeps, tool: ToolConfig, req: RequestState, read: RequestBody): Promise<Scanned[]> {
  const rpc = read.rpc;
  if (rpc) {
    noteRequests(req.mcp, rpc.calls);
    req.rpc.isJsonRpc = true;
    req.rpc.id = rpc.calls[0]?.id ?? null;
    if (rpc.batch) req.rpc.batchIds = rpc.calls.flatMap((c) => (c.id === null ? [] : [c.id]));
    checkBatchSize(rpc, deps.config.inspect.max_batch_calls);
    const args: Scanned[] = [];
    for (const call of rpc.calls) {
      if (call.method !== 'tools/call') {
        // A server reading method names loosely would run such a call without its definition checked.
        if (tool.mcp && call.method.trim().toLowerCase() === 'tools/call') {
          req.rpc.id = call.id;
          throw new GatewayError('invalid_request', `JSON-RPC method ${JSON.stringify(call.method.slice(0, 32))} is not "tools/call": MCP method names are exact`, { rule: 'inspect.jsonrpc' });
        }
        continue;
      }
      req.rpc.id = call.id;
      if (!tool.mcp) continue;
      if (!call.tool) throw new GatewayError('invalid_request', 'tools/call needs params.name', { rule: 'inspect.jsonrpc' });
      // The tool's definition (learned from the server, pinned) decides whether and how it may be called.
      if (deps.mcp) noteDefinitionEvents(req, await deps.mcp.ensure(tool.name, call.tool));
      const r = deps.mcp ? deps.mcp.validateCall(tool, call.tool, call.arguments ?? {}, deps.schemas) : deps.schemas.validateMcpArguments(tool.name, call.tool, call.arguments ?? {});
      if (!r.ok) throw schemaError(req, r.errors, `arguments of MCP tool "${call.tool}"`);
      req.schema = 'valid';
      args.push({ id: call.id, value: call.arguments });
    }
    return args;
  }
  if (tool.mcp) throw new GatewayError('invalid_request', `tool "${tool.name}" is an MCP server and expects a JSON-RPC 2.0 body`, { rule: 'inspect.jsonrpc' });
  // readRequestBody already refused a JSON tool's body that is not strict JSON.
  if (read.value === undefined) return [{ id: null, value: read.text }];
  const body = read.value;
  if (tool.request.schema) {
    const r = deps.schemas.validateBody(tool.name, body);
    if (!r.ok) throw schemaError(req, r.errors, 'request body');
    req.schema = 'valid';
  }
  return [{ id: null, value: body }];
}

/**
 * Request body (buffered): size, encoding, schema (MCP-aware), prompt-injection patterns, and
 * exfiltration DLP for external tools. Denials become immediate responses; redaction rewrites
 * the body before it leaves.
 */
export async function onRequestBody(deps: ExtprocDeps, st: StreamState, req: RequestState, body: ProtoHttpBody): Promise<ProcessingResponse> {
  const tool = st.tool!;
  const buf = body.body ?? Buffer.alloc(0);
  req.size += buf.length;
  if (req.size > tool.request.max_body_bytes) {
    throw new GatewayError('payload_too_large', `request body exceeds the ${tool.request.max_body_bytes}-byte limit of tool "${tool.name}"`, {
      rule: 'inspect.body_size',
      details: { limit_bytes: tool.request.max_body_bytes },
    });
  }
  // A JSON tool's policy decision was made on the whole body: forward only that very body.
  // A call decided on its MCP headers was decided without the body: checkMcpBody decides on it.
  if (isJsonTool(tool) && !decidedOnHeaders(st)) {
    const digest = buf.length === 0 ? null : createHash('sha256').update(buf).digest('hex');
    if (digest !== (st.meta?.body_sha256 ?? null)) {
      throw new GatewayError('invalid_request', 'the request body differs from the one the authorization decision was made on', { rule: 'inspect.body_mismatch' });
    }
  }
  if (buf.length === 0) {
    checkMcpBody(deps, st, req, null);
    return { requestBody: { response: { status: 'CONTINUE' } } };
  }
  // The same strict reader as the Check: one meaning for the policy, the schema and the tool.
  const read = readRequestBody(buf, req.contentType ?? undefined, tool);
  checkMcpBody(deps, st, req, read);
  const text = read.text;
  const values = await validate(deps, tool, req, read);
  if (tool.request.injection !== 'off') {
    let firstHit: Scanned | null = null;
    for (const v of values) {
      const found = deps.injection.detect(v.value);
      if (found.length > 0) firstHit ??= v;
      req.injection.push(...found);
    }
    if (firstHit && tool.request.injection === 'block') {
      // A JSON-RPC error names the call whose arguments were refused.
      if (req.rpc.isJsonRpc) req.rpc.id = firstHit.id;
      throw new GatewayError('blocked_content', `tool arguments look like a prompt-injection attempt (${[...new Set(req.injection.map((i) => i.rule))].join(', ')})`, {
        rule: 'inspect.injection',
        details: { findings: req.injection },
      });
    }
  }
  let out = text;
  if (tool.external && tool.request.dlp) {
    const endSpan = childSpan('dlp request');
    const r = applyDlp(deps.scanner, text);
    endSpan(r.blocked ? 'blocked_content' : undefined);
    noteFindings(req.dlp, r.findings, r.blocked);
    if (r.blocked) {
      throw new GatewayError('blocked_content', `the request carries data that must not be sent to external tool "${tool.name}"`, {
        rule: 'dlp.request',
        details: { rules: [...req.dlp.rules] },
      });
    }
    out = r.text;
  }
  if (deps.config.audit.payload.mode !== 'off') req.payload = tool.external && tool.request.dlp ? out : applyDlp(deps.scanner, out).text;
  if (out === text) return { requestBody: { response: { status: 'CONTINUE' } } };
  const next = Buffer.from(out, 'utf8');
  return {
    requestBody: {
      response: {
        status: 'CONTINUE',
        headerMutation: { setHeaders: [setHeader('content-length', String(next.length))] },
        bodyMutation: { body: next },
      },
    },
  };
}
