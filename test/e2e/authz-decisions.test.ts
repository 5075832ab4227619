import { createHmac, createPublicKey, type JsonWebKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { importJWK, SignJWT, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../helpers/index.js';
import {
  allSecrets,
  AUDIENCE,
  auditRecords,
  auditText,
  call,
  eventually,
  expectDenial,
  ISSUER,
  metricValue,
  secretValue,
  slackHeaders,
  token,
  type Reply,
} from './authz-support.js';

/**
 * ext_authz decisions through the real Envoy: who may call (401), what they may call (403/404),
 * what reaches the upstream on allow, and the traces every decision leaves (metrics, audit).
 */

let stack: Stack;
let alice: string;
/** Request ids of every 401/403 this file provoked; each must leave exactly one audit record. */
const denied: string[] = [];

function b64url(v: unknown): string {
  return Buffer.from(JSON.stringify(v)).toString('base64url');
}

function kidOf(): string {
  const jwk = JSON.parse(readFileSync(stack.prepared.privateJwkPath, 'utf8')) as { kid: string };
  return jwk.kid;
}

/** A token signed with the demo key but with chosen claims (expired, wrong audience, ...). */
async function signed(claims: Record<string, unknown>, opts: { exp: number; aud?: string }): Promise<string> {
  const jwk = JSON.parse(readFileSync(stack.prepared.privateJwkPath, 'utf8')) as JWK;
  const key = await importJWK(jwk, 'ES256');
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ azp: 'helpdesk', sub: 'alice', tenant: 'acme', roles: ['support'], ...claims })
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: jwk.kid as string })
    .setIssuer(ISSUER)
    .setAudience(opts.aud ?? AUDIENCE)
    .setIssuedAt(now - 600)
    .setExpirationTime(opts.exp)
    .sign(key);
}

/** HS256 token whose HMAC key is `key`: what an attacker holding only the public key can make. */
function hs256(key: string | Buffer): string {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url({ alg: 'HS256', typ: 'JWT', kid: kidOf() });
  const body = b64url({ iss: ISSUER, aud: AUDIENCE, azp: 'helpdesk', sub: 'alice', tenant: 'acme', roles: ['admin'], iat: now, exp: now + 300 });
  const sig = createHmac('sha256', key).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

const weather = (): string => `${stack.envoyUrl}/tools/weather/forecast?city=Paris`;
const ticketsOf = (tenant: string): string => `${stack.envoyUrl}/tools/tickets/tenants/${tenant}/tickets`;

function remember(r: Reply): Reply {
  const id = r.headers.get('x-request-id');
  if (id && (r.status === 401 || r.status === 403)) denied.push(id);
  return r;
}

async function get(url: string, headers: Record<string, string> = {}): Promise<Reply> {
  return remember(await call(url, { headers }));
}

async function post(url: string, body: string, headers: Record<string, string> = {}): Promise<Reply> {
  return remember(await call(url, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } }));
}

beforeAll(async () => {
  stack = await startStack();
  alice = await token(stack);
});

afterAll(async () => {
  await stack?.stop();
});

