import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { errors } from 'jose';
import type { JwtIssuerConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { log } from '../log.js';
import { quote, ruleFor, unauthenticated, type IdentityClaim } from './claim.js';
import { FileKeySource, JWT_ALGORITHMS, remoteKeySource, type KeySource } from './jwks.js';
import { decodeCompact, headerProblem, MIN_RSA_BITS, verifySignature, type DecodedJws, type KeyMatch } from './jws.js';
import { LruMap } from './lru.js';

export { JWT_ALGORITHMS } from './jwks.js';

/** Largest clock skew an issuer may allow; a longer one would silently extend every token's life. */
export const MAX_CLOCK_SKEW_S = 300;

/** Verified tokens remembered when a configuration does not say (`identity.token_cache_size`). */
export const DEFAULT_TOKEN_CACHE_SIZE = 10_000;

/** Claim names used when a configuration omits some. */
const DEFAULT_CLAIMS: JwtIssuerConfig['claims'] = { user: 'sub', tenant: 'tenant', roles: 'roles', agent: 'azp', agent_version: 'agent_version' };

const RULE = ruleFor('jwt');

type JwtPayload = Readonly<Record<string, unknown>>;

interface Issuer {
  readonly cfg: JwtIssuerConfig;
  readonly claims: JwtIssuerConfig['claims'];
  readonly skewS: number;
  readonly keys: KeySource;
}

/**
 * RFC 8707 audience binding of an OAuth protected resource (a tool with `oauth`): a JWT is
 * accepted for it only when its `aud` (a string, or an array of which one element is enough)
 * equals `resource` exactly and its issuer is one of `issuers`. The issuer's own `audiences`
 * do not count for such a tool, and `resource` does not count for any other tool.
 */
export interface ResourceBinding {
  /** The resource identifier as configured (`tools[].oauth.resource`). */
  readonly resource: string;
  /** Issuers whose tokens the resource accepts (`tools[].oauth.authorization_servers`). */
  readonly issuers: readonly string[];
}

/** A token that verified: what it proved, and what must still hold to reuse that. */
interface CachedToken {
  readonly claim: IdentityClaim;
  readonly issuer: Issuer;
  /** The token's `aud`: the audience is checked on every use, since it depends on the tool. */
  readonly aud: unknown;
  /** Key set version the signature was checked under. */
  readonly keysVersion: number;
  readonly exp: number;
  readonly nbf: number | undefined;
}

/** Options of {@link JwtVerifier.create}. */
export interface JwtVerifierOptions {
  /** Verified tokens remembered, least recently used evicted first; 0 verifies every request. */
  readonly tokenCacheSize?: number;
}

/**
 * Parses `Authorization: Bearer <jwt>`. Any other shape is a credential the gateway cannot
 * verify, so it is refused rather than ignored.
 */
export function bearerToken(header: string): string {
  const m = /^bearer +([A-Za-z0-9_\-.=+/]+) *$/i.exec(header.trim());
  if (m) return m[1] as string;
  const scheme = /^(\S+)/.exec(header.trim())?.[1];
  if (scheme && scheme.toLowerCase() !== 'bearer') {
    throw unauthenticated('jwt', `the authorization header uses scheme ${quote(scheme, 20)}; only "Bearer <jwt>" is accepted`);
  }
  throw unauthenticated('jwt', 'the authorization header must be "Bearer <jwt>"');
}

/**
 * Verifies bearer JWTs against the configured issuers. The issuer is chosen by the token's
 * unverified `iss`, then everything is checked with that issuer's keys and settings: signature
 * (pinned asymmetric algorithms, node:crypto against keys imported at load), audience,
 * `exp` (required), `nbf`, bounded clock skew.
 *
 * Tokens that verified are remembered by their SHA-256 in a bounded LRU. A remembered token is
 * accepted again only while its `exp`/`nbf` still hold at the request's time (same skew) and its
 * issuer's key set is the one it was verified under; a JWKS reload or rotation invalidates it, and
 * a configuration reload builds a new verifier with an empty cache.
 */
export class JwtVerifier {
  private readonly cache: LruMap<string, CachedToken>;

  private constructor(
    private readonly issuers: ReadonlyMap<string, Issuer>,
    cacheSize: number,
  ) {
    this.cache = new LruMap(cacheSize);
  }

  /**
   * Loads every issuer's keys. Throws a descriptive Error if an issuer is misconfigured or its
   * JWKS file is missing or invalid; remote JWKS are fetched lazily (the IdP may be down at start).
   */
  static async create(configs: readonly JwtIssuerConfig[], baseDir: string, options: JwtVerifierOptions = {}): Promise<JwtVerifier> {
    const cacheSize = options.tokenCacheSize ?? DEFAULT_TOKEN_CACHE_SIZE;
    if (!Number.isInteger(cacheSize) || cacheSize < 0) throw new Error(`identity.token_cache_size must be a non-negative integer, got ${cacheSize}`);
    const issuers = new Map<string, Issuer>();
    // Late-bound: key sources are built before the verifier that owns the cache.
    let onReload = (): void => undefined;
    try {
      configs.forEach((cfg, i) => {
        const where = `identity.jwt[${i}] (${cfg.issuer})`;
        if (issuers.has(cfg.issuer)) throw new Error(`${where}: issuer is configured twice`);
        checkIssuerConfig(cfg, where);
        const keys = cfg.jwks_file
          ? new FileKeySource(resolve(baseDir, cfg.jwks_file), cfg.jwks_file, where, () => onReload())
          : remoteKeySource(cfg.jwks_url as string, cfg.issuer);
        issuers.set(cfg.issuer, { cfg, claims: { ...DEFAULT_CLAIMS, ...cfg.claims }, skewS: cfg.clock_skew_s, keys });
      });
    } catch (err) {
      for (const issuer of issuers.values()) issuer.keys.close();
      throw err;
    }
    const verifier = new JwtVerifier(issuers, cacheSize);
    // Stale entries would be refused anyway (version check); clearing frees them at once.
    onReload = () => verifier.cache.clear();
    return verifier;
  }

  /** Whether any issuer is configured. */
  get enabled(): boolean {
    return this.issuers.size > 0;
  }

  /** Verified tokens currently remembered. */
  get cachedTokens(): number {
    return this.cache.size;
  }

  /**
   * Verifies a compact JWT at time `nowMs`, for the protected resource `resource` when the call
   * goes to one (else for one of the issuer's audiences); throws `unauthenticated` with the
   * precise reason.
   */
  async verify(token: string, nowMs: number, resource: ResourceBinding | null = null): Promise<IdentityClaim> {
    if (!Number.isFinite(nowMs)) throw new TypeError('nowMs must be a finite number');
    const cacheKey = this.cache.capacity > 0 ? createHash('sha256').update(token).digest('base64') : null;
    if (cacheKey !== null) {
      const hit = this.cache.get(cacheKey);
      if (hit !== undefined) {
        if (stillValid(hit, nowMs)) {
          checkAudience(hit.issuer, hit.aud, resource);
          return hit.claim;
        }
        // Verify again from scratch: the precise reason (expired, key gone) comes from there.
        this.cache.delete(cacheKey);
      }
    }
    const jws = decodeCompact(token);
    if (!jws) throw unauthenticated('jwt', 'the bearer token is not a well-formed JWT (header.payload.signature, base64url JSON)');
    const issuer = this.selectIssuer(jws);
    const alg = jws.header.alg as string;
    const problem = headerProblem(jws.header);
    if (problem !== null) throw unauthenticated('jwt', `the bearer token is malformed: ${problem}`);

    const { match, keysVersion } = await resolveKey(issuer, alg, jws);
    const iss = quote(issuer.cfg.issuer);
    if (match.kind === 'none') throw unauthenticated('jwt', `no signing key of issuer ${iss} matches the bearer token (unknown "kid" or key type)`);
    if (match.kind === 'many') throw unauthenticated('jwt', 'the bearer token signature is invalid');
    const signature = await verifySignature(alg, match.key, jws);
    if (signature === 'weak-key') throw unauthenticated('jwt', `the bearer token could not be verified: the signing key of issuer ${iss} is shorter than ${MIN_RSA_BITS} bits`);
    if (signature !== 'valid') throw unauthenticated('jwt', 'the bearer token signature is invalid');

    const { exp, nbf } = checkClaims(issuer, jws.payload, nowMs, resource);
    const claim = toClaim(issuer, jws.payload);
    // Stamped with the key set the key came from; if that set was replaced since, do not keep it.
    if (cacheKey !== null && keysVersion !== null && issuer.keys.isCurrent(keysVersion)) {
      this.cache.set(cacheKey, { claim, issuer, aud: jws.payload.aud, keysVersion, exp, nbf });
    }
    return claim;
  }

  /** Stops watching JWKS files and forgets every remembered token. */
  close(): void {
    for (const issuer of this.issuers.values()) issuer.keys.close();
    this.cache.clear();
  }

  private selectIssuer(jws: DecodedJws): Issuer {
    const { alg } = jws.header;
    const { iss } = jws.payload;
    if (typeof iss !== 'string' || iss === '') throw unauthenticated('jwt', 'the bearer token has no "iss" claim');
    const issuer = this.issuers.get(iss);
    if (!issuer) throw unauthenticated('jwt', `the bearer token issuer ${quote(iss)} is not trusted`);
    if (typeof alg !== 'string' || !issuer.cfg.algorithms.includes(alg)) {
      const shown = typeof alg === 'string' ? quote(alg, 20) : 'missing';
      throw unauthenticated('jwt', `the bearer token algorithm ${shown} is not accepted for issuer ${quote(iss)}; accepted: ${issuer.cfg.algorithms.join(', ')}`);
    }
    return issuer;
  }
}

/** Whether a remembered token may be accepted at `nowMs` without verifying it again. */
function stillValid(hit: CachedToken, nowMs: number): boolean {
  const now = Math.floor(nowMs / 1000);
  const skew = hit.issuer.skewS;
  if (hit.exp <= now - skew) return false;
  if (hit.nbf !== undefined && hit.nbf > now + skew) return false;
  return hit.issuer.keys.isCurrent(hit.keysVersion);
}

/**
 * The issuer's key for the token, and the key set version it was chosen from (null when the set
 * kept changing meanwhile: the result may be used once but not cached). An unknown key re-reads
 * the keys once (rotation). Key source failures (remote JWKS) become precise denials.
 */
async function resolveKey(issuer: Issuer, alg: string, jws: DecodedJws): Promise<{ match: KeyMatch; keysVersion: number | null }> {
  let refreshed = false;
  let match: KeyMatch = { kind: 'none' };
  for (let attempt = 0; attempt < 3; attempt++) {
    const version = issuer.keys.version;
    try {
      match = await issuer.keys.select(alg, jws);
    } catch (err) {
      throw describeFailure(err, issuer);
    }
    if (match.kind === 'none' && !refreshed) {
      refreshed = true;
      if (await issuer.keys.refresh()) continue;
    }
    // A remote fetch may land while jose picks the key: pick again from the set now current.
    if (issuer.keys.version === version) return { match, keysVersion: version };
  }
  return { match, keysVersion: null };
}

/**
 * Checks the registered claims in jose's order and with its rules: `iss`, `aud` and `exp` present,
 * `aud` (a string or an array) names an accepted audience, `nbf` not after now + skew, `exp`
 * after now - skew. One rule is stricter than jose: `iat`, `nbf` and `exp` must be finite numbers
 * when present. JSON numbers such as `1e400` parse to Infinity, which jose takes as a date (an
 * `exp` that never comes); here they are invalid. Returns the times a cache hit re-checks.
 */
function checkClaims(issuer: Issuer, payload: JwtPayload, nowMs: number, resource: ResourceBinding | null): { exp: number; nbf: number | undefined } {
  for (const claim of ['iss', 'aud', 'exp']) {
    if (!Object.hasOwn(payload, claim)) throw unauthenticated('jwt', `the bearer token has no "${claim}" claim, which is required`);
  }
  checkAudience(issuer, payload.aud, resource);
  const now = Math.floor(nowMs / 1000);
  const skew = issuer.skewS;
  numericDate(payload, 'iat');
  const nbf = numericDate(payload, 'nbf');
  if (nbf !== undefined && nbf > now + skew) {
    throw unauthenticated('jwt', `the bearer token is not valid before ${isoTime(nbf)} (clock skew allowed: ${skew}s)`);
  }
  const exp = numericDate(payload, 'exp') as number;
  if (exp <= now - skew) throw unauthenticated('jwt', `the bearer token expired at ${isoTime(exp)} (clock skew allowed: ${skew}s)`);
  return { exp, nbf };
}

/** Whether a JWT `aud` (a string or an array of strings) contains `expected`. */
function audienceContains(aud: unknown, expected: string): boolean {
  return typeof aud === 'string' ? aud === expected : Array.isArray(aud) && aud.includes(expected);
}

/**
 * The audience rule: for a protected resource, `aud` must contain the resource and the issuer
 * must be one of its authorization servers (see {@link ResourceBinding}); otherwise `aud` must
 * contain one of the issuer's configured audiences.
 */
function checkAudience(issuer: Issuer, aud: unknown, resource: ResourceBinding | null): void {
  if (resource === null) {
    const audiences = issuer.cfg.audiences;
    if (!audiences.some((a) => audienceContains(aud, a))) {
      throw unauthenticated('jwt', `the bearer token audience is not accepted; expected one of: ${audiences.join(', ')}`);
    }
    return;
  }
  if (!resource.issuers.includes(issuer.cfg.issuer)) {
    throw unauthenticated('jwt', `the bearer token issuer ${quote(issuer.cfg.issuer)} is not an authorization server of resource ${quote(resource.resource)}; get a token from: ${resource.issuers.join(', ')}`);
  }
  if (!audienceContains(aud, resource.resource)) {
    throw unauthenticated(
      'jwt',
      `the bearer token was not issued for resource ${quote(resource.resource)}: its "aud" must contain it (request the token with resource=${resource.resource}, RFC 8707)`,
    );
  }
}

/** A NumericDate claim (RFC 7519 section 2): undefined when absent, else a finite number or a denial. */
function numericDate(payload: JwtPayload, claim: 'iat' | 'nbf' | 'exp'): number | undefined {
  const v = payload[claim];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw unauthenticated('jwt', `the bearer token claim "${claim}" is invalid: it must be a finite number of seconds`);
  return v;
}

/** A NumericDate for a message; one outside Date's range is shown as the number. */
function isoTime(seconds: number): string {
  const d = new Date(seconds * 1000);
  return Number.isNaN(d.getTime()) ? String(seconds) : d.toISOString();
}

function checkIssuerConfig(cfg: JwtIssuerConfig, where: string): void {
  if (!cfg.jwks_file === !cfg.jwks_url) throw new Error(`${where}: set exactly one of jwks_file and jwks_url`);
  if (cfg.audiences.length === 0) throw new Error(`${where}: audiences must list at least one audience`);
  if (cfg.algorithms.length === 0) throw new Error(`${where}: algorithms must list at least one algorithm`);
  for (const alg of cfg.algorithms) {
    if (alg.toLowerCase() === 'none' || /^HS\d+$/i.test(alg)) {
      throw new Error(`${where}: algorithm "${alg}" is not allowed; tokens must be signed with an asymmetric key (${JWT_ALGORITHMS.join(', ')})`);
    }
    if (!JWT_ALGORITHMS.includes(alg)) throw new Error(`${where}: unknown algorithm "${alg}"; use one of ${JWT_ALGORITHMS.join(', ')}`);
  }
  if (!Number.isInteger(cfg.clock_skew_s) || cfg.clock_skew_s < 0 || cfg.clock_skew_s > MAX_CLOCK_SKEW_S) {
    throw new Error(`${where}: clock_skew_s must be an integer from 0 to ${MAX_CLOCK_SKEW_S}`);
  }
}

/** Turns a key source failure (jose's remote JWKS) into a precise, agent-readable denial. */
function describeFailure(err: unknown, issuer: Issuer): GatewayError {
  if (err instanceof GatewayError) return err;
  const iss = quote(issuer.cfg.issuer);
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) {
    return unauthenticated('jwt', `the bearer token algorithm is not accepted for issuer ${iss}; accepted: ${issuer.cfg.algorithms.join(', ')}`);
  }
  if (issuer.keys.remote) {
    // Timeouts, network errors, a bad JWKS document: the credential may be fine, the keys are not.
    log.warn({ issuer: issuer.cfg.issuer, reason: (err as Error)?.message }, 'remote JWKS unavailable');
    return new GatewayError('unavailable', `the signing keys of issuer ${iss} cannot be fetched right now; retry later`, { rule: RULE, retryAfterS: 5, cause: err });
  }
  return unauthenticated('jwt', 'the bearer token could not be verified');
}

