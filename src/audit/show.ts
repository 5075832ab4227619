import { GENESIS_HEAD, checkLine, linkProblem, type ChainHead } from './chain.js';
import { fileLines } from './verify.js';

/**
 * `audit show`: the records of an audit file that match filters, as JSON lines or a table,
 * streamed so a large file never sits in memory (only forwarded records still waiting for their
 * exchange record are held). An exchange record is shown where it is in the file; a forwarded
 * record never completed is shown at the end with the outcome `incomplete`. The chain is checked
 * on the way (line hashes and links, not checkpoint signatures; that is `audit verify`).
 */

/** Outcome of an exchange as `--decision` names it. */
export type ShowDecision = 'allowed' | 'denied' | 'blocked' | 'failed' | 'incomplete';

/** The outcomes `--decision` accepts. */
export const SHOW_DECISIONS: readonly ShowDecision[] = ['allowed', 'denied', 'blocked', 'failed', 'incomplete'];

/** Filters and output of {@link showAuditFile}; every filter given must match. */
export interface ShowOptions {
  readonly since?: Date;
  readonly until?: Date;
  readonly agent?: string;
  readonly user?: string;
  readonly tenant?: string;
  readonly tool?: string;
  readonly mcpTool?: string;
  readonly decision?: ShowDecision;
  readonly format: 'json' | 'table';
}

/** Where output goes (process.stdout fits). With `once`, a `false` from `write` waits for `drain`. */
export interface TextOut {
  write(text: string): unknown;
  once?(event: 'drain', listener: () => void): unknown;
}

/** What {@link showAuditFile} found besides the records it printed. */
export interface ShowResult {
  readonly shown: number;
  /** The first chain problem, or null when every line verified and linked. */
  readonly chainProblem: { readonly line: number; readonly reason: string } | null;
  /** Lines that are not JSON records, skipped. */
  readonly unreadable: number;
  /** Request ids forwarded and never completed in the whole file (filters aside). */
  readonly incomplete: readonly string[];
}

type Rec = Readonly<Record<string, unknown>>;

