import { isUtf8 } from 'node:buffer';
import type { DecodedEncoding } from './types.js';

/**
 * Decoded views of a text: JSON string escapes, percent-encoding, HTML numeric entities and
 * base64 runs, each decoded one level (never the result again). A view is built only around
 * the encoded pieces that can hide a secret (a `\n` escape alone builds nothing), as regions of
 * at most the pieces plus {@link REGION_PAD} characters each side, merged where they touch, so
 * every original character is in at most one region per encoding and a view costs at most one
 * more scan of the text. Each view keeps the map back to the original offsets.
 */

const NO_OFFSETS = new Int32Array(0);
const NO_FLAGS = new Uint8Array(0);

/**
 * Encoded pieces in order: piece `k` is the stretch `[os[k], oe[k])` of the original text and
 * decodes to `text[k]`; a weak piece (whitespace, a named entity) is decoded inside a region
 * but does not open one. Kept in flat arrays: a JSON body can hold one escape every few characters.
 */
export class PieceList {
  // Empty until the first piece: most texts (every SSE event, most JSON strings) have none.
  os: Int32Array = NO_OFFSETS;
  oe: Int32Array = NO_OFFSETS;
  weak: Uint8Array = NO_FLAGS;
  readonly text: string[] = [];
  size = 0;

  push(os: number, oe: number, text: string, weak: boolean): void {
    if (this.size === this.os.length) {
      const cap = Math.max(64, this.size * 2);
      const grow = <T extends Int32Array | Uint8Array>(a: T, b: T): T => (b.set(a), b);
      this.os = grow(this.os, new Int32Array(cap));
      this.oe = grow(this.oe, new Int32Array(cap));
      this.weak = grow(this.weak, new Uint8Array(cap));
    }
    this.os[this.size] = os;
    this.oe[this.size] = oe;
    this.weak[this.size] = weak ? 1 : 0;
    this.text.push(text);
    this.size++;
  }
}

/** Literal text kept around a piece so that context words and partly encoded tokens are seen. */
export const REGION_PAD = 512;
/** Distance from a cut region edge within which a finding must touch a decoded piece. */
const EDGE_GUARD = 128;
/** Shortest base64 run decoded (characters, without padding). */
export const BASE64_MIN = 20;
/** Longest base64 run decoded; longer runs (attachments, images) are left to the raw view. */
export const BASE64_MAX = 65536;

/** Value of the 4 hex digits at `text[i]`, or -1. */
function hex4(text: string, i: number): number {
  if (i + 4 > text.length) return -1;
  let v = 0;
  for (let k = i; k < i + 4; k++) {
    const c = text.charCodeAt(k);
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 65 && c <= 70 ? c - 55 : c >= 97 && c <= 102 ? c - 87 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/** Decoded character of a short JSON escape by the code of the letter after `\`, or -1. */
function shortEscape(c: number): number {
  switch (c) {
    case 0x22: case 0x5c: case 0x2f: return c; // " \ /
    case 0x62: return 8; // b
    case 0x66: return 12; // f
    case 0x6e: return 10; // n
    case 0x72: return 13; // r
    case 0x74: return 9; // t
    default: return -1;
  }
}

function isSpaceCode(c: number): boolean {
  return c === 32 || (c >= 8 && c <= 13);
}

/** JSON string escapes (`\uXXXX`, surrogate pairs as one piece, and the short escapes). */
function jsonPieces(text: string, out: PieceList): void {
  let i = text.indexOf('\\');
  while (i >= 0 && i + 1 < text.length) {
    const c = text.charCodeAt(i + 1);
    let next = i + 2;
    const u = c === 0x75 ? hex4(text, i + 2) : -1;
    if (u >= 0) {
      next = i + 6;
      let code = String.fromCharCode(u);
      if (u >= 0xd800 && u < 0xdc00 && text.charCodeAt(next) === 0x5c && text.charCodeAt(next + 1) === 0x75) {
        const lo = hex4(text, next + 2);
        if (lo >= 0xdc00 && lo < 0xe000) {
          code += String.fromCharCode(lo);
          next += 6;
        }
      }
      out.push(i, next, code, isSpaceCode(u));
    } else {
      const d = shortEscape(c);
      if (d >= 0) out.push(i, next, String.fromCharCode(d), isSpaceCode(d));
      else next = i + 1;
    }
    i = text.indexOf('\\', next);
  }
}

const PERCENT_RUN = /(?:%[0-9A-Fa-f]{2})+/g;

/** Runs of `%XX` decoded as UTF-8 (a run that is not valid UTF-8 is left as it is). */
function percentPieces(text: string, out: PieceList): void {
  if (text.indexOf('%') < 0) return;
  PERCENT_RUN.lastIndex = 0;
  for (let m = PERCENT_RUN.exec(text); m !== null; m = PERCENT_RUN.exec(text)) {
    const bytes = Buffer.from(m[0].replace(/%/g, ''), 'hex');
    if (!isUtf8(bytes)) continue;
    const s = bytes.toString('utf8');
    out.push(m.index, m.index + m[0].length, s, s.trim() === '');
  }
}

const ENTITY = /&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|amp|lt|gt|quot|apos);?/g;
const NAMED: Readonly<Record<string, string>> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** HTML numeric character references (and the five XML named ones, which do not open a region). */
function entityPieces(text: string, out: PieceList): void {
  if (text.indexOf('&') < 0) return;
  ENTITY.lastIndex = 0;
  for (let m = ENTITY.exec(text); m !== null; m = ENTITY.exec(text)) {
    const body = m[0].slice(1).replace(/;$/, '');
    const named = NAMED[body];
    if (named !== undefined) {
      out.push(m.index, m.index + m[0].length, named, true);
      continue;
    }
    const cp = body[1] === 'x' || body[1] === 'X' ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
    if (cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) continue;
    const s = String.fromCodePoint(cp);
    out.push(m.index, m.index + m[0].length, s, /^\s$/.test(s));
  }
}

/** Base64 character kinds: 1 letter or digit (both alphabets), 4 `+` or `/` (standard), 8 `-` or `_` (url-safe), 0 none. */
const B64 = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  B64[c] = /[A-Za-z0-9]/.test(ch) ? 1 : ch === '+' || ch === '/' ? 4 : ch === '-' || ch === '_' ? 8 : 0;
}

