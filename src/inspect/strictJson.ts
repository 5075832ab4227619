import { isUtf8 } from 'node:buffer';

/**
 * The one JSON reader of request bodies. Policy input, the schema check and MCP parsing all read
 * a body through {@link parseStrictJson}, so they see the same value, and a body whose meaning
 * could differ between the gateway and a tool's parser is refused instead of guessed at:
 *
 * - bytes that are not UTF-8 (RFC 8259 section 8.1), and a byte order mark (many parsers reject
 *   it, others skip it);
 * - duplicate member names at any depth (`{"role":"x","role":"y"}`: first-wins and last-wins
 *   parsers disagree);
 * - lone UTF-16 surrogates, escaped (`"\ud800"`) or raw in a JavaScript string input (they have
 *   no Unicode meaning and are replaced, kept or refused depending on the parser);
 * - numbers too large for a double (`1e400` would become Infinity here and null on re-encoding);
 * - nesting deeper than a bound, and anything that is not strict RFC 8259 JSON.
 *
 * Speed: one validating pass over the text (no values are built; member names are compared as
 * slices unless they contain escapes), then the engine's native `JSON.parse` builds the value.
 */

/** Why a body was refused. */
export type StrictJsonProblem = 'encoding' | 'bom' | 'syntax' | 'duplicate_key' | 'lone_surrogate' | 'number_range' | 'depth';

/** A refused body: the class of problem, a message safe to show the caller, and where. */
export interface StrictJsonError {
  readonly problem: StrictJsonProblem;
  readonly message: string;
  /** UTF-16 offset into the decoded text (0 for encoding problems). */
  readonly offset: number;
}

/** Outcome of {@link parseStrictJson}. */
export type StrictJsonResult =
  | { readonly ok: true; readonly value: unknown; readonly text: string }
  | { readonly ok: false; readonly error: StrictJsonError; readonly text: string | null };

/** Options of {@link parseStrictJson}. */
export interface StrictJsonOptions {
  /** Deepest nesting of arrays and objects accepted (default {@link DEFAULT_MAX_DEPTH}). */
  readonly maxDepth?: number;
}

/** Default nesting bound: far beyond what tool arguments need, far below any stack limit. */
export const DEFAULT_MAX_DEPTH = 128;

/** Member names longer than this are cut in error messages. */
const NAME_SHOWN = 64;

/** Characters a string literal may hold without an escape (surrogates are checked apart). */
const PLAIN = /[^"\\\u0000-\u001f\ud800-\udfff]*/y;
/** RFC 8259 number grammar. */
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

/** Whether a UTF-16 unit may stand in a string literal as is (NaN, past the end, is not). */
function plain(c: number): boolean {
  return c >= 0x20 && c !== 0x22 && c !== 0x5c && (c < 0xd800 || c > 0xdfff);
}

class Refusal {
  constructor(
    readonly problem: StrictJsonProblem,
    readonly message: string,
    readonly offset: number,
  ) {}
}

/**
 * Decodes a body as strict UTF-8 (a BOM is kept as U+FEFF so the parser can refuse it), or
 * returns `null` when the bytes are not valid UTF-8.
 */
export function decodeUtf8(bytes: Uint8Array): string | null {
  if (!isUtf8(bytes)) return null;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}

/** Whether the first non-whitespace character opens an object or an array. */
export function looksLikeJsonContainer(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) continue;
    return c === 0x7b || c === 0x5b || c === 0xfeff;
  }
  return false;
}

/**
 * Parses a request body strictly (see the module comment). Bytes are checked as UTF-8 first;
 * a string is taken as already decoded. Never throws.
 */
