import type { Attributes } from '@opentelemetry/api';
import type { AuthzMetadata } from '../authz/check.js';

/**
 * Span attributes, named as the OpenTelemetry semantic conventions name them (GenAI / MCP,
 * RPC, HTTP; semconv 1.45 and the GenAI conventions) plus portcullis' own `portcullis.*`. Only
 * identifiers the gateway already logs: never a credential, a body, an argument or a query.
 */
export const ATTR = {
  genAiOperation: 'gen_ai.operation.name',
  genAiTool: 'gen_ai.tool.name',
  genAiPrompt: 'gen_ai.prompt.name',
  mcpMethod: 'mcp.method.name',
  mcpProtocol: 'mcp.protocol.version',
  jsonRpcId: 'jsonrpc.request.id',
  rpcSystem: 'rpc.system.name',
  rpcMethod: 'rpc.method',
  rpcStatus: 'rpc.response.status_code',
  httpMethod: 'http.request.method',
  httpStatus: 'http.response.status_code',
  urlPath: 'url.path',
  errorType: 'error.type',
  decision: 'portcullis.decision',
  rule: 'portcullis.rule',
  tool: 'portcullis.tool',
  requestId: 'portcullis.request_id',
  decisionId: 'portcullis.decision_id',
  stage: 'portcullis.stage',
  phase: 'portcullis.phase',
  dryRun: 'portcullis.dry_run',
  batchSize: 'portcullis.mcp.batch_size',
} as const;

/** HTTP methods the conventions name; anything else is `_OTHER`. */
const KNOWN_METHODS = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'TRACE', 'QUERY']);

/** `http.request.method` as the conventions want it (bounded: an agent picks the method). */
export function httpMethod(method: string): string {
  return KNOWN_METHODS.has(method) ? method : '_OTHER';
}

/** The path without its query (agents paste keys into queries); the caller passes it DLP-redacted. */
export function pathOnly(path: string): string {
  const q = path.search(/[?#]/);
  return q === -1 ? path : path.slice(0, q);
}

/**
 * What the decision says about the call, on the Check span and on the ext_proc stream span. A
 * JSON-RPC batch is several calls: the span names none of them (the first would misdescribe
 * the rest) and carries the batch size instead.
 */
export function decisionAttributes(m: AuthzMetadata, rpcId?: string | number | null, batch = false): Attributes {
  const a: Attributes = {
    [ATTR.httpMethod]: httpMethod(m.method),
    [ATTR.decision]: m.allowed ? (m.dry_run ? 'dry_run_allow' : 'allow') : 'deny',
  };
  if (m.tool) a[ATTR.tool] = m.tool;
  if (m.rule) a[ATTR.rule] = m.rule;
  if (m.request_id) a[ATTR.requestId] = m.request_id;
  if (m.mcp_protocol_version) a[ATTR.mcpProtocol] = m.mcp_protocol_version;
  if (batch) return a;
  if (m.mcp_method) {
    a[ATTR.mcpMethod] = m.mcp_method;
    // The GenAI conventions call an MCP tools/call "execute_tool".
    if (m.mcp_method === 'tools/call') a[ATTR.genAiOperation] = 'execute_tool';
  }
  if (m.mcp_tool) a[ATTR.genAiTool] = m.mcp_tool;
  if (m.mcp_prompt) a[ATTR.genAiPrompt] = m.mcp_prompt;
  if (rpcId !== null && rpcId !== undefined) a[ATTR.jsonRpcId] = String(rpcId);
  return a;
}
