import { GatewayError, errorBody } from '../../errors.js';
import { BUILTIN_RULES, createSegmentRedactor, type SegmentRedactor, type SegmentResult } from '../../dlp/index.js';
import { noteFindings } from '../state.js';
import { responseBlocked, type ResponsePipeline, type TransformContext } from './pipeline.js';

/**
 * Server-sent events, inspected event by event. An event is complete when its terminating blank
 * line arrives (an SSE client dispatches nothing before that either); then the whole response
 * pipeline runs on it: the JSON transforms on its `data` when that is JSON (so a dropped field
 * never leaves in an MCP reply sent as SSE), then DLP and the credential scrub on the event.
 *
 * Token-by-token streams send a secret in pieces (`{"delta":"AKIA"}`, `{"delta":"2OGY..."}`):
 * each string in an event's data (by its JSON path; the data itself when it is not JSON) is also
 * one segment of a stream per path, scanned across events with a bounded hold-back. An event
 * leaves at once unless one of its strings ends where a secret token may have started (a rule's
 * literal prefix, whole or in part: `…AK`, `…AKIA2OG`); such an event waits until the next ones
 * tell whether a secret continues (bounded by the scanner's hold-back). A match that starts in
 * text already sent, without such a prefix (a keyword and its value split over two events), is
 * redacted from the events that follow. A block ends the stream with an error event; nothing
 * after it is delivered.
 */

/** A blank line, which ends an SSE event (LF, CRLF or CR line endings). */
const EVENT_END = /\r\n\r\n|\n\n|\r\r/g;
/** Largest event held while waiting for its end; a longer one ends the stream (fail closed). */
export const MAX_EVENT_BYTES = 1024 * 1024;
/** Most distinct JSON paths followed across events in one stream (each holds a redactor). */
const MAX_PATHS = 64;

type Json = Record<string, unknown> | unknown[];

/**
 * Prefixes that start a secret token (`AKIA`, `ghp_`, `xoxb-`, `-----BEGIN` ...): the rules'
 * literal prefixes of four characters or more. A string that ends inside one of them (three
 * characters in, or more, at the start of a word), or in one of them followed by token
 * characters, read together with
 * what came before it on the same path, may be a piece of a secret the next event completes;
 * only an event with such a string waits for the next (see {@link SseInspector}).
 */
const TOKEN_CHARS = /^[a-z0-9+/=_.~-]+$/;
const TOKEN_PREFIXES = [...new Set(BUILTIN_RULES.filter((r) => r.keywordOffset === 0).flatMap((r) => r.keywords ?? []))]
  .map((k) => k.toLowerCase())
  .filter((k) => k.length >= 4 && TOKEN_CHARS.test(k));
const TOKEN_SET = new Set(TOKEN_PREFIXES);
const TOKEN_LENGTHS = [...new Set(TOKEN_PREFIXES.map((k) => k.length))];
const PARTIAL_PREFIXES = new Set(TOKEN_PREFIXES.flatMap((k) => Array.from({ length: k.length - 3 }, (_, i) => k.slice(0, i + 3))));
const LONGEST_PREFIX = Math.max(...TOKEN_PREFIXES.map((k) => k.length));
/** The run of token characters a text ends with (bounded: a token longer than this has long matched). */
const TRAILING_TOKEN = /[A-Za-z0-9+/=_.~-]{1,600}$/;

/** Whether a string ends where a secret token may have started (see TOKEN_PREFIXES). */
function mayContinue(text: string): boolean {
  const trailing = TRAILING_TOKEN.exec(text)?.[0].toLowerCase();
  if (!trailing) return false;
  for (let start = 0; start < trailing.length; start++) {
    // A token starts a word: `…key AKI` may go on, `delta` (ending like `LTAI`'s start) does not.
    if (start > 0 && /[a-z0-9]/.test(trailing[start - 1]!)) continue;
    const rest = trailing.length - start;
    if (rest >= 3 && rest < LONGEST_PREFIX && PARTIAL_PREFIXES.has(trailing.slice(start))) return true;
    for (const k of TOKEN_LENGTHS) if (k <= rest && TOKEN_SET.has(trailing.slice(start, start + k))) return true;
  }
  return false;
}

