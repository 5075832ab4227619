import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompactSign, importJWK, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../helpers/index.js';
import { loadSignatureRecipe } from '../helpers/signatureRecipe.js';
import { AUDIENCE, auditRecords, auditText, call, eventually, expectDenial, ISSUER, slackHeaders, token, type Reply } from './authz-support.js';

/**
 * The trust boundary at the edge, through the real Envoy: credentials reach tools byte for byte,
 * tokens whose dates are not numbers never verify, and a signed webhook is accepted once, for
 * the request it was signed for.
 */

/** A tool credential full of String.replace patterns. */
const TICKETS_TOKEN = "ab$&cd$'x$`$1";
/** Secret of the v1-scheme webhook signer. */
const V1_SECRET = `e2e-v1-${randomBytes(8).toString('hex')}`;
/** The HMAC key the tickets tool shares with the gateway (request_signing). */
const SIGNING_KEY = `e2e-signing-${randomBytes(8).toString('hex')}`;

let stack: Stack;
let alice: string;
let scratch: string;
let dataPath: string;

/** The policy data document at start: the reporter agent may also use tickets. */
const BIND_REPORTER = { portcullis: { agents: { reporter: { tools: ['weather', 'docs', 'tickets'] } } } };

/** Replaces the policy data file atomically (write, then rename over it), as a deployment does. */
function replaceData(doc: unknown): void {
  writeFileSync(`${dataPath}.next`, JSON.stringify(doc));
  renameSync(`${dataPath}.next`, dataPath);
}

/** The `jti` of a token (the gateway has verified it; the test only reads it). */
function jtiOf(jwt: string): string {
  return (JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString('utf8')) as { jti: string }).jti;
}

const ticketsOf = (tenant: string): string => `${stack.envoyUrl}/tools/tickets/tenants/${tenant}/tickets`;

function post(url: string, body: string, headers: Record<string, string> = {}): Promise<Reply> {
  return call(url, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
}

/** A token signed with the demo key whose payload is `payloadText` exactly (e.g. `1e400`). */
async function rawToken(payloadText: string): Promise<string> {
  const jwk = JSON.parse(readFileSync(stack.prepared.privateJwkPath, 'utf8')) as JWK;
  const key = await importJWK(jwk, 'ES256');
  return new CompactSign(new TextEncoder().encode(payloadText)).setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: jwk.kid as string }).sign(key);
}

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'portcullis-trust-'));
  dataPath = join(scratch, 'policy-data.json');
  writeFileSync(dataPath, JSON.stringify(BIND_REPORTER));
  stack = await startStack({
    editConfig: (cfg) => {
      (cfg.policy as Record<string, unknown>).data = dataPath;
      const tickets = (cfg.tools as { name: string; credentials: unknown[] }[]).find((t) => t.name === 'tickets');
      if (!tickets) throw new Error('demo config has no tickets tool');
      tickets.credentials = [{ header: 'authorization', format: 'Bearer {secret}', secret: { env: 'E2E_TICKETS_TOKEN' } }];
      (tickets as Record<string, unknown>).request_signing = { secret: { env: 'E2E_TICKETS_SIGNING_KEY' } };
      // A second webhook signer on the v1 scheme, which signs method and path too.
      const identity = cfg.identity as { signatures: unknown[] };
      identity.signatures.push({
        id: 'ops-webhook', secret: { env: 'E2E_V1_SIGNING_SECRET' }, signature_header: 'x-ops-signature', timestamp_header: 'x-ops-timestamp',
        scheme: 'v1', agent: 'alerts', roles: ['support'], tenant: 'acme', tools: ['tickets'],
      });
    },
    env: { E2E_TICKETS_TOKEN: TICKETS_TOKEN, E2E_TICKETS_SIGNING_KEY: SIGNING_KEY, E2E_V1_SIGNING_SECRET: V1_SECRET },
  });
  alice = await token(stack);
});

