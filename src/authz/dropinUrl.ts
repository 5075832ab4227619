/**
 * The two URL readings OPA-Envoy's input is built from, with the same results and errors as the
 * Go standard library it uses: `url.Parse` of the request path (for `parsed_path` and the raw
 * query) and `url.ParseQuery` (for `parsed_query` and form bodies). Kept apart from the
 * gateway's own path handling on purpose: drop-in mode must read a path exactly as the reference
 * does, `%2F` included (it decodes to `/` before splitting, so it adds a segment).
 */

/** Name of each query parameter to all its values, in order. */
export type GoQuery = Record<string, string[]>;

/** Go's `%q` rendering of a string (the form Go error messages quote URLs in). */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0) as number;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (c === 7) out += '\\a';
    else if (c === 8) out += '\\b';
    else if (c === 12) out += '\\f';
    else if (c === 10) out += '\\n';
    else if (c === 13) out += '\\r';
    else if (c === 9) out += '\\t';
    else if (c === 11) out += '\\v';
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

const HEX = /^[0-9A-Fa-f]{2}$/;

/**
 * Go's `unescape`: `%XX` to the byte, `+` to a space only for query components. Returns the
 * error text Go would give (`invalid URL escape "%zz"`) instead of throwing.
 */
export function goUnescape(s: string, query: boolean): { ok: true; value: string } | { ok: false; error: string } {
  if (!s.includes('%') && !(query && s.includes('+'))) return { ok: true, value: s };
  const bytes: number[] = [];
  const src = Buffer.from(s, 'utf8');
  for (let i = 0; i < src.length; i++) {
    const b = src[i] as number;
    if (b === 0x25 /* % */) {
      const hex = src.subarray(i + 1, i + 3).toString('latin1');
      if (!HEX.test(hex)) {
        const bad = src.subarray(i, Math.min(i + 3, src.length)).toString('utf8');
        return { ok: false, error: `invalid URL escape ${goQuote(bad)}` };
      }
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (b === 0x2b /* + */ && query) bytes.push(0x20);
    else bytes.push(b);
  }
  return { ok: true, value: Buffer.from(bytes).toString('utf8') };
}

/**
 * Go's `url.ParseQuery`: pairs split on `&`, a pair holding `;` or a bad escape is skipped, and
 * the first such problem is reported as `error` (the values parsed so far are still returned).
 */
export function goParseQuery(query: string): { values: GoQuery; error: string | null } {
  const values: GoQuery = Object.create(null);
  let error: string | null = null;
  for (const pair of query === '' ? [] : query.split('&')) {
    if (pair.includes(';')) {
      error ??= 'invalid semicolon separator in query';
      continue;
    }
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const key = goUnescape(eq === -1 ? pair : pair.slice(0, eq), true);
    if (!key.ok) {
      error ??= key.error;
      continue;
    }
    const value = goUnescape(eq === -1 ? '' : pair.slice(eq + 1), true);
    if (!value.ok) {
      error ??= value.error;
      continue;
    }
    (values[key.value] ??= []).push(value.value);
  }
  return { values, error };
}

/** What `url.Parse` yields for a request path: the decoded path and the raw query. */
export type GoUrl = { ok: true; path: string; rawQuery: string } | { ok: false; error: string };

// eslint-disable-next-line no-control-regex
const CTL = /[\x00-\x1f\x7f]/;

/**
 * Go's `url.Parse` as far as OPA-Envoy reads it (`Path`, `RawQuery`), errors worded as Go words
 * them (`parse "<url>": <why>`). A leading `//` starts an authority (host), as in Go.
 */
export function goParseUrl(raw: string): GoUrl {
  const hash = raw.indexOf('#');
  const u = hash === -1 ? raw : raw.slice(0, hash);
  const fail = (url: string, why: string): GoUrl => ({ ok: false, error: `parse ${goQuote(url)}: ${why}` });
  if (CTL.test(u)) return fail(u, 'net/url: invalid control character in URL');
  if (u === '*') return { ok: true, path: '*', rawQuery: '' };
  let rest = u;
  let scheme = '';
  for (let i = 0; i < rest.length; i++) {
    const c = rest[i] as string;
    if (/[A-Za-z]/.test(c)) continue;
    if (/[0-9+.-]/.test(c)) {
      if (i === 0) break;
      continue;
    }
    if (c === ':') {
      if (i === 0) return fail(u, 'missing protocol scheme');
      scheme = rest.slice(0, i).toLowerCase();
      rest = rest.slice(i + 1);
    }
    break;
  }
  let rawQuery = '';
  if (rest.endsWith('?') && rest.indexOf('?') === rest.length - 1) rest = rest.slice(0, -1);
  else {
    const q = rest.indexOf('?');
    if (q !== -1) {
      rawQuery = rest.slice(q + 1);
      rest = rest.slice(0, q);
    }
  }
  if (!rest.startsWith('/')) {
    // An opaque URL (`mailto:x`): no path at all.
    if (scheme !== '') return { ok: true, path: '', rawQuery };
    const first = rest.split('/')[0] as string;
    if (first.includes(':')) return fail(u, 'first path segment in URL cannot contain colon');
  }
  if ((scheme !== '' || !rest.startsWith('///')) && rest.startsWith('//')) {
    const slash = rest.indexOf('/', 2);
    const authority = slash === -1 ? rest.slice(2) : rest.slice(2, slash);
    const host = authority.slice(authority.lastIndexOf('@') + 1);
    if (host.includes('%')) {
      const h = goUnescape(host, false);
      if (!h.ok) return fail(u, h.error);
    }
    rest = slash === -1 ? '' : rest.slice(slash);
  }
  const path = goUnescape(rest, false);
  if (!path.ok) return fail(u, path.error);
  if (hash !== -1) {
    const frag = goUnescape(raw.slice(hash + 1), false);
    if (!frag.ok) return fail(raw, frag.error);
  }
  return { ok: true, path: path.value, rawQuery };
}

/** Go's `strconv.ParseInt(s, 10, 64)`, or the error text it returns. */
export function goParseInt(s: string): { ok: true; value: bigint } | { ok: false; error: string } {
  if (!/^[+-]?[0-9]+$/.test(s)) return { ok: false, error: `strconv.ParseInt: parsing ${goQuote(s)}: invalid syntax` };
  const value = BigInt(s);
  if (value > 9223372036854775807n || value < -9223372036854775808n) return { ok: false, error: `strconv.ParseInt: parsing ${goQuote(s)}: value out of range` };
  return { ok: true, value };
}
