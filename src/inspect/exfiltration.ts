import type { Finding, Scanner } from '../dlp/index.js';

/**
 * Exfiltration DLP on what leaves besides the body: the URL (path segments and query values,
 * percent-decoded as the tool will read them) and the request headers that reach the tool. The
 * body is ext_proc's job; this runs in the Check, so routes that skip ext_proc's request phase
 * are covered too.
 */

/** What {@link scanRequestTarget} reads. */
export interface OutsideBody {
  /** Request target (`:path`), query included. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  /** Headers that never reach the tool (removed or replaced by the gateway): not scanned. */
  readonly skipHeader: (name: string) => boolean;
}

/** Pieces are joined with a line break, so a match never spans two of them. */
const SEPARATOR = '\n';

/**
 * Headers whose value the caller does not choose: Envoy generates `x-request-id` (a caller's is
 * replaced, `preserve_external_request_id: false`). Random ids read as digit runs now and then
 * (a UUID whose middle groups are all digits passes a card number's Luhn check about once in a
 * few thousand), so scanning them only blocks honest calls.
 */
const GENERATED_HEADERS: ReadonlySet<string> = new Set(['x-request-id']);

/**
 * A W3C `traceparent` of the exact form (version, 32 + 16 hex ids, flags) carries random ids, not
 * text: like request ids they would trip digit rules at random. A value of any other form is
 * scanned like every other header.
 */
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

function opaqueHeader(name: string, value: string): boolean {
  return GENERATED_HEADERS.has(name) || (name === 'traceparent' && TRACEPARENT.test(value));
}

function decode(s: string, plusIsSpace: boolean): string {
  const t = plusIsSpace && s.includes('+') ? s.replace(/\+/g, ' ') : s;
  if (!t.includes('%')) return t;
  try {
    return decodeURIComponent(t);
  } catch {
    return t;
  }
}

/** The text to scan: decoded path segments, decoded query names and values, header values. */
export function outsideBodyText(req: OutsideBody): string {
  const parts: string[] = [];
  const hash = req.path.indexOf('#');
  const target = hash === -1 ? req.path : req.path.slice(0, hash);
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  for (const segment of path.split('/')) if (segment !== '') parts.push(decode(segment, false));
  if (q !== -1) {
    for (const pair of target.slice(q + 1).split(/[&;]/)) {
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      parts.push(decode(eq === -1 ? pair : pair.slice(0, eq), true));
      if (eq !== -1) parts.push(decode(pair.slice(eq + 1), true));
    }
  }
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith(':') || req.skipHeader(name) || opaqueHeader(name, value)) continue;
    parts.push(value);
  }
  return parts.join(SEPARATOR);
}

/** DLP findings in the URL and forwarded headers of a request. */
export function scanOutsideBody(scanner: Scanner, req: OutsideBody): readonly Finding[] {
  return scanner.scan(outsideBodyText(req));
}
