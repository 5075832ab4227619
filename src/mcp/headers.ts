import { GatewayError } from '../errors.js';
import type { JsonRpcBody, McpCall } from '../inspect/mcp.js';

/**
 * The MCP standard request headers of protocol version 2026-07-28 (`Mcp-Method`, `Mcp-Name`),
 * which mirror the JSON-RPC body so intermediaries can route and decide without reading it.
 * Two components reading two sources of truth is exactly what an attacker wants (a header that
 * says `tools/list` over a body that calls `delete_doc`), so wherever the gateway has both it
 * requires them to agree, and where it decides on the headers alone it checks the body later.
 */

// Header names in lower case: Envoy lower-cases them, so every case variant arrives as these.
/** `Mcp-Method`: the JSON-RPC method of the message. */
export const METHOD_HEADER = 'mcp-method';
/** `Mcp-Name`: the tool or prompt name, or the resource URI. */
export const NAME_HEADER = 'mcp-name';
/** `MCP-Protocol-Version`: the protocol version the client speaks. */
export const VERSION_HEADER = 'mcp-protocol-version';
/** First protocol version whose clients must send the standard headers. */
export const HEADERS_REQUIRED_FROM = '2026-07-28';
/** Where a 2026-07-28 message states its protocol version (`params._meta`). */
const BODY_VERSION_KEY = 'io.modelcontextprotocol/protocolVersion';
/** JSON-RPC error code the spec assigns to a header/body mismatch (`HeaderMismatch`). */
export const HEADER_MISMATCH_CODE = -32020;

/** Methods whose target is mirrored in `Mcp-Name`, and the `params` member it comes from. */
const NAME_SOURCE: Readonly<Record<string, 'name' | 'uri'>> = {
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
};

const SENTINEL_START = '=?base64?';
const SENTINEL_END = '?=';
/** RFC 9110 field value characters: visible ASCII, space, tab. */
const FIELD_VALUE = /^[\x20-\x7e\t]*$/;
/** A method name as a header value: visible ASCII without the comma that joins repeated headers. */
const METHOD_VALUE = /^[\x21-\x2b\x2d-\x7e]+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** Longest header value read (SEP-2243: reject oversized values before decoding). */
const MAX_VALUE = 8192;

/** The standard headers of one request, decoded; `null` for a header that is absent. */
export interface StandardHeaders {
  readonly method: string | null;
  readonly name: string | null;
  readonly protocolVersion: string | null;
}

/** A call the Check decides on from the headers alone (`input.mcp`, marked by `source`). */
export interface HeaderCall extends McpCall {
  /** Where the call was read from: the headers, the body was not seen. */
  readonly source: 'headers';
  /** `Mcp-Name`: the tool or prompt name, or the resource URI; null when absent. */
  readonly name: string | null;
}

function mismatch(message: string, details: Record<string, unknown> = {}): GatewayError {
  return new GatewayError('invalid_request', message, { rule: 'mcp.header_mismatch', details: { mcp_error_code: HEADER_MISMATCH_CODE, ...details } });
}

/** Trims optional whitespace (SP, HTAB) around a field value, as HTTP parsers do. */
function ows(v: string): string {
  return v.replace(/^[ \t]+|[ \t]+$/g, '');
}

/**
 * Decodes an `Mcp-Name` value: plain ASCII as is, or the Base64 sentinel `=?base64?...?=`
 * (markers case-sensitive) decoded as UTF-8. Throws for characters outside a field value, bad
 * Base64 or bytes that are not UTF-8.
 */
export function decodeHeaderValue(header: string, raw: string): string {
  if (raw.length > MAX_VALUE) throw mismatch(`the ${header} header is longer than ${MAX_VALUE} characters`);
  if (!FIELD_VALUE.test(raw)) throw mismatch(`the ${header} header holds characters a header value may not carry; encode it as =?base64?...?=`);
  const v = ows(raw);
  if (!(v.startsWith(SENTINEL_START) && v.endsWith(SENTINEL_END) && v.length >= SENTINEL_START.length + SENTINEL_END.length)) return v;
  const b64 = v.slice(SENTINEL_START.length, v.length - SENTINEL_END.length);
  if (!BASE64.test(b64)) throw mismatch(`the ${header} header is not valid =?base64?...?= encoding`);
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(Buffer.from(b64, 'base64'));
  } catch {
    throw mismatch(`the ${header} header's Base64 value is not UTF-8`);
  }
}

/**
 * Reads the standard headers from a lower-cased header map. `duplicated` names headers that
 * occurred more than once (ext_proc sees each occurrence; the Check sees them joined by commas):
 * a repeated standard header is refused, as one reader may take the first and another the last.
 */
export function readStandardHeaders(headers: Readonly<Record<string, string>>, duplicated: ReadonlySet<string> = new Set()): StandardHeaders {
  for (const h of [METHOD_HEADER, NAME_HEADER, VERSION_HEADER]) {
    if (duplicated.has(h)) throw mismatch(`the ${h} header is sent more than once; send it once`);
  }
  const rawMethod = headers[METHOD_HEADER];
  let method: string | null = null;
  if (rawMethod !== undefined) {
    method = ows(rawMethod);
    if (!METHOD_VALUE.test(method) || method.length > MAX_VALUE) throw mismatch('the Mcp-Method header is not one JSON-RPC method name (visible ASCII, sent once)');
  }
  const rawName = headers[NAME_HEADER];
  const name = rawName === undefined ? null : decodeHeaderValue('Mcp-Name', rawName);
  const version = headers[VERSION_HEADER];
  return { method, name, protocolVersion: version === undefined ? null : ows(version) };
}

