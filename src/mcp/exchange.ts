import type { McpCall } from '../inspect/mcp.js';

/**
 * What one exchange sent to an MCP server, so its answers can be read: which request ids it
 * carried (and their methods), the session and protocol version headers, and how many list
 * items policy hid from the answers.
 */

/** The list methods whose results are filtered by policy. */
export type ListMethod = 'tools/list' | 'prompts/list' | 'resources/list' | 'resources/templates/list';

/** How the items of one list method are read and judged. */
export interface ListShape {
  /** Member of `result` that holds the items. */
  readonly key: 'tools' | 'prompts' | 'resources' | 'resourceTemplates';
  /** Member of an item that names it. */
  readonly field: 'name' | 'uri' | 'uriTemplate';
  /** What the item is, for the policy input and messages. */
  readonly kind: 'tool' | 'prompt' | 'resource' | 'resource_template';
}

/** The shape of each list method's result (MCP 2025-11-25). */
export const LIST_SHAPES: Readonly<Record<ListMethod, ListShape>> = {
  'tools/list': { key: 'tools', field: 'name', kind: 'tool' },
  'prompts/list': { key: 'prompts', field: 'name', kind: 'prompt' },
  'resources/list': { key: 'resources', field: 'uri', kind: 'resource' },
  'resources/templates/list': { key: 'resourceTemplates', field: 'uriTemplate', kind: 'resource_template' },
};

/** Whether a JSON-RPC method is one of the filtered list methods. */
export function isListMethod(method: string): method is ListMethod {
  return Object.hasOwn(LIST_SHAPES, method);
}

/** Per exchange MCP state: request ids, headers of note, hidden counts. */
export interface McpExchange {
  /** Method of each request of this exchange by id, the id exactly as sent (type included). */
  readonly requests: Map<string | number, string>;
  /** A list method was among the requests: its answers must be read, or refused. */
  hasList: boolean;
  /** `mcp-session-id` request header (bounded, printable ASCII), or null. */
  session: string | null;
  /** `mcp-protocol-version` request header (bounded, printable ASCII), or null. */
  protocolVersion: string | null;
  /** Request headers as forwarded (without the tool's injected credentials), for item inputs. */
  headers: Readonly<Record<string, string>> | null;
  /** List items policy removed from answers. */
  hidden: number;
  /** List items policy would have removed (dry run: nothing removed). */
  wouldHide: number;
  /** The same counts per list method (for metrics). */
  readonly byMethod: Map<ListMethod, { hidden: number; wouldHide: number }>;
}

/** Counts the items one list result lost (or, in dry run, would have lost). */
export function noteHidden(ex: McpExchange, method: ListMethod, count: number, dryRun: boolean): void {
  const m = ex.byMethod.get(method) ?? { hidden: 0, wouldHide: 0 };
  if (dryRun) {
    ex.wouldHide += count;
    m.wouldHide += count;
  } else {
    ex.hidden += count;
    m.hidden += count;
  }
  ex.byMethod.set(method, m);
}

/** Fresh MCP exchange state. */
export function newMcpExchange(): McpExchange {
  return { requests: new Map(), hasList: false, session: null, protocolVersion: null, headers: null, hidden: 0, wouldHide: 0, byMethod: new Map() };
}

/** Records the requests (calls with an id) of a JSON-RPC body. */
export function noteRequests(ex: McpExchange, calls: readonly McpCall[]): void {
  for (const c of calls) {
    if (c.id === null) continue;
    // Two requests with one id: a list among them wins, so its answer is never left unfiltered.
    const before = ex.requests.get(c.id);
    if (before === undefined || !isListMethod(before)) ex.requests.set(c.id, c.method);
    if (isListMethod(c.method)) ex.hasList = true;
  }
}

/**
 * Remembers the request headers of an MCP exchange: the session and protocol version for the
 * audit record, and the headers themselves for the policy inputs of list items, without the
 * upstream credentials the gateway injected (they are not the caller's and must not reach policy).
 */
export function noteHeaders(ex: McpExchange, headers: Readonly<Record<string, string>>, injected: ReadonlySet<string>): void {
  ex.session = headerToken(headers['mcp-session-id']);
  ex.protocolVersion = headerToken(headers['mcp-protocol-version']);
  const kept: Record<string, string> = {};
  // The gateway's own identity headers are its rendering of the principal, already in input.identity.
  for (const [k, v] of Object.entries(headers)) if (!injected.has(k) && !k.startsWith('x-portcullis-')) kept[k] = v;
  ex.headers = kept;
}

/** Longest header value recorded; MCP session ids and versions are short tokens. */
const MAX_HEADER_CHARS = 128;
const PRINTABLE = /^[\x21-\x7e]+$/;

/** A header value fit for the audit record and metrics: bounded printable ASCII, else null. */
export function headerToken(value: string | undefined): string | null {
  if (value === undefined) return null;
  const v = value.trim();
  return v.length > 0 && v.length <= MAX_HEADER_CHARS && PRINTABLE.test(v) ? v : null;
}

/**
 * The methods of this exchange's requests a response id may answer. JSON-RPC ids match by
 * type and value, but clients are lenient (the official TypeScript SDK looks up `Number(id)`),
 * so a server answering a list request with `"1"` for `1`, `1.0`, `null` for `0`, and the like
 * must still be recognised: besides the exact id, every request whose id has the same number.
 */
export function methodsFor(ex: McpExchange, id: unknown): string[] {
  const out = new Set<string>();
  if (typeof id === 'string' || typeof id === 'number') {
    const exact = ex.requests.get(id);
    if (exact !== undefined) out.add(exact);
  }
  const n = numeric(id);
  if (n !== null) {
    for (const [rid, method] of ex.requests) {
      if (numeric(rid) === n || String(rid) === String(id)) out.add(method);
    }
  }
  return [...out];
}

/** `Number(v)` for JSON values a lenient client might coerce; null when not a finite number. */
function numeric(v: unknown): number | null {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) return null;
  if (Array.isArray(v) && v.length > 1) return null;
  const n = Number(v as string);
  return Number.isFinite(n) ? n : null;
}
