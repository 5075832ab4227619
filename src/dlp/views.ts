import { decodedView, ENCODINGS } from './decode.js';
import type { DecodedEncoding, Finding, Scanner } from './types.js';

/**
 * Findings of the decoded views of `text`, in original offsets, merged with the raw view's
 * `raw` findings into one sorted, non-overlapping list. A decoded finding that touches no
 * decoded piece is the raw view's own (dropped); one overlapping a raw finding keeps only what
 * the raw finding does not already cover, by the same sweep as the resolver (redactions never
 * shrink, flags never hide a redaction), so a secret both views see is reported once.
 * Views decode the raw text, with one exception (a fixed second level): base64 runs inside
 * a JSON view whose region holds `\/`, which JSON encoders may write for `/`.
 */
export function withDecodedViews(scanner: Scanner, text: string, raw: Finding[], encodings: readonly DecodedEncoding[] = ENCODINGS): Finding[] {
  const extra: Finding[] = [];
  for (const enc of encodings) {
    for (const region of decodedView(text, enc)) {
      for (const f of scanner.scan(region.text)) {
        const span = region.map(f.start, f.end);
        if (span) extra.push({ ...f, start: span[0], end: span[1], encoding: enc });
      }
      // The one second level: base64 in a JSON string whose encoder wrote '/' as '\/'.
      if (enc === 'json_escape' && encodings.includes('base64') && hasEscapedSlash(text, region.start, region.end)) {
        for (const inner of decodedView(region.text, 'base64')) {
          for (const f of scanner.scan(inner.text)) {
            const mid = inner.map(f.start, f.end);
            const span = mid && region.map(mid[0], mid[1]);
            if (span) extra.push({ ...f, start: span[0], end: span[1], encoding: 'base64' });
          }
        }
      }
    }
  }
  if (extra.length === 0) return raw;
  return merge([...raw, ...extra]);
}

function hasEscapedSlash(text: string, from: number, to: number): boolean {
  const at = text.indexOf('\\/', from);
  return at >= 0 && at < to;
}

/** Order of the sweep: start, redactions first, raw before decoded, longer first. */
function order(a: Finding, b: Finding): number {
  if (a.start !== b.start) return a.start - b.start;
  const ar = a.action !== 'flag';
  const br = b.action !== 'flag';
  if (ar !== br) return ar ? -1 : 1;
  if ((a.encoding === undefined) !== (b.encoding === undefined)) return a.encoding === undefined ? -1 : 1;
  return b.end - a.end;
}

function merge(all: Finding[]): Finding[] {
  all.sort(order);
  const reds: Finding[] = [];
  const flags: Finding[] = [];
  let redEnd = 0;
  for (const f of all) {
    if (f.action !== 'flag') {
      const s = Math.max(f.start, redEnd);
      if (s >= f.end) continue;
      // A redaction cuts the flags it overlaps.
      while (flags.length > 0 && flags[flags.length - 1]!.end > s) {
        const last = flags[flags.length - 1]!;
        if (last.start >= s) flags.pop();
        else {
          flags[flags.length - 1] = { ...last, end: s };
          break;
        }
      }
      reds.push(s === f.start ? f : { ...f, start: s });
      redEnd = f.end;
    } else {
      const lastFlag = flags.length > 0 ? flags[flags.length - 1]!.end : 0;
      const s = Math.max(f.start, redEnd, lastFlag);
      if (s >= f.end) continue;
      flags.push(s === f.start ? f : { ...f, start: s });
    }
  }
  const out: Finding[] = [];
  let i = 0;
  let j = 0;
  while (i < reds.length || j < flags.length) {
    if (j === flags.length || (i < reds.length && reds[i]!.start <= flags[j]!.start)) out.push(reds[i++]!);
    else out.push(flags[j++]!);
  }
  return out;
}
