import { GatewayError } from '../errors.js';
import type { AuthMethod } from './types.js';

/**
 * What one verified credential says about the caller. Each method produces one of these; the
 * verifier merges them into a {@link import('./types.js').Principal}.
 */
export interface IdentityClaim {
  readonly method: AuthMethod;
  /** Issuer, peer principal, key id or signer id: names the proof, never contains a secret. */
  readonly provenBy: string;
  readonly agent: string | null;
  readonly agentVersion: string | null;
  readonly user: string | null;
  readonly tenant: string | null;
  readonly roles: readonly string[];
  /** Identifier of the token itself (JWT `jti`), when the credential has one. */
  readonly tokenId?: string | null;
}

/** Rule name reported with every denial of a method (`identity.jwt`, `identity.api_key`, ...). */
export function ruleFor(method: AuthMethod): string {
  return `identity.${method}`;
}

/** The denial for a credential that was presented but did not verify. */
export function unauthenticated(method: AuthMethod, message: string): GatewayError {
  return new GatewayError('unauthenticated', message, { rule: ruleFor(method) });
}

/** Caller-controlled text echoed in an error message, shortened and stripped of control characters. */
export function quote(value: string, max = 120): string {
  // eslint-disable-next-line no-control-regex
  const clean = value.replace(/[\u0000-\u001f\u007f]/g, '?');
  return JSON.stringify(clean.length > max ? `${clean.slice(0, max)}...` : clean);
}
