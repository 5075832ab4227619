import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, createHmac } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GatewayError } from '../../../src/errors.js';
import { SecretStore } from '../../../src/credentials/secrets.js';
import type { IdentityConfig } from '../../../src/config/types.js';
import { IdentityVerifier, type IdentityRequest } from '../../../src/identity/index.js';
import { MemoryStore, type SharedStore } from '../../../src/limits/store.js';
import { generateSigningKey, mintToken } from '../../../src/identity/mint.js';

const ISS = 'https://issuer.test';
const base = mkdtempSync(join(tmpdir(), 'pc-ident-'));
const API_KEY = 'reporter-secret-key';
const SIGNING_SECRET = 'webhook-signing-secret';
const SPIFFE = 'spiffe://demo/agent/reporter';
writeFileSync(join(base, 'sig'), `${SIGNING_SECRET}\n`);

const cfg: IdentityConfig = {
  required: true,
  jwt: [{ issuer: ISS, audiences: ['portcullis'], jwks_file: 'keys/jwks.json', algorithms: ['ES256'], clock_skew_s: 30, claims: { user: 'sub', tenant: 'tenant', roles: 'roles', agent: 'azp', agent_version: 'agent_version' } }],
  mtls: [{ principal: SPIFFE, agent: 'reporter', agent_version: '2.0', roles: ['viewer'], tenant: 'acme' }],
  api_keys: [
    { id: 'other-key', sha256: createHash('sha256').update('some-other-key').digest('hex'), agent: 'other' },
    { id: 'reporter-key', sha256: createHash('sha256').update(API_KEY).digest('hex'), agent: 'reporter', roles: ['viewer'], tenant: 'acme' },
  ],
  api_key_header: 'x-api-key',
  signatures: [{ id: 'alerts', secret: { file: 'sig' }, signature_header: 'x-slack-signature', timestamp_header: 'x-slack-request-timestamp', max_skew_s: 300, agent: 'alerts', roles: ['support'], tools: ['tickets'] }],
};

let secrets: SecretStore;
let v: IdentityVerifier;
let privateJwkPath: string;

beforeAll(async () => {
  privateJwkPath = (await generateSigningKey(join(base, 'keys'))).privateJwkPath;
  secrets = new SecretStore(base);
  v = await IdentityVerifier.create(cfg, base, secrets);
});
afterAll(() => {
  v.close();
  secrets.close();
});

const NOW = Date.now();

function req(over: Partial<IdentityRequest> = {}): IdentityRequest {
  return { headers: {}, sourcePrincipal: undefined, rawBody: undefined, bodyTruncated: false, toolName: 'tickets', nowMs: NOW, ...over };
}

function signed(body: string, tsS: number, secret = SIGNING_SECRET): Record<string, string> {
  const sig = createHmac('sha256', secret).update(`v0:${tsS}:${body}`).digest('hex');
  return { 'x-slack-signature': `v0=${sig}`, 'x-slack-request-timestamp': String(tsS) };
}

function token(o: { agent?: string; user?: string; tenant?: string; roles?: string[] } = {}): Promise<string> {
  return mintToken({ issuer: ISS, audience: 'portcullis', agent: o.agent ?? 'reporter', user: o.user ?? 'alice', tenant: o.tenant, roles: o.roles, ttlS: 300, privateJwkPath });
}

async function denial(p: Promise<unknown>, rule: string, code = 'unauthenticated'): Promise<GatewayError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(GatewayError);
  expect((err as GatewayError).code).toBe(code);
  expect((err as GatewayError).rule).toBe(rule);
  return err as GatewayError;
}

