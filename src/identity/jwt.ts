import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { readFileSync, statSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import type { JwtIssuerConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { log } from '../log.js';
import { quote, ruleFor, unauthenticated, type IdentityClaim } from './claim.js';

/** Signature algorithms an issuer may be pinned to: asymmetric only, never `none` or HMAC. */
export const JWT_ALGORITHMS: readonly string[] = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];

/** Largest clock skew an issuer may allow; a longer one would silently extend every token's life. */
export const MAX_CLOCK_SKEW_S = 300;

/** How often a JWKS file is polled for changes (key rotation without restart). */
const JWKS_POLL_MS = 500;

/** Claim names used when a configuration omits some. */
const DEFAULT_CLAIMS: JwtIssuerConfig['claims'] = { user: 'sub', tenant: 'tenant', roles: 'roles', agent: 'azp', agent_version: 'agent_version' };

const KEY_TYPES = new Set(['RSA', 'EC', 'OKP']);
const RULE = ruleFor('jwt');

/** Where an issuer's verification keys come from. */
interface KeySource {
  readonly getKey: JWTVerifyGetKey;
  readonly remote: boolean;
  /** Re-reads the keys if they may have changed; true when a retry could now succeed. */
  refresh(): Promise<boolean>;
  close(): void;
}

interface Issuer {
  readonly cfg: JwtIssuerConfig;
  readonly claims: JwtIssuerConfig['claims'];
  readonly skewS: number;
  readonly keys: KeySource;
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
 * (pinned asymmetric algorithms), audience, `exp` (required), `nbf`, bounded clock skew.
 */
export class JwtVerifier {
  private constructor(private readonly issuers: ReadonlyMap<string, Issuer>) {}

  /**
   * Loads every issuer's keys. Throws a descriptive Error if an issuer is misconfigured or its
   * JWKS file is missing or invalid; remote JWKS are fetched lazily (the IdP may be down at start).
   */
  static async create(configs: readonly JwtIssuerConfig[], baseDir: string): Promise<JwtVerifier> {
    const issuers = new Map<string, Issuer>();
    try {
      configs.forEach((cfg, i) => {
        const where = `identity.jwt[${i}] (${cfg.issuer})`;
        if (issuers.has(cfg.issuer)) throw new Error(`${where}: issuer is configured twice`);
        checkIssuerConfig(cfg, where);
        const keys = cfg.jwks_file ? new FileKeySource(resolve(baseDir, cfg.jwks_file), cfg.jwks_file, where) : remoteKeySource(cfg.jwks_url as string, cfg.issuer);
        issuers.set(cfg.issuer, { cfg, claims: { ...DEFAULT_CLAIMS, ...cfg.claims }, skewS: cfg.clock_skew_s, keys });
      });
    } catch (err) {
      for (const issuer of issuers.values()) issuer.keys.close();
      throw err;
    }
    return new JwtVerifier(issuers);
  }

  /** Whether any issuer is configured. */
  get enabled(): boolean {
    return this.issuers.size > 0;
  }

  /** Verifies a compact JWT at time `nowMs`; throws `unauthenticated` with the precise reason. */
  async verify(token: string, nowMs: number): Promise<IdentityClaim> {
    const issuer = this.selectIssuer(token);
    let payload: JWTPayload;
    try {
      payload = await this.check(issuer, token, nowMs);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey) || !(await issuer.keys.refresh())) throw describeFailure(err, issuer);
      try {
        payload = await this.check(issuer, token, nowMs);
      } catch (retryErr) {
        throw describeFailure(retryErr, issuer);
      }
    }
    return toClaim(issuer, payload);
  }

  /** Stops watching JWKS files. */
  close(): void {
    for (const issuer of this.issuers.values()) issuer.keys.close();
  }

  private selectIssuer(token: string): Issuer {
    let alg: unknown;
    let iss: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
      iss = decodeJwt(token).iss;
    } catch {
      throw unauthenticated('jwt', 'the bearer token is not a well-formed JWT (header.payload.signature, base64url JSON)');
    }
    if (typeof iss !== 'string' || iss === '') throw unauthenticated('jwt', 'the bearer token has no "iss" claim');
    const issuer = this.issuers.get(iss);
    if (!issuer) throw unauthenticated('jwt', `the bearer token issuer ${quote(iss)} is not trusted`);
    if (typeof alg !== 'string' || !issuer.cfg.algorithms.includes(alg)) {
      const shown = typeof alg === 'string' ? quote(alg, 20) : 'missing';
      throw unauthenticated('jwt', `the bearer token algorithm ${shown} is not accepted for issuer ${quote(iss)}; accepted: ${issuer.cfg.algorithms.join(', ')}`);
    }
    return issuer;
  }

  private async check(issuer: Issuer, token: string, nowMs: number): Promise<JWTPayload> {
    const { payload } = await jwtVerify(token, issuer.keys.getKey, {
      issuer: issuer.cfg.issuer,
      audience: [...issuer.cfg.audiences],
      algorithms: [...issuer.cfg.algorithms],
      requiredClaims: ['exp'],
      clockTolerance: issuer.skewS,
      currentDate: new Date(nowMs),
    });
    return payload;
  }
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