export function parseStrictJson(input: Uint8Array | string, opts: StrictJsonOptions = {}): StrictJsonResult {
  let text: string;
  if (typeof input === 'string') {
    text = input;
  } else {
    const decoded = decodeUtf8(input);
    if (decoded === null) return { ok: false, error: { problem: 'encoding', message: 'the body is not valid UTF-8', offset: 0 }, text: null };
    text = decoded;
  }
  if (text.charCodeAt(0) === 0xfeff) {
    return { ok: false, error: { problem: 'bom', message: 'the body starts with a byte order mark; send JSON without one', offset: 0 }, text };
  }
  try {
    new Scanner(text, opts.maxDepth ?? DEFAULT_MAX_DEPTH).document();
  } catch (err) {
    if (err instanceof Refusal) return { ok: false, error: { problem: err.problem, message: err.message, offset: err.offset }, text };
    // Only a stack overflow can get here (the depth bound makes it unreachable in practice).
    return { ok: false, error: { problem: 'depth', message: 'the body is nested too deeply', offset: 0 }, text };
  }
  // The scan accepted strict RFC 8259 JSON, which JSON.parse reads with the same meaning.
  return { ok: true, value: JSON.parse(text) as unknown, text };
}

/** Validating scanner over one document; throws {@link Refusal}. */
class Scanner {
  private i = 0;

  constructor(
    private readonly s: string,
    private readonly maxDepth: number,
  ) {}

  document(): void {
    this.space();
    if (this.i >= this.s.length) throw new Refusal('syntax', 'the body is empty', this.i);
    this.value(0);
    this.space();
    if (this.i < this.s.length) throw this.unexpected('after the JSON value');
  }

  private space(): void {
    const s = this.s;
    let i = this.i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
    this.i = i;
  }

  private unexpected(where: string): Refusal {
    if (this.i >= this.s.length) return new Refusal('syntax', `the body ends too early (${where})`, this.i);
    const ch = this.s[this.i] as string;
    const shown = /[\x21-\x7e]/.test(ch) ? `"${ch}"` : `U+${this.s.charCodeAt(this.i).toString(16).toUpperCase().padStart(4, '0')}`;
    return new Refusal('syntax', `unexpected ${shown} at offset ${this.i} (${where})`, this.i);
  }

  private value(depth: number): void {
    const c = this.s.charCodeAt(this.i);
    switch (c) {
      case 0x7b /* { */:
        return this.object(depth + 1);
      case 0x5b /* [ */:
        return this.array(depth + 1);
      case 0x22 /* " */:
        this.string();
        return;
      case 0x74 /* t */:
        return this.literal('true');
      case 0x66 /* f */:
        return this.literal('false');
      case 0x6e /* n */:
        return this.literal('null');
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
        throw this.unexpected('expected a value');
    }
  }

  private literal(word: string): void {
    if (!this.s.startsWith(word, this.i)) throw this.unexpected('expected a value');
    this.i += word.length;
  }

  private enter(depth: number): void {
    if (depth > this.maxDepth) throw new Refusal('depth', `the body is nested deeper than ${this.maxDepth} levels`, this.i);
  }

  private object(depth: number): void {
    this.enter(depth);
    this.i++; // {
    this.space();
    if (this.s.charCodeAt(this.i) === 0x7d /* } */) {
      this.i++;
      return;
    }
    let first: string | null = null;
    let seen: Set<string> | null = null;
    for (;;) {
      if (this.s.charCodeAt(this.i) !== 0x22) throw this.unexpected('expected a member name');
      const at = this.i;
      const name = this.string();
      if (first === null) {
        first = name;
      } else {
        if (seen === null) seen = new Set([first]);
        if (seen.has(name)) {
          const shown = name.length > NAME_SHOWN ? `${name.slice(0, NAME_SHOWN)}...` : name;
          throw new Refusal('duplicate_key', `member name ${JSON.stringify(shown)} appears twice in one object (offset ${at})`, at);
        }
        seen.add(name);
      }
      this.space();
      if (this.s.charCodeAt(this.i) !== 0x3a /* : */) throw this.unexpected('expected ":"');
      this.i++;
      this.space();
      this.value(depth);
      this.space();
      const c = this.s.charCodeAt(this.i);
      if (c === 0x2c /* , */) {
        this.i++;
        this.space();
        continue;
      }
      if (c === 0x7d /* } */) {
        this.i++;
        return;
      }
      throw this.unexpected('expected "," or "}"');
    }
  }

  private array(depth: number): void {
    this.enter(depth);
    this.i++; // [
    this.space();
    if (this.s.charCodeAt(this.i) === 0x5d /* ] */) {
      this.i++;
      return;
    }
    for (;;) {
      this.value(depth);
      this.space();
      const c = this.s.charCodeAt(this.i);
      if (c === 0x2c) {
        this.i++;
        this.space();
        continue;
      }
      if (c === 0x5d) {
        this.i++;
        return;
      }
      throw this.unexpected('expected "," or "]"');
    }
  }

