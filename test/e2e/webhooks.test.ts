import { createHmac, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../helpers/index.js';
import { allSecrets, auditText, expectDenial, type Reply } from './authz-support.js';

/**
 * Signed webhooks of GitHub, Standard Webhooks and Stripe through the real Envoy: header names
 * in any case, repeated headers, replays and signatures of the wrong kind are refused at the
 * edge with the gateway's JSON error, and the signature headers never reach the tool.
 */

const GITHUB_SECRET = `gh-${randomBytes(12).toString('hex')}`;
const STANDARD_SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const STRIPE_SECRET = `whsec_${randomBytes(12).toString('hex')}`;

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    editConfig: (cfg) => {
      const identity = cfg.identity as { signatures: unknown[] };
      const who = { agent: 'alerts', roles: ['support'], tenant: 'acme', tools: ['tickets'] };
      identity.signatures.push(
        { id: 'github-hooks', scheme: 'github', secret: { env: 'E2E_GITHUB_SECRET' }, ...who },
        { id: 'std-hooks', scheme: 'standard_webhooks', secret: { env: 'E2E_STANDARD_SECRET' }, ...who },
        { id: 'stripe-hooks', scheme: 'stripe', secret: { env: 'E2E_STRIPE_SECRET' }, ...who },
      );
    },
    env: { E2E_GITHUB_SECRET: GITHUB_SECRET, E2E_STANDARD_SECRET: STANDARD_SECRET, E2E_STRIPE_SECRET: STRIPE_SECRET },
  });
});

afterAll(async () => {
  await stack?.stop();
});

const ticketsPath = '/tools/tickets/tenants/acme/tickets';

/**
 * POSTs with header names exactly as given (case kept) and repeated headers as separate lines
 * (an array value), which fetch would normalise away.
 */
function post(body: string, headers: Record<string, string | string[]>, path = ticketsPath): Promise<Reply> {
  const url = new URL(`${stack.envoyUrl}${path}`);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, timeout: 15_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const h = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) h.set(k, Array.isArray(v) ? v.join(', ') : v);
          resolve({ status: res.statusCode ?? 0, headers: h, text: Buffer.concat(chunks).toString('utf8') });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

const ticket = (title: string): string => JSON.stringify({ title, priority: 'low' });
const nowS = (): number => Math.floor(Date.now() / 1000);

/** The last request the tool received carries none of the signature headers. */
function expectSignatureHeadersStripped(): void {
  const got = stack.tool.received.at(-1);
  for (const h of ['x-hub-signature-256', 'x-hub-signature', 'webhook-signature', 'webhook-id', 'webhook-timestamp', 'stripe-signature']) {
    expect(got?.headers[h], h).toBeUndefined();
  }
}

describe('github (X-Hub-Signature-256)', () => {
  const sign = (body: string, secret = GITHUB_SECRET): string => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

  it('accepts a delivery signed as GitHub does, header name in GitHub\'s case, once', async () => {
    const body = ticket(`push ${randomBytes(4).toString('hex')}`);
    const headers = { 'X-Hub-Signature-256': sign(body), 'X-GitHub-Delivery': randomBytes(8).toString('hex'), 'X-GitHub-Event': 'push' };
    const before = stack.tool.received.length;
    const first = await post(body, headers);
    expect(first.status, first.text).toBe(201);
    expectSignatureHeadersStripped();
    // The same delivery again, with a new (unsigned) delivery id: a replay.
    const replay = expectDenial(await post(body, { ...headers, 'X-GitHub-Delivery': 'another' }), 401, 'unauthenticated', 'identity.signature');
    expect(replay.error.message).toMatch(/already used/);
    expect(stack.tool.received.length).toBe(before + 1);
  });

  it('refuses SHA-1 only, another scheme\'s value, a changed body and the header sent twice', async () => {
    const body = ticket('refused');
    const sha1 = `sha1=${createHmac('sha1', GITHUB_SECRET).update(body).digest('hex')}`;
    const before = stack.tool.received.length;
    expect(expectDenial(await post(body, { 'X-Hub-Signature': sha1 }), 401, 'unauthenticated', 'identity.signature').error.message).toMatch(/X-Hub-Signature-256/);
    const slackForm = `v0=${createHmac('sha256', GITHUB_SECRET).update(body).digest('hex')}`;
    expect(expectDenial(await post(body, { 'X-Hub-Signature-256': slackForm }), 401, 'unauthenticated', 'identity.signature').error.message).toMatch(
      /carries a "v0" signature.*"sha256="/,
    );
    expect(expectDenial(await post(ticket('changed in transit'), { 'X-Hub-Signature-256': sign(body) }), 401, 'unauthenticated', 'identity.signature').error.message).toMatch(
      /does not match/,
    );
    // Two header lines: a valid signature and another value. Envoy joins them; the gateway refuses the pair.
    const twice = expectDenial(await post(body, { 'X-Hub-Signature-256': [sign(body), sign('{}')] }), 401, 'unauthenticated', 'identity.signature');
    expect(twice.error.message).toMatch(/sent twice/);
    expect(stack.tool.received.length).toBe(before);
    // None of those used the signature up: the genuine request still goes through.
    const ok = await post(body, { 'x-hub-signature-256': sign(body) });
    expect(ok.status, ok.text).toBe(201);
  });
});