/**
 * Whether event data is a JSON-RPC request or response (an `id` with a `method`, `result` or
 * `error`), alone or in a batch: the point where an MCP server waits for the agent's reply or
 * ends the stream, after which no piece of a split string follows.
 */
function isTurn(doc: unknown): boolean {
  const one = (m: unknown): boolean => {
    if (m === null || typeof m !== 'object' || Array.isArray(m)) return false;
    const o = m as Record<string, unknown>;
    return o.jsonrpc === '2.0' && (typeof o.id === 'string' || typeof o.id === 'number') && ('method' in o || 'result' in o || 'error' in o);
  };
  return Array.isArray(doc) ? doc.some(one) : one(doc);
}

/** One string of an event's data: where it sits, so its redacted text can be put back. */
interface Leaf {
  readonly parent: Json;
  readonly key: string | number;
}

/** A complete event waiting for its segments to be released. */
interface HeldEvent {
  /** The event's lines other than `data:` (event, id, retry, comments). */
  readonly others: string[];
  /** The raw event text, sent as is when nothing in its data changed. */
  readonly raw: string;
  readonly terminator: string;
  /** Parsed JSON data, or null when the data is plain text. */
  readonly doc: unknown;
  /** Data text when not JSON (its only segment), or the JSON text. */
  data: string | null;
  changed: boolean;
  waiting: number;
  /** One of its strings may be the start of a secret the next event completes: wait for its segments. */
  hold: boolean;
  /** Already sent (released before its segments were: later redactions of them are moot). */
  sent: boolean;
}

/** Splits off a trailing incomplete UTF-8 sequence so characters are never cut between chunks. */
function completeUtf8(buf: Buffer): [Buffer, Buffer] {
  let i = buf.length - 1;
  let back = 0;
  while (i >= 0 && back < 4 && (buf[i]! & 0xc0) === 0x80) {
    i--;
    back++;
  }
  if (i < 0) return [buf, Buffer.alloc(0)];
  const lead = buf[i]!;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  if (need > back + 1) return [buf.subarray(0, i), buf.subarray(i)];
  return [buf, Buffer.alloc(0)];
}

/** Every string in a JSON value with its path (array positions included: `choices/0/delta/content`). */
function leaves(value: unknown, path: string, out: { path: string; leaf: Leaf; text: string }[]): void {
  if (Array.isArray(value)) {
    value.forEach((v, i) => (typeof v === 'string' ? out.push({ path: `${path}/${i}`, leaf: { parent: value, key: i }, text: v }) : leaves(v, `${path}/${i}`, out)));
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (typeof v === 'string') out.push({ path: `${path}/${k}`, leaf: { parent: value as Json, key: k }, text: v });
      else leaves(v, `${path}/${k}`, out);
    }
  }
}

/** The strings of one data path across events: its redactor, held segments, and recent text. */
interface PathStream {
  readonly redactor: SegmentRedactor;
  readonly slots: Map<number, { event: HeldEvent; leaf: Leaf | null }>;
  next: number;
  /** The last characters fed, so a prefix split over events is seen whole. */
  tail: string;
  /** The value this path has had in every event so far, while it has had only one. */
  constant: string | null;
  varies: boolean;
  /** Where recent segments lie in the concatenation, and their events (to attribute findings). */
  readonly spans: { index: number; start: number; end: number; event: HeldEvent }[];
  total: number;
}

/** How far back findings can reach: spans older than this are dropped. */
const SPAN_MEMORY = 64 * 1024;

/** One stream's SSE inspection state. */
export class SseInspector {
  private pending = '';
  private carry: Buffer = Buffer.alloc(0);
  private blocked = false;
  private readonly queue: HeldEvent[] = [];
  /** Per data path: its cross-event redactor and where each held segment goes. */
  private readonly paths = new Map<string, PathStream>();

  constructor(
    private readonly pipeline: ResponsePipeline,
    private readonly ctx: TransformContext,
    private readonly requestId: string | null,
  ) {}

