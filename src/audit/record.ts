import type { AuditConfig } from '../config/types.js';
import { redact } from '../dlp/redact.js';
import type { Scanner } from '../dlp/types.js';

/**
 * The audit records. An exchange that reaches a tool gets two: a `forwarded` record, made durable
 * before the request leaves (so a crash between the tool acting and the response cannot erase
 * it), and an `exchange` record at its end, joined by `request_id`. A request denied at ext_authz
 * gets one `exchange` record. The builders copy named fields only, never whole objects handed to
 * them, so headers, tokens or bodies cannot ride along by accident; payload text is accepted only
 * already redacted.
 */

/** DLP outcome for one direction. */
export interface AuditDlpDirection {
  readonly action: 'none' | 'redacted' | 'blocked' | 'flagged';
  /** DLP rule ids that matched, sorted. */
  readonly rules: readonly string[];
  /** Number of findings. */
  readonly count: number;
}

/** Schema validation outcome of the request body. */
export type AuditSchemaOutcome = 'valid' | 'invalid' | 'skipped';

/** The authorization decision as the audit record carries it. */
export interface AuditDecision {
  readonly allowed: boolean;
  readonly rule: string | null;
  readonly reason: string | null;
  readonly policy_version: string | null;
  readonly dry_run: boolean;
}

/**
 * The MCP JSON-RPC call of a request (first call of a batch): its method, the tool, prompt or
 * resource it names, the session and protocol version headers, and for list requests how many
 * items policy hid (`hidden`; in dry run `would_hide`, nothing being hidden).
 */
export interface AuditMcp {
  readonly method: string | null;
  readonly tool: string | null;
  readonly prompt?: string | null;
  readonly resource?: string | null;
  readonly session?: string | null;
  readonly protocol_version?: string | null;
  /** Items removed from list results; null when the exchange filtered no list. */
  readonly hidden?: number | null;
  /** Items policy would have removed in dry run; null when not in dry run or no list. */
  readonly would_hide?: number | null;
}

/** Fields the forwarded and the exchange record share, in the order they are written. */
interface AuditRecordBase {
  readonly request_id: string | null;
  /** Trace id of a valid W3C `traceparent`, else null. */
  readonly trace_id: string | null;
  /** Span id of that `traceparent` (the Check span that decided the call), else null. */
  readonly span_id: string | null;
  readonly agent_id: string | null;
  readonly agent_version: string | null;
  readonly user_id: string | null;
  readonly tenant_id: string | null;
  readonly auth_methods: readonly string[];
  /** Roles of the verified principal (sorted); empty when unauthenticated. */
  readonly roles: readonly string[];
  /**
   * Rule of the presented credential's failed verification (e.g. `identity.jwt`), when one was
   * presented and did not verify; the identity fields are then null.
   */
  readonly auth_error: string | null;
  readonly tool: string | null;
  readonly method: string;
  /** Request path with DLP findings redacted and query values replaced by `[redacted]` (see {@link redactPath}). */
  readonly path: string;
  /** The JSON-RPC method and MCP tool of an MCP request (first call of a batch); null otherwise. */
  readonly mcp: AuditMcp | null;
  readonly decision: AuditDecision;
}

/**
 * Written when a request is forwarded to its tool, before it leaves: what was decided and what
 * the request inspection found. Its exchange record follows with the same `request_id`.
 */
export interface AuditForwardedRecord extends AuditRecordBase {
  readonly record_type: 'forwarded';
  /** ISO 8601 time the request was forwarded. */
  readonly time: string;
  readonly inspection: AuditRecord['inspection'];
  readonly dlp: { readonly request: AuditDlpDirection };
}

/** Any line the audit logger writes. */
export type AuditLine = AuditRecord | AuditForwardedRecord;

