import { GatewayError } from '../errors.js';
import { looksLikeJsonContainer, parseStrictJson } from './strictJson.js';

/**
 * JSON-RPC 2.0 body parsing for MCP (streamable HTTP) calls. Total functions: any input,
 * including garbage and truncated bodies, yields a result or `null`, never an exception.
 */

/** One JSON-RPC request or notification, as policy (`input.mcp`) and audit see it. */
export interface McpCall {
  readonly method: string;
  /** Request id; `null` for notifications and ids of an invalid type. */
  readonly id: string | number | null;
  /** `params.name` of a `tools/call`; otherwise `null`. */
  readonly tool: string | null;
  /** `params.arguments` of a `tools/call`; otherwise `null`. */
  readonly arguments: unknown;
  /**
   * The prompt named: `params.name` of a `prompts/get`, or `params.ref.name` of a
   * `completion/complete` about a prompt (`ref/prompt`); otherwise `null` (always set by the parser).
   */
  readonly prompt?: string | null;
  /**
   * The resource URI named: `params.uri` of a `resources/read`, `resources/subscribe` or
   * `resources/unsubscribe`, or `params.ref.uri` of a `completion/complete` about a resource
   * (`ref/resource`); otherwise `null` (always set by the parser).
   */
  readonly resource?: string | null;
}

/** Methods whose `params.uri` names the resource they read or watch. */
const RESOURCE_METHODS: ReadonlySet<string> = new Set(['resources/read', 'resources/subscribe', 'resources/unsubscribe']);

function stringOf(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/** Result of {@link parseJsonRpc}. */
export interface JsonRpcBody {
  /** Requests and notifications in body order (responses carry no call and are skipped). */
  readonly calls: McpCall[];
  /** The message object of each call, same order as `calls` (a batch call's own policy input). */
  readonly messages: readonly unknown[];
  readonly batch: boolean;
  /** Elements in the body: 1 for a single message, the array length for a batch. */
  readonly size: number;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function rpcId(v: unknown): string | number | null {
  return typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)) ? v : null;
}

function isJsonRpcMessage(v: unknown): v is Json {
  return isObject(v) && v.jsonrpc === '2.0';
}

function toCall(msg: Json): McpCall | null {
  if (typeof msg.method !== 'string') return null;
  let tool: string | null = null;
  let args: unknown = null;
  let prompt: string | null = null;
  let resource: string | null = null;
  const params = isObject(msg.params) ? msg.params : null;
  if (params && msg.method === 'tools/call') {
    tool = stringOf(params.name);
    args = params.arguments ?? null;
  } else if (params && msg.method === 'prompts/get') {
    prompt = stringOf(params.name);
  } else if (params && RESOURCE_METHODS.has(msg.method)) {
    resource = stringOf(params.uri);
  } else if (params && msg.method === 'completion/complete' && isObject(params.ref)) {
    // Completions reveal a prompt's or resource template's arguments: judged like using it.
    if (params.ref.type === 'ref/prompt') prompt = stringOf(params.ref.name);
    else if (params.ref.type === 'ref/resource') resource = stringOf(params.ref.uri);
  }
  return { method: msg.method, id: rpcId(msg.id), tool, arguments: args, prompt, resource };
}

function parseJson(body: string): unknown {
  if (!looksLikeJsonContainer(body)) return undefined;
  const r = parseStrictJson(body);
  return r.ok ? r.value : undefined;
}

/**
 * Parses a JSON-RPC 2.0 body, single or batch, with the gateway's strict JSON reader. Returns
 * `null` when the body is not JSON-RPC at all (not strict JSON, no `"jsonrpc": "2.0"` message,
 * empty batch). See {@link jsonRpcFromValue}.
 */
export function parseJsonRpc(body: string): JsonRpcBody | null {
  return jsonRpcFromValue(parseJson(body));
}

/**
 * The JSON-RPC 2.0 reading of an already parsed body. In a batch, every element with a string
 * `method` counts as a call even without the `jsonrpc` member, so a lenient server cannot be
 * handed a call that policy never saw.
 */
