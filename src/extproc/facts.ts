import { Counter } from 'prom-client';
import { log } from '../log.js';
import { registry } from '../metrics.js';
import type { AuthzMetadata } from '../authz/check.js';
import { budgetKey, MAX_BUDGET_UNITS, parseBudgetRecord, parseFactRecord, pathSegments, valueAt, type BudgetRecord } from '../limits/facts.js';
import type { Store } from '../limits/store.js';
import type { ResponseState, StreamState } from './state.js';

/**
 * The end of an exchange for policy facts and budgets: the facts the Check handed over are
 * recorded once the call completed (allowed, the tool answered 2xx, nothing blocked), and the
 * units a metered tool reported are added to its budgets. Off the reply path: nothing here is
 * awaited by a phase, and a store failure is logged and counted, never thrown.
 */

const recorded = new Counter({
  name: 'portcullis_fact_writes_total',
  help: 'Facts and budget units written after exchanges, by what (fact, budget) and outcome (ok, error)',
  labelNames: ['what', 'outcome'] as const,
  registers: [registry],
});

const ignored = new Counter({
  name: 'portcullis_budget_units_ignored_total',
  help: 'Responses whose units were not added to a budget, by budget and reason (missing, invalid, not_json, malformed_record)',
  labelNames: ['budget', 'reason'] as const,
  registers: [registry],
});

/** Longest incomplete event kept while reading an event stream for units. */
const MAX_EVENT_CHARS = 1024 * 1024;
const EVENT_END = /\r\n\r\n|\n\n|\r\r/g;

type Units = { readonly ok: true; readonly units: number } | { readonly ok: false; readonly reason: 'invalid' | 'not_json' };

function unitsOf(v: string | number | boolean): Units {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= MAX_BUDGET_UNITS ? { ok: true, units: v } : { ok: false, reason: 'invalid' };
}

/** Whether a message is a JSON-RPC answer that failed: an `error`, or a tool result with `isError`. */
function rpcFailure(doc: unknown): boolean {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return false;
  const m = doc as Record<string, unknown>;
  if (m.jsonrpc !== '2.0') return false;
  if (Object.hasOwn(m, 'error')) return true;
  const result = m.result;
  return typeof result === 'object' && result !== null && (result as Record<string, unknown>).isError === true;
}

/**
 * Reads what a response says for the facts and budgets of its exchange: the units it reports
 * (from the whole JSON body, a JSON-RPC batch summed over its messages, or from the last event of
 * a stream that carries the path), and whether a JSON-RPC answer in it failed (an MCP call that
 * answered 200 with an error did not complete). Only what was inspected (and delivered) is read.
 */
export class UsageMeter {
  private readonly budgets: readonly BudgetRecord[];
  private readonly paths: ReadonlyMap<string, readonly string[]>;
  private readonly found = new Map<string, Units>();
  private carry = '';
  private notJson = false;
  /** The exchange has facts to record: JSON-RPC failures are looked for. */
  private readonly watchRpc: boolean;
  private failed = false;

  constructor(meta: AuthzMetadata | null) {
    const budgets: BudgetRecord[] = [];
    for (const s of meta?.budget_records ?? []) {
      const r = parseBudgetRecord(s);
      if (r) budgets.push(r);
      else ignored.inc({ budget: '_unknown', reason: 'malformed_record' });
    }
    this.budgets = budgets;
    this.paths = new Map(budgets.map((b) => [b.unitsFrom, pathSegments(b.unitsFrom)]));
    this.watchRpc = (meta?.fact_records.length ?? 0) > 0;
  }

  /** A JSON-RPC answer of the response failed (its facts are not recorded). */
  get rpcFailed(): boolean {
    return this.failed;
  }

  /** The budgets of the exchange. */
  get records(): readonly BudgetRecord[] {
    return this.budgets;
  }

  /** A whole body as inspected (null when it was not text). */
  body(text: string | null): void {
    if (this.paths.size === 0 && !this.watchRpc) return;
    const doc = text === null ? undefined : parse(text);
    if (doc === undefined) {
      this.notJson = true;
      return;
    }
    const docs = Array.isArray(doc) ? doc : [doc];
    if (this.watchRpc && docs.some(rpcFailure)) this.failed = true;
    for (const [path, segs] of this.paths) {
      let sum = 0;
      let carried = false;
      let bad = false;
      for (const d of docs) {
        const v = valueAt(d, segs);
        if (v === undefined) continue;
        carried = true;
        const u = unitsOf(v);
        if (u.ok) sum += u.units;
        else bad = true;
      }
      if (!carried) continue;
      this.found.set(path, bad || sum > MAX_BUDGET_UNITS ? { ok: false, reason: 'invalid' } : { ok: true, units: sum });
    }
  }

