/**
 * Subject alternative names of a peer certificate, from Node's `subjectaltname` text
 * (`URI:spiffe://a/b, DNS:envoy, IP Address:10.0.0.1`). Values that contain a separator are
 * JSON-quoted by Node (`URI:"spiffe://a,b"`); those are unquoted here.
 */

/** One SAN: its type as Node names it (`URI`, `DNS`, `IP Address`, `email`, ...) and its value. */
export interface San {
  readonly type: string;
  readonly value: string;
}

/** Parses a `subjectaltname` string; malformed entries are skipped, never guessed at. */
export function parseSubjectAltName(text: string | undefined): San[] {
  if (!text) return [];
  const out: San[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon).trim();
    let j = colon + 1;
    let value: string;
    if (text[j] === '"') {
      // A JSON string: find its closing quote (skipping escaped characters).
      let k = j + 1;
      while (k < text.length && text[k] !== '"') k += text[k] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(text.slice(j, k + 1)) as string;
      } catch {
        return out;
      }
      j = k + 1;
    } else {
      const comma = text.indexOf(', ', j);
      const end = comma < 0 ? text.length : comma;
      value = text.slice(j, end);
      j = end;
    }
    out.push({ type, value });
    const next = text.indexOf(', ', j);
    if (next < 0) break;
    i = next + 2;
  }
  return out;
}

/** SAN types a pinned name may match: identities a CA issues to services. */
const PINNABLE = new Set(['URI', 'DNS', 'IP Address']);

/** Whether a URI, DNS or IP SAN of the certificate is exactly one of `allowed`. */
export function hasAllowedSan(text: string | undefined, allowed: ReadonlySet<string>): boolean {
  return parseSubjectAltName(text).some((s) => PINNABLE.has(s.type) && allowed.has(s.value));
}
