import type { ProtoAddress, ProtoAttributeContext, ProtoCheckRequest, ProtoHttpRequest, ProtoPeer } from '../authz/request.js';
import type { Principal } from '../identity/types.js';
import type { McpCall } from '../inspect/mcp.js';
import { isJsonContentType } from '../inspect/requestBody.js';
import { parseStrictJson } from '../inspect/strictJson.js';

/** The resolved logical tool as policy sees it (`input.tool`). */
export interface PolicyTool {
  readonly name: string;
  /** Whether this call changes state (HTTP method, tool configuration or MCP tool). */
  readonly mutating: boolean;
  /** Data sent to the tool leaves the organisation. */
  readonly external: boolean;
  /** Envoy cluster serving the tool. */
  readonly upstream: string;
}

/** Name of each parsed query parameter to all of its values, in order (OPA-Envoy `parsed_query`). */
export type ParsedQuery = Record<string, string[]>;

/**
 * Policy input: the OPA-Envoy input document plus the gateway's additions (`identity`, `tool`,
 * `mcp`). A policy written for the OPA Envoy plugin reads the same fields here.
 */
export interface PolicyInput {
  /** The CheckRequest attributes in protojson form (body as text, no raw bytes). */
  readonly attributes: Record<string, unknown>;
  readonly parsed_path: string[];
  readonly parsed_query: ParsedQuery;
  readonly parsed_body: unknown;
  readonly truncated_body: boolean;
  readonly version: { readonly encoding: 'protojson'; readonly ext_authz: 'v3' };
  readonly identity: Principal | null;
  readonly tool: PolicyTool | null;
  readonly mcp: McpCall | null;
  /**
   * Facts the gateway remembers about this call's keys (`seen`: boolean, `count`: number; see
   * limits/facts.ts). Present only for a tool with facts; a fact whose key the call lacks is absent.
   */
  readonly facts?: Readonly<Record<string, boolean | number>>;
}

/** What the gateway learned before policy, added to the OPA-Envoy input. */
export interface PolicyAdditions {
  readonly identity: Principal | null;
  readonly tool: PolicyTool | null;
  readonly mcp: McpCall | null;
  /** Request body as text (decoded from `raw_body` or `body`), or `null` when there is none. */
  readonly body: string | null;
  /**
   * `parsed_body` as the gateway's one body reader produced it (the value the schema check and
   * MCP parsing also see). When absent, the body text is parsed here with the same strict reader.
   */
  readonly parsedBody?: unknown;
  /** Whether the body is only a prefix (from the raw byte count); computed from the text when absent. */
  readonly truncated?: boolean;
  /** `input.facts` of this call (absent: the tool has none). */
  readonly facts?: Readonly<Record<string, boolean | number>>;
}

const VERSION = Object.freeze({ encoding: 'protojson', ext_authz: 'v3' } as const);

/**
 * Builds the policy input for one request. Lean by design (runs once per call): only the
 * request, peers and metadata are copied; everything else is passed by reference.
 */
export function buildPolicyInput(req: ProtoCheckRequest, add: PolicyAdditions): PolicyInput {
  const attrs = req.attributes ?? {};
  const http = attrs.request?.http ?? {};
  const headers = http.headers ?? {};
  const body = add.body ?? (http.body !== undefined && http.body !== '' ? http.body : null);
  const { path, query } = splitTarget(http.path ?? headers[':path'] ?? '', http.query);
  const truncated = add.truncated ?? bodyTruncated(headers, body === null ? 0 : Buffer.byteLength(body, 'utf8'));
  const parsed = truncated ? null : 'parsedBody' in add ? (add.parsedBody ?? null) : parseBody(headers['content-type'], body);
  return {
    attributes: attributesJson(attrs, http, body),
    parsed_path: parsePath(path),
    parsed_query: parseQuery(query, false) ?? Object.create(null),
    parsed_body: parsed,
    truncated_body: truncated,
    version: VERSION,
    identity: add.identity,
    tool: add.tool,
    mcp: add.mcp,
    ...(add.facts !== undefined ? { facts: add.facts } : {}),
  };
}

/** Splits a request target into path and query; the fragment, if any, is dropped. */
function splitTarget(target: string, query: string | undefined): { path: string; query: string } {
  const hash = target.indexOf('#');
  const t = hash === -1 ? target : target.slice(0, hash);
  const q = t.indexOf('?');
  if (q === -1) return { path: t, query: query ?? '' };
  return { path: t.slice(0, q), query: t.slice(q + 1) };
}