describe('401: no valid credential', () => {
  it('no credential at all', async () => {
    const before = stack.tool.received.length;
    const body = expectDenial(await get(weather()), 401, 'unauthenticated', 'identity.required');
    expect(body.error.message).toMatch(/verified identity/);
    expect(stack.tool.received.length).toBe(before);
  });

  it('expired JWT', async () => {
    const t = await signed({}, { exp: Math.floor(Date.now() / 1000) - 3600 });
    const body = expectDenial(await get(weather(), { authorization: `Bearer ${t}` }), 401, 'unauthenticated', 'identity.jwt');
    expect(body.error.message).toMatch(/expired/);
  });

  it('JWT for another audience', async () => {
    const t = await signed({}, { exp: Math.floor(Date.now() / 1000) + 300, aud: 'some-other-service' });
    const body = expectDenial(await get(weather(), { authorization: `Bearer ${t}` }), 401, 'unauthenticated', 'identity.jwt');
    expect(body.error.message).toMatch(/audience/);
  });

  it('unsigned token (alg: none)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const t = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ iss: ISSUER, aud: AUDIENCE, azp: 'helpdesk', sub: 'alice', tenant: 'acme', roles: ['admin'], exp: now + 300 })}.`;
    const body = expectDenial(await get(weather(), { authorization: `Bearer ${t}` }), 401, 'unauthenticated', 'identity.jwt');
    expect(body.error.message).toMatch(/algorithm "none" is not accepted/);
  });

  it('HS256 token keyed with the public key (algorithm confusion), as JWK JSON and as PEM', async () => {
    const publicJwk = JSON.parse(readFileSync(stack.prepared.jwksPath, 'utf8')) as { keys: JsonWebKey[] };
    const pub = publicJwk.keys[0] as JsonWebKey;
    const pem = createPublicKey({ key: pub, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    for (const key of [JSON.stringify(pub), readFileSync(stack.prepared.jwksPath), pem]) {
      const body = expectDenial(await get(weather(), { authorization: `Bearer ${hs256(key)}` }), 401, 'unauthenticated', 'identity.jwt');
      expect(body.error.message).toMatch(/algorithm "HS256" is not accepted/);
    }
  });

  it('unknown API key, and an authorization scheme other than Bearer', async () => {
    const key = expectDenial(await get(weather(), { 'x-api-key': 'not-a-real-key' }), 401, 'unauthenticated', 'identity.api_key');
    expect(key.error.message).not.toContain('not-a-real-key');
    const basic = expectDenial(await get(weather(), { authorization: `Basic ${Buffer.from('alice:pw').toString('base64')}` }), 401, 'unauthenticated', 'identity.jwt');
    expect(basic.error.message).toMatch(/Basic/);
  });

  it('a credential that does not verify is not rescued by another header', async () => {
    // A bad token next to a valid API key must still fail: no falling back to another method.
    const r = await get(weather(), { authorization: 'Bearer not.a.jwt', 'x-api-key': 'demo-reporter-key' });
    expectDenial(r, 401, 'unauthenticated', 'identity.jwt');
  });

  it('HMAC-signed request with a bad signature', async () => {
    const body = JSON.stringify({ title: 'disk full', priority: 'high' });
    const headers = slackHeaders(stack, body, { secret: 'not-the-secret' });
    const before = stack.tool.received.length;
    const e = expectDenial(await post(ticketsOf('acme'), body, headers), 401, 'unauthenticated', 'identity.signature');
    expect(e.error.message).toMatch(/signature .* does not match/);
    expect(stack.tool.received.length).toBe(before);
  });

  it('HMAC-signed request whose body was changed after signing', async () => {
    const headers = slackHeaders(stack, JSON.stringify({ title: 'disk full', priority: 'low' }));
    const r = await post(ticketsOf('acme'), JSON.stringify({ title: 'disk full', priority: 'high' }), headers);
    expectDenial(r, 401, 'unauthenticated', 'identity.signature');
  });

  it('HMAC-signed request with a stale timestamp (replay)', async () => {
    const body = JSON.stringify({ title: 'disk full', priority: 'high' });
    const headers = slackHeaders(stack, body, { ts: Math.floor(Date.now() / 1000) - 3600 });
    const e = expectDenial(await post(ticketsOf('acme'), body, headers), 401, 'unauthenticated', 'identity.signature');
    expect(e.error.message).toMatch(/replay window/);
  });
});

describe('HMAC-signed webhook', () => {
  it('a correctly signed request to tickets is allowed and reaches the tool with the tool credential', async () => {
    const body = JSON.stringify({ title: 'disk full on db-1', priority: 'high' });
    const headers = slackHeaders(stack, body);
    const before = stack.tool.received.length;
    const r = await post(ticketsOf('acme'), body, headers);
    expect(r.status, r.text).toBe(201);
    expect(stack.tool.received.length).toBe(before + 1);
    const got = stack.tool.received.at(-1);
    expect(got?.method).toBe('POST');
    expect(got?.path).toBe('/tickets/tenants/acme/tickets');
    expect(got?.body).toBe(body);
    // The signer has no user: the tool-wide token, not alice's, is injected.
    expect(got?.headers.authorization).toBe(`Bearer ${secretValue(stack, 'secrets/tickets-token')}`);
    expect(got?.headers['x-portcullis-agent']).toBe('alerts');
    // The signature headers are credentials of the gateway, not of the tool.
    expect(got?.headers['x-slack-signature']).toBeUndefined();
    expect(got?.headers['x-slack-request-timestamp']).toBeUndefined();
  });

  it('the signer is limited to tickets', async () => {
    const headers = slackHeaders(stack, '');
    expectDenial(await get(weather(), headers), 403, 'forbidden', 'identity.signature');
  });
});

describe('403/404: authenticated but not allowed', () => {
  it('agent without a binding to the tool', async () => {
    const reporter = await token(stack, { agent: 'reporter', roles: ['support'] });
    const before = stack.tool.received.length;
    const body = expectDenial(await get(ticketsOf('acme'), { authorization: `Bearer ${reporter}` }), 403, 'forbidden', 'agent.not_bound');
    expect(body.error.message).toMatch(/reporter/);
    expect(body.error.message).toMatch(/tickets/);
    expect(stack.tool.received.length).toBe(before);
  });

  it('API key agent without a binding to the tool', async () => {
    expectDenial(await get(ticketsOf('acme'), { 'x-api-key': 'demo-reporter-key' }), 403, 'forbidden', 'agent.not_bound');
  });

  it('tenant in the path is not the caller tenant', async () => {
    const body = expectDenial(await get(ticketsOf('globex'), { authorization: `Bearer ${alice}` }), 403, 'forbidden', 'tenant.mismatch');
    expect(body.error.message).toMatch(/globex/);
    expect(body.error.message).toMatch(/acme/);
  });

  it('tenant in the body is not the caller tenant', async () => {
    const r = await post(ticketsOf('acme'), JSON.stringify({ title: 'x', priority: 'low', tenant: 'globex' }), { authorization: `Bearer ${alice}` });
    expectDenial(r, 403, 'forbidden', 'tenant.mismatch');
  });

  it('read-only role on a mutating call', async () => {
    const viewer = await token(stack, { user: 'bob', roles: ['viewer'] });
    const before = stack.tool.received.length;
    const r = await post(ticketsOf('acme'), JSON.stringify({ title: 'printer on fire', priority: 'high' }), { authorization: `Bearer ${viewer}` });
    expectDenial(r, 403, 'forbidden', 'role.read_only');
    expect(stack.tool.received.length).toBe(before);
    // The same role may read.
    const ok = await get(ticketsOf('acme'), { authorization: `Bearer ${viewer}` });
    expect(ok.status, ok.text).toBe(200);
  });

  it('unknown tool', async () => {
    const body = expectDenial(await get(`${stack.envoyUrl}/tools/nope/x`, { authorization: `Bearer ${alice}` }), 404, 'unknown_tool', 'tool.unknown');
    expect(body.error.message).toMatch(/nope/);
  });

  it('path outside /tools is not a tool either', async () => {
    expectDenial(await get(`${stack.envoyUrl}/admin`, { authorization: `Bearer ${alice}` }), 404, 'unknown_tool', 'tool.unknown');
  });

  it('dot segments cannot smuggle a call to another tool past the decision', async () => {
    // fetch would normalise the path itself; send it raw.
    const before = stack.tool.received.length;
    const reporterToken = await token(stack, { agent: 'reporter', roles: ['support'] });
    const url = new URL(stack.envoyUrl);
    const r = await new Promise<Reply>((resolve, reject) => {
      const req = request(
        { host: url.hostname, port: url.port, path: '/tools/weather/../tickets/tenants/acme/tickets', headers: { authorization: `Bearer ${reporterToken}` } },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString('utf8')));
          res.on('end', () => {
            const headers = new Headers();
            for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
            resolve({ status: res.statusCode ?? 0, headers, text });
          });
        },
      );
      req.on('error', reject);
      req.end();
    });
    remember(r);
    // Envoy resolves the path first, so the decision is about tickets, which reporter may not use.
    expectDenial(r, 403, 'forbidden', 'agent.not_bound');
    expect(stack.tool.received.length).toBe(before);
  });

  it('callers cannot choose the request id that ties errors to audit records', async () => {
    const r = await get(ticketsOf('globex'), { authorization: `Bearer ${alice}`, 'x-request-id': 'forged-request-id' });
    const body = expectDenial(r, 403, 'forbidden', 'tenant.mismatch');
    expect(body.error.request_id).not.toBe('forged-request-id');
  });

  it('MCP JSON-RPC denial is a JSON-RPC error carrying the request id', async () => {
    const viewer = await token(stack, { agent: 'reporter', user: 'bob', roles: ['viewer'] });
    const before = stack.tool.received.length;
    const rpc = { jsonrpc: '2.0', id: 'req-42', method: 'tools/call', params: { name: 'delete_doc', arguments: { doc_id: 'd1', tenant: 'acme' } } };
    const r = await post(`${stack.envoyUrl}/tools/docs/`, JSON.stringify(rpc), { authorization: `Bearer ${viewer}` });
    expect(r.status, r.text).toBe(403);
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    const body = JSON.parse(r.text) as { jsonrpc: string; id: unknown; error: { code: number; message: string; data: Record<string, unknown> } };
    expect(body.jsonrpc).toBe('2.0');
    expect(body.id).toBe('req-42');
    expect(body.error.code).toBe(-32003);
    expect(body.error.message).toMatch(/read-only/);
    expect(body.error.data.type).toBe('forbidden');
    expect(body.error.data.rule).toBe('role.read_only');
    expect(body.error.data.request_id).toBe(r.headers.get('x-request-id'));
    expect(stack.tool.received.length).toBe(before);

    // Numeric ids come back as numbers; the tenant in the MCP arguments is checked too.
    const rpc2 = { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'vpn', tenant: 'globex' } } };
    const r2 = await post(`${stack.envoyUrl}/tools/docs/`, JSON.stringify(rpc2), { authorization: `Bearer ${alice}` });
    const body2 = JSON.parse(r2.text) as { id: unknown; error: { data: Record<string, unknown> } };
    expect(r2.status, r2.text).toBe(403);
    expect(body2.id).toBe(7);
    expect(body2.error.data.rule).toBe('tenant.mismatch');
  });

  it('a denied JSON-RPC batch is answered with one error per call id, naming the call that was refused', async () => {
    const viewer = await token(stack, { agent: 'reporter', user: 'bob', roles: ['viewer'] });
    const before = stack.tool.received.length;
    const batch = [
      { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'vpn', tenant: 'acme' } } },
      { jsonrpc: '2.0', id: 'two', method: 'tools/call', params: { name: 'delete_doc', arguments: { doc_id: 'd1', tenant: 'acme' } } },
    ];
    const r = await post(`${stack.envoyUrl}/tools/docs/`, JSON.stringify(batch), { authorization: `Bearer ${viewer}` });
    expect(r.status, r.text).toBe(403);
    const body = JSON.parse(r.text) as { jsonrpc: string; id: unknown; error: { message: string; data: Record<string, unknown> } }[];
    expect(Array.isArray(body)).toBe(true);
    expect(body.map((e) => e.id)).toEqual([1, 'two']);
    const refused = body.find((e) => e.id === 'two')!;
    expect(refused.error.data.rule).toBe('role.read_only');
    expect(body.find((e) => e.id === 1)!.error.message).toMatch(/not executed: call "two"/);
    expect(stack.tool.received.length).toBe(before);
  });

  it('MCP JSON-RPC without credentials is a JSON-RPC error with WWW-Authenticate', async () => {
    const rpc = { jsonrpc: '2.0', id: 9, method: 'tools/list' };
    const r = await post(`${stack.envoyUrl}/tools/docs/`, JSON.stringify(rpc));
    expect(r.status, r.text).toBe(401);
    expect(r.headers.get('www-authenticate')).toMatch(/^Bearer /);
    const body = JSON.parse(r.text) as { id: unknown; error: { code: number; data: Record<string, unknown> } };
    expect(body.id).toBe(9);
    expect(body.error.code).toBe(-32001);
    expect(body.error.data.type).toBe('unauthenticated');
    expect(body.error.data.request_id).toBe(r.headers.get('x-request-id'));
  });
});

