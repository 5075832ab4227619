import type { Candidate, CompiledRule } from '../../../src/dlp/engine.js';
import { compareCandidates, Resolver } from '../../../src/dlp/resolve.js';
import type { DlpScanner } from '../../../src/dlp/scanner.js';
import type { Finding } from '../../../src/dlp/types.js';

/**
 * Naive reference for the scanner's candidate search: every rule runs its own regex over the
 * whole text from offset 0 (leftmost-first; after a rejected match the search goes on one
 * character later, after an accepted one at its end), with no keyword prefilter, trigger,
 * window, group or stream. The optimised engine must find exactly these candidates; the
 * overlap sweep (`Resolver`) is shared.
 */
export function referenceScan(scanner: DlpScanner, text: string): Finding[] {
  const cands: Candidate[] = [];
  for (const rule of scanner.compiled.rules) ruleCandidates(rule, text, cands);
  cands.sort(compareCandidates);
  const res = new Resolver();
  for (const c of cands) if (!res.feed(c)) throw new Error('resolver refused a candidate of a finished text');
  res.finish();
  return scanner.findings(res.reds, res.flags, 0, 0, res.reds.length, res.flags.length);
}

function ruleCandidates(rule: CompiledRule, text: string, out: Candidate[]): void {
  const re = new RegExp(rule.re.source, rule.re.flags);
  re.lastIndex = 0;
  while (true) {
    const m = re.exec(text);
    if (m === null) return;
    const s = m.index;
    const mEnd = s + m[0].length;
    let fs = s;
    let fe = mEnd;
    const g = rule.hasCapture ? m.indices?.[1] : undefined;
    if (g) [fs, fe] = g;
    const ok = rule.check ? rule.check(text, s, fs, fe) : true;
    if (ok === false) {
      re.lastIndex = s + 1;
      continue;
    }
    if (ok !== true) [fs, fe] = ok;
    if (rule.span) {
      const end = spanEnd(rule, text, fs, mEnd);
      out.push({ rule: rule.index, start: fs, end, minEnd: end, redacts: rule.redacts, isSpan: true });
      re.lastIndex = end;
      continue;
    }
    out.push({ rule: rule.index, start: fs, end: fe, minEnd: fe, redacts: rule.redacts, isSpan: false });
    re.lastIndex = mEnd;
  }
}

/** End of a block starting at `start` whose BEGIN marker ends at `from`: first END marker that fits the bound. */
function spanEnd(rule: CompiledRule, text: string, start: number, from: number): number {
  const span = rule.span!;
  const limit = start + span.maxSpan;
  const re = new RegExp(span.re.source, span.re.flags);
  re.lastIndex = from;
  while (true) {
    const m = re.exec(text);
    if (m === null || m.index > limit - span.minLen) return Math.min(limit, text.length);
    if (m.index + m[0].length <= limit) return m.index + m[0].length;
    re.lastIndex = m.index + 1;
  }
}
