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
    if (name.startsWith(':') || req.skipHeader(name)) continue;
    parts.push(value);
  }
  return parts.join(SEPARATOR);
}

/** DLP findings in the URL and forwarded headers of a request. */
export function scanOutsideBody(scanner: Scanner, req: OutsideBody): readonly Finding[] {
  return scanner.scan(outsideBodyText(req));
}