describe('allowed calls', () => {
  it('reach the tool with the injected per-user credential and without caller credentials or spoofed identity', async () => {
    const before = stack.tool.received.length;
    const r = await get(ticketsOf('acme'), {
      authorization: `Bearer ${alice}`,
      'x-user-id': 'mallory',
      'x-forwarded-user': 'mallory',
      'x-remote-user': 'mallory',
      'x-portcullis-user': 'mallory',
      'x-portcullis-tenant': 'globex',
      'x-portcullis-agent': 'admin-bot',
      'x-portcullis-admin': 'true',
    });
    expect(r.status, r.text).toBe(200);
    expect(stack.tool.received.length).toBe(before + 1);
    const h = stack.tool.received.at(-1)?.headers ?? {};
    expect(h.authorization).toBe(`Bearer ${secretValue(stack, 'secrets/tickets-token-alice')}`);
    expect(JSON.stringify(h)).not.toContain(alice);
    expect(h['x-user-id']).toBeUndefined();
    expect(h['x-forwarded-user']).toBeUndefined();
    expect(h['x-remote-user']).toBeUndefined();
    expect(h['x-portcullis-admin']).toBeUndefined();
    // The gateway's own identity headers carry the verified principal, not the caller's claims.
    expect(h['x-portcullis-user']).toBe('alice');
    expect(h['x-portcullis-tenant']).toBe('acme');
    expect(h['x-portcullis-agent']).toBe('helpdesk');
    // The sample tool echoes request headers back: the injected secret must not reach the agent.
    for (const secret of allSecrets(stack)) expect(r.text).not.toContain(secret);
    expect(r.headers.get('x-request-id')).toBeTruthy();
  });

  it('another user gets the tool-wide credential', async () => {
    const bob = await token(stack, { user: 'bob' });
    const r = await get(ticketsOf('acme'), { authorization: `Bearer ${bob}` });
    expect(r.status, r.text).toBe(200);
    expect(stack.tool.received.at(-1)?.headers.authorization).toBe(`Bearer ${secretValue(stack, 'secrets/tickets-token')}`);
    for (const secret of allSecrets(stack)) expect(r.text).not.toContain(secret);
  });

  it('API key callers get the tool key in place of their own', async () => {
    const r = await get(weather(), { 'x-api-key': 'demo-reporter-key' });
    expect(r.status, r.text).toBe(200);
    const h = stack.tool.received.at(-1)?.headers ?? {};
    expect(h['x-api-key']).toBe(secretValue(stack, 'secrets/weather-api-key'));
    expect(JSON.stringify(h)).not.toContain('demo-reporter-key');
    for (const secret of allSecrets(stack)) expect(r.text).not.toContain(secret);
  });

  it('MCP calls get the env-provided credential', async () => {
    const rpc = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'vpn', tenant: 'acme' } } };
    const r = await post(`${stack.envoyUrl}/tools/docs/`, JSON.stringify(rpc), { authorization: `Bearer ${alice}` });
    expect(r.status, r.text).toBe(200);
    expect(stack.tool.received.at(-1)?.headers.authorization).toBe(`Bearer ${stack.prepared.env.DOCS_TOKEN}`);
    for (const secret of allSecrets(stack)) expect(r.text).not.toContain(secret);
  });
});