/** Maps verified claims to an identity via the issuer's claim names (frozen: cache hits share it). */
function toClaim(issuer: Issuer, payload: JwtPayload): IdentityClaim {
  const names = issuer.claims;
  return Object.freeze({
    method: 'jwt',
    provenBy: issuer.cfg.issuer,
    agent: stringClaim(payload, names.agent),
    agentVersion: stringClaim(payload, names.agent_version),
    user: stringClaim(payload, names.user),
    tenant: stringClaim(payload, names.tenant),
    roles: Object.freeze(rolesClaim(payload, names.roles)),
    tokenId: typeof payload.jti === 'string' && payload.jti !== '' ? payload.jti : null,
  });
}

/** A claim by name; a dotted name reaches into nested objects (e.g. `realm_access.roles`). */
function claimValue(payload: JwtPayload, name: string): unknown {
  if (Object.hasOwn(payload, name)) return payload[name];
  if (!name.includes('.')) return undefined;
  let cur: unknown = payload;
  for (const part of name.split('.')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur) || !Object.hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function stringClaim(payload: JwtPayload, name: string): string | null {
  const v = claimValue(payload, name);
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'string') throw unauthenticated('jwt', `the bearer token claim "${name}" must be a string`);
  return v;
}

function rolesClaim(payload: JwtPayload, name: string): string[] {
  const v = claimValue(payload, name);
  if (v === undefined || v === null) return [];
  if (typeof v === 'string') return v.split(/\s+/).filter((r) => r.length > 0);
  if (Array.isArray(v) && v.every((r): r is string => typeof r === 'string')) return v.filter((r) => r.length > 0);
  throw unauthenticated('jwt', `the bearer token claim "${name}" must be an array of strings or a space-separated string`);
}
