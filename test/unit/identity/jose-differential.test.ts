import { constants, createHmac, generateKeyPairSync, sign as nodeSign, type KeyObject } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify, type JWK, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JwtIssuerConfig } from '../../../src/config/types.js';
import type { IdentityClaim } from '../../../src/identity/claim.js';
import { JwtVerifier } from '../../../src/identity/jwt.js';

/**
 * Differential test: the gateway's JWT verification (src/identity/jws.ts + jwt.ts, node:crypto)
 * and jose's `jwtVerify` with a local JWKS get the same corpus (valid tokens of every supported
 * algorithm, forgeries, malformed tokens, edge-case claims and headers) and must agree on
 * accept/reject and, when both accept, on the claims. The only allowed difference is one the
 * gateway makes on purpose: a NumericDate (`exp`, `nbf`, `iat`) that is not a finite number
 * (`1e400` parses to Infinity) is rejected here and accepted by jose.
 */

const ISS = 'https://differential.test';
const AUD = 'portcullis';
const SKEW_S = 30;
const ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
type Alg = (typeof ALGS)[number];
const NOW_MS = Date.UTC(2030, 0, 1, 12, 0, 0);
const NOW = Math.floor(NOW_MS / 1000);

const HASH: Record<Alg, string | null> = {
  RS256: 'sha256', RS384: 'sha384', RS512: 'sha512', PS256: 'sha256', PS384: 'sha384', PS512: 'sha512',
  ES256: 'sha256', ES384: 'sha384', ES512: 'sha512', EdDSA: null,
};

