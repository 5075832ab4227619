import type { ToolConfig } from '../config/types.js';
import type { AuthzMetadata } from '../authz/check.js';
import type { StreamRedactor, Finding } from '../dlp/index.js';
import type { GatewayError } from '../errors.js';

/** DLP outcome for one direction of an exchange. */
export interface DirectionDlp {
  action: 'none' | 'redacted' | 'blocked' | 'flagged';
  rules: Set<string>;
  count: number;
}

/**
 * How the response body is being handled: not at all, buffered by Envoy, streamed chunk by chunk
 * (SSE: the agent already has earlier chunks), or streamed by Envoy but held by portcullis until
 * complete (bodies too large for Envoy's buffer or of unknown length: nothing is released early).
 */
export type ResponseMode = 'none' | 'buffered' | 'streamed' | 'held';

/**
 * All state of one HTTP exchange seen by ext_proc. One object per gRPC stream; nothing is shared
 * between streams, so any replica can serve any exchange.
 */
export class Exchange {
  readonly startedNs = process.hrtime.bigint();
  meta: AuthzMetadata | null = null;
  /** At least one message arrived on the stream. */
  sawMessage = false;
  /** Rank of the last phase seen (see the order check in service.ts); -1 before any. */
  lastPhase = -1;
  /** Request headers were processed (false for local replies of earlier filters). */
  sawRequest = false;
  /** The response is a local reply that never reached a tool: nothing to inspect or audit. */
  localReply = false;
  tool: ToolConfig | null = null;
  requestId: string | null = null;
  traceparent: string | null = null;
  method = '';
  path = '';
  /** Content type of the request (request-header phase), so the body is read as the Check read it. */
  contentType: string | null = null;
  /** JSON-RPC id of the request (for errors), when the body was JSON-RPC. */
  rpcId: string | number | null = null;
  isJsonRpc = false;
  /** Ids of the calls of a JSON-RPC batch (errors answer each of them); null for a single message. */
  rpcBatchIds: (string | number)[] | null = null;
  requestSize = 0;
  schema: 'valid' | 'invalid' | 'skipped' = 'skipped';
  schemaErrors: string[] = [];
  injection: { rule: string; path: string }[] = [];
  readonly dlpRequest: DirectionDlp = { action: 'none', rules: new Set(), count: 0 };
  readonly dlpResponse: DirectionDlp = { action: 'none', rules: new Set(), count: 0 };
  upstreamStatus: number | null = null;
  responseStatus: number | null = null;
  responseMode: ResponseMode = 'none';
  /** Content-encoding of a buffered response that must be decoded before inspection. */
  responseEncoding: string | null = null;
  responseIsSse = false;
  /** Buffered-mode chunks (Envoy sends one buffered body, but be tolerant of several). */
  responseChunks: Buffer[] = [];
  /** Bytes held so far in `held` mode. */
  responseHeld = 0;
  redactor: StreamRedactor | null = null;
  /** Streamed response already blocked: everything after is dropped. */
  streamBlocked = false;
  /** Last characters fed to the current SSE event's redactor, to find an event end split across chunks. */
  sseTail = '';
  /** UTF-8 bytes of a streamed chunk that ended mid-character, carried to the next chunk. */
  utf8Carry: Buffer = Buffer.alloc(0);
  requestInspectMs = 0;
  responseInspectMs = 0;
  error: GatewayError | null = null;
  /** Redacted payload excerpts, kept only when audit payload capture is on. */
  requestPayload: string | null = null;
  responsePayload: string | null = null;
  audited = false;

  /** Records DLP findings for a direction. */
  noteFindings(dir: DirectionDlp, findings: readonly Finding[], blocked: boolean): void {
    for (const f of findings) {
      dir.rules.add(f.rule);
      dir.count += 1;
    }
    if (blocked) dir.action = 'blocked';
    else if (dir.action !== 'blocked' && findings.some((f) => f.action === 'redact' || f.action === 'block')) dir.action = 'redacted';
    else if (dir.action === 'none' && findings.length > 0) dir.action = 'flagged';
  }
}