/** One audit record (field names are the log contract, snake_case). */
export interface AuditRecord extends AuditRecordBase {
  /** `exchange`: the whole exchange (or a denial at ext_authz), at its end. */
  readonly record_type: 'exchange';
  /** ISO 8601 time the exchange ended. */
  readonly time: string;
  readonly inspection: {
    readonly request: {
      readonly size: number;
      readonly schema: AuditSchemaOutcome;
      readonly errors?: readonly string[];
      readonly injection: readonly { readonly rule: string; readonly path: string }[];
    };
  };
  readonly dlp: { readonly request: AuditDlpDirection; readonly response: AuditDlpDirection };
  /**
   * How the response was inspected: `mode` (none, headers, buffered, held, sse), `view` (how its
   * bytes were read: utf-8, utf-16le, binary ...), and `not_inspected`, the reason when its body
   * was not inspected (a tool that inspects nothing, binary passed by config); absent for
   * exchanges that never reached a response.
   */
  readonly response_inspection?: { readonly mode: string; readonly view: string | null; readonly not_inspected: string | null };
  readonly upstream_status: number | null;
  /** Status the agent received (a denial's status when the gateway answered itself). */
  readonly response_status: number | null;
  readonly latency_ms: {
    readonly authz: number | null;
    readonly request_inspect: number | null;
    readonly response_inspect: number | null;
    readonly total: number | null;
  };
  /** Why the exchange failed or was denied (error type and rule, never the message text). */
  readonly error: { readonly type: string; readonly rule: string | null } | null;
  /** Redacted, truncated payload excerpts; present only when capture is on. */
  readonly payload?: {
    readonly request?: string;
    readonly response?: string;
    /** Which excerpts were cut at `max_bytes`. */
    readonly truncated?: readonly ('request' | 'response')[];
  };
  /**
   * MCP tool definitions this exchange learned or acted on: first seen and pinned, changed
   * since pinned, poisoned, unusable; with the hash, the action taken and the rules matched.
   */
  readonly mcp_definitions?: readonly AuditMcpDefinition[];
}

/** One MCP tool definition event (see {@link AuditRecord.mcp_definitions}). */
export interface AuditMcpDefinition {
  readonly name: string;
  readonly hash: string;
  readonly event: string;
  readonly action: string;
  readonly pinned?: string;
  readonly rules?: readonly string[];
}

/** DLP outcome as tracked during an exchange (`rules` may be a Set). */
export interface AuditDlpInput {
  readonly action: AuditDlpDirection['action'];
  readonly rules: Iterable<string>;
  readonly count: number;
}

/**
 * Everything the builder reads. Fields are picked one by one; extra properties are ignored.
 * Names mirror the ext_authz metadata (snake_case identity) so callers can pass it through.
 */
export interface AuditExchange {
  /** When the exchange ended; default now. */
  readonly time?: Date;
  readonly requestId: string | null;
  /** Raw `traceparent` header value, if any; only its trace id is kept. */
  readonly traceparent?: string | null;
  /** The verified principal as carried in the ext_authz metadata; null when unauthenticated. */
  readonly identity?: {
    readonly agent: string | null;
    readonly agent_version: string | null;
    readonly user: string | null;
    readonly tenant: string | null;
    readonly auth_methods: readonly string[];
    readonly roles?: readonly string[];
  } | null;
  /** Rule of a presented credential that did not verify; null or omitted when none failed. */
  readonly authError?: string | null;
  readonly tool: string | null;
  readonly method: string;
  /** Raw request path including any query string; redacted here. */
  readonly path: string;
  /**
   * `path` already redacted by {@link redactPath} with the logger's scanner (an exchange whose
   * two records, or whose access log line, redact the same path do it once); used as given.
   */
  readonly redactedPath?: string;
  /** MCP call of the request (the ext_authz metadata's `mcp_*` fields; ext_proc adds list counts). */
  readonly mcp?: AuditMcp | null;
  /** Authorization decision; null when ext_authz's verdict is unknown (treated as not allowed). */
  readonly decision: AuditDecision | null;
  readonly inspection?: {
    readonly size: number;
    readonly schema: AuditSchemaOutcome;
    readonly errors?: readonly string[];
    readonly injection?: readonly { readonly rule: string; readonly path: string }[];
  };
  readonly dlpRequest?: AuditDlpInput;
  readonly dlpResponse?: AuditDlpInput;
  /** How the response was inspected (see {@link AuditRecord.response_inspection}). */
  readonly responseInspection?: { readonly mode: string; readonly view: string | null; readonly notInspected: string | null } | null;
  readonly upstreamStatus?: number | null;
  readonly responseStatus?: number | null;
  readonly latencyMs?: {
    readonly authz?: number | null;
    readonly requestInspect?: number | null;
    readonly responseInspect?: number | null;
    readonly total?: number | null;
  };
  /** The error that ended or denied the exchange (a GatewayError fits); its message is not kept. */
  readonly error?: { readonly code: string; readonly rule?: string | undefined } | null;
  /**
   * Payload capture. `request`/`response` must already be DLP-redacted; the builder only
   * truncates them to `capture.max_bytes` and drops them when `capture.mode` is `off`.
   */
  readonly payload?: {
    readonly capture: AuditConfig['payload'];
    readonly request?: string | null;
    readonly response?: string | null;
  };
  /** MCP tool definition events (see {@link AuditRecord.mcp_definitions}); omitted when none. */
  readonly mcpDefinitions?: readonly AuditMcpDefinition[];
}