const RELATIVE = /^(\d+)\s*(s|m|h|d|w)$/;
const UNIT_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** Reads `--since`/`--until`: an ISO 8601 time, or a duration before `now` such as `1h`, `30m`, `7d`. */
export function parseTimeBound(text: string, now: Date = new Date()): Date {
  const m = RELATIVE.exec(text.trim());
  if (m) return new Date(now.getTime() - Number(m[1]) * UNIT_MS[m[2]!]!);
  const t = Date.parse(text);
  if (!Number.isFinite(t)) throw new Error(`"${text}" is neither an ISO 8601 time nor a duration like 30m, 1h, 7d`);
  return new Date(t);
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/** Outcome of an exchange record, as `auditOutcome` computes it for the metric. */
export function outcomeOf(r: Rec): Exclude<ShowDecision, 'incomplete'> {
  const decision = r.decision as { allowed?: unknown } | null | undefined;
  if (decision?.allowed !== true) return 'denied';
  const error = r.error as { type?: unknown } | null | undefined;
  if (!error) return 'allowed';
  return error.type === 'internal' || error.type === 'unavailable' ? 'failed' : 'blocked';
}

function matches(r: Rec, outcome: ShowDecision, o: ShowOptions): boolean {
  if (o.decision !== undefined && o.decision !== outcome) return false;
  if (o.agent !== undefined && r.agent_id !== o.agent) return false;
  if (o.user !== undefined && r.user_id !== o.user) return false;
  if (o.tenant !== undefined && r.tenant_id !== o.tenant) return false;
  if (o.tool !== undefined && r.tool !== o.tool) return false;
  if (o.mcpTool !== undefined && (r.mcp as { tool?: unknown } | null | undefined)?.tool !== o.mcpTool) return false;
  if (o.since || o.until) {
    const t = Date.parse(str(r.time) ?? '');
    if (!Number.isFinite(t)) return false;
    if (o.since && t < o.since.getTime()) return false;
    if (o.until && t > o.until.getTime()) return false;
  }
  return true;
}

const COLUMNS: readonly [string, number][] = [
  ['TIME', 24],
  ['OUTCOME', 10],
  ['TENANT', 12],
  ['USER', 16],
  ['AGENT', 16],
  ['TOOL', 14],
  ['MCP_TOOL', 16],
  ['METHOD', 7],
  ['STATUS', 6],
  ['REQUEST_ID', 36],
  ['PATH', 0],
];

function row(cells: readonly string[]): string {
  // Plain columns: padded, never cut, so nothing is hidden from the reader.
  return `${cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(COLUMNS[i]![1]))).join('  ').trimEnd()}\n`;
}

function tableRow(r: Rec, outcome: ShowDecision): string {
  const status = typeof r.response_status === 'number' ? String(r.response_status) : '-';
  const mcp = r.mcp as { tool?: unknown } | null | undefined;
  return row([
    str(r.time) ?? '-',
    outcome,
    str(r.tenant_id) ?? '-',
    str(r.user_id) ?? '-',
    str(r.agent_id) ?? '-',
    str(r.tool) ?? '-',
    str(mcp?.tool) ?? '-',
    str(r.method) ?? '-',
    status,
    str(r.request_id) ?? '-',
    str(r.path) ?? '-',
  ]);
}

/** Streams `path` and writes the matching records to `out`. */
export async function showAuditFile(path: string, o: ShowOptions, out: TextOut): Promise<ShowResult> {
  let head: ChainHead = GENESIS_HEAD;
  let chainProblem: ShowResult['chainProblem'] = null;
  let unreadable = 0;
  let shown = 0;
  let lineNo = 0;
  // Forwarded records waiting for their exchange record, in file order.
  const waiting = new Map<string, { record: Rec; text: string }>();
  const emit = async (r: Rec, text: string, outcome: ShowDecision): Promise<void> => {
    if (!matches(r, outcome, o)) return;
    if (shown === 0 && o.format === 'table') out.write(row(COLUMNS.map(([name]) => name)));
    shown += 1;
    // Backpressure: a slow reader (a pager, a pipe) must not make the whole file pile up in memory.
    if (out.write(o.format === 'json' ? `${text}\n` : tableRow(r, outcome)) === false && out.once) {
      await new Promise<void>((resolve) => out.once!('drain', resolve));
    }
  };
  for await (const { bytes, terminated } of fileLines(path)) {
    lineNo += 1;
    if (bytes.length === 0) continue;
    const c = checkLine(bytes);
    let record: Rec | null = c.ok ? c.record : null;
    if (!c.ok || !terminated || linkProblem(c, head) !== null) {
      chainProblem ??= { line: lineNo, reason: !c.ok ? c.reason : !terminated ? 'last line is incomplete: no trailing newline' : (linkProblem(c, head) ?? '') };
    }
    if (c.ok) head = { seq: c.seq, linkHash: c.linkHash };
    if (!record) {
      // A line of a broken chain is still shown if it reads as a record.
      try {
        const parsed: unknown = JSON.parse(bytes.toString('utf8'));
        record = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Rec) : null;
      } catch {
        record = null;
      }
    }
    if (!record) {
      unreadable += 1;
      continue;
    }
    const text = bytes.toString('utf8');
    const id = str(record.request_id);
    if (record.record_type === 'checkpoint') continue;
    if (record.record_type === 'forwarded') {
      if (id !== null) waiting.set(id, { record, text });
      continue;
    }
    if (id !== null) waiting.delete(id);
    await emit(record, text, outcomeOf(record));
  }
  for (const { record, text } of waiting.values()) await emit(record, text, 'incomplete');
  return { shown, chainProblem, unreadable, incomplete: [...waiting.keys()] };
}
