import { GatewayError } from '../errors.js';
import { ScanState, type Candidate } from './engine.js';
import { applyDlp, marker } from './redact.js';
import { compareCandidates, Resolver } from './resolve.js';
import { DlpScanner } from './scanner.js';
import type { DlpResult, Finding, Scanner, StreamRedactor } from './types.js';

/**
 * Streaming redaction. Text is released as soon as no rule can still match across it; what
 * remains held is at most the longest match (plus one character of context each side), which
 * the scanner guarantees to be <= the hold-back. A block rule (PEM key ...) is handled without
 * holding its body: once its BEGIN marker is certain, the marker text is emitted and the body
 * is swallowed until its END marker (or length bound) arrives.
 *
 * The concatenated output equals `applyDlp` on the whole text, and the concatenated findings
 * equal its findings (offsets are into the whole input stream). Each finding is reported in
 * the result of the call in which it became final.
 */
export class IncrementalRedactor implements StreamRedactor {
  private readonly state: ScanState;
  private readonly res = new Resolver();
  private pending: Candidate[] = [];
  private buf = '';
  /** Absolute offset of `buf[0]`. */
  private base = 0;
  /** Absolute offset up to which output has been produced. */
  private emitted = 0;
  /** Next redaction to write into the output. */
  private redIdx = 0;
  /** Whether the marker of `reds[redIdx]` (an open block) is already written. */
  private markerOut = false;
  private releasedRed = 0;
  private releasedFlag = 0;
  private blocked = false;
  private done = false;

  /** Output of the current call. */
  private out = '';

  constructor(protected readonly scanner: DlpScanner) {
    this.state = new ScanState(scanner.compiled);
  }

  push(chunk: string): DlpResult {
    if (this.done) throw new GatewayError('internal', 'stream redactor used after end()');
    this.buf += chunk;
    return this.process(false);
  }

  end(): DlpResult {
    if (this.done) return { text: '', findings: [], blocked: this.blocked };
    this.done = true;
    return this.process(true);
  }

  /** Absolute offset up to which every character is decided (written out, replaced or swallowed). */
  protected get decided(): number {
    return this.emitted;
  }

  /** Original text `[from, to)` (absolute offsets; only undecided text is still held). */
  protected slice(from: number, to: number): string {
    return this.buf.slice(from - this.base, to - this.base);
  }

  /** Writes original text `[from, to)` (absolute offsets) to the output. */
  protected writeText(from: number, to: number): void {
    this.out += this.slice(from, to);
  }

  /** Writes the marker of a redaction starting at `at`. */
  protected writeMarker(rule: string, _at: number): void {
    this.out += marker(rule);
  }

  protected process(final: boolean): DlpResult {
    const e = this.base + this.buf.length;
    this.state.advance(this.buf, this.base, final, this.pending);
    const known = final ? Infinity : this.state.knownUntil();
    this.pending.sort(compareCandidates);
    let k = 0;
    while (k < this.pending.length && this.pending[k]!.start < known && this.res.feed(this.pending[k]!)) k++;
    if (k > 0) this.pending = this.pending.slice(k);
    if (final) this.res.finish();
    else this.res.sync();
    const fed = final ? Infinity : Math.min(known, this.pending[0]?.start ?? Infinity);
    const text = this.emit(final ? e : Math.min(fed, e));
    const findings = this.release(fed);
    this.trim(final, e);
    return { text, findings, blocked: this.blocked };
  }

  /** Writes output up to `limit` (absolute): text, redaction markers, swallowed block bodies. */
  private emit(limit: number): string {
    const reds = this.res.reds;
    this.out = '';
    let pos = this.emitted;
    while (this.redIdx < reds.length) {
      const r = reds[this.redIdx]!;
      if (!this.markerOut) {
        if (r.start >= limit) break;
        if (r.start > pos) this.writeText(pos, r.start);
        this.writeMarker(this.scanner.compiled.rules[r.rule]!.id, Math.max(pos, r.start));
        if (this.scanner.compiled.rules[r.rule]!.action === 'block') this.blocked = true;
        this.markerOut = true;
        pos = Math.max(pos, r.start);
      }
      if (r.end < 0) {
        // Open block: its body up to `limit` is swallowed; the rest follows when it closes.
        pos = Math.max(pos, limit);
        this.emitted = pos;
        return this.out;
      }
      pos = Math.max(pos, r.end);
      this.redIdx++;
      this.markerOut = false;
    }
    if (pos < limit) {
      this.writeText(pos, limit);
      pos = limit;
    }
    this.emitted = pos;
    return this.out;
  }

  /** Findings that can no longer change, in order. */
  private release(fed: number): Finding[] {
    const { reds, flags } = this.res;
    let ri = this.releasedRed;
    let fi = this.releasedFlag;
    while (ri < reds.length || fi < flags.length) {
      const r = ri < reds.length ? reds[ri] : undefined;
      const f = fi < flags.length ? flags[fi] : undefined;
      if (r !== undefined && (f === undefined || r.start <= f.start)) {
        if (r.end < 0) break;
        ri++;
      } else {
        if (f!.end < 0 || f!.end > fed) break;
        fi++;
      }
    }
    const out = this.scanner.findings(reds, flags, this.releasedRed, this.releasedFlag, ri, fi);
    this.releasedRed = ri;
    this.releasedFlag = fi;
    return out;
  }

  /** Drops text no later step reads. */
  private trim(final: boolean, e: number): void {
    if (final) {
      this.buf = '';
      this.base = e;
      return;
    }
    const need = Math.min(this.emitted, this.state.needFrom());
    if (need > this.base) {
      this.buf = this.buf.slice(need - this.base);
      this.base = need;
    }
  }
}

/** Fallback for scanners not made by `compileCatalog`: buffers everything until `end()`. */
class BufferingRedactor implements StreamRedactor {
  private text = '';
  constructor(private readonly scanner: Scanner) {}
  push(chunk: string): DlpResult {
    this.text += chunk;
    return { text: '', findings: [], blocked: false };
  }
  end(): DlpResult {
    const r = applyDlp(this.scanner, this.text);
    this.text = '';
    return r;
  }
}

/**
 * Creates a redactor for a stream of text chunks (e.g. SSE events). Between calls it holds
 * back at most the scanner's longest possible match plus context (typically a few hundred
 * characters, 3.7 K while a JWT-like prefix is pending). `maxHoldbackBytes` (UTF-16 code
 * units; default: the config's `max_holdback_bytes`, 4096) is the budget that bound must fit;
 * a smaller value throws. Block rules (PEM keys) are not held: see the class comment.
 */
export function createStreamRedactor(scanner: Scanner, opts: { maxHoldbackBytes?: number } = {}): StreamRedactor {
  if (!(scanner instanceof DlpScanner)) return new BufferingRedactor(scanner);
  const holdback = opts.maxHoldbackBytes ?? scanner.maxHoldback;
  if (holdback < scanner.minHoldback) {
    throw new GatewayError('internal', `maxHoldbackBytes must be at least ${scanner.minHoldback} for this rule set`, { rule: 'dlp.config' });
  }
  return new IncrementalRedactor(scanner);
}