  /** True once a block ended the stream. */
  get ended(): boolean {
    return this.blocked;
  }

  /**
   * Takes one body chunk and returns the text to deliver now: every event that is complete and
   * no longer held, inspected, in order. At the end of the stream everything left is inspected
   * and delivered. On a block, the error it raised is returned alongside the text.
   */
  push(chunk: Buffer, end: boolean): { text: string; error: GatewayError | null } {
    if (this.blocked) return { text: '', error: null };
    const [complete, carry] = completeUtf8(this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk);
    this.carry = end ? Buffer.alloc(0) : carry;
    let buf = this.pending + complete.toString('utf8') + (end ? carry.toString('utf8') : '');
    let out = '';
    let from = 0;
    EVENT_END.lastIndex = 0;
    try {
      for (let m = EVENT_END.exec(buf); m; m = EVENT_END.exec(buf)) {
        this.take(buf.slice(from, m.index), m[0]);
        out += this.release();
        from = m.index + m[0].length;
      }
      buf = buf.slice(from);
      if (end) {
        if (buf.length > 0) this.take(buf, '');
        buf = '';
        this.finishSegments();
        out += this.release();
      }
      if (buf.length > MAX_EVENT_BYTES) {
        throw new GatewayError('unavailable', `an event of the response stream of tool "${this.ctx.tool}" is larger than ${MAX_EVENT_BYTES} bytes and cannot be inspected; the stream was ended`, { rule: 'dlp.event_too_large' });
      }
      this.pending = buf;
      return { text: out, error: null };
    } catch (err) {
      if (!(err instanceof GatewayError)) throw err;
      this.blocked = true;
      this.pending = '';
      this.queue.length = 0;
      return { text: `${out}${out === '' || out.endsWith('\n\n') ? '' : '\n\n'}event: error\ndata: ${JSON.stringify(errorBody(err, this.requestId))}\n\n`, error: err };
    }
  }

  /** A complete event: JSON transforms now, then its strings into the cross-event streams. */
  private take(raw: string, terminator: string): void {
    if (raw.length === 0 && terminator === '') return;
    const lines = raw.split(/\r\n|\n|\r/);
    const data: string[] = [];
    const others: string[] = [];
    for (const l of lines) {
      if (l.startsWith('data:')) data.push(l.slice(l[5] === ' ' ? 6 : 5));
      else if (l !== '') others.push(l);
    }
    const text = data.length > 0 ? data.join('\n') : null;
    let doc: unknown = null;
    let json = text;
    if (text !== null) {
      json = this.pipeline.applyJson(text, this.ctx);
      const t = json.trimStart();
      if (t[0] === '{' || t[0] === '[') {
        try {
          doc = JSON.parse(json);
        } catch {
          doc = null;
        }
      }
    }
    const event: HeldEvent = { others, raw, terminator, doc, data: json, changed: json !== text, waiting: 0, hold: false, sent: false };
    if (this.ctx.scanner && isTurn(doc)) {
      // The server now waits for the agent (a request such as an elicitation) or is done (a
      // response): nothing may wait for an event that will not come. What is held goes out,
      // and the streams start afresh after it; the event's own pass scans it whole.
      this.finishSegments();
      this.paths.clear();
      this.queue.push(event);
      return;
    }
    this.queue.push(event);
    if (!this.ctx.scanner || text === null) return;
    const found: { path: string; leaf: Leaf | null; text: string }[] = [];
    if (doc !== null && typeof doc === 'object') leaves(doc, '', found as { path: string; leaf: Leaf; text: string }[]);
    else found.push({ path: '', leaf: null, text: json! });
    for (const f of found) this.feed(f.path, event, f.leaf, f.text);
  }