  /** Scans a string literal starting at its opening quote; returns its value (needed for names only, cheap otherwise). */
  private string(): string {
    const s = this.s;
    const start = this.i;
    const n = s.length;
    let i = start + 1;
    let escaped = false;
    // Short names and values end within a few characters, where a plain loop is cheapest; longer
    // runs of ordinary characters are skipped by the regex engine, far faster than a JS loop.
    const quick = Math.min(i + 24, n);
    while (i < quick && plain(s.charCodeAt(i))) i++;
    for (;;) {
      let c = s.charCodeAt(i);
      if (plain(c)) {
        PLAIN.lastIndex = i;
        PLAIN.test(s);
        i = PLAIN.lastIndex;
        c = s.charCodeAt(i);
      }
      if (c === 0x22) {
        this.i = i + 1;
        return escaped ? (JSON.parse(s.slice(start, i + 1)) as string) : s.slice(start + 1, i);
      }
      if (c === 0x5c) {
        escaped = true;
        i = this.escape(i);
        continue;
      }
      if (i >= n) throw new Refusal('syntax', `the body ends inside a string that starts at offset ${start}`, start);
      if (c < 0x20) throw new Refusal('syntax', `unescaped control character in a string at offset ${i}`, i);
      // A surrogate (raw ones only occur in string input): a valid pair passes, a lone one is refused.
      const next = s.charCodeAt(i + 1);
      if (c > 0xdbff || next < 0xdc00 || next > 0xdfff) throw new Refusal('lone_surrogate', `lone UTF-16 surrogate in a string at offset ${i}`, i);
      i += 2;
    }
  }

  /** Validates the escape at `i` (a backslash); returns the index after it. */
  private escape(i: number): number {
    const s = this.s;
    const e = s.charCodeAt(i + 1);
    switch (e) {
      case 0x22:
      case 0x5c:
      case 0x2f:
      case 0x62:
      case 0x66:
      case 0x6e:
      case 0x72:
      case 0x74:
        return i + 2;
      case 0x75 /* u */: {
        const unit = this.hex4(i + 2);
        if (unit >= 0xdc00 && unit <= 0xdfff) throw new Refusal('lone_surrogate', `escaped lone UTF-16 surrogate at offset ${i}`, i);
        if (unit >= 0xd800 && unit <= 0xdbff) {
          const low = s.charCodeAt(i + 6) === 0x5c && s.charCodeAt(i + 7) === 0x75 ? this.hex4(i + 8) : -1;
          if (low < 0xdc00 || low > 0xdfff) throw new Refusal('lone_surrogate', `escaped lone UTF-16 surrogate at offset ${i}`, i);
          return i + 12;
        }
        return i + 6;
      }
      default:
        throw new Refusal('syntax', `invalid escape in a string at offset ${i}`, i);
    }
  }

  private hex4(at: number): number {
    let v = 0;
    for (let k = at; k < at + 4; k++) {
      const c = this.s.charCodeAt(k);
      let d: number;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
      else throw new Refusal('syntax', `invalid \\u escape at offset ${at - 2}`, at - 2);
      v = v * 16 + d;
    }
    return v;
  }

  private number(): void {
    const s = this.s;
    const start = this.i;
    NUMBER.lastIndex = start;
    if (!NUMBER.test(s)) throw this.unexpected('expected a number');
    this.i = NUMBER.lastIndex;
    // A digit, "." or exponent right after the match means the grammar was not followed (01, 1., 1e).
    const after = s.charCodeAt(this.i);
    if ((after >= 0x30 && after <= 0x39) || after === 0x2e || after === 0x65 || after === 0x45) throw this.unexpected('in a number');
    // The shortest number a double cannot hold has five characters (1e309); shorter ones skip the conversion.
    if (this.i - start >= 5 && !Number.isFinite(Number(s.slice(start, this.i)))) {
      throw new Refusal('number_range', `number at offset ${start} is too large to represent`, start);
    }
  }
}