/**
 * OPA-Envoy `parsed_path`: leading slashes trimmed, split on `/`, each segment
 * percent-decoded. Segments are decoded after splitting, so `%2F` never creates a segment; a
 * segment with invalid escapes is kept as sent.
 */
export function parsePath(path: string): string[] {
  let start = 0;
  while (path.charCodeAt(start) === 47 /* / */) start++;
  const segments = path.slice(start).split('/');
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i] as string;
    if (s.includes('%')) segments[i] = decodeOr(s, s);
  }
  return segments;
}

function decodeOr(s: string, fallback: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return fallback;
  }
}

function queryUnescape(s: string): string | null {
  const plus = s.includes('+') ? s.replace(/\+/g, ' ') : s;
  if (!plus.includes('%')) return plus;
  try {
    return decodeURIComponent(plus);
  } catch {
    return null;
  }
}

/**
 * Parses `a=1&a=2&b` like Go's `url.ParseQuery` (what OPA-Envoy uses): `+` is a space, keys
 * without `=` get `""`, pairs with `;` or bad escapes are skipped. With `strict`, any such pair
 * makes the whole result `null` (a body that fails to parse).
 */
export function parseQuery(query: string, strict: boolean): ParsedQuery | null {
  const out: ParsedQuery = Object.create(null);
  if (query === '') return out;
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    if (pair.includes(';')) {
      if (strict) return null;
      continue;
    }
    const eq = pair.indexOf('=');
    const key = queryUnescape(eq === -1 ? pair : pair.slice(0, eq));
    const value = queryUnescape(eq === -1 ? '' : pair.slice(eq + 1));
    if (key === null || value === null) {
      if (strict) return null;
      continue;
    }
    const list = out[key];
    if (list) list.push(value);
    else out[key] = [value];
  }
  return out;
}

/**
 * Default of the body bytes Envoy forwards with a check (`with_request_body.max_request_bytes` in
 * envoy/envoy.yaml; configured as `inspect.check_body_bytes`). Envoy marks a body partial only when it holds more than this; when its
 * buffer fills to exactly this size it sends `x-envoy-auth-partial-body: false` even though more
 * may follow, so a body of this size with no `content-length` (chunked, HTTP/2) may be cut.
 */
export const CHECK_BODY_WINDOW_BYTES = 65536;

/**
 * Whether the body forwarded with a check may be only the start of the request body: Envoy says
 * so, it is shorter than its `content-length`, or it has no length and fills Envoy's window.
 * Deciding "cut" when unsure is the safe side: checks that need the whole body then defer to
 * ext_proc (which sees all of it) instead of judging a prefix.
 */
export function bodyTruncated(headers: Readonly<Record<string, string>>, bodyBytes: number, windowBytes = CHECK_BODY_WINDOW_BYTES): boolean {
  if (headers['x-envoy-auth-partial-body'] === 'true') return true;
  const declared = headers['content-length'];
  if (declared === undefined) return bodyBytes >= windowBytes;
  const n = Number(declared);
  return Number.isInteger(n) && n > bodyBytes;
}

const FORM_TYPE = /^application\/x-www-form-urlencoded(?:\s*;|\s*$)/i;

/**
 * OPA-Envoy `parsed_body`: JSON (read with the gateway's strict reader) or form bodies by
 * content type; anything else, or a parse failure, is `null`.
 */
function parseBody(contentType: string | undefined, body: string | null): unknown {
  if (body === null || body === '' || contentType === undefined) return null;
  if (isJsonContentType(contentType)) {
    const r = parseStrictJson(body);
    return r.ok ? r.value : null;
  }
  return parsedForm(contentType, body);
}

/** `parsed_body` of a form body (`application/x-www-form-urlencoded`), or `null` for other types. */
export function parsedForm(contentType: string | undefined, body: string): ParsedQuery | null {
  if (contentType === undefined || !FORM_TYPE.test(contentType.trim())) return null;
  return parseQuery(body, true);
}

/**
 * protojson rendering of a proto-loader Timestamp: RFC 3339 in UTC with 0, 3, 6 or 9
 * fractional digits.
 */
export function timestampToRfc3339(ts: { seconds?: string | number; nanos?: number }): string | null {
  const seconds = Number(ts.seconds ?? 0);
  const nanos = ts.nanos ?? 0;
  if (!Number.isFinite(seconds) || !Number.isInteger(nanos) || nanos < 0 || nanos > 999_999_999) return null;
  const date = new Date(seconds * 1000);
  if (Number.isNaN(date.getTime())) return null;
  const base = date.toISOString().slice(0, 19);
  if (nanos === 0) return `${base}Z`;
  let frac = String(nanos).padStart(9, '0');
  if (frac.endsWith('000000')) frac = frac.slice(0, 3);
  else if (frac.endsWith('000')) frac = frac.slice(0, 6);
  return `${base}.${frac}Z`;
}

