import { KeyObject } from 'node:crypto';
import { readFileSync, statSync, type Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createRemoteJWKSet, errors, jwksCache, type ExportedJWKSCache, type FlattenedJWSInput, type JWSHeaderParameters } from 'jose';
import { watchPath, type FileWatch } from '../files/watch.js';
import { log } from '../log.js';
import { importVerificationKey, selectKey, type DecodedJws, type KeyMatch, type VerificationKey } from './jws.js';
import { countFileReload } from '../metrics.js';

/** Signature algorithms an issuer may be pinned to: asymmetric only, never `none` or HMAC. */
export const JWT_ALGORITHMS: readonly string[] = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];

const KEY_TYPES = new Set(['RSA', 'EC', 'OKP']);

/** Where an issuer's verification keys come from. */
export interface KeySource {
  readonly remote: boolean;
  /**
   * Changes whenever the key set may have changed. A result verified under one version must not
   * be reused under another (see {@link KeySource.isCurrent}).
   */
  readonly version: number;
  /** Whether results verified under `version` may still be reused without asking for keys again. */
  isCurrent(version: number): boolean;
  /** The key for `alg` and the token's `kid`; remote sources may fetch (errors are jose's). */
  select(alg: string, jws: DecodedJws): KeyMatch | Promise<KeyMatch>;
  /** Re-reads the keys if they may have changed; true when a retry could now succeed. */
  refresh(): Promise<boolean>;
  close(): void;
}

/**
 * A JWKS file, validated and imported at load and re-read when it changes (change notification,
 * see {@link watchPath}, and checked on an unknown `kid`); a bad rewrite keeps the last good keys.
 * `onReload` runs after every change.
 */
export class FileKeySource implements KeySource {
  readonly remote = false;
  private keys: readonly VerificationKey[];
  private stamp: string;
  private generation = 1;
  private readonly watch: FileWatch;

  constructor(
    private readonly path: string,
    private readonly shown: string,
    private readonly where: string,
    private readonly onReload: () => void,
  ) {
    const loaded = loadJwksFile(path, shown, where);
    this.keys = loaded.keys;
    this.stamp = loaded.stamp;
    const check = (): void => {
      let now: string;
      try {
        now = stampOf(statSync(path));
      } catch {
        return;
      }
      if (now !== this.stamp) this.reload();
    };
    this.watch = watchPath(path, check);
    // A rewrite between the load above and the start of the watch.
    check();
  }

  get version(): number {
    return this.generation;
  }

  isCurrent(version: number): boolean {
    return version === this.generation;
  }

  select(alg: string, jws: DecodedJws): KeyMatch {
    return selectKey(this.keys, alg, jws.header.kid);
  }

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
    this.watch.close();
  }

  private reload(): boolean {
    try {
      const loaded = loadJwksFile(this.path, this.shown, this.where);
      this.keys = loaded.keys;
      this.stamp = loaded.stamp;
      this.generation++;
      this.onReload();
      log.info({ jwks_file: this.shown }, 'JWKS file reloaded');
      countFileReload('jwks', 'success');
      return true;
    } catch (err) {
      log.warn({ jwks_file: this.shown, reason: (err as Error).message }, 'JWKS file invalid after change; keeping the previous keys');
      countFileReload('jwks', 'failure');
      return false;
    }
  }
}

function stampOf(s: Stats): string {
  return `${s.mtimeMs}:${s.size}:${s.ino}`;
}

/** Reads and validates a JWKS file: public asymmetric keys only, each one imported. */
function loadJwksFile(path: string, shown: string, where: string): { keys: VerificationKey[]; stamp: string } {
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
  const imported = (keys as unknown[]).map((k, i) => {
    if (typeof k !== 'object' || k === null || Array.isArray(k)) return fail(`keys[${i}] is not an object`);
    const jwk = k as Record<string, unknown>;
    if (typeof jwk.kty !== 'string' || !KEY_TYPES.has(jwk.kty)) fail(`keys[${i}] has key type ${JSON.stringify(jwk.kty)}; only RSA, EC and OKP public keys are accepted`);
    if ('d' in jwk) fail(`keys[${i}] contains private key material; publish public keys only`);
    if (jwk.alg !== undefined && (typeof jwk.alg !== 'string' || !JWT_ALGORITHMS.includes(jwk.alg))) fail(`keys[${i}] has algorithm ${JSON.stringify(jwk.alg)}; only asymmetric signature algorithms are accepted`);
    try {
      return importVerificationKey(jwk);
    } catch {
      return fail(`keys[${i}] is not a valid ${jwk.kty} public key`);
    }
  });
  return { keys: imported, stamp };
}

/**
 * A remote JWKS, fetched by jose (cached for 10 minutes, refetched on an unknown `kid` after a
 * 30 s cooldown, 5 s timeout). The key jose selects is converted once to a KeyObject so the
 * signature is still checked synchronously.
 */
export function remoteKeySource(url: string, issuer: string): KeySource {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`identity.jwt (${issuer}): jwks_url ${JSON.stringify(url)} is not a valid URL`);
  }
  // jose records each applied fetch here; its time stamp versions the key set.
  const state: Partial<ExportedJWKSCache> = {};
  const set = createRemoteJWKSet(parsed, { cooldownDuration: 30_000, cacheMaxAge: 10 * 60_000, timeoutDuration: 5_000, [jwksCache]: state as Record<string, never> });
  // jose caches one CryptoKey per JWK and algorithm, so this map stays as small as the key set.
  const converted = new WeakMap<object, KeyObject>();
  // Warm the cache without blocking start-up; a failure here is retried on the first request.
  set.reload().catch((err: unknown) => log.warn({ issuer, jwks_url: url, reason: (err as Error).message }, 'remote JWKS not reachable yet'));
  return {
    remote: true,
    get version(): number {
      return state.uat ?? 0;
    },
    // Past jose's cache age the keys must be refetched, as an uncached verification would.
    isCurrent: (version) => set.fresh && state.uat === version,
    select: async (alg, jws) => {
      const token: FlattenedJWSInput = { protected: jws.signingInput.slice(0, jws.signingInput.indexOf('.')), payload: '', signature: jws.signature };
      try {
        const key = await set({ ...(jws.header as JWSHeaderParameters), alg }, token);
        let keyObject = converted.get(key);
        if (!keyObject) {
          keyObject = key instanceof KeyObject ? key : KeyObject.from(key);
          converted.set(key, keyObject);
        }
        return { kind: 'one', key: keyObject };
      } catch (err) {
        if (err instanceof errors.JWKSNoMatchingKey) return { kind: 'none' };
        if (err instanceof errors.JWKSMultipleMatchingKeys) return { kind: 'many' };
        throw err;
      }
    },
    // jose already refetched on the unknown kid (subject to its cooldown).
    refresh: async () => false,
    close: () => undefined,
  };
}
