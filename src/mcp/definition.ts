import { createHash } from 'node:crypto';

/**
 * One MCP tool definition as a server advertises it in `tools/list`, and its pin hash.
 *
 * The hash is the SHA-256 (hex) of the canonical JSON of exactly
 * `{"annotations", "description", "inputSchema", "name"}`: object keys sorted at every depth, no
 * whitespace, an absent `description` or `annotations` written as `null`. Other fields (`title`,
 * `outputSchema`, `icons`, `_meta`) are not hashed: they do not change what the model is told
 * to send nor what the gateway validates.
 */

/** The parts of a definition the gateway uses and pins. */
export interface McpToolDefinition {
  readonly name: string;
  readonly description: string | null;
  readonly inputSchema: Readonly<Record<string, unknown>>;
  readonly annotations: Readonly<Record<string, unknown>> | null;
}

/** A definition with its pin hash. */
export interface HashedDefinition extends McpToolDefinition {
  readonly hash: string;
}

/** Longest definition (canonical JSON) accepted; a larger one is refused, not compiled. */
export const MAX_DEFINITION_BYTES = 256 * 1024;

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Canonical JSON: sorted keys, no whitespace (the form hashed). */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isObj(value)) {
    const keys = Object.keys(value).filter((k) => value[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** The pin hash of a definition (see the module comment for what is hashed). */
export function definitionHash(def: McpToolDefinition): string {
  return createHash('sha256').update(canonicalJson(hashedPart(def)), 'utf8').digest('hex');
}

function hashedPart(def: McpToolDefinition): Record<string, unknown> {
  return { name: def.name, description: def.description, inputSchema: def.inputSchema, annotations: def.annotations };
}

/** Result of reading one entry of a `tools/list` result. */
export type ParsedDefinition = { readonly ok: true; readonly def: HashedDefinition } | { readonly ok: false; readonly name: string | null; readonly problem: string };

/** Reads one `tools[]` entry of a `tools/list` result; a malformed entry says what is wrong. */
export function parseDefinition(entry: unknown): ParsedDefinition {
  if (!isObj(entry)) return { ok: false, name: null, problem: 'a tool entry is not an object' };
  const name = entry.name;
  if (typeof name !== 'string' || name.length === 0 || name.length > 128) return { ok: false, name: null, problem: 'a tool entry has no valid name' };
  if (entry.description !== undefined && typeof entry.description !== 'string') return { ok: false, name, problem: 'description is not a string' };
  if (!isObj(entry.inputSchema)) return { ok: false, name, problem: 'inputSchema is not an object' };
  if (entry.annotations !== undefined && !isObj(entry.annotations)) return { ok: false, name, problem: 'annotations is not an object' };
  const def: McpToolDefinition = {
    name,
    description: typeof entry.description === 'string' ? entry.description : null,
    inputSchema: entry.inputSchema,
    annotations: isObj(entry.annotations) ? entry.annotations : null,
  };
  const canonical = canonicalJson(hashedPart(def));
  if (Buffer.byteLength(canonical, 'utf8') > MAX_DEFINITION_BYTES) return { ok: false, name, problem: `definition is larger than ${MAX_DEFINITION_BYTES} bytes` };
  return { ok: true, def: { ...def, hash: createHash('sha256').update(canonical, 'utf8').digest('hex') } };
}

/**
 * Whether calls of a learned tool change state: only `readOnlyHint: true` says they do not
 * (the MCP default for a tool without annotations is "may modify").
 */
export function mutatingFromAnnotations(def: McpToolDefinition): boolean {
  return def.annotations?.readOnlyHint !== true;
}

/**
 * The tool definitions of a JSON-RPC response document, if it is a `tools/list` result (a
 * `result.tools` array of named entries), with the array to edit in place. Batches yield one
 * per element.
 */
export function toolLists(doc: unknown): unknown[][] {
  const out: unknown[][] = [];
  const one = (msg: unknown): void => {
    if (!isObj(msg) || !isObj(msg.result)) return;
    const tools = msg.result.tools;
    if (Array.isArray(tools) && tools.every((t) => isObj(t) && typeof t.name === 'string')) out.push(tools);
  };
  if (Array.isArray(doc)) doc.forEach(one);
  else one(doc);
  return out;
}
