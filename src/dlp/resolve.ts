import type { Candidate } from './engine.js';

/**
 * Turns per-rule candidates into non-overlapping findings with one sweep in a fixed order
 * (start, redactions before flags, blocks before regex matches, longer first, catalog order):
 *
 * - a redaction overlapping an earlier redaction keeps only its part after it, so the union of
 *   redacted text never shrinks (no secret is half-shown because a neighbour won);
 * - a flag never hides a redaction: a later redaction cuts the flags it overlaps;
 * - a flag overlapping an earlier finding keeps only its part after it.
 *
 * The sweep is incremental so a stream gets exactly the findings of the whole text: a
 * candidate is fed once every candidate ordered before it is known.
 */

/** Total order of candidates (blocks whose end is not known yet sort without it). */
export function compareCandidates(a: Candidate, b: Candidate): number {
  if (a.start !== b.start) return a.start - b.start;
  if (a.redacts !== b.redacts) return a.redacts ? -1 : 1;
  if (a.isSpan !== b.isSpan) return a.isSpan ? -1 : 1;
  if (!a.isSpan && a.end !== b.end) return b.end - a.end;
  return a.rule - b.rule;
}

/** A resolved finding; `end` is -1 while it is a still-open block. */
export interface Resolved {
  readonly rule: number;
  start: number;
  end: number;
  readonly redacts: boolean;
  /** Source candidate while open (its end is taken over when it closes). */
  src: Candidate | null;
}

/** Incremental overlap resolution. */
export class Resolver {
  /** Redaction findings in order (never removed once added). */
  readonly reds: Resolved[] = [];
  /** Flag findings in order; only the tail can be cut or removed, and only beyond the fed range. */
  readonly flags: Resolved[] = [];
  private lastRedEnd = 0;
  private openRed: Resolved | null = null;
  private openFlag: Resolved | null = null;

  /** Takes over block ends that became known. */
  sync(): void {
    const r = this.openRed;
    if (r && r.src!.end >= 0) {
      r.end = r.src!.end;
      r.src = null;
      this.lastRedEnd = r.end;
      this.openRed = null;
    }
    const f = this.openFlag;
    if (f && f.src!.end >= 0) {
      f.end = f.src!.end;
      f.src = null;
      this.openFlag = null;
    }
  }

  private lastEnd(): number {
    const fl = this.flags[this.flags.length - 1];
    return Math.max(this.lastRedEnd, fl ? fl.end : 0);
  }

  /** Processes the next candidate in order; false when it must wait for an open block's end. */
  feed(c: Candidate): boolean {
    this.sync();
    if (this.openRed) {
      // Inside an open redaction: swallowed if it ends before the block can end, else wait.
      return c.end >= 0 && c.end <= this.openRed.src!.minEnd;
    }
    if (c.redacts) {
      const s = Math.max(c.start, this.lastRedEnd);
      if (c.end >= 0 && s >= c.end) return true;
      if (this.openFlag) {
        if (s >= this.openFlag.src!.minEnd) return false;
        // The open flag certainly extends past s; the loop below cuts or drops it.
        this.openFlag.end = Number.MAX_SAFE_INTEGER;
        this.openFlag.src = null;
        this.openFlag = null;
      }
      for (let i = this.flags.length - 1; i >= 0; i--) {
        const f = this.flags[i]!;
        if (f.end <= s) break;
        if (f.start >= s) this.flags.pop();
        else {
          f.end = s;
          break;
        }
      }
      const r: Resolved = { rule: c.rule, start: s, end: c.end, redacts: true, src: c.end < 0 ? c : null };
      this.reds.push(r);
      if (c.end < 0) this.openRed = r;
      else this.lastRedEnd = c.end;
      return true;
    }
    if (this.openFlag) return c.end >= 0 && c.end <= this.openFlag.src!.minEnd;
    const s = Math.max(c.start, this.lastEnd());
    if (c.end >= 0 && s >= c.end) return true;
    const f: Resolved = { rule: c.rule, start: s, end: c.end, redacts: false, src: c.end < 0 ? c : null };
    this.flags.push(f);
    if (c.end < 0) this.openFlag = f;
    return true;
  }

  /** Call after the last candidate of a finished text (all blocks are closed by then). */
  finish(): void {
    this.sync();
  }
}