export function jsonRpcFromValue(value: unknown): JsonRpcBody | null {
  if (Array.isArray(value)) {
    if (!value.some(isJsonRpcMessage)) return null;
    const calls: McpCall[] = [];
    const messages: unknown[] = [];
    for (const element of value) {
      const call = isObject(element) ? toCall(element) : null;
      if (call) {
        calls.push(call);
        messages.push(element);
      }
    }
    return { calls, messages, batch: true, size: value.length };
  }
  if (!isJsonRpcMessage(value)) return null;
  const call = toCall(value);
  return call ? { calls: [call], messages: [value], batch: false, size: 1 } : { calls: [], messages: [], batch: false, size: 1 };
}

/**
 * Refuses a JSON-RPC batch of more than `max` elements (413 payload_too_large; the caller
 * answers every id), before anything evaluates its calls.
 */
export function checkBatchSize(rpc: JsonRpcBody, max: number): void {
  if (!rpc.batch || rpc.size <= max) return;
  throw new GatewayError('payload_too_large', `a JSON-RPC batch of ${rpc.size} messages exceeds the limit of ${max}; send fewer calls per request`, {
    rule: 'inspect.batch_size',
    details: { limit: max },
  });
}

/**
 * The id to answer with: the first string/number id of the body's messages, or `null`.
 * Falls back to a scan of the top-level object for bodies that are not complete JSON (e.g.
 * truncated), where `"id"` usually comes early.
 */
export function firstRpcId(body: string): string | number | null {
  const value = parseJson(body);
  if (value !== undefined) {
    const messages = Array.isArray(value) ? value : [value];
    for (const m of messages) {
      const id = isObject(m) ? rpcId(m.id) : null;
      if (id !== null) return id;
    }
    return null;
  }
  return scanTopLevelId(body);
}

/** Upper bound on characters scanned for an id in a body that is not valid JSON. */
const SCAN_LIMIT = 64 * 1024;

/** Finds `"id": <string|number>` directly inside the first message object of partial JSON. */
function scanTopLevelId(body: string): string | number | null {
  const text = body.length > SCAN_LIMIT ? body.slice(0, SCAN_LIMIT) : body;
  // Message members sit at depth 1 in a single message, at depth 2 in a batch.
  const target = text.trimStart()[0] === '[' ? 2 : 1;
  let depth = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const ch = text[i];
    if (ch === '"') {
      const end = stringEnd(text, i);
      if (end < 0) return null;
      if (depth === target && isObjectDepth(text, i)) {
        const key = decodeString(text.slice(i, end + 1));
        let j = skipSpace(text, end + 1);
        if (key === 'id' && text[j] === ':') {
          j = skipSpace(text, j + 1);
          return readScalarId(text, j);
        }
      }
      i = end + 1;
      continue;
    }
    if (ch === '{' || ch === '[') depth++;
    else if (ch === '}' || ch === ']') depth--;
    i++;
  }
  return null;
}

/** True when the string at `pos` is in key position (preceded by `{` or `,`). */
function isObjectDepth(text: string, pos: number): boolean {
  let k = pos - 1;
  while (k >= 0 && /\s/.test(text[k] as string)) k--;
  return text[k] === '{' || text[k] === ',';
}

function stringEnd(text: string, start: number): number {
  for (let k = start + 1; k < text.length; k++) {
    const c = text[k];
    if (c === '\\') k++;
    else if (c === '"') return k;
  }
  return -1;
}

function skipSpace(text: string, pos: number): number {
  let k = pos;
  while (k < text.length && /\s/.test(text[k] as string)) k++;
  return k;
}

function decodeString(literal: string): string | null {
  try {
    const v: unknown = JSON.parse(literal);
    return typeof v === 'string' ? v : null;
  } catch {
    return null;
  }
}

function readScalarId(text: string, pos: number): string | number | null {
  if (text[pos] === '"') {
    const end = stringEnd(text, pos);
    return end < 0 ? null : decodeString(text.slice(pos, end + 1));
  }
  const m = /^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(pos, pos + 32));
  // A number cut off by truncation is not trustworthy: require a delimiter after it.
  if (!m) return null;
  const after = text[pos + m[0].length];
  if (after === undefined) return null;
  const num = Number(m[0]);
  return Number.isFinite(num) ? num : null;
}