/** At most this many schema error strings are kept per record. */
const MAX_SCHEMA_ERRORS = 20;
/** At most this many injection findings are kept per record. */
const MAX_INJECTION = 50;
const REDACTED = '[redacted]';
/** Query parameter names kept verbatim; anything else (including bare `?token` items) is a value. */
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_.\-[\]]{0,63}$/;
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;
const NO_DLP: AuditDlpDirection = { action: 'none', rules: [], count: 0 };

/**
 * What may be secret removed from a request path, for logs and audit records: the fragment is
 * dropped, every query value becomes `[redacted]` (see {@link redactSecretsFromPath}), and the path
 * itself goes through DLP redaction with `scanner` (the gateway's compiled catalog), so a key pasted
 * into a path segment (`/forecast/AKIA...`) becomes `[REDACTED:aws.access_key_id]`. Segments are
 * scanned percent-decoded, so an encoded secret is found too; a path with no finding is kept as sent.
 */
export function redactPath(path: string, scanner: Scanner | null | undefined): string {
  const redacted = redactSecretsFromPath(path);
  if (!scanner) return redacted;
  const q = redacted.indexOf('?');
  const pathPart = q < 0 ? redacted : redacted.slice(0, q);
  const decoded = pathPart.includes('%') ? pathPart.split('/').map(decodeSegment).join('/') : pathPart;
  const findings = scanner.scan(decoded);
  if (findings.length === 0) return redacted;
  const clean = redact(decoded, findings);
  if (clean === decoded) return redacted;
  return q < 0 ? clean : clean + redacted.slice(q);
}

