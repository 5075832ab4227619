import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import { GatewayError } from '../../../src/errors.js';
import { SecretStore } from '../../../src/credentials/secrets.js';
import { IdentityVerifier } from '../../../src/identity/index.js';
import { JwtVerifier } from '../../../src/identity/jwt.js';
import { generateSigningKey } from '../../../src/identity/mint.js';
import type { IdentityConfig, JwtIssuerConfig } from '../../../src/config/types.js';

// Counts real signature checks, so a test can tell a cache hit from a fresh verification.
const { signatureChecks } = vi.hoisted(() => ({ signatureChecks: { count: 0 } }));
vi.mock('../../../src/identity/jws.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../../src/identity/jws.js')>();
  return {
    ...actual,
    verifySignature: (...args: Parameters<typeof actual.verifySignature>) => {
      signatureChecks.count++;
      return actual.verifySignature(...args);
    },
  };
});

const ISS = 'https://cache.test';
const AUD = 'portcullis';
const SKEW = 30;
const claims: JwtIssuerConfig['claims'] = { user: 'sub', tenant: 'tenant', roles: 'roles', agent: 'azp', agent_version: 'agent_version' };

function issuer(over: Partial<JwtIssuerConfig> = {}): JwtIssuerConfig {
  return { issuer: ISS, audiences: [AUD], jwks_file: 'keys/jwks.json', algorithms: ['ES256'], clock_skew_s: SKEW, claims, ...over };
}

async function keyAt(path: string): Promise<CryptoKey> {
  return (await importJWK(JSON.parse(readFileSync(path, 'utf8')) as JWK, 'ES256')) as CryptoKey;
}

async function sign(key: CryptoKey, kid: string, payload: Record<string, unknown>, exp = Math.floor(Date.now() / 1000) + 300): Promise<string> {
  return new SignJWT({ iss: ISS, aud: AUD, exp, ...payload }).setProtectedHeader({ alg: 'ES256', kid }).sign(key);
}

async function rejection(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(GatewayError);
  expect((err as GatewayError).code).toBe('unauthenticated');
  return (err as GatewayError).message;
}

/** Swaps the JWKS file atomically, as a key rotation job would. */
function replaceJwks(target: string, source: string): void {
  const tmp = `${target}.tmp`;
  writeFileSync(tmp, readFileSync(source));
  renameSync(tmp, target);
}

const base = mkdtempSync(join(tmpdir(), 'pc-cache-'));
let key: CryptoKey;
let v: JwtVerifier;

beforeAll(async () => {
  key = await keyAt((await generateSigningKey(join(base, 'keys'), 'k1')).privateJwkPath);
  v = await JwtVerifier.create([issuer()], base);
});
afterAll(() => v.close());
beforeEach(() => {
  signatureChecks.count = 0;
});

