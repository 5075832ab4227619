/**
 * Removes the exact credential values portcullis injected for a call from what the tool sends
 * back (an error page that echoes "invalid token <token>"), whatever the DLP configuration: the
 * agent must never hold the tool's credential. Each value is matched raw and in the encodings an
 * echo commonly takes (base64, base64url, URL-encoded, JSON-escaped).
 */

/** Shortest value scrubbed: shorter strings would match ordinary text. */
const MIN_VALUE_LENGTH = 8;

/** Replacement for an injected credential found in a response. */
export const SCRUB_MARKER = '[REDACTED:portcullis.injected_credential]';

/** Finds and removes a fixed set of values; see {@link compileScrubber}. */
export interface Scrubber {
  /** True when there is nothing to look for. */
  readonly empty: boolean;
  /** Longest value looked for (a stream must hold back one character less than this). */
  readonly longest: number;
  /** Replaces every occurrence of a value; `count` is how many were found. */
  scrub(text: string): { text: string; count: number };
  /** Where the values occur (for masking bytes in place). */
  find(text: string): { start: number; end: number }[];
}

function forms(value: string): string[] {
  const out = [value];
  const b64 = Buffer.from(value, 'utf8').toString('base64');
  out.push(b64, b64.replace(/=+$/, ''), Buffer.from(value, 'utf8').toString('base64url'));
  const url = encodeURIComponent(value);
  if (url !== value) out.push(url, url.replace(/%20/g, '+'));
  const json = JSON.stringify(value).slice(1, -1);
  if (json !== value) out.push(json);
  return out;
}

/** A scrubber that finds nothing. */
export const NO_SCRUB: Scrubber = { empty: true, longest: 0, scrub: (text) => ({ text, count: 0 }), find: () => [] };

/**
 * Compiles the values of one call into a scrubber. Longer forms are tried first at each
 * position, so a value that contains another is replaced whole.
 */
export function compileScrubber(values: Iterable<string>): Scrubber {
  const set = new Set<string>();
  for (const v of values) {
    if (v.length < MIN_VALUE_LENGTH) continue;
    for (const f of forms(v)) if (f.length >= MIN_VALUE_LENGTH) set.add(f);
  }
  if (set.size === 0) return NO_SCRUB;
  const needles = [...set].sort((a, b) => b.length - a.length);
  return {
    empty: false,
    longest: needles[0]!.length,
    scrub(text: string): { text: string; count: number } {
      let count = 0;
      let out = text;
      for (const n of needles) {
        if (!out.includes(n)) continue;
        const parts = out.split(n);
        count += parts.length - 1;
        out = parts.join(SCRUB_MARKER);
      }
      return { text: out, count };
    },
    find(text: string): { start: number; end: number }[] {
      const out: { start: number; end: number }[] = [];
      for (const n of needles) {
        for (let i = text.indexOf(n); i >= 0; i = text.indexOf(n, i + n.length)) out.push({ start: i, end: i + n.length });
      }
      return out;
    },
  };
}

/** Compiled scrubbers by their values: the same few credentials recur on every call of a tool. */
const cache = new Map<string, Scrubber>();
const CACHE_LIMIT = 256;

/** {@link compileScrubber}, remembered for the same values (a rotated secret gets a new entry). */
export function scrubberFor(values: readonly string[]): Scrubber {
  if (values.length === 0) return NO_SCRUB;
  const key = values.join('\u0000');
  let s = cache.get(key);
  if (!s) {
    s = compileScrubber(values);
    if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value!);
    cache.set(key, s);
  }
  return s;
}