describe('what decisions leave behind', () => {
  it('/metrics counts decisions by outcome', async () => {
    const scrape = async (): Promise<string> => (await call(`${stack.adminUrl}/metrics`)).text;
    const m0 = await scrape();
    const name = 'portcullis_authz_decisions_total';
    const allow0 = metricValue(m0, name, { outcome: 'allow', tool: 'weather' });
    const unauth0 = metricValue(m0, name, { outcome: 'deny', code: 'unauthenticated', tool: 'weather' });
    const forbid0 = metricValue(m0, name, { outcome: 'deny', code: 'forbidden', tool: 'tickets', rule: 'tenant.mismatch' });
    expect((await get(weather(), { authorization: `Bearer ${alice}` })).status).toBe(200);
    expect((await get(weather())).status).toBe(401);
    expect((await get(ticketsOf('globex'), { authorization: `Bearer ${alice}` })).status).toBe(403);
    const m1 = await scrape();
    expect(metricValue(m1, name, { outcome: 'allow', tool: 'weather' })).toBe(allow0 + 1);
    expect(metricValue(m1, name, { outcome: 'deny', code: 'unauthenticated', tool: 'weather' })).toBe(unauth0 + 1);
    expect(metricValue(m1, name, { outcome: 'deny', code: 'forbidden', tool: 'tickets', rule: 'tenant.mismatch' })).toBe(forbid0 + 1);
  });

  it('every 401/403 left exactly one audit record, denied, and no secret', async () => {
    expect(denied.length).toBeGreaterThanOrEqual(15);
    const byId = (): Map<string, Record<string, unknown>[]> => {
      const map = new Map<string, Record<string, unknown>[]>();
      for (const rec of auditRecords(stack)) {
        const id = rec.request_id as string;
        map.set(id, [...(map.get(id) ?? []), rec]);
      }
      return map;
    };
    // The file sink writes asynchronously; wait (bounded) until every denial is there.
    await eventually(async () => denied.every((id) => byId().has(id)), 5_000);
    const map = byId();
    for (const id of denied) {
      const recs = map.get(id) ?? [];
      expect(recs.length, `audit records for ${id}`).toBe(1);
      const rec = recs[0] as { decision: { allowed: boolean; rule: string | null }; response_status: number };
      expect(rec.decision.allowed).toBe(false);
      expect(rec.decision.rule).toBeTruthy();
      expect([401, 403]).toContain(rec.response_status);
    }
    const text = auditText(stack);
    for (const secret of [...allSecrets(stack), alice, 'demo-reporter-key']) expect(text).not.toContain(secret);
  });
});
