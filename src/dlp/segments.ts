import { GatewayError } from '../errors.js';
import { marker } from './redact.js';
import { DlpScanner } from './scanner.js';
import { IncrementalRedactor } from './stream.js';
import type { Finding, Scanner } from './types.js';

/** A released segment: its position in push order and its redacted text. */
export interface ReleasedSegment {
  readonly index: number;
  readonly text: string;
}

/** What a `push` or `end` of a {@link SegmentRedactor} returns. */
export interface SegmentResult {
  /** Segments released by this call, in order; every pushed segment is released exactly once. */
  readonly released: ReleasedSegment[];
  /** Findings that became final in this call (offsets into the concatenation of all segments). */
  readonly findings: Finding[];
  /** Whether a `block` rule has fired in the stream so far. */
  readonly blocked: boolean;
}

/**
 * Redactor for a stream of separately delivered segments (the text deltas of SSE events):
 * the concatenation is scanned as one stream, and each segment comes back on its own.
 */
export interface SegmentRedactor {
  push(segment: string): SegmentResult;
  /** Releases every segment still held. */
  end(): SegmentResult;
}

/** Output slot of one segment while it is held. */
interface Slot {
  readonly index: number;
  /** Absolute span of the segment in the concatenation. */
  readonly start: number;
  readonly end: number;
  out: string;
}

/** Routes held segments' output: text to the segment holding it, a marker to the segment where its redaction starts. */
class Slots {
  private readonly held: Slot[] = [];
  private head = 0;
  private next = 0;
  private total = 0;

  add(segment: string): void {
    this.held.push({ index: this.next++, start: this.total, end: this.total + segment.length, out: '' });
    this.total += segment.length;
  }

  /** The first held, non-empty segment containing absolute offset `at` (empty ones hold nothing). */
  private slotAt(at: number, from: number): number {
    let i = from;
    while (i < this.held.length && (this.held[i]!.end <= at || this.held[i]!.start === this.held[i]!.end)) i++;
    return i;
  }

  /** Appends original text `text`, which starts at absolute offset `from`, to the segments holding it. */
  text(text: string, from: number): void {
    const to = from + text.length;
    let i = this.slotAt(from, this.head);
    let pos = from;
    while (pos < to && i < this.held.length) {
      const s = this.held[i]!;
      const e = Math.min(to, s.end);
      if (e > pos) s.out += text.slice(pos - from, e - from);
      pos = e;
      i++;
    }
  }

  marker(text: string, at: number): void {
    const i = this.slotAt(at, this.head);
    // A redaction starting at the very end of the text so far belongs to the last segment.
    const slot = this.held[Math.min(i, this.held.length - 1)];
    if (slot) slot.out += text;
  }

  /** Releases, in order, the segments that end at or before `decided`. */
  release(decided: number): ReleasedSegment[] {
    const out: ReleasedSegment[] = [];
    while (this.head < this.held.length && this.held[this.head]!.end <= decided) {
      const s = this.held[this.head++]!;
      out.push({ index: s.index, text: s.out });
    }
    if (this.head > 64 && this.head * 2 > this.held.length) {
      this.held.splice(0, this.head);
      this.head = 0;
    }
    return out;
  }
}

/** The incremental stream engine with its output routed to the held segments. */
class RoutedRedactor extends IncrementalRedactor {
  constructor(
    scanner: DlpScanner,
    private readonly slots: Slots,
  ) {
    super(scanner);
  }

  protected override writeText(from: number, to: number): void {
    this.slots.text(this.slice(from, to), from);
  }

  protected override writeMarker(rule: string, at: number): void {
    this.slots.marker(marker(rule), at);
  }

  /** Absolute offset up to which the stream is decided. */
  decidedUntil(): number {
    return this.decided;
  }
}

class IncrementalSegmentRedactor implements SegmentRedactor {
  private readonly slots = new Slots();
  private readonly engine: RoutedRedactor;
  private ended = false;
  private blocked = false;

  constructor(scanner: DlpScanner) {
    this.engine = new RoutedRedactor(scanner, this.slots);
  }

  push(segment: string): SegmentResult {
    if (this.ended) throw new GatewayError('internal', 'segment redactor used after end()');
    this.slots.add(segment);
    const r = this.engine.push(segment);
    this.blocked = r.blocked;
    return { released: this.slots.release(this.engine.decidedUntil()), findings: r.findings, blocked: r.blocked };
  }

  end(): SegmentResult {
    if (this.ended) return { released: [], findings: [], blocked: this.blocked };
    this.ended = true;
    const r = this.engine.end();
    this.blocked = r.blocked;
    return { released: this.slots.release(Infinity), findings: r.findings, blocked: r.blocked };
  }
}

/** Fallback for scanners not made by `compileCatalog`: holds every segment until `end()`. */
class BufferingSegmentRedactor implements SegmentRedactor {
  private readonly segments: string[] = [];
  private ended = false;
  constructor(private readonly scanner: Scanner) {}
  push(segment: string): SegmentResult {
    if (this.ended) throw new GatewayError('internal', 'segment redactor used after end()');
    this.segments.push(segment);
    return { released: [], findings: [], blocked: false };
  }
  end(): SegmentResult {
    if (this.ended) return { released: [], findings: [], blocked: false };
    this.ended = true;
    const text = this.segments.join('');
    const findings = this.scanner.scan(text);
    return { released: redactSegments(this.segments, findings), findings, blocked: findings.some((f) => f.action === 'block') };
  }
}

/**
 * Redacts segments given the findings of their concatenation: a redaction's marker goes into
 * the segment where it starts, and its other characters are removed from later segments.
 */
export function redactSegments(segments: readonly string[], findings: readonly Finding[]): ReleasedSegment[] {
  const slots = new Slots();
  for (const s of segments) slots.add(s);
  const text = segments.join('');
  let pos = 0;
  for (const f of findings) {
    if (f.action === 'flag') continue;
    const start = Math.max(f.start, pos);
    if (f.end <= start) continue;
    slots.text(text.slice(pos, start), pos);
    slots.marker(marker(f.rule), start);
    pos = f.end;
  }
  slots.text(text.slice(pos), pos);
  return slots.release(Infinity);
}

/**
 * Creates a redactor for a stream delivered as segments (e.g. the JSON string value of each
 * SSE event's text delta). The concatenation of all segments is scanned as one stream, with
 * exactly the findings of `applyDlp(scanner, concatenation, { decode: false })`. Every segment
 * is released exactly once, in order, redacted: a finding spanning segments puts its marker
 * in the segment where it starts and removes its remaining characters from the later ones
 * (which may release as ""). A segment is held only while a match could still start in it and
 * extend into text not yet pushed, which the stream engine bounds by the scanner's hold-back;
 * otherwise the push that delivered it releases it. Throws when `maxHoldbackBytes` is below
 * the scanner's minimum (as `createStreamRedactor`).
 */
export function createSegmentRedactor(scanner: Scanner, opts: { maxHoldbackBytes?: number } = {}): SegmentRedactor {
  if (!(scanner instanceof DlpScanner)) return new BufferingSegmentRedactor(scanner);
  const holdback = opts.maxHoldbackBytes ?? scanner.maxHoldback;
  if (holdback < scanner.minHoldback) {
    throw new GatewayError('internal', `maxHoldbackBytes must be at least ${scanner.minHoldback} for this rule set`, { rule: 'dlp.config' });
  }
  return new IncrementalSegmentRedactor(scanner);
}