  /** One string into the stream of its path; whatever that releases goes back into its events. */
  private feed(path: string, event: HeldEvent, leaf: Leaf | null, text: string): void {
    let p = this.paths.get(path);
    if (!p) {
      // Bounded: past MAX_PATHS, further paths share one stream (still scanned, across less context).
      const key = this.paths.size >= MAX_PATHS ? '\u0000overflow' : path;
      p = this.paths.get(key) ?? { redactor: createSegmentRedactor(this.ctx.scanner!), slots: new Map(), next: 0, tail: '', constant: null, varies: false, spans: [], total: 0 };
      this.paths.set(key, p);
      if (key !== path) this.paths.set(path, p);
    }
    // A field that has had the same value in every event so far (`"type":"delta"`) carries no
    // pieces of anything: the event's own pass scans it. A field that has varied once is
    // followed in full from then on, repeats included.
    if (!p.varies) {
      if (text === p.constant) return;
      if (p.constant !== null) p.varies = true;
      p.constant = text;
    }
    const index = p.next++;
    p.tail = (p.tail + text).slice(-(LONGEST_PREFIX + 600));
    if (mayContinue(p.tail)) event.hold = true;
    p.slots.set(index, { event, leaf });
    p.spans.push({ index, start: p.total, end: p.total + text.length, event });
    p.total += text.length;
    while (p.spans.length > 1 && p.spans[0]!.end < p.total - SPAN_MEMORY) p.spans.shift();
    event.waiting += 1;
    this.apply(p, p.redactor.push(text));
  }

  private apply(p: PathStream, result: SegmentResult): void {
    let r = result;
    // A block rule's span may still be open: end the stream's redactor to learn which rule fired.
    if (r.blocked && !r.findings.some((f) => f.action === 'block')) {
      const rest = p.redactor.end();
      r = { released: r.released, findings: [...r.findings, ...rest.findings], blocked: true };
    }
    // A finding inside one string is counted by its event's own pass when that event goes out
    // with the string as it came (sent already, or about to be without waiting); otherwise here.
    const released = new Set(r.released.map((x) => x.index));
    const counted = r.findings.filter((f) => {
      // A block ends the stream here: nothing else will count it.
      if (f.action === 'block') return true;
      const span = p.spans.find((s) => s.start <= f.start && f.start < s.end);
      if (!span || f.end > span.end) return true;
      if (span.event.sent) return false;
      return released.has(span.index) || span.event.hold;
    });
    noteFindings(this.ctx.res.dlp, counted, r.blocked);
    if (r.blocked) throw responseBlocked(this.ctx, true);
    for (const seg of r.released) {
      const slot = p.slots.get(seg.index);
      if (!slot) continue;
      p.slots.delete(seg.index);
      slot.event.waiting -= 1;
      // Sent as it was: a redaction that starts in it is applied to what follows it.
      if (slot.event.sent) continue;
      if (slot.leaf === null) {
        if (seg.text !== slot.event.data) slot.event.changed = true;
        slot.event.data = seg.text;
        continue;
      }
      const holder = slot.leaf.parent as Record<string | number, unknown>;
      if (holder[slot.leaf.key] !== seg.text) {
        holder[slot.leaf.key] = seg.text;
        slot.event.changed = true;
      }
    }
  }

  /** End of stream: every path releases what it still holds. */
  private finishSegments(): void {
    const seen = new Set<unknown>();
    for (const p of this.paths.values()) {
      if (seen.has(p)) continue;
      seen.add(p);
      this.apply(p, p.redactor.end());
    }
  }

  /** Events at the head of the queue that nothing holds any more, rebuilt and inspected whole. */
  private release(): string {
    let out = '';
    while (this.queue.length > 0 && (this.queue[0]!.waiting === 0 || !this.queue[0]!.hold)) {
      const e = this.queue.shift()!;
      e.sent = true;
      let text = e.raw;
      if (e.changed) {
        const data = e.doc !== null && typeof e.doc === 'object' ? JSON.stringify(e.doc) : (e.data ?? '');
        text = [...e.others, ...data.split('\n').map((l) => `data: ${l}`)].join('\n');
      }
      // The whole event once more: what no single string shows (keys, numbers, escapes), and the scrub.
      out += (text.length > 0 ? this.pipeline.applyText(text, this.ctx, true) : '') + e.terminator;
    }
    return out;
  }
}