/** Base64 digit values (both alphabets), -1 elsewhere. */
const B64_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) {
  B64_VALUE['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.charCodeAt(i)] = i;
}
B64_VALUE[0x2d] = 62;
B64_VALUE[0x5f] = 63;

/**
 * Cheap test on the first 12 decoded bytes, without allocating: no control bytes and a
 * well-formed UTF-8 prefix. Rejects hex digests, identifiers and random blobs early.
 */
function textLikePrefix(text: string, start: number): boolean {
  let need = 0;
  for (let g = 0; g < 4; g++) {
    const at = start + g * 4;
    const v = (B64_VALUE[text.charCodeAt(at)]! << 18) | (B64_VALUE[text.charCodeAt(at + 1)]! << 12) | (B64_VALUE[text.charCodeAt(at + 2)]! << 6) | B64_VALUE[text.charCodeAt(at + 3)]!;
    for (const b of [(v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff]) {
      if (need > 0) {
        if ((b & 0xc0) !== 0x80) return false;
        need--;
      } else if (b >= 0x80) {
        need = b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : -1;
        if (need < 0) return false;
      } else if ((b < 0x20 && b !== 9 && b !== 10 && b !== 13) || b === 0x7f) return false;
    }
  }
  return true;
}

/** Whether decoded bytes read as text: no NUL, at most 1 in 32 other control characters. */
function mostlyPrintable(s: string): boolean {
  let bad = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0 || c === 0xfffd) return false;
    if ((c < 0x20 && c !== 9 && c !== 10 && c !== 13) || (c >= 0x7f && c < 0xa0)) bad++;
  }
  return bad * 32 <= s.length;
}

/** Base64 and base64url runs of {@link BASE64_MIN}..{@link BASE64_MAX} characters that decode to UTF-8 text. */
function base64Pieces(text: string, out: PieceList): void {
  const n = text.length;
  const kind = (p: number): number => {
    const c = text.charCodeAt(p);
    return c < 128 ? B64[c]! : 0;
  };
  // Any BASE64_MIN consecutive positions hold a probe (one every BASE64_MIN characters),
  // so a long enough run contains a probe: plain text costs a read every 20 characters plus
  // its words around the probes that hit. Every character is read at most twice.
  let floor = 0;
  let probe = BASE64_MIN - 1;
  while (probe < n) {
    if (kind(probe) === 0) {
      probe += BASE64_MIN;
      continue;
    }
    let start = probe;
    while (start > floor && kind(start - 1) !== 0) start--;
    let kinds = kind(probe);
    let i = probe + 1;
    for (let k = start; k < probe; k++) kinds |= kind(k);
    for (; i < n; i++) {
      const k = kind(i);
      if (k === 0) break;
      kinds |= k;
    }
    let end = i;
    while (end < n && end - i < 2 && text.charCodeAt(end) === 0x3d) end++;
    floor = end;
    probe = end + BASE64_MIN - 1;
    const len = i - start;
    // One alphabet per run: '+' or '/' (standard) with '-' or '_' (url-safe) is not base64.
    if (len < BASE64_MIN || len > BASE64_MAX || len % 4 === 1 || (kinds & 12) === 12 || !textLikePrefix(text, start)) continue;
    const bytes = Buffer.from(text.slice(start, i), 'base64');
    if (!isUtf8(bytes)) continue;
    const s = bytes.toString('utf8');
    if (!mostlyPrintable(s)) continue;
    out.push(start, end, s, false);
  }
}