/** A JWKS file, validated at load and re-read when it changes; a bad rewrite keeps the last good keys. */
class FileKeySource implements KeySource {
  readonly remote = false;
  private keySet: JWTVerifyGetKey;
  private stamp: string;
  private readonly listener: (cur: Stats, prev: Stats) => void;

  constructor(private readonly path: string, private readonly shown: string, private readonly where: string) {
    const loaded = loadJwksFile(path, shown, where);
    this.keySet = loaded.keySet;
    this.stamp = loaded.stamp;
    this.listener = (cur) => {
      if (stampOf(cur) !== this.stamp) this.reload();
    };
    watchFile(path, { interval: JWKS_POLL_MS, persistent: false }, this.listener);
  }

  readonly getKey: JWTVerifyGetKey = (header, token) => this.keySet(header, token);

  async refresh(): Promise<boolean> {
    // A token signed with a just-rotated key may arrive before the poll notices the new file.
    try {
      if (stampOf(await stat(this.path)) === this.stamp) return false;
    } catch {
      return false;
    }
    return this.reload();
  }

  close(): void {
    unwatchFile(this.path, this.listener);
  }

  private reload(): boolean {
    try {
      const loaded = loadJwksFile(this.path, this.shown, this.where);
      this.keySet = loaded.keySet;
      this.stamp = loaded.stamp;
      log.info({ jwks_file: this.shown }, 'JWKS file reloaded');
      return true;
    } catch (err) {
      log.warn({ jwks_file: this.shown, reason: (err as Error).message }, 'JWKS file invalid after change; keeping the previous keys');
      return false;
    }
  }
}

function stampOf(s: Stats): string {
  return `${s.mtimeMs}:${s.size}:${s.ino}`;
}

