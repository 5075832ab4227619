/**
 * Sets of UTF-16 code units as sorted, disjoint, non-adjacent inclusive ranges
 * `[lo0, hi0, lo1, hi1, ...]`. Used by the pattern linter (overlap tests) and emitter.
 */

/** Immutable code-unit set. */
export type CharSet = readonly number[];

const MAX = 0xffff;

/** Normalizes arbitrary (possibly overlapping, unsorted) ranges. */
export function fromRanges(pairs: readonly number[]): CharSet {
  const list: [number, number][] = [];
  for (let i = 0; i + 1 < pairs.length; i += 2) list.push([pairs[i]!, pairs[i + 1]!]);
  list.sort((a, b) => a[0] - b[0]);
  const out: number[] = [];
  for (const [lo, hi] of list) {
    const n = out.length;
    if (n > 0 && lo <= out[n - 1]! + 1) out[n - 1] = Math.max(out[n - 1]!, hi);
    else out.push(lo, hi);
  }
  return out;
}

/** A set holding one code unit. */
export function single(c: number): CharSet {
  return [c, c];
}

/** Union of sets. */
export function union(...sets: readonly CharSet[]): CharSet {
  return fromRanges(sets.flat());
}

/** Complement within the code-unit space. */
export function negate(s: CharSet): CharSet {
  const out: number[] = [];
  let next = 0;
  for (let i = 0; i < s.length; i += 2) {
    if (s[i]! > next) out.push(next, s[i]! - 1);
    next = s[i + 1]! + 1;
  }
  if (next <= MAX) out.push(next, MAX);
  return out;
}

/** Whether two sets share a code unit. */
export function intersects(a: CharSet, b: CharSet): boolean {
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i + 1]! < b[j]!) i += 2;
    else if (b[j + 1]! < a[i]!) j += 2;
    else return true;
  }
  return false;
}

/** Whether the set contains `c`. */
export function has(s: CharSet, c: number): boolean {
  for (let i = 0; i < s.length; i += 2) if (c >= s[i]! && c <= s[i + 1]!) return true;
  return false;
}

let caseGroups: readonly (readonly number[])[] | undefined;

/**
 * Groups of code units that a case-insensitive (non-unicode) JS regex treats as equal: units
 * with the same canonical form (ES2023 Canonicalize: simple upper case, never mapping
 * non-ASCII onto ASCII). Built once on first use.
 */
function groups(): readonly (readonly number[])[] {
  if (caseGroups) return caseGroups;
  const byCanon = new Map<number, number[]>();
  for (let c = 0; c <= MAX; c++) {
    const u = String.fromCharCode(c).toUpperCase();
    let v = u.length === 1 ? u.charCodeAt(0) : c;
    if (c >= 0x80 && v < 0x80) v = c;
    if (v === c && byCanon.get(v) === undefined) {
      byCanon.set(v, [c]);
      continue;
    }
    const g = byCanon.get(v);
    if (g) g.push(c);
    else byCanon.set(v, [c]);
  }
  caseGroups = [...byCanon.values()].filter((g) => g.length > 1);
  return caseGroups;
}

/** Every code unit a case-insensitive (non-unicode) JS regex matches for this set. */
export function foldCase(s: CharSet): CharSet {
  const extra: number[] = [];
  for (const g of groups()) {
    if (g.some((c) => has(s, c))) for (const c of g) extra.push(c, c);
  }
  return extra.length === 0 ? s : fromRanges([...s, ...extra]);
}

/** Stable key for equality tests. */
export function key(s: CharSet): string {
  return s.join(',');
}

/** The only member when the set has exactly one, else -1. */
export function only(s: CharSet): number {
  return s.length === 2 && s[0] === s[1] ? s[0]! : -1;
}

function esc(c: number): string {
  if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f) {
    return String.fromCharCode(c);
  }
  return `\\u${c.toString(16).padStart(4, '0')}`;
}

/** JS regex source for the set: a single escaped unit or a bracket class. */
export function toSource(s: CharSet): string {
  const one = only(s);
  if (one >= 0) return esc(one);
  if (s.length === 2 && s[0] === 0 && s[1] === MAX) return '[\\s\\S]';
  let body = '';
  for (let i = 0; i < s.length; i += 2) {
    const lo = s[i]!;
    const hi = s[i + 1]!;
    body += lo === hi ? esc(lo) : hi === lo + 1 ? esc(lo) + esc(hi) : `${esc(lo)}-${esc(hi)}`;
  }
  return `[${body}]`;
}

/** Short human-readable rendering for error messages. */
export function describe(s: CharSet): string {
  const one = only(s);
  const show = (c: number): string => (c > 0x20 && c < 0x7f ? String.fromCharCode(c) : `\\u${c.toString(16).padStart(4, '0')}`);
  if (one >= 0) return `'${show(one)}'`;
  let body = '';
  for (let i = 0; i < s.length && body.length < 40; i += 2) {
    body += s[i] === s[i + 1] ? show(s[i]!) : `${show(s[i]!)}-${show(s[i + 1]!)}`;
  }
  return `[${body}${body.length >= 40 ? '…' : ''}]`;
}

/** `\d` */
export const DIGIT: CharSet = [0x30, 0x39];
/** `\w` */
export const WORD: CharSet = fromRanges([0x30, 0x39, 0x41, 0x5a, 0x5f, 0x5f, 0x61, 0x7a]);
/** `\s` as JavaScript defines it. */
export const SPACE: CharSet = fromRanges([
  0x09, 0x0d, 0x20, 0x20, 0xa0, 0xa0, 0x1680, 0x1680, 0x2000, 0x200a, 0x2028, 0x2029, 0x202f, 0x202f, 0x205f, 0x205f,
  0x3000, 0x3000, 0xfeff, 0xfeff,
]);
/** `.` without the `s` flag: anything but line terminators. */
export const DOT: CharSet = negate(fromRanges([0x0a, 0x0a, 0x0d, 0x0d, 0x2028, 0x2029]));