/**
 * The attributes in protojson form. proto-loader output differs from protojson in a few
 * places, fixed here: Timestamp objects, oneof discriminator fields (`oneofs: true`),
 * `google.protobuf.Struct` wrappers in metadata, and the raw body bytes (replaced by text).
 */
function attributesJson(attrs: ProtoAttributeContext, http: ProtoHttpRequest, body: string | null): Record<string, unknown> {
  const out: Record<string, unknown> = { ...attrs };
  if (attrs.source) out.source = peerJson(attrs.source);
  if (attrs.destination) out.destination = peerJson(attrs.destination);
  if (attrs.request) {
    const request: Record<string, unknown> = { ...attrs.request };
    if (attrs.request.time) {
      const time = timestampToRfc3339(attrs.request.time);
      if (time === null) delete request.time;
      else request.time = time;
    }
    if (attrs.request.http) {
      const h: Record<string, unknown> = { ...http };
      delete h.rawBody;
      if (body !== null) h.body = body;
      request.http = h;
    }
    out.request = request;
  }
  if (attrs.metadataContext !== undefined) out.metadataContext = metadataJson(attrs.metadataContext);
  if (attrs.routeMetadataContext !== undefined) out.routeMetadataContext = metadataJson(attrs.routeMetadataContext);
  return out;
}

function peerJson(peer: ProtoPeer): Record<string, unknown> {
  if (!peer.address) return { ...peer };
  return { ...peer, address: addressJson(peer.address) };
}

/** Drops the oneof discriminators of `Address.address` and `SocketAddress.port_specifier`. */
function addressJson(address: ProtoAddress): Record<string, unknown> {
  const out: Record<string, unknown> = { ...address };
  if (typeof out.address === 'string') delete out.address;
  const sock = out.socketAddress;
  if (typeof sock === 'object' && sock !== null) {
    const s: Record<string, unknown> = { ...(sock as Record<string, unknown>) };
    if (typeof s.portSpecifier === 'string') delete s.portSpecifier;
    out.socketAddress = s;
  }
  return out;
}

/** `envoy.config.core.v3.Metadata`: `filterMetadata` Structs to plain JSON, `typedFilterMetadata` Any to `@type` + base64. */
function metadataJson(meta: unknown): unknown {
  if (typeof meta !== 'object' || meta === null) return meta;
  const m = meta as { filterMetadata?: Record<string, unknown>; typedFilterMetadata?: Record<string, unknown> };
  const out: Record<string, unknown> = { ...(meta as Record<string, unknown>) };
  if (m.filterMetadata) {
    const fm: Record<string, unknown> = Object.create(null);
    for (const [ns, struct] of Object.entries(m.filterMetadata)) fm[ns] = structJson(struct);
    out.filterMetadata = fm;
  }
  if (m.typedFilterMetadata) {
    const tm: Record<string, unknown> = Object.create(null);
    for (const [ns, any] of Object.entries(m.typedFilterMetadata)) {
      const a = any as { typeUrl?: string; value?: Buffer };
      tm[ns] = { '@type': a.typeUrl ?? '', value: Buffer.isBuffer(a.value) ? a.value.toString('base64') : '' };
    }
    out.typedFilterMetadata = tm;
  }
  return out;
}

/** `google.protobuf.Struct` as decoded by proto-loader (`{fields: {k: Value}}`) to a JSON object. */
export function structJson(struct: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = Object.create(null);
  const fields = (struct as { fields?: Record<string, unknown> } | null)?.fields;
  if (fields) for (const [k, v] of Object.entries(fields)) out[k] = valueJson(v);
  return out;
}

function valueJson(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return null;
  const v = value as {
    kind?: string;
    nullValue?: unknown;
    numberValue?: number;
    stringValue?: string;
    boolValue?: boolean;
    structValue?: unknown;
    listValue?: { values?: unknown[] };
  };
  const kind = v.kind ?? Object.keys(v).find((k) => k.endsWith('Value'));
  switch (kind) {
    case 'numberValue':
      return v.numberValue ?? 0;
    case 'stringValue':
      return v.stringValue ?? '';
    case 'boolValue':
      return v.boolValue ?? false;
    case 'structValue':
      return structJson(v.structValue);
    case 'listValue':
      return (v.listValue?.values ?? []).map(valueJson);
    default:
      return null;
  }
}
