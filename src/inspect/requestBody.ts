import type { ToolConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { jsonRpcFromValue, type JsonRpcBody } from './mcp.js';
import { decodeUtf8, looksLikeJsonContainer, parseStrictJson, type StrictJsonProblem } from './strictJson.js';

/**
 * Reads a request body once, for everyone: the policy input (`parsed_body`, `input.mcp`), the
 * schema check and MCP parsing all take their view from the {@link RequestBody} this returns, so
 * they cannot disagree about what the body says.
 */

/** A request body as the gateway understood it. */
export interface RequestBody {
  /** The body as text (UTF-8; lossy only for a truncated body of a tool that is not JSON). */
  readonly text: string;
  /** Whether the body was read as JSON (JSON content type or a JSON tool). */
  readonly json: boolean;
  /**
   * The parsed JSON value: set when `json`, and also when a body of another content type is
   * nonetheless a JSON document (so a JSON-RPC message is recognised whatever it is labelled).
   */
  readonly value: unknown;
  /** The JSON-RPC reading of `value`, or `null` when it is not JSON-RPC. */
  readonly rpc: JsonRpcBody | null;
}

/** Problems that make a JSON document mean different things to different parsers. */
const AMBIGUOUS: ReadonlySet<StrictJsonProblem> = new Set(['bom', 'duplicate_key', 'lone_surrogate', 'number_range', 'depth']);

const JSON_MEDIA_TYPE = /^application\/(?:[a-z0-9!#$&^_.-]+\+)?json[\t ]*(?:;|$)/i;
const CHARSET = /;[\t ]*charset[\t ]*=[\t ]*"?([^";\t ]*)"?/i;

/**
 * Whether a content type announces JSON: `application/json` or `application/<anything>+json`,
 * with no charset or UTF-8 (RFC 8259 JSON is UTF-8). `application/x-json`, `text/json` and the
 * like are not JSON content types.
 */
export function isJsonContentType(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const ct = contentType.trim();
  if (!JSON_MEDIA_TYPE.test(ct)) return false;
  const charset = CHARSET.exec(ct)?.[1];
  return charset === undefined || /^utf-?8$/i.test(charset);
}

/** A tool whose bodies are JSON by declaration: it has a request schema or is an MCP server. */
export function isJsonTool(tool: ToolConfig): boolean {
  return Boolean(tool.request.schema) || Boolean(tool.mcp);
}

/**
 * A JSON tool accepts only JSON content types for a request that has a body (415 otherwise), so
 * the policy, the schema check and the tool all read the body as JSON.
 */
export function requireJsonContentType(tool: ToolConfig, contentType: string | undefined): void {
  if (!isJsonTool(tool) || isJsonContentType(contentType)) return;
  const shown = contentType === undefined ? 'no content type' : `content type ${JSON.stringify(contentType.slice(0, 100))}`;
  throw new GatewayError('invalid_request', `tool "${tool.name}" accepts JSON bodies only (application/json); the request has ${shown}`, {
    rule: 'inspect.content_type',
    httpStatus: 415,
  });
}

function refused(problem: StrictJsonProblem, message: string): GatewayError {
  return new GatewayError('invalid_request', `request body is not valid JSON: ${message}`, { rule: 'inspect.json', details: { problem } });
}

/**
 * Reads a whole request body. JSON content types and JSON tools are parsed strictly and must be
 * valid; a body of another type that looks like a JSON document is parsed too and refused only
 * when its meaning would be ambiguous. Throws a GatewayError (400) for bad UTF-8 and bad JSON.
 */
export function readRequestBody(bytes: Uint8Array, contentType: string | undefined, tool: ToolConfig | null): RequestBody {
  const text = decodeUtf8(bytes);
  if (text === null) throw new GatewayError('invalid_request', 'request body is not valid UTF-8', { rule: 'inspect.encoding' });
  const asJson = isJsonContentType(contentType) || (tool !== null && isJsonTool(tool));
  if (asJson) {
    const r = parseStrictJson(text);
    if (!r.ok) throw refused(r.error.problem, r.error.message);
    return { text, json: true, value: r.value, rpc: jsonRpcFromValue(r.value) };
  }
  if (!looksLikeJsonContainer(text)) return { text, json: false, value: undefined, rpc: null };
  const r = parseStrictJson(text);
  if (r.ok) return { text, json: false, value: r.value, rpc: jsonRpcFromValue(r.value) };
  if (AMBIGUOUS.has(r.error.problem)) throw refused(r.error.problem, r.error.message);
  return { text, json: false, value: undefined, rpc: null };
}

/**
 * The start of a body that Envoy cut: text for the policy input only, never parsed (OPA-Envoy
 * gives `parsed_body: null` with `truncated_body: true`).
 */
export function truncatedRequestBody(bytes: Uint8Array): RequestBody {
  return { text: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'), json: false, value: undefined, rpc: null };
}
