/** How an identity was proven. */
export type AuthMethod = 'jwt' | 'mtls' | 'api_key' | 'signature';

/**
 * The verified caller: always an agent, and when the agent acts for someone, that user.
 * Built only from verified credentials; never from caller-supplied headers.
 * Field names are the policy contract (`input.identity`).
 */
export interface Principal {
  /** Agent (workload) making the call. */
  readonly agent: string | null;
  readonly agent_version: string | null;
  /** End user the agent acts for (delegation), if any. */
  readonly user: string | null;
  readonly tenant: string | null;
  readonly roles: readonly string[];
  /** Every method that contributed, in evaluation order (e.g. `["mtls","jwt"]`). */
  readonly methods: readonly AuthMethod[];
  /** JWT issuer, mTLS principal, API key id or signer id (never a secret). */
  readonly proven_by: readonly string[];
  /**
   * The bearer token's `jti` (JWT ID) when it has a string one, else null: what a revocation list
   * in policy data names to revoke one token (`data.portcullis.revoked.jti`).
   */
  readonly jti?: string | null;
}
