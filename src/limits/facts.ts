import { createHash } from 'node:crypto';
import { GatewayError } from '../errors.js';
import type { BudgetConfig, BudgetDimension, FactConfig, GatewayConfig, ToolConfig } from '../config/types.js';
import type { Principal } from '../identity/types.js';
import type { McpCall } from '../inspect/mcp.js';
import type { Store } from './store.js';
import { dimensionValue } from './dimensions.js';

/**
 * Policy facts and metered budgets on the shared store. Before policy runs, the Check reads
 * every fact and budget counter of a call in one `getMany` round trip: facts become
 * `input.facts.<name>` (`seen` a boolean, `count` a number), and a principal whose budget is
 * spent is refused. What to record afterwards travels to ext_proc in the signed hand-off as
 * opaque records (see {@link parseFactRecord}, {@link parseBudgetRecord}); ext_proc writes them
 * once the exchange completed (src/extproc/facts.ts). Keys are hashed, so caller-controlled
 * values never reach the store (or Envoy's metadata) as they are, and stay short.
 */

/** A fact's value as policy sees it. */
export type FactValue = boolean | number;

/** The facts of one call (`input.facts`): a fact whose key the call lacks is absent. */
export type CallFacts = Readonly<Record<string, FactValue>>;

/** Longest store key the gateway builds (Redis adds its prefix, at most 64 bytes). */
export const MAX_STORE_KEY_BYTES = 512;

/** Largest amount of units one response may add to a budget. */
export const MAX_BUDGET_UNITS = 1_000_000_000;

type Dimension = BudgetDimension;

/** One part of a fact key: an attribute of the principal or call, or a path into the arguments. */
type KeyPart = { readonly dim: Dimension } | { readonly arg: readonly string[] };

interface CompiledFact {
  readonly name: string;
  readonly kind: 'seen' | 'count';
  readonly parts: readonly KeyPart[];
  /** `g` for a top-level fact (shared by its tools), `t:<tool>` for a tool's own. */
  readonly scope: string;
  /** `seen`: time to live; `count`: window. */
  readonly ms: number;
}

interface CompiledBudget {
  readonly config: BudgetConfig;
  readonly scope: string;
  readonly windowMs: number;
}

/** The facts and budgets that apply to one tool. */
interface ToolFacts {
  readonly facts: readonly CompiledFact[];
  readonly budgets: readonly CompiledBudget[];
}

/** Splits a dotted path (`usage.total_tokens`) into its segments. */
export function pathSegments(path: string): string[] {
  return path.split('.');
}

function part(p: string): KeyPart {
  return p.startsWith('arg:') ? { arg: pathSegments(p.slice(4)) } : { dim: p as Dimension };
}

function compileFact(f: FactConfig, scope: string): CompiledFact {
  return { name: f.name, kind: f.kind, parts: f.key.map(part), scope, ms: (f.kind === 'seen' ? f.ttl_s : f.window_s) * 1000 };
}

/** Compiles the facts and budgets of a configuration, per tool; throws on names that cannot be told apart. */
export function compileFacts(config: GatewayConfig): Map<string, ToolFacts> {
  const tools = new Set(config.tools.map((t) => t.name));
  const globals = config.facts ?? [];
  const seenGlobal = new Set<string>();
  for (const f of globals) {
    if (seenGlobal.has(f.name)) throw new Error(`facts: fact name "${f.name}" is used twice`);
    seenGlobal.add(f.name);
    for (const t of f.tools) if (!tools.has(t)) throw new Error(`facts.${f.name}: unknown tool "${t}"`);
  }
  const out = new Map<string, ToolFacts>();
  for (const tool of config.tools) {
    const facts = globals.filter((f) => f.tools.includes(tool.name)).map((f) => compileFact(f, 'g'));
    for (const f of tool.facts ?? []) {
      if (facts.some((g) => g.name === f.name)) throw new Error(`tools.${tool.name}.facts: fact name "${f.name}" is used twice (policy reads one input.facts.${f.name})`);
      facts.push(compileFact(f, `t:${tool.name}`));
    }
    const budgets: CompiledBudget[] = [];
    // ext_proc skips the body of a tool that inspects nothing in its responses: no units would ever be read.
    if ((tool.budgets ?? []).length > 0 && !tool.response.dlp && tool.response.drop_fields.length === 0) {
      throw new Error(`tools.${tool.name}.budgets: the tool's response bodies are not read (response.dlp is false), so no units could be counted; turn response.dlp on`);
    }
    for (const b of tool.budgets ?? []) {
      if (budgets.some((c) => c.config.name === b.name)) throw new Error(`tools.${tool.name}.budgets: budget name "${b.name}" is used twice`);
      budgets.push({ config: b, scope: `t:${tool.name}`, windowMs: b.window_s * 1000 });
    }
    if (facts.length > 0 || budgets.length > 0) out.set(tool.name, { facts, budgets });
  }
  return out;
}

