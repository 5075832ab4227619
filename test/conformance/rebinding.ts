import type { IncomingHttpHeaders } from 'node:http';

/**
 * DNS-rebinding protection for an MCP server on a loopback address (the streamable HTTP
 * transport asks servers to validate `Origin`, and local servers to check `Host`): a browser
 * page on another site that resolves its name to 127.0.0.1 sends its own name in both.
 */

/** Host names a loopback server answers to: the loopback names, whatever the port. */
export const LOOPBACK_HOSTNAMES: readonly string[] = ['localhost', '127.0.0.1', '[::1]'];

/** Result of {@link checkHostAndOrigin}: null when the request may proceed, else why not. */
export type RebindingVerdict = null | { status: 403; reason: string };

/** The host name of a `Host` header value (`name[:port]`, IPv6 in brackets), lower-cased. */
function hostnameOf(host: string): string | null {
  try {
    return new URL(`http://${host}`).hostname.toLowerCase();
  } catch {
    return null;
  }
}

/**
 * Refuses a request whose `Host` names a host outside `hostnames`, or that carries an `Origin`
 * whose host is outside `hostnames` (requests without `Origin` are not from a browser page).
 * `hostnames` are bare names (ports do not matter: the attacker's page can pick any).
 */
export function checkHostAndOrigin(headers: IncomingHttpHeaders, hostnames: readonly string[]): RebindingVerdict {
  const allowed = new Set(hostnames.map((h) => h.toLowerCase()));
  const host = headers.host;
  const hostname = host ? hostnameOf(host) : null;
  if (!hostname || !allowed.has(hostname)) return { status: 403, reason: `Host ${JSON.stringify(host ?? '')} is not a name this server answers to` };
  const origin = headers.origin;
  if (origin === undefined) return null;
  let originHost: string | null = null;
  try {
    const u = new URL(origin);
    if (u.protocol === 'http:' || u.protocol === 'https:') originHost = u.hostname.toLowerCase();
  } catch {
    originHost = null;
  }
  if (!originHost || !allowed.has(originHost)) return { status: 403, reason: `Origin ${JSON.stringify(origin)} is not allowed` };
  return null;
}
