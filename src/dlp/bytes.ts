import { isUtf8 } from 'node:buffer';
import { applyDlp } from './redact.js';
import type { DlpOptions, Finding, Scanner } from './types.js';

/** How `scanBytes` read the bytes: as text in one of these encodings, or as binary (`strings`). */
export type BytesView = 'utf-8' | 'utf-16le' | 'utf-16be' | 'latin1' | 'strings';

/** Options of {@link scanBytes}. */
export interface ScanBytesOptions extends DlpOptions {
  /** Declared charset (`utf-16le`, or a `Content-Type` value); without one, a BOM or UTF-8 validity decides. */
  readonly charset?: string;
}

/**
 * Redacted bytes in the same encoding, findings with offsets in bytes of the input, whether a
 * `block` rule fired, and the view the bytes were scanned in.
 */
export interface BytesResult {
  bytes: Buffer;
  findings: Finding[];
  blocked: boolean;
  view: BytesView;
}

/** Shortest printable run the `strings` view scans. */
export const MIN_STRING_RUN = 6;
/** Byte that overwrites redacted bytes in the `strings` view (same length, offsets stay valid). */
const MASK = 0x58; // 'X'

type TextView = Exclude<BytesView, 'strings'>;

/**
 * Charset label (or a whole `Content-Type` value with a `charset=` parameter) to a text view;
 * `utf-16` without byte order, null for labels not handled.
 */
function viewOf(charset: string): TextView | 'utf-16' | null {
  const param = /(?:^|;)\s*charset\s*=\s*([^;]*)/i.exec(charset);
  const c = (param ? param[1]! : charset).trim().replace(/^["']|["']$/g, '').toLowerCase();
  if (c === 'utf-8' || c === 'utf8') return 'utf-8';
  if (c === 'utf-16le') return 'utf-16le';
  if (c === 'utf-16be') return 'utf-16be';
  if (c === 'utf-16' || c === 'ucs-2') return 'utf-16';
  if (c === 'iso-8859-1' || c === 'latin1' || c === 'latin-1' || c === 'l1' || c === 'us-ascii' || c === 'ascii') return 'latin1';
  return null;
}

/** Byte order mark at the start: its view and length. */
function bomOf(b: Buffer): { view: TextView; length: number } | null {
  if (b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) return { view: 'utf-8', length: 3 };
  if (b.length >= 2 && b[0] === 0xff && b[1] === 0xfe) return { view: 'utf-16le', length: 2 };
  if (b.length >= 2 && b[0] === 0xfe && b[1] === 0xff) return { view: 'utf-16be', length: 2 };
  return null;
}

/** UTF-16 without a BOM: the byte order whose high bytes are zero more often (ASCII-heavy text), else big-endian (RFC 2781). */
function guessUtf16(b: Buffer): TextView {
  let even = 0;
  let odd = 0;
  const n = Math.min(b.length, 4096);
  for (let i = 0; i + 1 < n; i += 2) {
    if (b[i] === 0) even++;
    if (b[i + 1] === 0) odd++;
  }
  return odd > even ? 'utf-16le' : 'utf-16be';
}

/** Whether decoded text reads as text: no NUL, no lone surrogate, at most 1 in 32 other controls. */
function isText(s: string, utf16: boolean): boolean {
  let bad = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0) return false;
    if (utf16 && c >= 0xd800 && c < 0xe000) {
      const next = s.charCodeAt(i + 1);
      if (c >= 0xdc00 || !(next >= 0xdc00 && next < 0xe000)) return false;
      i++;
      continue;
    }
    if ((c < 0x20 && c !== 9 && c !== 10 && c !== 13) || c === 0x7f) bad++;
  }
  return bad * 32 <= s.length;
}

function declaredAscii(charset: string | undefined): boolean {
  return charset !== undefined && /(?:^|[^a-z-])(?:us-)?ascii\b/i.test(charset);
}

function decode(b: Buffer, view: TextView): string | null {
  switch (view) {
    case 'utf-8':
      return isUtf8(b) ? b.toString('utf8') : null;
    case 'utf-16le':
      return b.length % 2 === 0 ? b.toString('utf16le') : null;
    case 'utf-16be':
      return b.length % 2 === 0 ? Buffer.from(b).swap16().toString('utf16le') : null;
    case 'latin1':
      return b.toString('latin1');
  }
}

function encode(s: string, view: TextView): Buffer {
  switch (view) {
    case 'utf-8':
      return Buffer.from(s, 'utf8');
    case 'utf-16le':
      return Buffer.from(s, 'utf16le');
    case 'utf-16be':
      return Buffer.from(s, 'utf16le').swap16();
    case 'latin1':
      return Buffer.from(s, 'latin1');
  }
}

/** Converts sorted UTF-16 offsets of `s` to byte offsets of its UTF-8 encoding, in one pass. */
function utf8Offsets(s: string, offsets: readonly number[]): number[] {
  const order = offsets.map((o, i) => [o, i] as const).sort((a, b) => a[0] - b[0]);
  const out = new Array<number>(offsets.length);
  let unit = 0;
  let bytes = 0;
  for (const [o, i] of order) {
    while (unit < o) {
      const c = s.charCodeAt(unit);
      if (c < 0x80) bytes += 1;
      else if (c < 0x800) bytes += 2;
      else if (c >= 0xd800 && c < 0xdc00 && unit + 1 < s.length) {
        bytes += 4;
        unit++;
      } else bytes += 3;
      unit++;
    }
    out[i] = bytes;
  }
  return out;
}

