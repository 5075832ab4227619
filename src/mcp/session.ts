import { createHmac, timingSafeEqual } from 'node:crypto';
import { GatewayError } from '../errors.js';
import type { HandoffKey } from '../authz/handoff.js';
import type { Principal } from '../identity/types.js';

/**
 * MCP sessions (Streamable HTTP, protocol versions up to 2025-11-25) bound to the principal that
 * opened them, without shared state between replicas.
 *
 * The session id a server returns (`Mcp-Session-Id` on the `initialize` response) is rewritten
 * for the agent into `ps1.<server id>.<mac>`, where `mac` is the base64url HMAC-SHA256, under a
 * key derived from the hand-off key, of (principal identity, logical tool, server id). Any
 * replica verifies it on each request and gives the tool its own id back; the same id presented
 * by another principal, for another tool, or altered, does not verify and is answered with the
 * spec's "session not found" (404).
 */

/** Header carrying the session id (header names are case-insensitive; Envoy lower-cases them). */
export const SESSION_HEADER = 'mcp-session-id';
/** Tag of the binding format; a change of the signed text gets a new tag. */
const TAG = 'ps1';
/** Label the session key is derived under (see HandoffKey.derive). */
const KEY_LABEL = 'portcullis/mcp-session/v1';
/** Length of a base64url HMAC-SHA256. */
const MAC_CHARS = 43;
/** Longest server session id accepted (a header value, kept well under Envoy's header limits). */
const MAX_SERVER_ID = 1024;
/** Visible ASCII only (0x21–0x7E), as the transport spec requires of session ids. */
const VISIBLE_ASCII = /^[\x21-\x7e]+$/;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/**
 * Who a session belongs to: the issuers that vouched for the caller (JWT issuer, mTLS principal,
 * API key or signer id), the user, the agent and the tenant. A user id is unique only within its
 * issuer, and the same user acting through another agent or tenant is another party, so all four
 * count. Roles and the token id do not: a refreshed token keeps its session, and authorization is
 * decided again on every request anyway. Without a principal (identity optional) the identity is
 * "anonymous": such a session is refused to every identified caller.
 */
export function sessionIdentity(principal: Principal | null): string {
  if (!principal) return 'anonymous';
  const issuers = [...new Set(principal.proven_by)].sort();
  return JSON.stringify([issuers, principal.user, principal.agent, principal.tenant]);
}

/** Outcome of {@link SessionBinder.unwrap}. */
export type Unwrapped =
  | { readonly ok: true; readonly serverId: string }
  | { readonly ok: false; readonly problem: 'malformed' | 'foreign' };

function mac(key: Buffer, identity: string, tool: string, serverId: string): Buffer {
  return createHmac('sha256', key).update(JSON.stringify([TAG, identity, tool, serverId]), 'utf8').digest();
}

/** Signs and verifies session bindings with a sub-key of the hand-off key (rotation-aware). */
export class SessionBinder {
  constructor(private readonly key: HandoffKey) {}

  /**
   * The id the agent gets for the server's `serverId`. Throws (fail closed) when the server's id
   * is not visible ASCII or implausibly long: it could not be carried back safely.
   */
  bind(identity: string, tool: string, serverId: string): string {
    if (serverId.length > MAX_SERVER_ID || !VISIBLE_ASCII.test(serverId)) {
      throw new GatewayError('internal', `tool "${tool}" returned an MCP session id that is not visible ASCII of at most ${MAX_SERVER_ID} characters`, {
        rule: 'mcp.session_server_id',
      });
    }
    const { current } = this.key.derive(KEY_LABEL);
    return `${TAG}.${serverId}.${mac(current, identity, tool, serverId).toString('base64url')}`;
  }

  /** The server's id inside `presented`, when it was bound to `identity` for `tool`. */
  unwrap(identity: string, tool: string, presented: string): Unwrapped {
    const value = presented.trim();
    const dot = value.lastIndexOf('.');
    if (!value.startsWith(`${TAG}.`) || dot <= TAG.length + 1 || !VISIBLE_ASCII.test(value)) return { ok: false, problem: 'malformed' };
    const serverId = value.slice(TAG.length + 1, dot);
    const sig = value.slice(dot + 1);
    if (sig.length !== MAC_CHARS || !BASE64URL.test(sig) || serverId.length > MAX_SERVER_ID) return { ok: false, problem: 'malformed' };
    const given = Buffer.from(sig, 'base64url');
    const { current, previous } = this.key.derive(KEY_LABEL);
    if (timingSafeEqual(given, mac(current, identity, tool, serverId))) return { ok: true, serverId };
    if (previous && timingSafeEqual(given, mac(previous, identity, tool, serverId))) return { ok: true, serverId };
    return { ok: false, problem: 'foreign' };
  }
}

/** Binders per hand-off key (one per configuration load). */
const binders = new WeakMap<HandoffKey, SessionBinder>();

/** The session binder of a hand-off key. */
export function sessionBinder(key: HandoffKey): SessionBinder {
  let b = binders.get(key);
  if (!b) {
    b = new SessionBinder(key);
    binders.set(key, b);
  }
  return b;
}

/**
 * Checks the session id a request to an MCP tool presents and returns the server's own id to
 * send upstream, or `null` when the request carries none (the server answers that itself).
 * An id that is not one of the gateway's bindings, or is bound to another principal or tool,
 * is "session not found": 404, as the server would answer an unknown session.
 */
export function resolveSession(binder: SessionBinder, identity: string, tool: string, presented: string | undefined): string | null {
  if (presented === undefined) return null;
  const r = binder.unwrap(identity, tool, presented);
  if (r.ok) return r.serverId;
  const why = r.problem === 'malformed' ? 'is not a session id this gateway issued' : 'belongs to no session of this caller';
  throw new GatewayError('invalid_request', `MCP session not found: the Mcp-Session-Id ${why}; start a new session with an initialize request without Mcp-Session-Id`, {
    rule: r.problem === 'malformed' ? 'mcp.session_invalid' : 'mcp.session_foreign',
    httpStatus: 404,
  });
}
