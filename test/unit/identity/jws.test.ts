import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPairSync, KeyObject, sign as nodeSign } from 'node:crypto';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { base64url, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { GatewayError } from '../../../src/errors.js';
import { JwtVerifier } from '../../../src/identity/jwt.js';
import { decodeBase64url, decodeCompact, headerProblem, importVerificationKey, selectKey } from '../../../src/identity/jws.js';
import type { JwtIssuerConfig } from '../../../src/config/types.js';

const ISS = 'https://algs.test';
const AUD = 'portcullis';
const ALL = ['RS256', 'PS256', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const claims: JwtIssuerConfig['claims'] = { user: 'sub', tenant: 'tenant', roles: 'roles', agent: 'azp', agent_version: 'agent_version' };
const dir = mkdtempSync(join(tmpdir(), 'pc-jws-'));
const enc = (o: object): string => base64url.encode(JSON.stringify(o));
const now = (): number => Math.floor(Date.now() / 1000);

function issuer(over: Partial<JwtIssuerConfig> = {}): JwtIssuerConfig {
  return { issuer: ISS, audiences: [AUD], jwks_file: 'jwks.json', algorithms: ALL, clock_skew_s: 30, claims, ...over };
}

/** One private key per algorithm; the JWKS publishes each public key with its `kid` and `alg`. */
const signers = new Map<string, CryptoKey>();
let weakRsa: KeyObject;
let v: JwtVerifier;

async function sign(alg: string, payload: Record<string, unknown> = {}, header: Record<string, unknown> = {}): Promise<string> {
  const key = signers.get(alg);
  if (!key) throw new Error(`no key for ${alg}`);
  return new SignJWT({ iss: ISS, aud: AUD, sub: 'u', exp: now() + 300, ...payload }).setProtectedHeader({ alg, kid: alg, ...header }).sign(key);
}

async function rejection(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(GatewayError);
  expect((err as GatewayError).code).toBe('unauthenticated');
  expect((err as GatewayError).rule).toBe('identity.jwt');
  return (err as GatewayError).message;
}

beforeAll(async () => {
  const keys: JWK[] = [];
  for (const alg of ALL) {
    const pair = await generateKeyPair(alg, { extractable: true });
    signers.set(alg, pair.privateKey);
    keys.push({ ...(await exportJWK(pair.publicKey)), kid: alg, alg, use: 'sig' });
  }
  const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
  weakRsa = weak.privateKey;
  keys.push({ ...(weak.publicKey.export({ format: 'jwk' }) as JWK), kid: 'weak', alg: 'RS256' });
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys }));
  v = await JwtVerifier.create([issuer()], dir, { tokenCacheSize: 0 });
});
afterAll(() => v.close());