describe('IdentityVerifier', () => {
  it('returns null when no credential is presented', async () => {
    expect(await v.verify(req())).toBeNull();
  });

  it('never reads caller-supplied identity headers', async () => {
    expect(await v.verify(req({ headers: { 'x-user-id': 'admin', 'x-forwarded-user': 'admin', 'x-tenant-id': 'acme' } }))).toBeNull();
    const p = await v.verify(req({ headers: { authorization: `Bearer ${await token({ user: 'alice' })}`, 'x-user-id': 'admin' } }));
    expect(p?.user).toBe('alice');
  });

  it('lists the credential headers', () => {
    expect([...v.credentialHeaders].sort()).toEqual(['authorization', 'x-api-key', 'x-slack-request-timestamp', 'x-slack-signature']);
  });

  it('maps a verified JWT to a principal', async () => {
    const p = await v.verify(req({ headers: { authorization: `Bearer ${await token({ user: 'alice', tenant: 'acme', roles: ['support'] })}` } }));
    expect(p).toEqual({ agent: 'reporter', agent_version: null, user: 'alice', tenant: 'acme', roles: ['support'], methods: ['jwt'], proven_by: [ISS], jti: expect.stringMatching(/^[0-9a-f-]{36}$/) });
  });

  it('rejects a non-bearer authorization header', async () => {
    const err = await denial(v.verify(req({ headers: { authorization: 'Basic YWxpY2U6cHc=' } })), 'identity.jwt');
    expect(err.message).toMatch(/scheme "Basic"/);
  });

  it('maps a known mTLS peer and ignores an unknown one', async () => {
    expect(await v.verify(req({ sourcePrincipal: SPIFFE }))).toEqual({
      agent: 'reporter', agent_version: '2.0', user: null, tenant: 'acme', roles: ['viewer'], methods: ['mtls'], proven_by: [SPIFFE], jti: null,
    });
    expect(await v.verify(req({ sourcePrincipal: 'spiffe://demo/agent/stranger' }))).toBeNull();
  });

  it('combines mTLS (agent) with a JWT (user)', async () => {
    const p = await v.verify(req({ sourcePrincipal: SPIFFE, headers: { authorization: `Bearer ${await token({ user: 'bob', roles: ['support'] })}` } }));
    expect(p).toMatchObject({ agent: 'reporter', user: 'bob', tenant: 'acme', roles: ['viewer', 'support'], methods: ['mtls', 'jwt'], proven_by: [SPIFFE, ISS] });
  });

  it('rejects two methods naming different agents', async () => {
    const err = await denial(v.verify(req({ sourcePrincipal: SPIFFE, headers: { authorization: `Bearer ${await token({ agent: 'helpdesk' })}` } })), 'identity.jwt');
    expect(err.message).toMatch(/disagree on the agent: mtls says "reporter", jwt says "helpdesk"/);
    await denial(v.verify(req({ headers: { 'x-api-key': API_KEY, ...signed('', Math.floor(NOW / 1000)) } })), 'identity.signature');
  });

  it('rejects credentials naming different tenants', async () => {
    const err = await denial(v.verify(req({ sourcePrincipal: SPIFFE, headers: { authorization: `Bearer ${await token({ tenant: 'globex' })}` } })), 'identity.jwt');
    expect(err.message).toMatch(/disagree on the tenant/);
  });

  it('accepts a good API key and rejects a bad one without falling through', async () => {
    expect(await v.verify(req({ headers: { 'x-api-key': API_KEY } }))).toMatchObject({ agent: 'reporter', methods: ['api_key'], proven_by: ['reporter-key'] });
    const err = await denial(v.verify(req({ sourcePrincipal: SPIFFE, headers: { 'x-api-key': 'wrong' } })), 'identity.api_key');
    expect(err.message).toBe('the API key is not recognized');
    expect(err.message).not.toContain('wrong');
  });

  it('accepts a good signature', async () => {
    const body = '{"text":"disk full"}';
    const p = await v.verify(req({ headers: signed(body, Math.floor(NOW / 1000) - 10), rawBody: Buffer.from(body) }));
    expect(p).toMatchObject({ agent: 'alerts', roles: ['support'], methods: ['signature'], proven_by: ['alerts'] });
  });

  it('rejects a bad signature', async () => {
    const body = '{"text":"disk full"}';
    const headers = signed(body, Math.floor(NOW / 1000), 'not-the-secret');
    const err = await denial(v.verify(req({ headers, rawBody: Buffer.from(body) })), 'identity.signature');
    expect(err.message).toMatch(/does not match/);
    // Signature over a different body.
    await denial(v.verify(req({ headers: signed(body, Math.floor(NOW / 1000)), rawBody: Buffer.from(`${body} `) })), 'identity.signature');
    const malformed = await denial(v.verify(req({ headers: { ...headers, 'x-slack-signature': 'sha256=abc' }, rawBody: Buffer.from(body) })), 'identity.signature');
    expect(malformed.message).toMatch(/carries a "sha256" signature; the signers of this header use "v0": it must be "v0=" followed by 64 hex/);
  });

  it('rejects a stale or missing timestamp (replay window)', async () => {
    const body = '{}';
    const stale = await denial(v.verify(req({ headers: signed(body, Math.floor(NOW / 1000) - 301), rawBody: Buffer.from(body) })), 'identity.signature');
    expect(stale.message).toMatch(/accepted within 300s \(replay window\)/);
    const future = signed(body, Math.floor(NOW / 1000) + 400);
    await denial(v.verify(req({ headers: future, rawBody: Buffer.from(body) })), 'identity.signature');
    const { 'x-slack-request-timestamp': _ts, ...noTs } = signed(body, Math.floor(NOW / 1000));
    expect((await denial(v.verify(req({ headers: noTs, rawBody: Buffer.from(body) })), 'identity.signature')).message).toMatch(/missing header x-slack-request-timestamp/);
  });

  it('cannot verify a signature over a truncated body', async () => {
    const body = 'x'.repeat(100);
    const err = await denial(v.verify(req({ headers: signed(body, Math.floor(NOW / 1000)), rawBody: Buffer.from(body.slice(0, 50)), bodyTruncated: true })), 'identity.signature');
    expect(err.message).toMatch(/truncated/);
  });

  it('restricts a signer to its tools', async () => {
    const err = await denial(v.verify(req({ headers: signed('', Math.floor(NOW / 1000)), toolName: 'weather' })), 'identity.signature', 'forbidden');
    expect(err.message).toMatch(/signer "alerts" may not call tool "weather"/);
  });

  it('leaves the authorization header alone when no issuer is configured', async () => {
    const plain = await IdentityVerifier.create({ ...cfg, jwt: [], api_keys: [], signatures: [] }, base, secrets);
    try {
      expect(plain.credentialHeaders).toEqual([]);
      expect(await plain.verify(req({ headers: { authorization: 'Bearer opaque-token-for-the-policy' } }))).toBeNull();
    } finally {
      plain.close();
    }
  });

  it('refuses an HS256 algorithm list at create', async () => {
    const bad = { ...cfg, jwt: [{ ...(cfg.jwt[0] as IdentityConfig['jwt'][number]), algorithms: ['HS256'] }] };
    await expect(IdentityVerifier.create(bad, base, secrets)).rejects.toThrow(/HS256" is not allowed/);
  });

  it('accepts a signature once: the same signed request again, or on another method and path, is a replay', async () => {
    const body = '{"title":"replayed","priority":"low"}';
    const headers = signed(body, Math.floor(NOW / 1000) - 5);
    const first = { headers, rawBody: Buffer.from(body), method: 'POST', path: '/tools/tickets/tenants/acme/tickets' };
    expect(await v.verify(req(first))).toMatchObject({ agent: 'alerts', methods: ['signature'] });
    const again = await denial(v.verify(req(first)), 'identity.signature');
    expect(again.message).toMatch(/signature was already used/);
    await denial(v.verify(req({ ...first, method: 'PUT', path: '/tools/tickets/tickets/T-1001' })), 'identity.signature');
    // A configuration reload builds a new verifier; the signatures seen before stay seen.
    const reloaded = await IdentityVerifier.create(cfg, base, secrets);
    try {
      expect((await denial(reloaded.verify(req(first)), 'identity.signature')).message).toMatch(/already used/);
    } finally {
      reloaded.close();
    }
  });

  it('keeps a seen signature only for its window, and fails closed when the store cannot answer', async () => {
    let clock = NOW;
    const store = new MemoryStore(10, () => clock);
    const own = await IdentityVerifier.create(cfg, base, secrets, { replayStore: store });
    try {
      const body = '{}';
      const headers = signed(body, Math.floor(NOW / 1000));
      await own.verify(req({ headers, rawBody: Buffer.from(body) }));
      expect(store.size).toBe(1);
      await denial(own.verify(req({ headers, rawBody: Buffer.from(body) })), 'identity.signature');
      // Past the window the timestamp itself is refused; the entry may go.
      clock = NOW + 302_000;
      const late = await denial(own.verify(req({ headers, rawBody: Buffer.from(body), nowMs: clock })), 'identity.signature');
      expect(late.message).toMatch(/replay window/);
    } finally {
      own.close();
    }
    const down: SharedStore = { setIfAbsent: () => Promise.reject(new Error('connection refused')) };
    const broken = await IdentityVerifier.create(cfg, base, secrets, { replayStore: down });
    try {
      const body = '{"x":1}';
      await denial(broken.verify(req({ headers: signed(body, Math.floor(NOW / 1000)), rawBody: Buffer.from(body) })), 'identity.signature', 'unavailable');
    } finally {
      broken.close();
    }
  });

  it('scheme v1 signs method and path too, and refuses v0 signatures for that signer', async () => {
    const v1cfg: IdentityConfig = { ...cfg, signatures: [{ ...(cfg.signatures[0] as IdentityConfig['signatures'][number]), scheme: 'v1' }] };
    const own = await IdentityVerifier.create(v1cfg, base, secrets, { replayStore: new MemoryStore() });
    const sign1 = (method: string, path: string, body: string, ts: number): Record<string, string> => ({
      'x-slack-signature': `v1=${createHmac('sha256', SIGNING_SECRET).update(`v1:${ts}:${method}:${path}:${body}`).digest('hex')}`,
      'x-slack-request-timestamp': String(ts),
    });
    try {
      const ts = Math.floor(NOW / 1000);
      const body = '{"title":"x"}';
      const path = '/tools/tickets/tenants/acme/tickets';
      expect(await own.verify(req({ headers: sign1('POST', path, body, ts), rawBody: Buffer.from(body), method: 'POST', path }))).toMatchObject({ agent: 'alerts' });
      const moved = await denial(own.verify(req({ headers: sign1('POST', path, body, ts - 1), rawBody: Buffer.from(body), method: 'PUT', path: '/tools/tickets/tickets/T-1001' })), 'identity.signature');
      expect(moved.message).toMatch(/"v1:" \+ timestamp \+ ":" \+ METHOD \+ ":" \+ path/);
      // The method and path default to Envoy's pseudo-headers.
      const h = { ...sign1('DELETE', '/tools/tickets/tickets/T-9', '', ts), ':method': 'DELETE', ':path': '/tools/tickets/tickets/T-9' };
      expect(await own.verify(req({ headers: h }))).toMatchObject({ agent: 'alerts' });
      const downgrade = await denial(own.verify(req({ headers: signed(body, ts), rawBody: Buffer.from(body), method: 'POST', path })), 'identity.signature');
      expect(downgrade.message).toMatch(/carries a "v0" signature; the signers of this header use "v1"/);
    } finally {
      own.close();
    }
  });
});
