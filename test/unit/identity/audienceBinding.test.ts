import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import { GatewayError } from '../../../src/errors.js';
import { SecretStore } from '../../../src/credentials/secrets.js';
import { IdentityVerifier } from '../../../src/identity/index.js';
import { JwtVerifier, type ResourceBinding } from '../../../src/identity/jwt.js';
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

const AS = 'https://as.example';
const OTHER_ISSUER = 'https://idp.internal.example';
const AUD = 'portcullis';
const DOCS = 'https://gw.example/tools/docs/';
const WEATHER = 'https://gw.example/tools/weather/';
const claims: JwtIssuerConfig['claims'] = { user: 'sub', tenant: 'tenant', roles: 'roles', agent: 'azp', agent_version: 'agent_version' };
const docs: ResourceBinding = { resource: DOCS, issuers: [AS] };

function issuer(iss: string): JwtIssuerConfig {
  return { issuer: iss, audiences: [AUD], jwks_file: 'keys/jwks.json', algorithms: ['ES256'], clock_skew_s: 30, claims };
}

const base = mkdtempSync(join(tmpdir(), 'pc-aud-'));
let key: CryptoKey;
let v: JwtVerifier;

async function sign(payload: Record<string, unknown>): Promise<string> {
  return new SignJWT({ iss: AS, azp: 'helpdesk', exp: Math.floor(Date.now() / 1000) + 300, ...payload }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(key);
}

async function rejection(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(GatewayError);
  expect((err as GatewayError).code).toBe('unauthenticated');
  expect((err as GatewayError).rule).toBe('identity.jwt');
  return (err as GatewayError).message;
}

beforeAll(async () => {
  const jwk = JSON.parse(readFileSync((await generateSigningKey(join(base, 'keys'), 'k1')).privateJwkPath, 'utf8')) as JWK;
  key = (await importJWK(jwk, 'ES256')) as CryptoKey;
  v = await JwtVerifier.create([issuer(AS), issuer(OTHER_ISSUER)], base);
});
afterAll(() => v.close());
beforeEach(() => {
  signatureChecks.count = 0;
});

describe('RFC 8707 audience binding of a protected resource', () => {
  it('accepts for the resource a token whose aud is the resource, as a string or inside an array', async () => {
    await expect(v.verify(await sign({ aud: DOCS }), Date.now(), docs)).resolves.toMatchObject({ agent: 'helpdesk' });
    await expect(v.verify(await sign({ aud: [AUD, DOCS] }), Date.now(), docs)).resolves.toMatchObject({ agent: 'helpdesk' });
  });

  it('refuses for the resource a token for another resource, one differing only by a trailing slash, and one with only the issuer audience', async () => {
    for (const aud of [WEATHER, DOCS.slice(0, -1), `${DOCS}x`, AUD, [AUD], [WEATHER, AUD], []]) {
      const message = await rejection(v.verify(await sign({ aud }), Date.now(), docs));
      expect(message).toContain(`not issued for resource "${DOCS}"`);
      expect(message).toContain(`resource=${DOCS}`);
    }
  });

  it('refuses for the resource a token from a trusted issuer that is not one of its authorization servers, even with the resource as audience', async () => {
    const message = await rejection(v.verify(await sign({ iss: OTHER_ISSUER, aud: [DOCS, AUD] }), Date.now(), docs));
    expect(message).toContain('is not an authorization server of resource');
    expect(message).toContain(AS);
  });

  it('does not let the resource audience stand in for the issuer audiences on other tools', async () => {
    const docsOnly = await sign({ aud: DOCS });
    const message = await rejection(v.verify(docsOnly, Date.now(), null));
    expect(message).toContain('audience is not accepted');
    // A multi-audience token is accepted for both.
    const multi = await sign({ aud: [DOCS, AUD] });
    await expect(v.verify(multi, Date.now(), null)).resolves.toMatchObject({ agent: 'helpdesk' });
    await expect(v.verify(multi, Date.now(), docs)).resolves.toMatchObject({ agent: 'helpdesk' });
  });

  it('checks the audience on every use: a cached token verified for one tool is not thereby accepted for another', async () => {
    const docsOnly = await sign({ aud: DOCS });
    await v.verify(docsOnly, Date.now(), docs);
    expect(signatureChecks.count).toBe(1);
    await rejection(v.verify(docsOnly, Date.now(), null));
    await rejection(v.verify(docsOnly, Date.now(), { resource: WEATHER, issuers: [AS] }));
    await expect(v.verify(docsOnly, Date.now(), docs)).resolves.toMatchObject({ agent: 'helpdesk' });
    // All from the cache: the refusals are the audience rule, not a fresh verification.
    expect(signatureChecks.count).toBe(1);

    const issuerOnly = await sign({ aud: AUD });
    await v.verify(issuerOnly, Date.now(), null);
    await rejection(v.verify(issuerOnly, Date.now(), docs));
  });

  it('is applied by the identity verifier to the bearer token of a request for the resource', async () => {
    const cfg: IdentityConfig = { required: true, jwt: [issuer(AS)], mtls: [], api_keys: [], api_key_header: 'x-api-key', signatures: [] };
    const secrets = new SecretStore(base);
    const identity = await IdentityVerifier.create(cfg, base, secrets);
    try {
      const headers = { authorization: `Bearer ${await sign({ aud: AUD })}` };
      const req = { headers, sourcePrincipal: undefined, rawBody: undefined, bodyTruncated: false, toolName: 'docs', nowMs: Date.now() };
      await expect(identity.verify(req)).resolves.toMatchObject({ agent: 'helpdesk' });
      await rejection(identity.verify({ ...req, resource: docs }));
    } finally {
      identity.close();
      secrets.close();
    }
  });
});