/** Whether any standard header is present. */
export function hasStandardHeaders(h: StandardHeaders): boolean {
  return h.method !== null || h.name !== null;
}

/** Whether the negotiated protocol version makes the standard headers mandatory. */
export function headersRequired(h: StandardHeaders): boolean {
  const v = h.protocolVersion;
  return v !== null && /^\d{4}-\d{2}-\d{2}$/.test(v) && v >= HEADERS_REQUIRED_FROM;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** What `Mcp-Name` must say for a message: `params.name` / `params.uri`, or null for other methods. */
export function bodyName(message: unknown): string | null {
  if (!isObject(message) || typeof message.method !== 'string') return null;
  const source = NAME_SOURCE[message.method];
  if (!source) return null;
  const v = isObject(message.params) ? message.params[source] : undefined;
  // A call without a string target has no name to mirror; an empty sentinel makes any header differ.
  return typeof v === 'string' ? v : '';
}

/** Whether a method mirrors its target in `Mcp-Name`. */
export function takesName(method: string): boolean {
  return NAME_SOURCE[method] !== undefined;
}

function shown(v: string): string {
  return JSON.stringify(v.length > 200 ? `${v.slice(0, 200)}…` : v);
}

/**
 * Requires the standard headers to agree with the JSON-RPC body: `Mcp-Method` equals `method`
 * (values are case-sensitive), `Mcp-Name` equals `params.name` (tools/call, prompts/get) or
 * `params.uri` (resources/read) and is absent for other methods. Headers describe one message:
 * a batch, or a body with no request or notification in it (a response), cannot carry them.
 * Without headers, a request that declares a protocol version requiring them is refused too, and
 * `MCP-Protocol-Version` must match the version a message states in `params._meta`.
 * Throws `invalid_request` (400, rule `mcp.header_mismatch`).
 */
export function checkHeadersAgree(h: StandardHeaders, rpc: JsonRpcBody): void {
  checkVersionAgrees(h, rpc);
  if (!hasStandardHeaders(h)) {
    if (headersRequired(h) && rpc.calls.length > 0) {
      throw mismatch(`protocol version ${h.protocolVersion} requires the Mcp-Method header (and Mcp-Name for tools/call, prompts/get and resources/read)`);
    }
    return;
  }
  if (h.method === null) throw mismatch('an Mcp-Name header needs the Mcp-Method header with it');
  if (rpc.batch) throw mismatch('the Mcp-Method and Mcp-Name headers describe one message; a JSON-RPC batch cannot carry them (send one message per request)');
  const message = rpc.messages[0];
  const call = rpc.calls[0];
  if (!call) throw mismatch(`the Mcp-Method header says ${shown(h.method)} but the body is a JSON-RPC response, not a request`);
  if (call.method !== h.method) {
    throw mismatch(`header mismatch: Mcp-Method ${shown(h.method)} does not match the body's method ${shown(call.method)}`, { header: 'Mcp-Method' });
  }
  const expected = bodyName(message);
  if (expected === null) {
    if (h.name !== null) throw mismatch(`the Mcp-Name header is not used with method ${shown(call.method)}`, { header: 'Mcp-Name' });
    return;
  }
  if (h.name === null) throw mismatch(`method ${shown(call.method)} requires the Mcp-Name header`, { header: 'Mcp-Name' });
  if (h.name !== expected) {
    throw mismatch(`header mismatch: Mcp-Name ${shown(h.name)} does not match the body's ${NAME_SOURCE[call.method]} ${shown(expected)}`, { header: 'Mcp-Name' });
  }
}

/** `MCP-Protocol-Version` must equal the version each message states in `params._meta`, if any. */
function checkVersionAgrees(h: StandardHeaders, rpc: JsonRpcBody): void {
  if (h.protocolVersion === null) return;
  for (const message of rpc.messages) {
    const params = isObject(message) && isObject(message.params) ? message.params : null;
    const meta = params && isObject(params._meta) ? params._meta : null;
    const stated = meta?.[BODY_VERSION_KEY];
    if (stated !== undefined && stated !== h.protocolVersion) {
      throw mismatch(`header mismatch: MCP-Protocol-Version ${shown(h.protocolVersion)} does not match the body's ${BODY_VERSION_KEY} ${shown(String(stated))}`, { header: 'MCP-Protocol-Version' });
    }
  }
}

/**
 * The call the Check decides on when it has the standard headers but not the body: method and
 * name from the headers, no id, no arguments (ext_proc decides again on the body).
 */
export function callFromHeaders(h: StandardHeaders): HeaderCall {
  const method = h.method;
  if (method === null) throw mismatch('a request decided without its body needs the Mcp-Method header');
  if (takesName(method) && (h.name === null || h.name === '')) throw mismatch(`method ${shown(method)} requires the Mcp-Name header`, { header: 'Mcp-Name' });
  if (!takesName(method) && h.name !== null) throw mismatch(`the Mcp-Name header is not used with method ${shown(method)}`, { header: 'Mcp-Name' });
  return { method, id: null, tool: method === 'tools/call' ? h.name : null, arguments: null, source: 'headers', name: h.name };
}

/** The names of headers occurring more than once in an ext_proc header list. */
export function repeatedHeaders(list: readonly { key: string }[]): Set<string> {
  const seen = new Set<string>();
  const repeated = new Set<string>();
  for (const { key } of list) {
    const k = key.toLowerCase();
    if (seen.has(k)) repeated.add(k);
    seen.add(k);
  }
  return repeated;
}