describe('JWS verification with node:crypto', () => {
  it.each(ALL)('verifies a %s token signed by jose (WebCrypto)', async (alg) => {
    await expect(v.verify(await sign(alg, { sub: `user-${alg}` }), Date.now())).resolves.toMatchObject({ user: `user-${alg}` });
  });

  it.each(ALL)('rejects a %s token whose payload was altered after signing', async (alg) => {
    const [h, , s] = (await sign(alg, { sub: 'alice', roles: ['viewer'] })).split('.');
    const forged = `${h}.${enc({ iss: ISS, aud: AUD, sub: 'alice', roles: ['admin'], exp: now() + 300 })}.${s}`;
    expect(await rejection(v.verify(forged, Date.now()))).toMatch(/signature is invalid/);
  });

  it.each(ALL)('rejects a %s token with a flipped, truncated or empty signature', async (alg) => {
    const token = await sign(alg);
    const [h, p, s] = token.split('.') as [string, string, string];
    const bytes = Buffer.from(s, 'base64url');
    const mid = bytes.length >> 1;
    bytes.writeUInt8(bytes.readUInt8(mid) ^ 0x01, mid);
    for (const sig of [bytes.toString('base64url'), s.slice(0, -4), '']) {
      expect(await rejection(v.verify(`${h}.${p}.${sig}`, Date.now()))).toMatch(/signature is invalid/);
    }
  });

  it('rejects an ECDSA signature in DER form (JWS requires raw r||s)', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const d = join(dir, 'der');
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'jwks.json'), JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'der' }] }));
    const ver = await JwtVerifier.create([issuer({ jwks_file: 'der/jwks.json', algorithms: ['ES256'] })], dir, { tokenCacheSize: 0 });
    try {
      const input = `${enc({ alg: 'ES256', kid: 'der' })}.${enc({ iss: ISS, aud: AUD, sub: 'u', exp: now() + 300 })}`;
      const raw = nodeSign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
      const der = nodeSign('sha256', Buffer.from(input), privateKey).toString('base64url');
      await expect(ver.verify(`${input}.${raw}`, Date.now())).resolves.toMatchObject({ user: 'u' });
      expect(await rejection(ver.verify(`${input}.${der}`, Date.now()))).toMatch(/signature is invalid/);
    } finally {
      ver.close();
    }
  });

  it('does not let a token pick a key of another type or curve (algorithm confusion)', async () => {
    // The EC P-256 key's signature presented as ES384, ES512, RS256, PS256 and EdDSA.
    const [, p, s] = (await sign('ES256')).split('.');
    for (const alg of ['ES384', 'ES512', 'RS256', 'PS256', 'EdDSA']) {
      const forged = `${enc({ alg, kid: 'ES256' })}.${p}.${s}`;
      expect(await rejection(v.verify(forged, Date.now()))).toMatch(/no signing key .* matches/);
    }
    // An RS256 signature presented as PS256 with the RSA key's kid: that key is pinned to RS256.
    const [, rp, rs] = (await sign('RS256')).split('.');
    expect(await rejection(v.verify(`${enc({ alg: 'PS256', kid: 'RS256' })}.${rp}.${rs}`, Date.now()))).toMatch(/no signing key/);
  });

  it('rejects HS256 signed with a published public key, and alg none, against the new verifier', async () => {
    const pub = (await exportJWK((await generateKeyPair('ES256')).publicKey)) as JWK;
    const secret = new TextEncoder().encode(JSON.stringify(pub));
    const hs = await new SignJWT({ iss: ISS, aud: AUD, sub: 'root', exp: now() + 300 }).setProtectedHeader({ alg: 'HS256', kid: 'ES256' }).sign(secret);
    expect(await rejection(v.verify(hs, Date.now()))).toMatch(/algorithm "HS256" is not accepted/);
    const none = `${enc({ alg: 'none' })}.${enc({ iss: ISS, aud: AUD, sub: 'root', exp: now() + 300 })}.`;
    expect(await rejection(v.verify(none, Date.now()))).toMatch(/algorithm "none" is not accepted/);
    const noAlg = `${enc({ kid: 'ES256' })}.${enc({ iss: ISS, aud: AUD, exp: now() + 300 })}.AAAA`;
    expect(await rejection(v.verify(noAlg, Date.now()))).toMatch(/algorithm missing is not accepted/);
  });

  it('only accepts the algorithms the issuer is pinned to', async () => {
    const pinned = await JwtVerifier.create([issuer({ algorithms: ['ES256'] })], dir, { tokenCacheSize: 0 });
    try {
      await expect(pinned.verify(await sign('ES256'), Date.now())).resolves.toMatchObject({ user: 'u' });
      expect(await rejection(pinned.verify(await sign('RS256'), Date.now()))).toMatch(/algorithm "RS256" is not accepted .* accepted: ES256/);
    } finally {
      pinned.close();
    }
  });

  it('refuses an RSA key shorter than 2048 bits', async () => {
    const input = `${enc({ alg: 'RS256', kid: 'weak' })}.${enc({ iss: ISS, aud: AUD, sub: 'u', exp: now() + 300 })}`;
    const sig = nodeSign('sha256', Buffer.from(input), weakRsa).toString('base64url');
    expect(await rejection(v.verify(`${input}.${sig}`, Date.now()))).toMatch(/shorter than 2048 bits/);
  });

  it('refuses a non-string kid and a kid that names no key', async () => {
    expect(await rejection(v.verify(await sign('ES256', {}, { kid: 7 }), Date.now()))).toMatch(/no signing key/);
    expect(await rejection(v.verify(await sign('ES256', {}, { kid: 'ES384' }), Date.now()))).toMatch(/no signing key/);
  });

  it('rejects unsupported critical header parameters and an unencoded payload', async () => {
    // Validly signed, so only the header can be the reason.
    const key = KeyObject.from(signers.get('ES256') as CryptoKey);
    const signed = (header: Record<string, unknown>, payload: string): string => {
      const input = `${enc({ alg: 'ES256', kid: 'ES256', ...header })}.${payload}`;
      return `${input}.${nodeSign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
    };
    const payload = enc({ iss: ISS, aud: AUD, sub: 'u', exp: now() + 300 });
    await expect(v.verify(signed({}, payload), Date.now())).resolves.toMatchObject({ user: 'u' });
    expect(await rejection(v.verify(signed({ crit: ['exp'], exp: 1 }, payload), Date.now()))).toMatch(/critical header parameter "exp" is not supported/);
    expect(await rejection(v.verify(signed({ crit: ['b64'], b64: false }, payload), Date.now()))).toMatch(/unencoded payload/);
    await expect(v.verify(signed({ crit: ['b64'], b64: true }, payload), Date.now())).resolves.toMatchObject({ user: 'u' });
  });

  it('checks registered claim types as jose does', async () => {
    expect(await rejection(v.verify(await sign('ES256', { iat: 'yesterday' }), Date.now()))).toMatch(/claim "iat" is invalid/);
    expect(await rejection(v.verify(await sign('ES256', { exp: '9999999999' }), Date.now()))).toMatch(/claim "exp" is invalid/);
    expect(await rejection(v.verify(await sign('ES256', { nbf: 'now' }), Date.now()))).toMatch(/claim "nbf" is invalid/);
    expect(await rejection(v.verify(await sign('ES256', { aud: undefined }), Date.now()))).toMatch(/no "aud" claim/);
    await expect(v.verify(await sign('ES256', { aud: ['other', AUD] }), Date.now())).resolves.toMatchObject({ user: 'u' });
    expect(await rejection(v.verify(await sign('ES256', { aud: [1, 'other'] }), Date.now()))).toMatch(/audience is not accepted/);
  });
});

describe('compact JWS decoding', () => {
  it('accepts exactly three base64url segments holding JSON objects', () => {
    const t = `${enc({ alg: 'ES256' })}.${enc({ a: 1 })}.c2ln`;
    expect(decodeCompact(t)).toMatchObject({ header: { alg: 'ES256' }, payload: { a: 1 }, signature: 'c2ln' });
    expect(decodeCompact(`${t}.x.y`)).toBeNull();
    expect(decodeCompact(`${enc({ alg: 'ES256' })}.${enc({ a: 1 })}`)).toBeNull();
    expect(decodeCompact(`${enc({ alg: 'ES256' })}.${enc([1])}.x`)).toBeNull();
    expect(decodeCompact(`${enc({ alg: 'ES256' })}.${base64url.encode('not json')}.x`)).toBeNull();
    expect(decodeCompact(`${enc({ alg: 'ES256' })}.${Buffer.from([0xff, 0xfe]).toString('base64url')}.x`)).toBeNull();
  });

  it('decodes base64url strictly (no standard-alphabet characters, padding only on a whole quantum)', () => {
    expect(decodeBase64url('c2ln')?.toString()).toBe('sig');
    expect(decodeBase64url('YQ==')?.toString()).toBe('a');
    expect(decodeBase64url('YQ')?.toString()).toBe('a');
    expect(decodeBase64url('YQ=')).toBeNull();
    expect(decodeBase64url('a+b/')).toBeNull();
    expect(decodeBase64url('abcde')).toBeNull();
    expect(decodeBase64url('ab!c')).toBeNull();
  });

  it('explains header problems', () => {
    expect(headerProblem({ alg: 'ES256' })).toBeNull();
    expect(headerProblem({ crit: [] })).toMatch(/non-empty strings/);
    expect(headerProblem({ crit: ['b64'] })).toMatch(/must be a boolean/);
    expect(headerProblem({ crit: ['b64'], b64: true })).toBeNull();
  });
});

describe('key selection', () => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }) as Record<string, unknown>;

  it('follows the JWK use, key_ops, alg and kid parameters', () => {
    const k = (extra: Record<string, unknown>) => importVerificationKey({ ...ec, ...extra });
    expect(selectKey([k({ kid: 'a' })], 'ES256', 'a').kind).toBe('one');
    expect(selectKey([k({ kid: 'a' })], 'ES256', undefined).kind).toBe('one');
    expect(selectKey([k({ kid: 'a' })], 'ES256', 'b').kind).toBe('none');
    expect(selectKey([k({ use: 'enc' })], 'ES256', undefined).kind).toBe('none');
    expect(selectKey([k({ key_ops: ['sign'] })], 'ES256', undefined).kind).toBe('none');
    expect(selectKey([k({ key_ops: ['verify', 'verify'] })], 'ES256', undefined).kind).toBe('none');
    expect(selectKey([k({ key_ops: ['verify'] })], 'ES256', undefined).kind).toBe('one');
    expect(selectKey([k({ alg: 'ES384' })], 'ES256', undefined).kind).toBe('none');
    expect(selectKey([k({ ext: 'yes' })], 'ES256', undefined).kind).toBe('none');
    expect(selectKey([k({})], 'HS256', undefined).kind).toBe('none');
    // Two candidates are refused rather than tried in turn.
    expect(selectKey([k({}), k({})], 'ES256', undefined).kind).toBe('many');
    expect(selectKey([k({ kid: 'a' }), k({ kid: 'b' })], 'ES256', 'b').kind).toBe('one');
  });
});