describe('verified token cache', () => {
  it('verifies a token once and then answers from the cache, with the same identity', async () => {
    const token = await sign(key, 'k1', { sub: 'alice', roles: ['support'] });
    const first = await v.verify(token, Date.now());
    const second = await v.verify(token, Date.now());
    expect(second).toEqual(first);
    expect(second).toMatchObject({ user: 'alice', roles: ['support'] });
    expect(signatureChecks.count).toBe(1);
    expect(Object.isFrozen(second) && Object.isFrozen(second.roles)).toBe(true);
  });

  it('stops accepting a cached token once it expires (clock skew included)', async () => {
    const exp = Math.floor(Date.now() / 1000) + 100;
    const token = await sign(key, 'k1', { sub: 'u' }, exp);
    await v.verify(token, Date.now());
    await expect(v.verify(token, (exp + SKEW - 1) * 1000)).resolves.toMatchObject({ user: 'u' });
    expect(signatureChecks.count).toBe(1);
    expect(await rejection(v.verify(token, (exp + SKEW) * 1000))).toMatch(/expired/);
    expect(await rejection(v.verify(token, (exp + SKEW + 3600) * 1000))).toMatch(/expired/);
  });

  it('re-checks nbf against the time of each request', async () => {
    const nowS = Math.floor(Date.now() / 1000);
    const token = await sign(key, 'k1', { sub: 'u', nbf: nowS + 60 });
    await expect(v.verify(token, (nowS + 60 - SKEW) * 1000)).resolves.toMatchObject({ user: 'u' });
    // An earlier request time (clock stepped back, or a replayed timestamp) is not let through.
    expect(await rejection(v.verify(token, (nowS + 60 - SKEW - 1) * 1000))).toMatch(/not valid before/);
  });

  it('never caches a failure', async () => {
    const bad = await sign(key, 'k1', { sub: 'u', roles: [1] });
    await rejection(v.verify(bad, Date.now()));
    await rejection(v.verify(bad, Date.now()));
    expect(signatureChecks.count).toBe(2);
    const wrongAudience = await sign(key, 'k1', { aud: 'other' });
    await rejection(v.verify(wrongAudience, Date.now()));
    await rejection(v.verify(wrongAudience, Date.now()));
    expect(signatureChecks.count).toBe(4);
  });

  it('rejects a cached token once its key is rotated out of the JWKS file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pc-cache-rot-'));
    const first = await generateSigningKey(join(dir, 'keys'), 'old');
    const second = await generateSigningKey(join(dir, 'next'), 'new');
    const rot = await JwtVerifier.create([issuer()], dir);
    try {
      const oldToken = await sign(await keyAt(first.privateJwkPath), 'old', { sub: 'u' });
      await rot.verify(oldToken, Date.now());
      await rot.verify(oldToken, Date.now());
      expect(signatureChecks.count).toBe(1);
      expect(rot.cachedTokens).toBe(1);
      replaceJwks(first.jwksPath, second.jwksPath);
      // Noticed by the file poll: no request asks for the new key first.
      await vi.waitFor(async () => {
        expect(await rejection(rot.verify(oldToken, Date.now()))).toMatch(/no signing key/);
      }, { timeout: 5000, interval: 50 });
      expect(rot.cachedTokens).toBe(0);
    } finally {
      rot.close();
    }
  });

  it('verifies a cached token again after a reload that keeps its key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pc-cache-keep-'));
    const first = await generateSigningKey(join(dir, 'keys'), 'old');
    const second = await generateSigningKey(join(dir, 'next'), 'new');
    const both = join(dir, 'both.json');
    const keys = (p: string): JWK[] => (JSON.parse(readFileSync(p, 'utf8')) as { keys: JWK[] }).keys;
    writeFileSync(both, JSON.stringify({ keys: [...keys(first.jwksPath), ...keys(second.jwksPath)] }));
    const rot = await JwtVerifier.create([issuer()], dir);
    try {
      const token = await sign(await keyAt(first.privateJwkPath), 'old', { sub: 'u' });
      await rot.verify(token, Date.now());
      replaceJwks(first.jwksPath, both);
      // The new key is picked up (unknown kid re-reads the file), which invalidates the cache.
      await expect(rot.verify(await sign(await keyAt(second.privateJwkPath), 'new', { sub: 'n' }), Date.now())).resolves.toMatchObject({ user: 'n' });
      const before = signatureChecks.count;
      await expect(rot.verify(token, Date.now())).resolves.toMatchObject({ user: 'u' });
      expect(signatureChecks.count).toBe(before + 1);
    } finally {
      rot.close();
    }
  });

  it('holds at most token_cache_size tokens, evicting the least recently used', async () => {
    const small = await JwtVerifier.create([issuer()], base, { tokenCacheSize: 3 });
    try {
      const tokens = await Promise.all([1, 2, 3, 4, 5].map((i) => sign(key, 'k1', { sub: `u${i}` })));
      const [t1, t2, t3, t4, t5] = tokens as [string, string, string, string, string];
      for (const t of [t1, t2, t3]) await small.verify(t, Date.now());
      await small.verify(t1, Date.now()); // t1 is now the most recently used
      await small.verify(t4, Date.now()); // evicts t2
      expect(small.cachedTokens).toBe(3);
      signatureChecks.count = 0;
      await small.verify(t1, Date.now());
      await small.verify(t3, Date.now());
      expect(signatureChecks.count).toBe(0);
      await small.verify(t2, Date.now());
      expect(signatureChecks.count).toBe(1);
      for (const t of tokens) await small.verify(t, Date.now());
      await small.verify(t5, Date.now());
      expect(small.cachedTokens).toBe(3);
    } finally {
      small.close();
    }
  });

  it('verifies every request when the size is 0, and refuses a bad size', async () => {
    const off = await JwtVerifier.create([issuer()], base, { tokenCacheSize: 0 });
    try {
      const token = await sign(key, 'k1', { sub: 'u' });
      for (let i = 0; i < 3; i++) await off.verify(token, Date.now());
      expect(signatureChecks.count).toBe(3);
      expect(off.cachedTokens).toBe(0);
    } finally {
      off.close();
    }
    await expect(JwtVerifier.create([issuer()], base, { tokenCacheSize: -1 })).rejects.toThrow(/token_cache_size must be a non-negative integer/);
  });

  it('takes its size from identity.token_cache_size', async () => {
    const cfg: IdentityConfig = { required: true, jwt: [issuer()], mtls: [], api_keys: [], api_key_header: 'x-api-key', signatures: [] };
    const secrets = new SecretStore(base);
    const token = await sign(key, 'k1', { sub: 'u' });
    const headers = { authorization: `Bearer ${token}` };
    const req = { headers, sourcePrincipal: undefined, rawBody: undefined, bodyTruncated: false, toolName: 'weather', nowMs: Date.now() };
    for (const [size, checks] of [[0, 2], [5, 1], [undefined, 1]] as const) {
      const ident = await IdentityVerifier.create({ ...cfg, token_cache_size: size }, base, secrets);
      try {
        signatureChecks.count = 0;
        await ident.verify(req);
        await ident.verify(req);
        expect(signatureChecks.count).toBe(checks);
      } finally {
        ident.close();
      }
    }
    secrets.close();
  });
});

describe('verified token cache with a remote JWKS', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('reuses a token while the fetched key set is fresh, and re-fetches before trusting it past the cache age', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pc-cache-remote-'));
    const first = await generateSigningKey(join(dir, 'a'), 'old');
    const second = await generateSigningKey(join(dir, 'b'), 'new');
    let body = readFileSync(first.jwksPath);
    let fetches = 0;
    const server = createServer((_req, res) => {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    // Only Date is faked: jose ages its key set by Date.now(), the HTTP exchange needs real timers.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
    const remote = await JwtVerifier.create([issuer({ jwks_file: undefined, jwks_url: `http://127.0.0.1:${port}/jwks.json` })], dir);
    try {
      const token = await sign(await keyAt(first.privateJwkPath), 'old', { sub: 'u' }, Math.floor(Date.now() / 1000) + 3600);
      await expect(remote.verify(token, Date.now())).resolves.toMatchObject({ user: 'u' });
      await expect(remote.verify(token, Date.now())).resolves.toMatchObject({ user: 'u' });
      expect(signatureChecks.count).toBe(1);
      body = readFileSync(second.jwksPath);
      const fetched = fetches;
      vi.setSystemTime(Date.now() + 11 * 60_000);
      expect(await rejection(remote.verify(token, Date.now()))).toMatch(/no signing key/);
      expect(fetches).toBe(fetched + 1);
    } finally {
      remote.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