function decodeSegment(segment: string): string {
  if (!segment.includes('%')) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/**
 * Removes what may be secret from a request path: the path segments stay, the fragment is
 * dropped, and every query value becomes `[redacted]` (`?q=x&key=y` → `?q=[redacted]&key=[redacted]`).
 * A query item without `=`, or whose name does not look like a parameter name, is replaced whole,
 * since a bare query item is often a key itself.
 */
export function redactSecretsFromPath(path: string): string {
  const hashAt = path.indexOf('#');
  const noFragment = hashAt >= 0 ? path.slice(0, hashAt) : path;
  const q = noFragment.indexOf('?');
  if (q < 0) return noFragment;
  const query = noFragment.slice(q + 1);
  if (query === '') return noFragment.slice(0, q);
  const items = query.split('&').map((item) => {
    if (item === '') return item;
    const eq = item.indexOf('=');
    if (eq < 0) return REDACTED;
    const name = item.slice(0, eq);
    return PARAM_NAME.test(name) ? `${name}=${REDACTED}` : REDACTED;
  });
  return `${noFragment.slice(0, q)}?${items.join('&')}`;
}

/** Trace id of a W3C `traceparent` (version 00 rules; all-zero ids are invalid), else null. */
export function traceIdFrom(traceparent: string | null | undefined): string | null {
  if (!traceparent) return null;
  const m = TRACEPARENT.exec(traceparent.trim());
  if (!m) return null;
  const [, version, traceId, spanId] = m;
  if (version === 'ff' || /^0+$/.test(traceId!) || /^0+$/.test(spanId!)) return null;
  if (version === '00' && traceparent.trim().length !== 55) return null;
  return traceId!;
}

/** Span id of a W3C `traceparent` under the same rules as {@link traceIdFrom}, else null. */
export function spanIdFrom(traceparent: string | null | undefined): string | null {
  if (traceIdFrom(traceparent) === null) return null;
  return TRACEPARENT.exec((traceparent as string).trim())![3]!;
}

/**
 * Cuts text to at most `maxBytes` UTF-8 bytes without splitting a character.
 * Returns the text and whether it was cut.
 */
export function truncateUtf8(text: string, maxBytes: number): { text: string; truncated: boolean } {
  const limit = Math.max(0, Math.floor(maxBytes));
  // Cheap exit without encoding: one UTF-16 unit never needs more than 3 UTF-8 bytes.
  if (text.length * 3 <= limit) return { text, truncated: false };
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= limit) return { text, truncated: false };
  let end = limit;
  // Step back over continuation bytes (10xxxxxx) so the cut lands on a character boundary.
  while (end > 0 && (buf[end]! & 0xc0) === 0x80) end -= 1;
  return { text: buf.subarray(0, end).toString('utf8'), truncated: true };
}

function dlpOf(d: AuditDlpInput | undefined): AuditDlpDirection {
  if (!d) return NO_DLP;
  return { action: d.action, rules: [...new Set(d.rules)].sort(), count: d.count };
}

function ms(v: number | null | undefined): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? Math.round(v * 1000) / 1000 : null;
}

function payloadOf(p: AuditExchange['payload']): AuditRecord['payload'] | undefined {
  if (!p || p.capture.mode === 'off') return undefined;
  const out: { request?: string; response?: string; truncated?: ('request' | 'response')[] } = {};
  const cut: ('request' | 'response')[] = [];
  for (const dir of ['request', 'response'] as const) {
    const text = p[dir];
    if (typeof text !== 'string') continue;
    const t = truncateUtf8(text, p.capture.max_bytes);
    out[dir] = t.text;
    if (t.truncated) cut.push(dir);
  }
  if (cut.length > 0) out.truncated = cut;
  return out.request === undefined && out.response === undefined ? undefined : out;
}

/**
 * Assembles the audit record of one exchange. Pure: no I/O, no clock other than the default time.
 * `scanner` redacts secrets in the path (see {@link redactPath}); without one only query values are.
 */
export function buildAuditRecord(x: AuditExchange, scanner?: Scanner | null): AuditRecord {
  const lat = x.latencyMs ?? {};
  const base = baseOf(x, scanner);
  const record: AuditRecord = {
    record_type: 'exchange',
    time: (x.time ?? new Date()).toISOString(),
    ...base,
    inspection: inspectionOf(x.inspection),
    dlp: { request: dlpOf(x.dlpRequest), response: dlpOf(x.dlpResponse) },
    ...(x.responseInspection
      ? { response_inspection: { mode: String(x.responseInspection.mode), view: x.responseInspection.view === null ? null : String(x.responseInspection.view), not_inspected: x.responseInspection.notInspected === null ? null : String(x.responseInspection.notInspected) } }
      : {}),
    upstream_status: x.upstreamStatus ?? null,
    response_status: x.responseStatus ?? null,
    latency_ms: {
      authz: ms(lat.authz),
      request_inspect: ms(lat.requestInspect),
      response_inspect: ms(lat.responseInspect),
      total: ms(lat.total),
    },
    error: x.error ? { type: x.error.code, rule: x.error.rule ?? null } : null,
  };
  const payload = payloadOf(x.payload);
  const withPayload = payload ? { ...record, payload } : record;
  return x.mcpDefinitions && x.mcpDefinitions.length > 0 ? { ...withPayload, mcp_definitions: x.mcpDefinitions.map((d) => ({ ...d })) } : withPayload;
}