/** Findings of `text` moved to byte offsets of its encoding in `view`, after `skip` bytes. */
function toBytes(findings: readonly Finding[], text: string, view: TextView, skip: number): Finding[] {
  if (findings.length === 0) return [];
  if (view === 'utf-8') {
    const offs = utf8Offsets(text, findings.flatMap((f) => [f.start, f.end]));
    return findings.map((f, i) => ({ ...f, start: skip + offs[2 * i]!, end: skip + offs[2 * i + 1]! }));
  }
  const w = view === 'latin1' ? 1 : 2;
  return findings.map((f) => ({ ...f, start: skip + f.start * w, end: skip + f.end * w }));
}

/** Byte length of the UTF-8 sequence starting at `b[i]` if it is a valid non-ASCII one, else 0. */
function utf8Seq(b: Buffer, i: number): number {
  const c = b[i]!;
  const n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  if (n === 0 || i + n > b.length) return 0;
  for (let k = 1; k < n; k++) if ((b[i + k]! & 0xc0) !== 0x80) return 0;
  return isUtf8(b.subarray(i, i + n)) ? n : 0;
}

/**
 * Binary view: every run of at least {@link MIN_STRING_RUN} printable characters (ASCII,
 * tab, CR, LF, or valid UTF-8 sequences) is scanned on its own, and redacted findings are
 * overwritten with `X` in place, so the bytes keep their length and offsets.
 */
export function scanStrings(scanner: Scanner, bytes: Buffer, opts: DlpOptions): BytesResult {
  const out = Buffer.from(bytes);
  const findings: Finding[] = [];
  let i = 0;
  while (i < bytes.length) {
    const start = i;
    let chars = 0;
    while (i < bytes.length) {
      const c = bytes[i]!;
      if ((c >= 0x20 && c < 0x7f) || c === 9 || c === 10 || c === 13) i++;
      else {
        const n = c >= 0x80 ? utf8Seq(bytes, i) : 0;
        if (n === 0) break;
        i += n;
      }
      chars++;
    }
    if (chars >= MIN_STRING_RUN) {
      const text = bytes.toString('utf8', start, i);
      const r = applyDlp(scanner, text, opts);
      for (const f of toBytes(r.findings, text, 'utf-8', start)) {
        findings.push(f);
        if (f.action !== 'flag') out.fill(MASK, f.start, f.end);
      }
    }
    if (i === start) i++;
  }
  return { bytes: out, findings, blocked: findings.some((f) => f.action === 'block'), view: 'strings' };
}

/**
 * Scans a body given as bytes. Text (per the declared charset: UTF-8, UTF-16 with or without
 * byte order, ISO-8859-1/US-ASCII; or per its BOM; or UTF-8 when it is valid UTF-8) is decoded,
 * run through `applyDlp` (decoded views included) and re-encoded in the same encoding, BOM
 * kept. Bytes that are not valid text in that encoding are scanned as binary (`strings` view:
 * printable runs, same-length masking). Finding offsets are byte offsets into `bytes`.
 */
export function scanBytes(scanner: Scanner, bytes: Buffer, opts: ScanBytesOptions = {}): BytesResult {
  const dlp: DlpOptions = opts.decode === undefined ? {} : { decode: opts.decode };
  const reading = readText(bytes, opts.charset);
  if (!reading) return scanStrings(scanner, bytes, dlp);
  const r = applyDlp(scanner, reading.text, dlp);
  return { bytes: writeText(reading, r.text, bytes), findings: toBytes(r.findings, reading.text, reading.view, reading.skip), blocked: r.blocked, view: reading.view };
}

/** Bytes read as text: the encoding, the text, and how many leading bytes (a BOM) precede it. */
export interface TextReading {
  readonly view: TextView;
  readonly text: string;
  readonly skip: number;
}

/**
 * Reads bytes as text per the declared charset (a label or a `Content-Type` value: UTF-8,
 * UTF-16 with or without byte order, ISO-8859-1/US-ASCII), or their BOM, or as UTF-8; null when
 * they are not valid, text-like characters in that encoding (then they are binary).
 */
export function readText(bytes: Buffer, charset?: string): TextReading | null {
  const bom = bomOf(bytes);
  const declared = charset ? viewOf(charset) : null;
  let view: TextView;
  let skip = 0;
  if (bom && (declared === null || declared === bom.view || (declared === 'utf-16' && bom.view !== 'utf-8'))) {
    view = bom.view;
    skip = bom.length;
  } else if (declared === 'utf-16') view = guessUtf16(bytes);
  else view = declared ?? 'utf-8';
  const text = decode(bytes.subarray(skip), view);
  if (text === null || !isText(text, view === 'utf-16le' || view === 'utf-16be') || (declaredAscii(charset) && /[^\x00-\x7f]/.test(text))) return null;
  return { view, text, skip };
}

/** `text` encoded like `reading` was read from `original` (BOM kept); `original` itself when unchanged. */
export function writeText(reading: TextReading, text: string, original: Buffer): Buffer {
  return text === reading.text ? original : Buffer.concat([original.subarray(0, reading.skip), encode(text, reading.view)]);
}