function keyPair(alg: Alg, rsaBits = 2048): { privateKey: KeyObject; publicKey: KeyObject } {
  if (alg.startsWith('RS') || alg.startsWith('PS')) return generateKeyPairSync('rsa', { modulusLength: rsaBits });
  if (alg === 'EdDSA') return generateKeyPairSync('ed25519');
  return generateKeyPairSync('ec', { namedCurve: { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' }[alg as 'ES256'] });
}

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64url');

/** Signs `header.payload` texts exactly as given (no re-serialisation), with `alg`'s scheme. */
function signRaw(alg: Alg, key: KeyObject, headerText: string, payloadText: string): string {
  const input = `${b64(headerText)}.${b64(payloadText)}`;
  const hash = HASH[alg];
  const sig = alg.startsWith('PS')
    ? nodeSign(hash, Buffer.from(input), { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(alg.slice(2)) / 8 })
    : alg.startsWith('ES')
      ? nodeSign(hash, Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' })
      : nodeSign(hash, Buffer.from(input), key);
  return `${input}.${sig.toString('base64url')}`;
}

interface Case {
  readonly name: string;
  readonly token: string;
  /** The gateway rejects by design what jose accepts (non-finite NumericDate). */
  readonly stricter?: boolean;
}

const keys = new Map<Alg, { privateKey: KeyObject; publicKey: KeyObject }>();
let other: { privateKey: KeyObject; publicKey: KeyObject };
let weak: { privateKey: KeyObject; publicKey: KeyObject };
let jwks: JWK[];
let verifier: JwtVerifier;
const corpus: Case[] = [];

function claims(over: Record<string, unknown> = {}): Record<string, unknown> {
  const base: Record<string, unknown> = { iss: ISS, aud: AUD, sub: 'alice', azp: 'helpdesk', tenant: 'acme', roles: ['support'], iat: NOW - 60, exp: NOW + 300 };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) delete base[k];
    else base[k] = v;
  }
  return base;
}

/** A token of `alg` signed with its JWKS key; header and payload may be raw JSON text. */
function tok(alg: Alg, payload: Record<string, unknown> | string = claims(), header: Record<string, unknown> | string = { alg, kid: alg, typ: 'JWT' }, key?: KeyObject): string {
  const h = typeof header === 'string' ? header : JSON.stringify(header);
  const p = typeof payload === 'string' ? payload : JSON.stringify(payload);
  return signRaw(alg, key ?? (keys.get(alg) as { privateKey: KeyObject }).privateKey, h, p);
}

/** Payload text with one claim written as raw JSON (e.g. `1e400`, which JSON.stringify cannot produce). */
function rawClaim(name: string, json: string, over: Record<string, unknown> = {}): string {
  const text = JSON.stringify(claims({ ...over, [name]: undefined }));
  return `${text.slice(0, -1)},"${name}":${json}}`;
}

function buildCorpus(): void {
  const add = (name: string, token: string, stricter = false): void => {
    corpus.push({ name, token, ...(stricter ? { stricter } : {}) });
  };
  for (const alg of ALGS) {
    add(`${alg}: valid`, tok(alg));
    add(`${alg}: valid without typ`, tok(alg, claims(), { alg, kid: alg }));
    const good = tok(alg);
    const [h, p, s] = good.split('.') as [string, string, string];
    add(`${alg}: payload swapped after signing`, `${h}.${b64(JSON.stringify(claims({ roles: ['admin'] })))}.${s}`);
    add(`${alg}: signature of another token`, `${h}.${p}.${tok(alg, claims({ sub: 'mallory' })).split('.')[2]}`);
    add(`${alg}: signature cut short`, `${h}.${p}.${s.slice(0, -4)}`);
    add(`${alg}: empty signature`, `${h}.${p}.`);
    add(`${alg}: signed by a key not in the JWKS`, tok(alg, claims(), { alg, kid: alg }, alg === 'ES256' ? other.privateKey : keyPair(alg).privateKey));
    add(`${alg}: unknown kid`, tok(alg, claims(), { alg, kid: `${alg}-rotated-out` }));
    add(`${alg}: numeric kid`, tok(alg, claims(), { alg, kid: 7 }));
  }
  // Algorithm confusion and header games.
  add('no kid: several keys fit ES256', tok('ES256', claims(), { alg: 'ES256' }));
  add('no kid: one key fits ES384', tok('ES384', claims(), { alg: 'ES384' }));
  add('RS256 signature presented as PS256', tok('RS256', claims(), { alg: 'PS256', kid: 'PS256' }, keys.get('PS256')?.privateKey));
  add('kid of an ES384 key on an ES256 token', tok('ES256', claims(), { alg: 'ES256', kid: 'ES384' }));
  add('alg none', `${b64(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64(JSON.stringify(claims()))}.`);
  add('alg missing', tok('ES256', claims(), { kid: 'ES256' }));
  add('alg lower case', tok('ES256', claims(), { alg: 'es256', kid: 'ES256' }));
  const hsKey = Buffer.from(JSON.stringify(jwks.find((k) => k.kid === 'ES256')));
  {
    const input = `${b64(JSON.stringify({ alg: 'HS256', kid: 'ES256' }))}.${b64(JSON.stringify(claims({ roles: ['admin'] })))}`;
    add('HS256 keyed with the public JWK', `${input}.${createHmac('sha256', hsKey).update(input).digest('base64url')}`);
  }
  add('weak 1024-bit RSA key', tok('RS256', claims(), { alg: 'RS256', kid: 'weak' }, weak.privateKey));
  add('crit b64 true', tok('ES256', claims(), { alg: 'ES256', kid: 'ES256', crit: ['b64'], b64: true }));
  add('crit b64 false', tok('ES256', claims(), { alg: 'ES256', kid: 'ES256', crit: ['b64'], b64: false }));
  add('b64 false without crit', tok('ES256', claims(), { alg: 'ES256', kid: 'ES256', b64: false }));
  add('crit names an unknown extension', tok('ES256', claims(), { alg: 'ES256', kid: 'ES256', crit: ['exp'], exp: 1 }));
  add('crit empty', tok('ES256', claims(), { alg: 'ES256', kid: 'ES256', crit: [] }));
  add('crit not an array', tok('ES256', claims(), { alg: 'ES256', kid: 'ES256', crit: 'b64', b64: true }));
  add('crit b64 without b64', tok('ES256', claims(), { alg: 'ES256', kid: 'ES256', crit: ['b64'] }));
  add('crit b64 with a string b64', tok('ES256', claims(), { alg: 'ES256', kid: 'ES256', crit: ['b64'], b64: 'false' }));
  add('header with a duplicate alg (last wins)', tok('ES256', claims(), '{"alg":"none","kid":"ES256","alg":"ES256"}'));
  add('header is an array', tok('ES256', claims(), '["ES256"]'));
  add('header is not JSON', tok('ES256', claims(), '{alg:ES256}'));
  // Malformed compact serialisation.
  const good = tok('ES256');
  const [h, p, s] = good.split('.') as [string, string, string];
  add('two segments', `${h}.${p}`);
  add('four segments', `${good}.${s}`);
  add('standard base64 characters in the payload', `${h}.${p.replace(/-/g, '+').replace(/_/g, '/')}x+/.${s}`);
  add('padding on the signature', `${h}.${p}.${s}=`);
  add('whitespace in a segment', `${h}.${p} .${s}`);
  add('empty payload', tok('ES256', ''));
  add('payload is an array', tok('ES256', '[1,2]'));
  add('payload is a number', tok('ES256', '42'));
  add('payload is null', tok('ES256', 'null'));
  add('payload is not UTF-8', `${h}.${Buffer.from([0x7b, 0xff, 0x7d]).toString('base64url')}.${s}`);
  add('payload with a BOM', tok('ES256', `\ufeff${JSON.stringify(claims())}`));
  add('payload with duplicate exp (last wins)', tok('ES256', `${JSON.stringify(claims()).slice(0, -1)},"exp":${NOW - 3600}}`));
  // Registered claims: presence, types, times.
  add('iss missing', tok('ES256', claims({ iss: undefined })));
  add('iss of another issuer', tok('ES256', claims({ iss: 'https://elsewhere.test' })));
  add('iss not a string', tok('ES256', claims({ iss: [ISS] })));
  add('aud missing', tok('ES256', claims({ aud: undefined })));
  add('aud another audience', tok('ES256', claims({ aud: 'other' })));
  add('aud array with ours', tok('ES256', claims({ aud: ['other', AUD] })));
  add('aud array without ours', tok('ES256', claims({ aud: ['other', 1] })));
  add('aud a number', tok('ES256', claims({ aud: 1 })));
  add('aud an object', tok('ES256', claims({ aud: { [AUD]: true } })));
  add('exp missing', tok('ES256', claims({ exp: undefined })));
  add('exp passed', tok('ES256', claims({ exp: NOW - 3600 })));
  add('exp passed within the skew', tok('ES256', claims({ exp: NOW - SKEW_S + 1 })));
  add('exp exactly at the skew', tok('ES256', claims({ exp: NOW - SKEW_S })));
  add('exp fractional, in the future', tok('ES256', claims({ exp: NOW + 0.5 })));
  add('exp negative', tok('ES256', claims({ exp: -1 })));
  add('exp zero', tok('ES256', claims({ exp: 0 })));
  add('exp huge but finite', tok('ES256', claims({ exp: 1e300 })));
  add('exp max safe integer', tok('ES256', claims({ exp: Number.MAX_SAFE_INTEGER })));
  add('exp as a string', tok('ES256', claims({ exp: String(NOW + 300) })));
  add('exp null', tok('ES256', claims({ exp: null })));
  add('exp true', tok('ES256', claims({ exp: true })));
  add('exp an array', tok('ES256', claims({ exp: [NOW + 300] })));
  add('exp 1e400 (Infinity)', tok('ES256', rawClaim('exp', '1e400')), true);
  add('exp -1e400 (-Infinity)', tok('ES256', rawClaim('exp', '-1e400')));
  add('exp "NaN"', tok('ES256', claims({ exp: 'NaN' })));
  add('exp "Infinity"', tok('ES256', claims({ exp: 'Infinity' })));
  add('nbf in the future', tok('ES256', claims({ nbf: NOW + 3600 })));
  add('nbf within the skew', tok('ES256', claims({ nbf: NOW + SKEW_S })));
  add('nbf just past the skew', tok('ES256', claims({ nbf: NOW + SKEW_S + 1 })));
  add('nbf in the past', tok('ES256', claims({ nbf: NOW - 10 })));
  add('nbf as a string', tok('ES256', claims({ nbf: String(NOW - 10) })));
  add('nbf null', tok('ES256', claims({ nbf: null })));
  add('nbf 1e400 (Infinity)', tok('ES256', rawClaim('nbf', '1e400')));
  add('nbf -1e400 (-Infinity)', tok('ES256', rawClaim('nbf', '-1e400')), true);
  add('iat missing', tok('ES256', claims({ iat: undefined })));
  add('iat in the future', tok('ES256', claims({ iat: NOW + 3600 })));
  add('iat negative', tok('ES256', claims({ iat: -5 })));
  add('iat as a string', tok('ES256', claims({ iat: 'yesterday' })));
  add('iat 1e400 (Infinity)', tok('ES256', rawClaim('iat', '1e400')), true);
  add('iat -1e400 (-Infinity)', tok('ES256', rawClaim('iat', '-1e400')), true);
  add('iat 1e400 with exp 1e400', tok('ES256', rawClaim('iat', '1e400', { exp: undefined }).replace(/}$/, ',"exp":1e400}')), true);
  add('unregistered claims of any type', tok('ES256', claims({ jti: 42, extra: { deep: [null, 1e400 === Infinity] } })));
}

/** What the gateway concluded: the claim, or the rejection. */
async function ours(token: string): Promise<{ ok: true; claim: IdentityClaim } | { ok: false; why: string }> {
  try {
    return { ok: true, claim: await verifier.verify(token, NOW_MS) };
  } catch (err) {
    return { ok: false, why: (err as Error).message };
  }
}

/** What jose concluded with the equivalent options. */
async function theirs(token: string): Promise<{ ok: true; payload: JWTPayload } | { ok: false; why: string }> {
  try {
    const { payload } = await jwtVerify(token, createLocalJWKSet({ keys: jwks }), {
      issuer: ISS,
      audience: AUD,
      algorithms: [...ALGS],
      clockTolerance: SKEW_S,
      requiredClaims: ['exp'],
      currentDate: new Date(NOW_MS),
    });
    return { ok: true, payload };
  } catch (err) {
    return { ok: false, why: `${(err as Error).name}: ${(err as Error).message}` };
  }
}

const dir = mkdtempSync(join(tmpdir(), 'pc-jose-diff-'));

beforeAll(async () => {
  jwks = [];
  for (const alg of ALGS) {
    const pair = keyPair(alg);
    keys.set(alg, pair);
    jwks.push({ ...(pair.publicKey.export({ format: 'jwk' }) as JWK), kid: alg, alg, use: 'sig' });
  }
  other = keyPair('ES256');
  weak = keyPair('RS256', 1024);
  jwks.push({ ...(weak.publicKey.export({ format: 'jwk' }) as JWK), kid: 'weak', alg: 'RS256' });
  // A second P-256 key with neither kid nor alg: a token without kid then has two candidates.
  jwks.push({ ...(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }) as JWK) });
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: jwks }));
  const cfg: JwtIssuerConfig = {
    issuer: ISS,
    audiences: [AUD],
    jwks_file: 'jwks.json',
    algorithms: [...ALGS],
    clock_skew_s: SKEW_S,
    claims: { user: 'sub', tenant: 'tenant', roles: 'roles', agent: 'azp', agent_version: 'agent_version' },
  };
  verifier = await JwtVerifier.create([cfg], dir, { tokenCacheSize: 0 });
  buildCorpus();
});