afterAll(async () => {
  await stack?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('credential formatting', () => {
  it('a secret containing $& and $\' reaches the tool verbatim', async () => {
    const r = await call(ticketsOf('acme'), { headers: { authorization: `Bearer ${alice}` } });
    expect(r.status, r.text).toBe(200);
    const got = stack.tool.received.at(-1);
    expect(got?.path).toBe('/tickets/tenants/acme/tickets');
    expect(got?.headers.authorization).toBe(`Bearer ${TICKETS_TOKEN}`);
  });
});

describe('JWT numeric dates', () => {
  it('a correctly signed token with "exp": 1e400 is refused, as are string and missing dates', async () => {
    const now = Math.floor(Date.now() / 1000);
    const base = `"iss":"${ISSUER}","aud":"${AUDIENCE}","azp":"helpdesk","sub":"alice","tenant":"acme","roles":["support"],"iat":${now}`;
    const weather = `${stack.envoyUrl}/tools/weather/forecast?city=Oslo`;
    // The same token with a finite exp is accepted: the refusals below are about the dates only.
    const fine = await call(weather, { headers: { authorization: `Bearer ${await rawToken(`{${base},"exp":${now + 300}}`)}` } });
    expect(fine.status, fine.text).toBe(200);
    for (const [payload, why] of [
      [`{${base},"exp":1e400}`, /claim "exp" is invalid/],
      [`{${base},"exp":${now + 300},"nbf":-1e400}`, /claim "nbf" is invalid/],
      [`{${base},"exp":"${now + 300}"}`, /claim "exp" is invalid/],
      [`{${base}}`, /no "exp" claim/],
    ] as const) {
      const r = await call(weather, { headers: { authorization: `Bearer ${await rawToken(payload)}` } });
      const e = expectDenial(r, 401, 'unauthenticated', 'identity.jwt');
      expect(e.error.message, payload).toMatch(why);
    }
  });
});

describe('signed webhooks', () => {
  it('an identical signed request is accepted once, and its signature does not work on another method and path', async () => {
    const body = JSON.stringify({ title: 'disk full on db-2', priority: 'high' });
    const ts = Math.floor(Date.now() / 1000);
    const headers = slackHeaders(stack, body, { ts });
    const before = stack.tool.received.length;
    const first = await post(ticketsOf('acme'), body, headers);
    expect(first.status, first.text).toBe(201);
    const replay = expectDenial(await post(ticketsOf('acme'), body, headers), 401, 'unauthenticated', 'identity.signature');
    expect(replay.error.message).toMatch(/already used/);
    const moved = await call(`${stack.envoyUrl}/tools/tickets/tickets/T-1001`, { method: 'PUT', body, headers: { 'content-type': 'application/json', ...headers } });
    expectDenial(moved, 401, 'unauthenticated', 'identity.signature');
    // Only the first one reached the tool.
    expect(stack.tool.received.length).toBe(before + 1);
    // A new signature (another timestamp) for the same content is a new request.
    const again = await post(ticketsOf('acme'), body, slackHeaders(stack, body, { ts: ts - 1 }));
    expect(again.status, again.text).toBe(201);
  });

  it('with the v1 scheme the signature covers method and path: a fresh signature moved to PUT .../T-1001 is refused', async () => {
    const body = JSON.stringify({ title: 'fan noise', priority: 'low' });
    const v1 = (method: string, path: string, ts: number): Record<string, string> => ({
      'x-ops-signature': `v1=${createHmac('sha256', V1_SECRET).update(`v1:${ts}:${method}:${path}:${body}`).digest('hex')}`,
      'x-ops-timestamp': String(ts),
    });
    const now = Math.floor(Date.now() / 1000);
    const path = '/tools/tickets/tenants/acme/tickets';
    const ok = await post(`${stack.envoyUrl}${path}`, body, v1('POST', path, now));
    expect(ok.status, ok.text).toBe(201);
    // Never used before, but signed for POST on the tickets collection.
    const moved = await call(`${stack.envoyUrl}/tools/tickets/tickets/T-1001`, { method: 'PUT', body, headers: { 'content-type': 'application/json', ...v1('POST', path, now - 1) } });
    const e = expectDenial(moved, 401, 'unauthenticated', 'identity.signature');
    expect(e.error.message).toMatch(/does not match/);
  });

  it('a signature used first on another path is refused on the path it was made for', async () => {
    const body = JSON.stringify({ title: 'cpu hot', priority: 'low' });
    const headers = slackHeaders(stack, body, { ts: Math.floor(Date.now() / 1000) - 2 });
    const moved = await call(`${stack.envoyUrl}/tools/tickets/tickets/T-1001`, { method: 'PUT', body, headers: { 'content-type': 'application/json', ...headers } });
    expect(moved.status).not.toBe(401);
    expectDenial(await post(ticketsOf('acme'), body, headers), 401, 'unauthenticated', 'identity.signature');
  });
});

/** Envoy's access log line (JSON on its stdout) for one request id, once it is written. */
async function accessLogLine(requestId: string): Promise<Record<string, unknown> | null> {
  let found: Record<string, unknown> | null = null;
  await eventually(async () => {
    for (const line of stack.logs().split('\n')) {
      if (!line.startsWith('{') || !line.includes(requestId)) continue;
      const entry = JSON.parse(line) as Record<string, unknown>;
      if (entry.request_id === requestId && 'status' in entry) found = entry;
    }
    return found !== null;
    // Envoy flushes its access log every 10 s by default.
  }, 25_000);
  return found;
}

describe('secrets in URL paths', () => {
  const KEY = 'AKIAIOSFODNN7EXAMPLF';

  it('are redacted in the audit record and in Envoy\'s access log, allowed or denied', { timeout: 60_000 }, async () => {
    const allowed = await call(`${stack.envoyUrl}/tools/weather/forecast/${KEY}?city=Oslo&key=${KEY}`, { headers: { authorization: `Bearer ${alice}` } });
    const denied = await call(`${stack.envoyUrl}/tools/tickets/tenants/globex/${KEY}`, { headers: { authorization: `Bearer ${alice}` } });
    expect(denied.status).toBe(403);
    for (const [r, path] of [
      [allowed, '/tools/weather/forecast/[REDACTED:aws.access_key_id]?city=[redacted]&key=[redacted]'],
      [denied, '/tools/tickets/tenants/globex/[REDACTED:aws.access_key_id]'],
    ] as const) {
      const id = r.headers.get('x-request-id') as string;
      expect(id).toBeTruthy();
      let record: Record<string, unknown> | undefined;
      expect(await eventually(async () => (record = auditRecords(stack).find((x) => x.request_id === id)) !== undefined, 10_000)).toBe(true);
      expect(record?.path).toBe(path);
      const line = await accessLogLine(id);
      expect(line, stack.logs().slice(-2000)).not.toBeNull();
      expect(line?.path).toBe(path);
      // Still useful to an SRE: method, status, route and tool are there.
      expect(line).toMatchObject({ method: 'GET', status: r.status, tool: r === allowed ? 'weather' : 'tickets' });
    }
    expect(auditText(stack)).not.toContain(KEY);
    expect(stack.logs()).not.toContain(KEY);
  });
});

describe('revocation takes effect on the next request', () => {
  const tickets = (): string => ticketsOf('acme');
  const asBearer = (jwt: string): RequestInit => ({ headers: { authorization: `Bearer ${jwt}` } });

  it('removing a binding from the data file (atomic replace) denies the very next call, and restoring it allows the next one', async () => {
    const reporter = await token(stack, { agent: 'reporter', user: 'rita', roles: ['support'] });
    const before = await call(tickets(), asBearer(reporter));
    expect(before.status, before.text).toBe(200);
    replaceData({});
    // No waiting: the call right after the replace is decided by the new data.
    expectDenial(await call(tickets(), asBearer(reporter)), 403, 'forbidden', 'agent.not_bound');
    replaceData(BIND_REPORTER);
    const after = await call(tickets(), asBearer(reporter));
    expect(after.status, after.text).toBe(200);
  });

  it('a revocation list in policy data refuses one token (jti), a subject, or an agent on the next call', async () => {
    const revoked = await token(stack);
    const other = await token(stack);
    const weather = `${stack.envoyUrl}/tools/weather/forecast?city=Oslo`;
    // Both verified (and now cached) before the revocation.
    for (const jwt of [revoked, other]) expect((await call(weather, asBearer(jwt))).status).toBe(200);
    try {
      replaceData({ ...BIND_REPORTER, portcullis: { ...BIND_REPORTER.portcullis, revoked: { jti: [jtiOf(revoked)] } } });
      const e = expectDenial(await call(weather, asBearer(revoked)), 403, 'forbidden', 'identity.revoked');
      expect(e.error.message).toMatch(/token has been revoked/);
      expect((await call(weather, asBearer(other))).status).toBe(200);

      replaceData({ ...BIND_REPORTER, portcullis: { ...BIND_REPORTER.portcullis, revoked: { subjects: ['alice'] } } });
      for (const jwt of [revoked, other]) expectDenial(await call(weather, asBearer(jwt)), 403, 'forbidden', 'identity.revoked');
      const bob = await token(stack, { user: 'bob' });
      expect((await call(weather, asBearer(bob))).status).toBe(200);

      replaceData({ ...BIND_REPORTER, portcullis: { ...BIND_REPORTER.portcullis, revoked: { agents: ['helpdesk'] } } });
      expectDenial(await call(weather, asBearer(bob)), 403, 'forbidden', 'identity.revoked');
      // An API-key agent not on the list is unaffected.
      expect((await call(weather, { headers: { 'x-api-key': 'demo-reporter-key' } })).status).toBe(200);
    } finally {
      replaceData(BIND_REPORTER);
    }
    expect((await call(weather, asBearer(other))).status).toBe(200);
  });
});

describe('signed calls towards the tool', () => {
  const toTool = (p: string): string => p.replace(/^\/tools\/tickets\//, '/tickets/');

  it('the tool verifies, with the documented recipe, that a call came through the gateway and what it was', async () => {
    const verify = await loadSignatureRecipe();
    const body = JSON.stringify({ title: 'printer on fire', priority: 'high' });
    // A forged signature from the caller is replaced by the gateway's.
    const r = await post(`${ticketsOf('acme')}?src=agent`, body, { authorization: `Bearer ${alice}`, 'x-portcullis-signature': 'v1,t=1,sig=00' });
    expect(r.status, r.text).toBe(201);
    const got = stack.tool.received.at(-1);
    const header = got?.headers['x-portcullis-signature'];
    expect(typeof header).toBe('string');
    const req = { method: got?.method ?? '', url: got?.path ?? '', body: Buffer.from(got?.body ?? '') };
    const fields = verify(header as string, SIGNING_KEY, req, { toToolPath: toTool });
    expect(fields).toMatchObject({ agent: 'helpdesk', method: 'POST', path: '/tools/tickets/tenants/acme/tickets?src=agent', id: r.headers.get('x-request-id') });
    // The same header does not vouch for another body, method or path, nor under another key.
    expect(() => verify(header as string, SIGNING_KEY, { ...req, body: Buffer.from('{}') }, { toToolPath: toTool })).toThrow(/another body/);
    expect(() => verify(header as string, SIGNING_KEY, { ...req, method: 'PUT', url: '/tickets/tickets/T-1001' }, { toToolPath: toTool })).toThrow(/another request/);
    expect(() => verify(header as string, 'not-the-key', req, { toToolPath: toTool })).toThrow(/bad signature/);
  });

  it('a GET is signed too (empty body), and a call that did not pass the gateway carries no valid signature', async () => {
    const verify = await loadSignatureRecipe();
    const r = await call(ticketsOf('acme'), { headers: { authorization: `Bearer ${alice}` } });
    expect(r.status, r.text).toBe(200);
    const got = stack.tool.received.at(-1);
    const req = { method: got?.method ?? '', url: got?.path ?? '', body: Buffer.from(got?.body ?? '') };
    expect(verify(got?.headers['x-portcullis-signature'] as string, SIGNING_KEY, req, { toToolPath: toTool })).toMatchObject({ method: 'GET' });
    // Straight to the tool, around Envoy: no header, so the recipe refuses.
    const direct = await call(`http://127.0.0.1:${stack.tool.port}/tickets/tenants/acme/tickets`);
    expect(direct.status).toBe(200);
    const seen = stack.tool.received.at(-1);
    expect(() => verify(seen?.headers['x-portcullis-signature'] as string | undefined, SIGNING_KEY, { method: 'GET', url: seen?.path ?? '', body: Buffer.alloc(0) })).toThrow(/no portcullis v1 signature/);
  });
});