/** What the forwarded record reads: the request side of {@link AuditExchange}. */
export type AuditForwarded = Pick<
  AuditExchange,
  'time' | 'requestId' | 'traceparent' | 'identity' | 'authError' | 'tool' | 'method' | 'path' | 'redactedPath' | 'mcp' | 'decision' | 'inspection' | 'dlpRequest'
>;

/** Assembles the record of a request being forwarded to its tool. Pure, like {@link buildAuditRecord}. */
export function buildForwardedRecord(x: AuditForwarded, scanner?: Scanner | null): AuditForwardedRecord {
  return {
    record_type: 'forwarded',
    time: (x.time ?? new Date()).toISOString(),
    ...baseOf(x, scanner),
    inspection: inspectionOf(x.inspection),
    dlp: { request: dlpOf(x.dlpRequest) },
  };
}

function baseOf(x: AuditForwarded, scanner: Scanner | null | undefined): AuditRecordBase {
  const id = x.identity ?? null;
  const d = x.decision;
  return {
    request_id: x.requestId ?? null,
    trace_id: traceIdFrom(x.traceparent),
    span_id: spanIdFrom(x.traceparent),
    agent_id: id?.agent ?? null,
    agent_version: id?.agent_version ?? null,
    user_id: id?.user ?? null,
    tenant_id: id?.tenant ?? null,
    auth_methods: id ? [...id.auth_methods] : [],
    roles: id?.roles ? [...new Set(id.roles)].sort() : [],
    auth_error: x.authError ?? null,
    tool: x.tool ?? null,
    method: x.method,
    path: x.redactedPath ?? redactPath(x.path, scanner),
    mcp: mcpOf(x.mcp),
    decision: {
      allowed: d?.allowed ?? false,
      rule: d?.rule ?? null,
      reason: d?.reason ?? null,
      policy_version: d?.policy_version ?? null,
      dry_run: d?.dry_run ?? false,
    },
  };
}

function mcpOf(m: AuditMcp | null | undefined): AuditMcp | null {
  if (!m || (m.method === null && m.tool === null)) return null;
  return {
    method: m.method ?? null,
    tool: m.tool ?? null,
    prompt: m.prompt ?? null,
    resource: m.resource ?? null,
    session: m.session ?? null,
    protocol_version: m.protocol_version ?? null,
    hidden: m.hidden ?? null,
    would_hide: m.would_hide ?? null,
  };
}

function inspectionOf(insp: AuditExchange['inspection']): AuditRecord['inspection'] {
  const errors = insp?.errors && insp.errors.length > 0 ? insp.errors.slice(0, MAX_SCHEMA_ERRORS).map(String) : undefined;
  return {
    request: {
      size: insp?.size ?? 0,
      schema: insp?.schema ?? 'skipped',
      ...(errors ? { errors } : {}),
      injection: (insp?.injection ?? []).slice(0, MAX_INJECTION).map((f) => ({ rule: f.rule, path: f.path })),
    },
  };
}

/** Coarse outcome of a record, used as a metric label. */
export type AuditOutcome = 'allowed' | 'denied' | 'blocked' | 'failed';

/**
 * `denied` at ext_authz, `blocked` by inspection/DLP after it, `failed` when the gateway or the
 * upstream path failed (fail closed), otherwise `allowed`.
 */
export function auditOutcome(r: AuditRecord): AuditOutcome {
  if (!r.decision.allowed) return 'denied';
  if (!r.error) return 'allowed';
  return r.error.type === 'internal' || r.error.type === 'unavailable' ? 'failed' : 'blocked';
}
