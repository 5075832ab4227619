import type { ToolConfig } from '../config/types.js';
import type { AuthzMetadata } from '../authz/check.js';
import type { Finding } from '../dlp/index.js';
import type { GatewayError, RpcErrorTarget } from '../errors.js';
import { newMcpExchange, type McpExchange } from '../mcp/exchange.js';

/** DLP outcome for one direction of an exchange. */
export interface DirectionDlp {
  action: 'none' | 'redacted' | 'blocked' | 'flagged';
  rules: Set<string>;
  count: number;
}

/** A fresh DLP outcome (nothing found yet). */
export function emptyDlp(): DirectionDlp {
  return { action: 'none', rules: new Set(), count: 0 };
}

/** Records DLP findings for a direction; `blocked` when a block rule fired. */
export function noteFindings(dir: DirectionDlp, findings: readonly Finding[], blocked: boolean): void {
  for (const f of findings) {
    dir.rules.add(f.rule);
    dir.count += 1;
  }
  if (blocked) dir.action = 'blocked';
  else if (dir.action !== 'blocked' && findings.some((f) => f.action === 'redact' || f.action === 'block')) dir.action = 'redacted';
  else if (dir.action === 'none' && findings.length > 0) dir.action = 'flagged';
}

/** What is known about the stream itself: the decision it joined and where it stands. */
export interface StreamState {
  readonly startedNs: bigint;
  meta: AuthzMetadata | null;
  tool: ToolConfig | null;
  /** At least one message arrived on the stream. */
  sawMessage: boolean;
  /** Rank of the last phase seen (see the order check in processor.ts); -1 before any. */
  lastPhase: number;
  /** The response is a local reply that never reached a tool: nothing to inspect or audit. */
  localReply: boolean;
  /** Why the exchange was denied or failed, once it was. */
  error: GatewayError | null;
  /** The forwarded record was written (or was not needed). */
  forwarded: boolean;
  /** The completion record was written. */
  audited: boolean;
}

/** The request as ext_proc saw it. */
export interface RequestState {
  /** Request headers were processed (false when the route skips them, or for local replies). */
  seen: boolean;
  requestId: string | null;
  traceparent: string | null;
  method: string;
  path: string;
  /** Content type, so the body is read exactly as the Check read it. */
  contentType: string | null;
  /** Where a JSON-RPC error goes: the request's id, or every id of a batch. */
  rpc: { isJsonRpc: boolean; id: string | number | null; batchIds: (string | number)[] | null };
  size: number;
  schema: 'valid' | 'invalid' | 'skipped';
  schemaErrors: string[];
  injection: { rule: string; path: string }[];
  readonly dlp: DirectionDlp;
  inspectMs: number;
  /** Redacted payload excerpt, kept only when audit payload capture is on. */
  payload: string | null;
  /** `path` as audit records carry it (redacted once, for both records of the exchange). */
  auditPath: string | null;
  /** MCP requests of this exchange (ids and methods), session headers, list items hidden. */
  readonly mcp: McpExchange;
}

/**
 * How the response body is handled: not at all, buffered by Envoy, held by portcullis until
 * complete (too large for Envoy's buffer or of unknown length: nothing is released early), or
 * streamed event by event (SSE: the agent already has earlier events).
 */
export type ResponseMode = 'none' | 'buffered' | 'held' | 'sse';

/** The response as ext_proc saw it. */
export interface ResponseState {
  upstreamStatus: number | null;
  /** Status the agent received. */
  status: number | null;
  mode: ResponseMode;
  /** Why the body was not inspected, when it was not (the audit record says so). */
  notInspected: string | null;
  /** Content-encoding to undo before inspection (buffered and held bodies). */
  encoding: string | null;
  /** Declared charset of a text body (lower case), if any. */
  charset: string | null;
  /** Declared content type (lower case, without parameters). */
  contentType: string;
  /** How the body's bytes were read for inspection (`utf-8`, `utf-16le`, `binary` ...). */
  view: string | null;
  readonly dlp: DirectionDlp;
  /** Injected credentials found (and removed) in this response. */
  scrubbed: number;
  inspectMs: number;
  payload: string | null;
}

/** Fresh state for one stream. */
export function newStreamState(): StreamState {
  return { startedNs: process.hrtime.bigint(), meta: null, tool: null, sawMessage: false, lastPhase: -1, localReply: false, error: null, forwarded: false, audited: false };
}

/** Fresh request state. */
export function newRequestState(): RequestState {
  return {
    seen: false,
    requestId: null,
    traceparent: null,
    method: '',
    path: '',
    contentType: null,
    rpc: { isJsonRpc: false, id: null, batchIds: null },
    size: 0,
    schema: 'skipped',
    schemaErrors: [],
    injection: [],
    dlp: emptyDlp(),
    inspectMs: 0,
    payload: null,
    auditPath: null,
    mcp: newMcpExchange(),
  };
}

/** Fresh response state. */
export function newResponseState(): ResponseState {
  return { upstreamStatus: null, status: null, mode: 'none', notInspected: null, encoding: null, charset: null, contentType: '', view: null, dlp: emptyDlp(), scrubbed: 0, inspectMs: 0, payload: null };
}

/** The JSON-RPC error target of a request. */
export function rpcTarget(req: RequestState): RpcErrorTarget {
  return { isJsonRpc: req.rpc.isJsonRpc, id: req.rpc.id, batchIds: req.rpc.batchIds };
}