  /** Text of an event stream as delivered (inspected events, in order). */
  sse(text: string, end: boolean): void {
    if (this.paths.size === 0 && !this.watchRpc) return;
    let buf = this.carry + text;
    let from = 0;
    EVENT_END.lastIndex = 0;
    for (let m = EVENT_END.exec(buf); m; m = EVENT_END.exec(buf)) {
      this.event(buf.slice(from, m.index));
      from = m.index + m[0].length;
    }
    buf = buf.slice(from);
    if (end && buf.length > 0) {
      this.event(buf);
      buf = '';
    }
    // An event too large to read for units is skipped (the stream itself is bounded elsewhere).
    this.carry = buf.length > MAX_EVENT_CHARS ? '' : buf;
  }

  /** Units reported at `path`, or why there are none. */
  unitsAt(path: string): Units | { readonly ok: false; readonly reason: 'missing' } {
    return this.found.get(path) ?? (this.notJson ? { ok: false, reason: 'not_json' } : { ok: false, reason: 'missing' });
  }

  private event(raw: string): void {
    const data: string[] = [];
    for (const line of raw.split(/\r\n|\n|\r/)) {
      if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
    }
    if (data.length === 0) return;
    const doc = parse(data.join('\n'));
    if (doc === undefined) return;
    if (this.watchRpc && (Array.isArray(doc) ? doc : [doc]).some(rpcFailure)) this.failed = true;
    for (const [path, segs] of this.paths) {
      const v = valueAt(doc, segs);
      // The last event that carries the path is the stream's total.
      if (v !== undefined) this.found.set(path, unitsOf(v));
    }
  }
}

function parse(text: string): unknown {
  const t = text.trimStart();
  if (t[0] !== '{' && t[0] !== '[') return undefined;
  try {
    return JSON.parse(t) as unknown;
  } catch {
    return undefined;
  }
}

/** Whether the exchange completed as the facts require: allowed, answered 2xx, nothing blocked or failed. */
function completed(st: StreamState, res: ResponseState): boolean {
  const status = res.upstreamStatus;
  return st.meta?.allowed === true && st.error === null && status !== null && status >= 200 && status < 300 && res.dlp.action !== 'blocked';
}

/** One log line per this interval while writes fail; the rest are counted only. */
const LOG_INTERVAL_MS = 10_000;
let lastLog = 0;
let suppressed = 0;

function logFailure(what: string, requestId: string | null, err: unknown): void {
  const now = Date.now();
  if (now - lastLog < LOG_INTERVAL_MS) {
    suppressed++;
    return;
  }
  log.warn({ request_id: requestId, what, err: (err as Error)?.message, suppressed }, 'could not record after the exchange; policy will not see it');
  lastLog = now;
  suppressed = 0;
}

function write(what: 'fact' | 'budget', op: () => Promise<unknown>, requestId: string | null): void {
  let p: Promise<unknown>;
  try {
    p = op();
  } catch (err) {
    p = Promise.reject(err);
  }
  p.then(
    () => recorded.inc({ what, outcome: 'ok' }),
    (err: unknown) => {
      recorded.inc({ what, outcome: 'error' });
      logFailure(what, requestId, err);
    },
  );
}

/**
 * Records the facts and budget units of a finished exchange (fire and forget). Facts only when
 * the call completed (and no JSON-RPC answer in the response failed); units whenever the
 * response reported them (they were spent either way).
 */
export function recordExchange(store: Store | undefined, st: StreamState, res: ResponseState, usage: UsageMeter | null, nowMs: number = Date.now()): void {
  try {
    recordNow(store, st, res, usage, nowMs);
  } catch (err) {
    recorded.inc({ what: 'fact', outcome: 'error' });
    log.error({ request_id: st.meta?.request_id ?? null, err: (err as Error)?.message }, 'recording facts after the exchange failed');
  }
}

function recordNow(store: Store | undefined, st: StreamState, res: ResponseState, usage: UsageMeter | null, nowMs: number): void {
  const meta = st.meta;
  if (!store || !meta?.allowed) return;
  const rid = meta.request_id;
  if (meta.fact_records.length > 0 && completed(st, res) && usage?.rpcFailed !== true) {
    for (const s of meta.fact_records) {
      const r = parseFactRecord(s);
      if (!r) {
        recorded.inc({ what: 'fact', outcome: 'error' });
        continue;
      }
      write('fact', () => (r.kind === 'seen' ? store.set(r.key, '1', r.ms) : store.increment(r.key, r.ms)), rid);
    }
  }
  const meter = usage ?? (meta.budget_records.length > 0 ? new UsageMeter(meta) : null);
  for (const b of meter?.records ?? []) {
    const u = meter!.unitsAt(b.unitsFrom);
    if (!u.ok) {
      // A response that never arrived reports nothing: not counted as missing units.
      if (res.upstreamStatus !== null) ignored.inc({ budget: b.name, reason: u.reason });
      continue;
    }
    if (u.units === 0) continue;
    write('budget', () => store.increment(budgetKey(b.base, b.windowMs, nowMs), b.windowMs, u.units), rid);
  }
}