/** Reads and validates a JWKS file: public asymmetric keys only, each one importable. */
function loadJwksFile(path: string, shown: string, where: string): { keySet: JWTVerifyGetKey; stamp: string } {
  const fail = (why: string): never => {
    throw new Error(`${where}: jwks_file ${shown}: ${why}`);
  };
  let text = '';
  let stamp = '';
  try {
    stamp = stampOf(statSync(path));
    text = readFileSync(path, 'utf8');
  } catch (err) {
    fail(`cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    fail('is not valid JSON');
  }
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0) fail('must be a JSON object with a non-empty "keys" array');
  (keys as unknown[]).forEach((k, i) => {
    if (typeof k !== 'object' || k === null) fail(`keys[${i}] is not an object`);
    const jwk = k as Record<string, unknown>;
    if (typeof jwk.kty !== 'string' || !KEY_TYPES.has(jwk.kty)) fail(`keys[${i}] has key type ${JSON.stringify(jwk.kty)}; only RSA, EC and OKP public keys are accepted`);
    if ('d' in jwk) fail(`keys[${i}] contains private key material; publish public keys only`);
    if (jwk.alg !== undefined && (typeof jwk.alg !== 'string' || !JWT_ALGORITHMS.includes(jwk.alg))) fail(`keys[${i}] has algorithm ${JSON.stringify(jwk.alg)}; only asymmetric signature algorithms are accepted`);
    try {
      createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
    } catch {
      fail(`keys[${i}] is not a valid ${jwk.kty} public key`);
    }
  });
  try {
    return { keySet: createLocalJWKSet(doc as JSONWebKeySet), stamp };
  } catch (err) {
    return fail((err as Error).message);
  }
}

/** A remote JWKS: cached, refetched on an unknown `kid` after a cooldown (jose's remote key set). */
function remoteKeySource(url: string, issuer: string): KeySource {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`identity.jwt (${issuer}): jwks_url ${JSON.stringify(url)} is not a valid URL`);
  }
  const set = createRemoteJWKSet(parsed, { cooldownDuration: 30_000, cacheMaxAge: 10 * 60_000, timeoutDuration: 5_000 });
  // Warm the cache without blocking start-up; a failure here is retried on the first request.
  set.reload().catch((err: unknown) => log.warn({ issuer, jwks_url: url, reason: (err as Error).message }, 'remote JWKS not reachable yet'));
  return {
    getKey: set,
    remote: true,
    // jose already refetched on the unknown kid (subject to its cooldown).
    refresh: async () => false,
    close: () => undefined,
  };
}

/** Turns a verification failure into a precise, agent-readable denial. */
function describeFailure(err: unknown, issuer: Issuer): GatewayError {
  if (err instanceof GatewayError) return err;
  const iss = quote(issuer.cfg.issuer);
  if (err instanceof errors.JWTExpired) {
    const exp = err.payload.exp;
    const when = typeof exp === 'number' ? ` at ${new Date(exp * 1000).toISOString()}` : '';
    return unauthenticated('jwt', `the bearer token expired${when} (clock skew allowed: ${issuer.skewS}s)`);
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    const { claim, reason, payload } = err;
    if (reason === 'missing') return unauthenticated('jwt', `the bearer token has no "${claim}" claim, which is required`);
    if (claim === 'nbf') {
      const nbf = payload.nbf;
      const when = typeof nbf === 'number' ? ` before ${new Date(nbf * 1000).toISOString()}` : ' yet';
      return unauthenticated('jwt', `the bearer token is not valid${when} (clock skew allowed: ${issuer.skewS}s)`);
    }
    if (claim === 'aud') {
      return unauthenticated('jwt', `the bearer token audience is not accepted; expected one of: ${issuer.cfg.audiences.join(', ')}`);
    }
    return unauthenticated('jwt', `the bearer token claim "${claim}" is invalid`);
  }
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) {
    return unauthenticated('jwt', `the bearer token algorithm is not accepted for issuer ${iss}; accepted: ${issuer.cfg.algorithms.join(', ')}`);
  }
  if (err instanceof errors.JWKSNoMatchingKey) {
    return unauthenticated('jwt', `no signing key of issuer ${iss} matches the bearer token (unknown "kid" or key type)`);
  }
  if (err instanceof errors.JWSSignatureVerificationFailed || err instanceof errors.JWKSMultipleMatchingKeys) {
    return unauthenticated('jwt', 'the bearer token signature is invalid');
  }
  if (err instanceof errors.JWTInvalid || err instanceof errors.JWSInvalid) {
    return unauthenticated('jwt', `the bearer token is malformed: ${err.message}`);
  }
  if (issuer.keys.remote) {
    // Timeouts, network errors, a bad JWKS document: the credential may be fine, the keys are not.
    log.warn({ issuer: issuer.cfg.issuer, reason: (err as Error)?.message }, 'remote JWKS unavailable');
    return new GatewayError('unavailable', `the signing keys of issuer ${iss} cannot be fetched right now; retry later`, { rule: RULE, retryAfterS: 5, cause: err });
  }
  return unauthenticated('jwt', 'the bearer token could not be verified');
}

/** Maps verified claims to an identity via the issuer's claim names. */
function toClaim(issuer: Issuer, payload: JWTPayload): IdentityClaim {
  const names = issuer.claims;
  return {
    method: 'jwt',
    provenBy: issuer.cfg.issuer,
    agent: stringClaim(payload, names.agent),
    agentVersion: stringClaim(payload, names.agent_version),
    user: stringClaim(payload, names.user),
    tenant: stringClaim(payload, names.tenant),
    roles: rolesClaim(payload, names.roles),
  };
}

/** A claim by name; a dotted name reaches into nested objects (e.g. `realm_access.roles`). */
function claimValue(payload: JWTPayload, name: string): unknown {
  if (Object.hasOwn(payload, name)) return payload[name];
  if (!name.includes('.')) return undefined;
  let cur: unknown = payload;
  for (const part of name.split('.')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur) || !Object.hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function stringClaim(payload: JWTPayload, name: string): string | null {
  const v = claimValue(payload, name);
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'string') throw unauthenticated('jwt', `the bearer token claim "${name}" must be a string`);
  return v;
}

function rolesClaim(payload: JWTPayload, name: string): string[] {
  const v = claimValue(payload, name);
  if (v === undefined || v === null) return [];
  if (typeof v === 'string') return v.split(/\s+/).filter((r) => r.length > 0);
  if (Array.isArray(v) && v.every((r): r is string => typeof r === 'string')) return v.filter((r) => r.length > 0);
  throw unauthenticated('jwt', `the bearer token claim "${name}" must be an array of strings or a space-separated string`);
}