const compiled = new WeakMap<GatewayConfig, Map<string, ToolFacts>>();

/** Compiles a configuration's facts and budgets now (config load); throws on a configuration that cannot be used. */
export function prepareFacts(config: GatewayConfig): void {
  if (!compiled.has(config)) compiled.set(config, compileFacts(config));
}

function factsOf(config: GatewayConfig, tool: string): ToolFacts | undefined {
  prepareFacts(config);
  return compiled.get(config)?.get(tool);
}

/**
 * The value at `path` of a JSON value: own keys of objects, decimal indexes of arrays. Only
 * strings, finite numbers and booleans are values; anything else (missing, null, an object) is
 * `undefined`.
 */
export function valueAt(doc: unknown, path: readonly string[]): string | number | boolean | undefined {
  let cur = doc;
  for (const seg of path) {
    if (Array.isArray(cur)) {
      if (!/^(?:0|[1-9][0-9]{0,8})$/.test(seg)) return undefined;
      cur = cur[Number(seg)];
    } else if (typeof cur === 'object' && cur !== null) {
      if (!Object.hasOwn(cur, seg)) return undefined;
      cur = (cur as Record<string, unknown>)[seg];
    } else return undefined;
  }
  if (typeof cur === 'string' || typeof cur === 'boolean') return cur;
  if (typeof cur === 'number' && Number.isFinite(cur)) return cur;
  return undefined;
}

function dimension(dim: Dimension, tool: ToolConfig, p: Principal | null, call: McpCall | null): string | null {
  return dimensionValue(dim, tool.name, p, call?.tool ?? null);
}

function digest(values: readonly unknown[]): string {
  return createHash('sha256').update(JSON.stringify(values)).digest('base64url');
}

function bounded(key: string): string {
  // Names are bounded by the schema and values hashed: this never fires, it states the contract.
  if (Buffer.byteLength(key, 'utf8') > MAX_STORE_KEY_BYTES) throw new GatewayError('internal', 'a fact key is longer than the store accepts', { rule: 'facts.key' });
  return key;
}

/** The window a budget counter covers at `nowMs`: fixed windows aligned to the epoch, so every replica agrees on when one ends. */
export function budgetWindow(windowMs: number, nowMs: number): { readonly index: number; readonly endMs: number } {
  const index = Math.floor(nowMs / windowMs);
  return { index, endMs: (index + 1) * windowMs };
}

/** The store key of a budget counter in the window of `nowMs`. */
export function budgetKey(base: string, windowMs: number, nowMs: number): string {
  return `${base}:${budgetWindow(windowMs, nowMs).index}`;
}

/** What ext_proc records for a fact once the call completed. */
export interface FactRecord {
  readonly kind: 'seen' | 'count';
  /** `seen`: time to live; `count`: window. */
  readonly ms: number;
  readonly key: string;
}

/** What ext_proc adds to a budget from the response. */
export interface BudgetRecord {
  readonly name: string;
  /** Key without its window (see {@link budgetKey}): the units go to the window they were spent in. */
  readonly base: string;
  readonly windowMs: number;
  /** Dotted path of the units in the response. */
  readonly unitsFrom: string;
}

/** A fact record as carried in the hand-off, or null when it is not one. */
export function parseFactRecord(s: string): FactRecord | null {
  const v = parseArray(s);
  if (!v || v.length !== 3) return null;
  const [kind, ms, key] = v;
  if ((kind !== 'seen' && kind !== 'count') || !positiveInt(ms) || typeof key !== 'string' || !key.startsWith('fact:')) return null;
  return { kind, ms, key };
}

/** A budget record as carried in the hand-off, or null when it is not one. */
export function parseBudgetRecord(s: string): BudgetRecord | null {
  const v = parseArray(s);
  if (!v || v.length !== 4) return null;
  const [name, base, windowMs, unitsFrom] = v;
  if (typeof name !== 'string' || typeof base !== 'string' || !base.startsWith('budget:') || !positiveInt(windowMs) || typeof unitsFrom !== 'string' || unitsFrom === '') return null;
  return { name, base, windowMs, unitsFrom };
}

