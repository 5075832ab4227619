import { GatewayError, jsonRpcErrorBody } from '../errors.js';
import type { JsonTransform, TransformContext } from '../extproc/response/pipeline.js';
import { LIST_SHAPES, isListMethod, methodsFor, noteHidden, type ListMethod, type McpExchange } from './exchange.js';
import type { ItemPolicy } from './itemPolicy.js';

/**
 * MCP list filtering: the results of `tools/list`, `prompts/list`, `resources/list` and
 * `resources/templates/list` keep only the items the principal may use, judged by the policy
 * one item at a time (see itemPolicy.ts). A JSON transform of the response pipeline, so it
 * applies alike to a JSON body, each response of a JSON-RPC batch and each SSE event.
 *
 * Only a JSON-RPC result whose id answers a list request of this exchange is filtered; a
 * result for another request of the exchange is left as it is. Fail closed otherwise:
 * - a list result that is not shaped as the method's result (no item array) is replaced by a
 *   JSON-RPC error with its id: the agent learns the list could not be checked;
 * - an item without its string name / URI is hidden;
 * - a result whose id matches no request of this exchange (a stream resumed with
 *   `Last-Event-ID` replays earlier answers) is read by its shape: every item array a list
 *   result has (`tools`, `prompts`, `resources`, `resourceTemplates`) is filtered;
 * - a successful body or event that is not JSON while a list was asked for ends the response.
 * `nextCursor` and every other member of the result are kept as they are: a page emptied by
 * filtering still points to the next one. The whole document is re-serialised whenever a list
 * result was read, so what leaves is exactly what was judged (no duplicate keys survive).
 */

/** What list filtering needs from one exchange. */
export interface McpListContext {
  readonly exchange: McpExchange;
  readonly items: ItemPolicy;
  /** Dry run (policy or tool): nothing is hidden, what would be is counted. */
  readonly dryRun: boolean;
  /** Request id for error bodies. */
  readonly requestId: string | null;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The JSON-RPC error that replaces a result the gateway will not deliver. */
function withheld(msg: Json, err: GatewayError, m: McpListContext): Json {
  const id = typeof msg.id === 'string' || typeof msg.id === 'number' ? msg.id : null;
  return jsonRpcErrorBody(err, m.requestId, id);
}

/** Replaces a message object's members in place (the document root cannot be swapped). */
function replaceInPlace(target: Json, next: Json): void {
  for (const k of Object.keys(target)) delete target[k];
  Object.assign(target, next);
}

/**
 * Filters one response message. Returns the message to keep (the same object, changed in place,
 * or an error replacing it) and how many changes were made (0 when it is not a list result).
 */
function filterMessage(msg: unknown, ctx: TransformContext, m: McpListContext): { msg: unknown; changes: number } {
  if (!isObject(msg) || !Object.hasOwn(msg, 'result')) return { msg, changes: 0 };
  const methods = methodsFor(m.exchange, msg.id);
  // A result for no request of this exchange (a stream resumed with Last-Event-ID replays the
  // answers of earlier requests): read by its shape, every item array a list result has is
  // filtered; anything else is no list and goes on through the rest of the pipeline.
  const lists = methods.length > 0 ? [...new Set(methods.filter(isListMethod))] : listsByShape(msg.result);
  if (methods.length === 0 && lists.length > 1) return filterShapes(msg, lists, m);
  if (lists.length === 0) return { msg, changes: 0 };
  if (lists.length > 1) return malformed(msg, ctx, m, lists[0]!, `its id answers several list requests (${lists.join(', ')})`);
  const method = lists[0]!;
  const shape = LIST_SHAPES[method];
  const result = msg.result;
  if (!isObject(result) || !Array.isArray(result[shape.key])) return malformed(msg, ctx, m, method, `result.${shape.key} is not an array`);
  // Counted as a change even when nothing was hidden: the judged document is what leaves.
  return { msg, changes: 1 + filterItems(result, method, m) };
}

/** The list methods whose item array a result carries (for a result of unknown request). */
function listsByShape(result: unknown): ListMethod[] {
  if (!isObject(result)) return [];
  return (Object.keys(LIST_SHAPES) as ListMethod[]).filter((method) => Array.isArray(result[LIST_SHAPES[method].key]));
}

/** Filters every item array of a result of unknown request that carries several. */
function filterShapes(msg: Json, lists: readonly ListMethod[], m: McpListContext): { msg: unknown; changes: number } {
  let changes = 1;
  for (const method of lists) changes += filterItems(msg.result as Json, method, m);
  return { msg, changes };
}

/** Keeps the items of one list the principal may use; returns how many were hidden (0 in dry run). */
function filterItems(result: Json, method: ListMethod, m: McpListContext): number {
  const shape = LIST_SHAPES[method];
  const items = result[shape.key] as unknown[];
  const kept: unknown[] = [];
  let hidden = 0;
  for (const item of items) {
    const value = isObject(item) ? item[shape.field] : undefined;
    const ok = typeof value === 'string' && m.items.allows(shape.kind, value);
    if (ok || m.dryRun) kept.push(item);
    if (!ok) hidden += 1;
  }
  noteHidden(m.exchange, method, hidden, m.dryRun);
  if (!m.dryRun) result[shape.key] = kept;
  return m.dryRun ? 0 : hidden;
}

function malformed(msg: Json, ctx: TransformContext, m: McpListContext, method: ListMethod, why: string): { msg: unknown; changes: number } {
  if (m.dryRun) return { msg, changes: 0 };
  const err = new GatewayError('unavailable', `the ${method} result of tool "${ctx.tool}" could not be checked against policy (${why}); it was withheld`, {
    rule: 'mcp.list_malformed',
  });
  return { msg: withheld(msg, err, m), changes: 1 };
}

/** The list filter as a JSON transform of the response pipeline (MCP tools only). */
export function mcpListTransform(): JsonTransform {
  return {
    name: 'mcp_lists',
    apply(doc, ctx) {
      const m = ctx.mcp;
      if (!m) return 0;
      if (Array.isArray(doc)) {
        let changes = 0;
        for (let i = 0; i < doc.length; i++) {
          const r = filterMessage(doc[i], ctx, m);
          doc[i] = r.msg;
          changes += r.changes;
        }
        return changes;
      }
      const r = filterMessage(doc, ctx, m);
      if (r.msg !== doc && isObject(doc) && isObject(r.msg)) replaceInPlace(doc, r.msg);
      return r.changes;
    },
    unparsed(text, ctx) {
      const m = ctx.mcp;
      if (!m || !m.exchange.hasList || m.dryRun || (text !== null && text.trim() === '')) return;
      // An error status is no list (clients treat it as a failed request): its text, e.g. Envoy's own, goes as is.
      const status = ctx.res.upstreamStatus;
      if (status !== null && (status < 200 || status > 299)) return;
      throw new GatewayError('unavailable', `the response of tool "${ctx.tool}" to a list request is not JSON, so it could not be checked against policy`, {
        rule: 'mcp.list_unreadable',
      });
    },
  };
}
