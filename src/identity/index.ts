import type { IdentityConfig } from '../config/types.js';
import type { SecretStore } from '../credentials/secrets.js';
import { ApiKeyVerifier } from './apiKey.js';
import { unauthenticated, type IdentityClaim } from './claim.js';
import { bearerToken, JwtVerifier, type ResourceBinding } from './jwt.js';
import { MtlsVerifier } from './mtls.js';
import type { SharedStore } from '../limits/store.js';
import { SignatureVerifier } from './signature.js';
import type { AuthMethod, Principal } from './types.js';

export type { AuthMethod, Principal } from './types.js';
export type { ResourceBinding } from './jwt.js';

/** What identity verification reads from a Check request. */
export interface IdentityRequest {
  /** Lower-case header names, as Envoy sends them. */
  readonly headers: Readonly<Record<string, string>>;
  /** `attributes.source.principal`: the mTLS peer identity Envoy verified. */
  readonly sourcePrincipal: string | undefined;
  /** Request body as forwarded by ext_authz. */
  readonly rawBody: Buffer | undefined;
  /** True when ext_authz forwarded only part of the body. */
  readonly bodyTruncated: boolean;
  readonly toolName: string | null;
  /**
   * The tool's OAuth protected resource, when it is one: a bearer JWT must then be issued for it
   * (RFC 8707, see {@link ResourceBinding}) instead of for one of its issuer's `audiences`.
   */
  readonly resource?: ResourceBinding | null | undefined;
  readonly nowMs: number;
  /** HTTP method and path (with query) as Envoy reports them; signatures of scheme `v1` cover them. */
  readonly method?: string | undefined;
  readonly path?: string | undefined;
}

/** Optional collaborators of {@link IdentityVerifier.create}. */
export interface IdentityOptions {
  /** Where seen request signatures are recorded (default: one in-memory store per process). */
  readonly replayStore?: SharedStore;
}

/**
 * Builds the caller's {@link Principal} from verified credentials only: mTLS peer, API key and
 * request signature name the agent; a bearer JWT names the user (tenant, roles) and may name the
 * agent. Every credential that is presented must verify; there is no falling back to another
 * method. Headers such as `x-user-id` are never read.
 */
export class IdentityVerifier {
  /** Lower-case header names that carry credentials (stripped before the upstream). */
  readonly credentialHeaders: readonly string[];

  private constructor(
    private readonly mtls: MtlsVerifier,
    private readonly apiKeys: ApiKeyVerifier,
    private readonly apiKeyHeader: string,
    private readonly signatures: SignatureVerifier,
    private readonly jwt: JwtVerifier,
  ) {
    const headers: string[] = [];
    if (jwt.enabled) headers.push('authorization');
    if (apiKeys.enabled) headers.push(apiKeyHeader);
    headers.push(...signatures.headerNames);
    this.credentialHeaders = Object.freeze([...new Set(headers)]);
  }

  /**
   * Compiles every method from configuration. Throws a descriptive Error when the configuration
   * cannot be trusted (missing or invalid JWKS file, `none`/HS* algorithms, duplicate mappings).
   */
  static async create(cfg: IdentityConfig, baseDir: string, secrets: SecretStore, opts: IdentityOptions = {}): Promise<IdentityVerifier> {
    const mtls = new MtlsVerifier(cfg.mtls);
    const apiKeys = new ApiKeyVerifier(cfg.api_keys);
    const signatures = new SignatureVerifier(cfg.signatures, secrets, opts.replayStore);
    const jwt = await JwtVerifier.create(cfg.jwt, baseDir, { tokenCacheSize: cfg.token_cache_size });
    return new IdentityVerifier(mtls, apiKeys, (cfg.api_key_header || 'x-api-key').toLowerCase(), signatures, jwt);
  }

  /**
   * Verifies every credential on the request and merges them. Returns null when none was
   * presented; throws `unauthenticated` (or `forbidden` for a signer limited to other tools) when
   * a presented credential does not verify or two credentials disagree.
   */
  async verify(req: IdentityRequest): Promise<Principal | null> {
    const claims: IdentityClaim[] = [];
    const peer = this.mtls.verify(req.sourcePrincipal);
    if (peer) claims.push(peer);
    if (this.apiKeys.enabled) {
      const key = req.headers[this.apiKeyHeader];
      if (key !== undefined) claims.push(this.apiKeys.verify(key));
    }
    if (this.signatures.enabled) claims.push(...(await this.signatures.verify(req)));
    // Without a configured issuer the authorization header is not the gateway's to judge: an
    // OPA-Envoy policy may decode the token itself.
    if (this.jwt.enabled) {
      const authorization = req.headers.authorization;
      if (authorization !== undefined) claims.push(await this.jwt.verify(bearerToken(authorization), req.nowMs, req.resource ?? null));
    }
    return claims.length === 0 ? null : merge(claims);
  }

  /** Stops watching key files. */
  close(): void {
    this.jwt.close();
  }
}

/** Merges per-method claims; conflicting agents or tenants mean the credentials do not belong together. */
function merge(claims: readonly IdentityClaim[]): Principal {
  const agent = agree(claims, (c) => c.agent, 'agent');
  const tenant = agree(claims, (c) => c.tenant, 'tenant');
  const roles = new Set<string>();
  for (const c of claims) for (const r of c.roles) roles.add(r);
  return {
    agent,
    agent_version: claims.find((c) => c.agentVersion !== null)?.agentVersion ?? null,
    user: claims.find((c) => c.user !== null)?.user ?? null,
    tenant,
    roles: [...roles],
    methods: [...new Set<AuthMethod>(claims.map((c) => c.method))],
    proven_by: claims.map((c) => c.provenBy),
    jti: claims.find((c) => typeof c.tokenId === 'string')?.tokenId ?? null,
  };
}

/** The one value every claim that states `field` agrees on, or null if none states it. */
function agree(claims: readonly IdentityClaim[], pick: (c: IdentityClaim) => string | null, field: string): string | null {
  let first: IdentityClaim | null = null;
  for (const c of claims) {
    const v = pick(c);
    if (v === null) continue;
    if (first === null) {
      first = c;
    } else if (pick(first) !== v) {
      throw unauthenticated(c.method, `credentials disagree on the ${field}: ${first.method} says "${pick(first)}", ${c.method} says "${v}"`);
    }
  }
  return first === null ? null : pick(first);
}
