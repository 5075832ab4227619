import type { Principal } from '../identity/types.js';
import { structJson } from '../policy/input.js';
import type { ProtoCheckRequest } from './request.js';
import { goParseInt, goParseQuery, goParseUrl, type GoQuery } from './dropinUrl.js';
import { mediaBoundary, parseMultipart } from './dropinMultipart.js';

/**
 * The policy input of drop-in mode: what opa-envoy-plugin (v3 API) gives a policy, field for
 * field, plus the gateway's additions (`identity`, `tool: null`, `mcp: null`).
 *
 * The reference does not use protojson for `attributes`: it walks the message and keeps only
 * fields that are set, int64 fields as numbers (`size`, `time.seconds`), a Timestamp as
 * `{seconds, nanos}`, enums as numbers and bytes (`raw_body`) as base64 text. The proto-loader
 * object is turned into that shape here.
 */

/** Input document, or the `request_parse_error` the reference answers with a 400. */
export type OpaEnvoyInput = { readonly ok: true; readonly input: Record<string, unknown> } | { readonly ok: false; readonly error: string };

const VERSION = Object.freeze({ ext_authz: 'v3', encoding: 'protojson' });

/** Map fields of the attribute messages (every other object is a message). */
const MAP_FIELDS = new Set(['headers', 'contextExtensions', 'labels', 'filterMetadata', 'typedFilterMetadata']);
/** int64 fields (strings from proto-loader) that the reference shows as numbers. */
const INT64_FIELDS = new Set(['size', 'seconds']);
/** Enum fields (names from proto-loader) by value name to number. */
const ENUMS: Readonly<Record<string, Readonly<Record<string, number>>>> = { protocol: { TCP: 0, UDP: 1 } };

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
}

/** A message: set fields only, in the reference's value forms. */
function message(obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    // proto-loader's oneof discriminator (`address: 'socketAddress'`) is not a field.
    if (typeof v === 'string' && v !== k && Object.hasOwn(obj, v) && !MAP_FIELDS.has(k)) continue;
    const value = field(k, v);
    if (value !== undefined) out[k] = value;
  }
  return out;
}

/** One field's value, or `undefined` when it is not set (proto3 default). */
function field(name: string, v: unknown): unknown {
  if (v === undefined || v === null) return undefined;
  if (Buffer.isBuffer(v)) return v.length === 0 ? undefined : v.toString('base64');
  if (Array.isArray(v)) return v.length === 0 ? undefined : v.map((x) => (isPlainObject(x) ? message(x) : field(name, x)));
  if (isPlainObject(v)) {
    if (!MAP_FIELDS.has(name)) return message(v);
    const entries = Object.entries(v);
    if (entries.length === 0) return undefined;
    const out: Record<string, unknown> = {};
    for (const [key, value] of entries) {
      if (name === 'filterMetadata') out[key] = structJson(value);
      else out[key] = isPlainObject(value) ? message(value) : value;
    }
    return out;
  }
  if (typeof v === 'string') {
    const e = ENUMS[name];
    if (e && v in e) return e[v] === 0 ? undefined : e[v];
    if (INT64_FIELDS.has(name)) return v === '0' || v === '' ? undefined : Number(v);
    return v === '' ? undefined : v;
  }
  if (typeof v === 'number') return v === 0 ? undefined : v;
  if (typeof v === 'boolean') return v ? true : undefined;
  return v;
}

/** `parsed_body` and `truncated_body` as the reference reads a body, or its error text. */
type Body = { ok: true; value: unknown; truncated: boolean } | { ok: false; error: string };

function truncatedBy(headers: Readonly<Record<string, string>>, bytes: number): { ok: true; cut: boolean } | { ok: false; error: string } {
  const declared = headers['content-length'];
  if (declared === undefined) return { ok: true, cut: false };
  const n = goParseInt(declared);
  if (!n.ok) return n;
  return { ok: true, cut: n.value !== -1n && n.value > BigInt(bytes) };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The reference's body reading: by content type (substring match), JSON, form or multipart. */
function readBody(headers: Readonly<Record<string, string>>, body: string, raw: Buffer | undefined): Body {
  const ct = headers['content-type'];
  if (ct === undefined) return { ok: true, value: null, truncated: false };
  const text = body !== '' ? body : raw && raw.length > 0 ? raw.toString('utf8') : null;
  const bytes = body !== '' ? Buffer.byteLength(body, 'utf8') : (raw?.length ?? 0);
  const kind = ct.includes('application/json') ? 'json' : ct.includes('application/grpc') ? 'grpc' : ct.includes('application/x-www-form-urlencoded') ? 'form' : ct.includes('multipart/form-data') ? 'multipart' : null;
  // gRPC bodies are decoded only with configured protos, which drop-in mode does not take.
  if (kind === null || kind === 'grpc' || text === null) return { ok: true, value: null, truncated: false };
  const cut = truncatedBy(headers, bytes);
  if (!cut.ok) return cut;
  if (cut.cut) return { ok: true, value: null, truncated: true };
  try {
    if (kind === 'json') return { ok: true, value: JSON.parse(text) as unknown, truncated: false };
    if (kind === 'form') {
      const q = goParseQuery(text);
      return q.error === null ? { ok: true, value: q.values, truncated: false } : { ok: false, error: q.error };
    }
    const boundary = mediaBoundary(ct);
    return { ok: true, value: boundary === null ? null : parseMultipart(text, boundary), truncated: false };
  } catch (err) {
    return { ok: false, error: errorText(err) };
  }
}

/**
 * Builds the drop-in input for one CheckRequest.
 * @param identity the verified principal offered to policy (`input.identity`), or null
 */
export function buildOpaEnvoyInput(req: ProtoCheckRequest, identity: Principal | null): OpaEnvoyInput {
  const http = req.attributes?.request?.http ?? {};
  const headers = http.headers ?? {};
  const url = goParseUrl(http.path ?? '');
  if (!url.ok) return { ok: false, error: `request_parse_error: ${url.error}` };
  const body = readBody(headers, http.body ?? '', http.rawBody);
  if (!body.ok) return { ok: false, error: `request_parse_error: ${body.error}` };
  const parsedQuery: GoQuery = goParseQuery(url.rawQuery).values;
  const input: Record<string, unknown> = message(req as Record<string, unknown>);
  input.version = VERSION;
  input.parsed_path = url.path.replace(/^\/+/, '').split('/');
  input.parsed_query = parsedQuery;
  input.parsed_body = body.value;
  input.truncated_body = body.truncated;
  const principal = req.attributes?.source?.principal;
  if (principal) input.source_principal = principal;
  input.identity = identity;
  input.tool = null;
  input.mcp = null;
  return { ok: true, input };
}