function parseArray(s: string): unknown[] | null {
  try {
    const v: unknown = JSON.parse(s);
    return Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

function positiveInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
}

/** One call's request as facts and budgets read it. */
export interface FactRequest {
  readonly tool: ToolConfig;
  readonly principal: Principal | null;
  /** JSON-RPC calls of the body (empty for other requests): each gets its own facts. */
  readonly calls: readonly McpCall[];
  /** The parsed JSON body (a plain request's arguments); null when there is none. */
  readonly body: unknown;
  readonly nowMs?: number;
}

/** The facts of a request and what to record once it completed. */
export interface FactLookup {
  /** `input.facts` of each call, in call order (one entry for a request that is not JSON-RPC). */
  readonly perCall: readonly CallFacts[];
  /** {@link FactRecord}s, encoded, for the hand-off. */
  readonly factRecords: readonly string[];
  /** {@link BudgetRecord}s, encoded, for the hand-off. */
  readonly budgetRecords: readonly string[];
}

function storeUnavailable(err: unknown): GatewayError {
  return new GatewayError('unavailable', 'the facts this call is decided on cannot be read right now (the shared state store is unavailable), so the call is refused; retry shortly', {
    rule: 'facts.store_unavailable',
    retryAfterS: 1,
    cause: err,
  });
}

/** A stored count; anything but a whole non-negative number means the store cannot be trusted for it. */
function countOf(v: string | null): number {
  if (v === null) return 0;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw storeUnavailable(new Error('a stored counter is not a whole number'));
  return n;
}

/**
 * Reads the facts and budget counters of a request in one round trip. Resolves null when the
 * tool has none. Rejects with `unavailable` (`facts.store_unavailable`) when the store cannot
 * answer, and with `rate_limited` (`budgets.<name>`) when a budget of the principal is spent.
 */
export async function lookupFacts(store: Store, config: GatewayConfig, req: FactRequest): Promise<FactLookup | null> {
  const tf = factsOf(config, req.tool.name);
  if (!tf) return null;
  const now = req.nowMs ?? Date.now();
  const calls: (McpCall | null)[] = req.calls.length > 0 ? [...req.calls] : [null];
  const keys: string[] = [];
  const indexOf = new Map<string, number>();
  const slot = (key: string): number => {
    let i = indexOf.get(key);
    if (i === undefined) {
      i = keys.push(bounded(key)) - 1;
      indexOf.set(key, i);
    }
    return i;
  };
  const factRecords = new Set<string>();
  const perCallSlots = calls.map((call) => {
    const args = call ? call.arguments : req.body;
    const slots: { fact: CompiledFact; at: number }[] = [];
    for (const fact of tf.facts) {
      const values: (string | number | boolean)[] = [];
      for (const p of fact.parts) {
        const v = 'dim' in p ? dimension(p.dim, req.tool, req.principal, call) : valueAt(args, p.arg);
        // A call without the value has no such fact: never a key made of a placeholder.
        if (v === null || v === undefined) break;
        values.push(v);
      }
      if (values.length !== fact.parts.length) continue;
      const key = `fact:${fact.kind}:${fact.scope}:${fact.name}:${digest(values)}`;
      slots.push({ fact, at: slot(key) });
      factRecords.add(JSON.stringify([fact.kind, fact.ms, key]));
    }
    return slots;
  });
  const budgets: { b: CompiledBudget; at: number }[] = [];
  const budgetRecords = new Set<string>();
  for (const b of tf.budgets) {
    const bases = new Set<string>();
    // A value the call lacks is one shared "none": a budget is never skipped.
    // The calls of a batch mostly share their values: each distinct combination is hashed once.
    const combos = new Set(calls.map((call) => JSON.stringify(b.config.per.map((d) => dimension(d, req.tool, req.principal, call)))));
    for (const combo of combos) bases.add(`budget:${b.scope}:${b.config.name}:${createHash('sha256').update(combo).digest('base64url')}`);
    for (const base of bases) {
      budgets.push({ b, at: slot(budgetKey(base, b.windowMs, now)) });
      budgetRecords.add(JSON.stringify([b.config.name, base, b.windowMs, b.config.units_from]));
    }
  }
  let values: (string | null)[];
  try {
    values = keys.length > 0 ? await store.getMany(keys) : [];
  } catch (err) {
    throw storeUnavailable(err);
  }
  if (values.length !== keys.length) throw storeUnavailable(new Error('the store answered a different number of keys'));
  for (const { b, at } of budgets) {
    const spent = countOf(values[at] ?? null);
    if (spent >= b.config.limit) throw budgetSpent(b, spent, req.tool.name, now);
  }
  const perCall = perCallSlots.map((slots) => {
    const facts: Record<string, FactValue> = Object.create(null) as Record<string, FactValue>;
    for (const { fact, at } of slots) {
      const v = values[at] ?? null;
      facts[fact.name] = fact.kind === 'seen' ? v !== null : countOf(v);
    }
    return facts;
  });
  return { perCall, factRecords: [...factRecords], budgetRecords: [...budgetRecords] };
}

function budgetSpent(b: CompiledBudget, spent: number, tool: string, nowMs: number): GatewayError {
  const c = b.config;
  const retryAfterS = Math.max(1, Math.ceil((budgetWindow(b.windowMs, nowMs).endMs - nowMs) / 1000));
  const per = c.per.length > 0 ? `per ${c.per.join(' and ')}` : 'for all callers';
  return new GatewayError(
    'rate_limited',
    `budget "${c.name}" of ${c.limit} units ${per} every ${c.window_s} s is used up for tool "${tool}" (${spent} spent in this window); it renews in ${retryAfterS} s`,
    { rule: `budgets.${c.name}`, retryAfterS, details: { budget: c.name, limit: c.limit, spent, window_s: c.window_s, per: [...c.per] } },
  );
}