afterAll(() => verifier?.close());

describe('JWT verification agrees with jose', () => {
  it('on every token of the corpus', async () => {
    const disagreements: string[] = [];
    let accepted = 0;
    for (const c of corpus) {
      const [a, b] = [await ours(c.token), await theirs(c.token)];
      if (c.stricter) {
        if (a.ok || !b.ok) disagreements.push(`${c.name}: expected jose to accept and the gateway to reject; gateway ${a.ok ? 'accepted' : 'rejected'}, jose ${b.ok ? 'accepted' : `rejected (${b.why})`}`);
        continue;
      }
      if (a.ok !== b.ok) {
        disagreements.push(`${c.name}: gateway ${a.ok ? 'accepted' : `rejected (${a.why})`}, jose ${b.ok ? 'accepted' : `rejected (${b.why})`}`);
        continue;
      }
      if (a.ok && b.ok) {
        accepted++;
        const p = b.payload as Record<string, unknown>;
        const expected = { user: p.sub ?? null, agent: p.azp ?? null, tenant: p.tenant ?? null, roles: p.roles ?? [], agentVersion: p.agent_version ?? null };
        const got = { user: a.claim.user, agent: a.claim.agent, tenant: a.claim.tenant, roles: [...a.claim.roles], agentVersion: a.claim.agentVersion };
        if (JSON.stringify(got) !== JSON.stringify(expected)) disagreements.push(`${c.name}: claims differ: ${JSON.stringify(got)} vs ${JSON.stringify(expected)}`);
      }
    }
    expect(disagreements).toEqual([]);
    // The corpus exercises both outcomes, for every algorithm.
    expect(accepted).toBeGreaterThanOrEqual(ALGS.length * 2);
    expect(corpus.length - accepted).toBeGreaterThan(80);
  });

  it('rejects non-finite NumericDates that jose accepts (exp 1e400 would never expire)', async () => {
    const forever = tok('ES256', rawClaim('exp', '1e400'));
    const jose = await theirs(forever);
    expect(jose.ok).toBe(true);
    const gw = await ours(forever);
    expect(gw.ok).toBe(false);
    expect(gw.ok ? '' : gw.why).toMatch(/claim "exp" is invalid: it must be a finite number/);
  });
});