const FINDERS: Readonly<Record<DecodedEncoding, (text: string, out: PieceList) => void>> = {
  json_escape: jsonPieces,
  percent: percentPieces,
  html_entity: entityPieces,
  base64: base64Pieces,
};

/** Every encoding, in the order their views are scanned. */
export const ENCODINGS: readonly DecodedEncoding[] = ['json_escape', 'percent', 'html_entity', 'base64'];

/** One region of a view: decoded text and its map to the original. */
export class ViewRegion {
  readonly text: string;
  /** View start and end of pieces `first..last`, built on the first {@link map}. */
  private vs: Int32Array | null = null;
  private ve: Int32Array | null = null;

  constructor(
    original: string,
    /** Original span `[start, end)` the region covers. */
    readonly start: number,
    readonly end: number,
    private readonly pieces: PieceList,
    private readonly first: number,
    private readonly last: number,
    private readonly originalLength: number,
  ) {
    let t = '';
    let pos = start;
    for (let k = first; k <= last; k++) {
      t += original.slice(pos, pieces.os[k]) + pieces.text[k];
      pos = pieces.oe[k]!;
    }
    this.text = t + original.slice(pos, end);
  }

  private offsets(): [Int32Array, Int32Array] {
    if (this.vs === null || this.ve === null) {
      const n = this.last - this.first + 1;
      this.vs = new Int32Array(n);
      this.ve = new Int32Array(n);
      let v = 0;
      let pos = this.start;
      for (let i = 0; i < n; i++) {
        const k = this.first + i;
        v += this.pieces.os[k]! - pos;
        this.vs[i] = v;
        v += this.pieces.text[k]!.length;
        this.ve[i] = v;
        pos = this.pieces.oe[k]!;
      }
    }
    return [this.vs, this.ve];
  }

  /** Index (relative to `first`) of the last piece whose view start is <= v, or -1. */
  private pieceAt(v: number): number {
    const vs = this.offsets()[0];
    let lo = 0;
    let hi = vs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (vs[mid]! <= v) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }

  /** Original span of the view character at `v` (a whole piece when it was decoded). */
  private charSpan(v: number): [number, number] {
    const ve = this.offsets()[1];
    const i = this.pieceAt(v);
    const k = this.first + i;
    if (i >= 0 && v < ve[i]!) return [this.pieces.os[k]!, this.pieces.oe[k]!];
    const o = i < 0 ? this.start + v : this.pieces.oe[k]! + (v - ve[i]!);
    return [o, o + 1];
  }

  /**
   * The original span covering view span `[vs, ve)` (every piece it touches in full), or null
   * when it touches no piece and lies near a cut edge of the region (a token cut in two by the
   * region edge is the raw view's to judge; elsewhere decoding may have changed its context,
   * as in `{\"password\":\"...\"}`).
   */
  map(vs: number, ve: number): [number, number] | null {
    const i = this.pieceAt(ve - 1);
    const span: [number, number] = [this.charSpan(vs)[0], this.charSpan(ve - 1)[1]];
    if (i >= 0 && this.offsets()[1][i]! > vs) return span;
    const nearStart = this.start > 0 && span[0] - this.start < EDGE_GUARD;
    const nearEnd = this.end < this.originalLength && this.end - span[1] < EDGE_GUARD;
    return nearStart || nearEnd ? null : span;
  }
}

/** The regions of one encoding's view of `text`; empty when nothing in it is encoded. */
export function decodedView(text: string, enc: DecodedEncoding): ViewRegion[] {
  const p = new PieceList();
  FINDERS[enc](text, p);
  const regions: ViewRegion[] = [];
  const n = p.size;
  let k = 0;
  let prevEnd = 0;
  while (k < n) {
    // Open a region at the next strong piece; take every piece up to where the padding ends.
    while (k < n && p.weak[k] === 1) k++;
    if (k === n) break;
    let first = k;
    let start = Math.max(0, p.os[k]! - REGION_PAD, prevEnd);
    while (first > 0 && p.os[first - 1]! >= start) first--;
    // Never cut a piece in two at the region start.
    if (first > 0 && p.oe[first - 1]! > start) start = p.oe[first - 1]!;
    let end = Math.min(text.length, p.oe[k]! + REGION_PAD);
    let last = k;
    while (last + 1 < n && p.os[last + 1]! < end) {
      last++;
      end = Math.max(end, p.weak[last] === 1 ? p.oe[last]! : Math.min(text.length, p.oe[last]! + REGION_PAD));
    }
    regions.push(new ViewRegion(text, start, end, p, first, last, text.length));
    prevEnd = end;
    k = last + 1;
  }
  return regions;
}