describe('standard webhooks', () => {
  const key = Buffer.from(STANDARD_SECRET.slice('whsec_'.length), 'base64');
  const sign = (id: string, ts: number, body: string): string => `v1,${createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest('base64')}`;
  const headers = (id: string, ts: number, sig: string): Record<string, string> => ({ 'Webhook-Id': id, 'Webhook-Timestamp': String(ts), 'Webhook-Signature': sig });

  it('accepts a message once by its id, even signed anew', async () => {
    const body = ticket('contact.created');
    const id = `msg_${randomBytes(8).toString('hex')}`;
    const ts = nowS();
    const first = await post(body, headers(id, ts, `v1,${randomBytes(32).toString('base64')} ${sign(id, ts, body)}`));
    expect(first.status, first.text).toBe(201);
    expectSignatureHeadersStripped();
    const resent = expectDenial(await post(body, headers(id, ts - 1, sign(id, ts - 1, body))), 401, 'unauthenticated', 'identity.signature');
    expect(resent.error.message).toMatch(/already delivered/);
  });

  it('refuses a list where only a v1a entry matches, an expired timestamp and a changed id', async () => {
    const body = ticket('refused');
    const id = `msg_${randomBytes(8).toString('hex')}`;
    const ts = nowS();
    const good = sign(id, ts, body);
    const before = stack.tool.received.length;
    const onlyV1a = `v1,${randomBytes(32).toString('base64')} v1a,${good.slice(3)}`;
    expect(expectDenial(await post(body, headers(id, ts, onlyV1a)), 401, 'unauthenticated', 'identity.signature').error.message).toMatch(/does not match/);
    const stale = expectDenial(await post(body, headers(id, ts - 600, sign(id, ts - 600, body))), 401, 'unauthenticated', 'identity.signature');
    expect(stale.error.message).toMatch(/accepted within 300s/);
    expectDenial(await post(body, headers(`${id}x`, ts, good)), 401, 'unauthenticated', 'identity.signature');
    expect(stack.tool.received.length).toBe(before);
    const ok = await post(body, headers(id, ts, good));
    expect(ok.status, ok.text).toBe(201);
  });

  it('a JSON-RPC call whose signature does not verify gets a JSON-RPC error with its id', async () => {
    const rpc = JSON.stringify({ jsonrpc: '2.0', id: 'hook-1', method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'vpn', tenant: 'acme' } } });
    const id = `msg_${randomBytes(8).toString('hex')}`;
    const ts = nowS();
    const before = stack.tool.received.length;
    const r = await post(rpc.replace('vpn', 'payroll'), { ...headers(id, ts, sign(id, ts, rpc)), Accept: 'application/json, text/event-stream' }, '/tools/docs/');
    expect(r.status, r.text).toBe(401);
    const body = JSON.parse(r.text) as { jsonrpc: string; id: unknown; error: { message: string; data: Record<string, unknown> } };
    expect(body).toMatchObject({ jsonrpc: '2.0', id: 'hook-1', error: { data: { type: 'unauthenticated', rule: 'identity.signature' } } });
    expect(body.error.message).toMatch(/signature in webhook-signature does not match: it must be v1,base64\(HMAC-SHA256\(base64-decoded secret, webhook-id/);
    expect(stack.tool.received.length).toBe(before);
  });
});

describe('stripe', () => {
  const sign = (ts: number, body: string): string => createHmac('sha256', STRIPE_SECRET).update(`${ts}.${body}`).digest('hex');

  it('accepts t=...,v1=... once, and refuses a v1 moved to a fresh timestamp', async () => {
    const body = ticket('invoice.paid');
    const ts = nowS();
    const moved = expectDenial(await post(body, { 'Stripe-Signature': `t=${ts},v1=${sign(ts - 1000, body)}` }), 401, 'unauthenticated', 'identity.signature');
    expect(moved.error.message).toMatch(/does not match/);
    const header = `t=${ts},v1=${sign(ts, body)},v0=${'0'.repeat(64)}`;
    const first = await post(body, { 'Stripe-Signature': header });
    expect(first.status, first.text).toBe(201);
    expectSignatureHeadersStripped();
    expect(expectDenial(await post(body, { 'Stripe-Signature': header }), 401, 'unauthenticated', 'identity.signature').error.message).toMatch(/already used/);
  });
});

describe('secrets', () => {
  it('no signing secret appears in the audit log or the gateway\'s output', () => {
    const text = `${auditText(stack)}\n${stack.logs()}`;
    for (const s of [GITHUB_SECRET, STANDARD_SECRET, STANDARD_SECRET.slice(6), STRIPE_SECRET, ...allSecrets(stack)]) expect(text).not.toContain(s);
  });
});
