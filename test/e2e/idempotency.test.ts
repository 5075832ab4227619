import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readAuditFile, startStack, type Stack, spreadOverReplicas } from '../helpers/index.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { call, eventually, expectDenial, metricValue, token, type Reply } from './authz-support.js';

/**
 * Idempotency keys through the real Envoy, with two portcullis replicas behind it sharing one
 * real redis-server: a retried write is answered from the store (Envoy sends the stored 2xx as
 * ext_authz's local reply) and the tool runs once; a duplicate in flight is 409, a reused key
 * 422; another caller's same key runs its own call; keys from JSON-RPC body fields keep the
 * retry's id; a 5xx releases the key; the stored body is the redacted one; the replay can come
 * from the other replica; GET is never tracked; a replay is still authorized.
 */

type Json = Record<string, any>;

const VERSION = '2025-11-25';
const CARD = '4111 1111 1111 1111';
const CREATE = '/tickets/tenants/acme/tickets';

let redis: RedisServer;
let stack: Stack;
let scratch: string;
let dataPath: string;

beforeAll(async () => {
  redis = await startRedis();
  scratch = mkdtempSync(join(tmpdir(), 'portcullis-idem-'));
  dataPath = join(scratch, 'policy-data.json');
  writeFileSync(dataPath, '{}');
  stack = await startStack({
    replica: true,
    editEnvoy: spreadOverReplicas,
    editConfig: (cfg) => {
      cfg.store = { kind: 'redis', redis: { url: redis.url, key_prefix: 'e2e-idem:', timeout_ms: 500 } };
      (cfg.policy as Record<string, unknown>).data = dataPath;
      const tools = cfg.tools as Json[];
      const tickets = tools.find((t) => t.name === 'tickets');
      const docs = tools.find((t) => t.name === 'docs');
      if (!tickets || !docs) throw new Error('demo config lacks the tickets or docs tool');
      tickets.idempotency = { required: true };
      docs.idempotency = { key_from: ['params.arguments.doc_id', 'params.arguments.tenant'] };
    },
  });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await redis?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

function post(path: string, bearer: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return call(`${stack.envoyUrl}/tools/tickets${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

function docs(bearer: string, body: unknown, query = ''): Promise<Reply> {
  return call(`${stack.envoyUrl}/tools/docs/${query}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': VERSION },
    body: JSON.stringify(body),
  });
}

const executed = (path: string): number => stack.tool.executed.get(path) ?? 0;
const ticket = (title: string): Json => ({ title, priority: 'high' });
let seq = 0;
/** A key no other test uses. */
const fresh = (label: string): string => `${label}-${Date.now()}-${++seq}`;

function auditAll(): Record<string, unknown>[] {
  const dir = resolve(stack.configPath, '..');
  const read = (f: string): Record<string, unknown>[] => {
    try {
      return readAuditFile(join(dir, f));
    } catch {
      return [];
    }
  };
  return [...read('audit.log'), ...read('audit-2.log')];
}

describe('a retried write with the same idempotency key', () => {
  it('is answered from the store by Envoy (same 201 and body, idempotent-replayed), the tool runs once, the audit says replayed', async () => {
    const alice = await token(stack, { user: 'alice' });
    const key = fresh('create');
    const before = executed(CREATE);
    const first = await post('/tenants/acme/tickets', alice, ticket('VPN down'), { 'idempotency-key': key });
    expect(first.status, first.text).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    expect(executed(CREATE)).toBe(before + 1);
    // Header names are case-insensitive: another spelling is the same key.
    const again = await post('/tenants/acme/tickets', alice, ticket('VPN down'), { 'IDEMPOTENCY-KEY': key });
    expect(again.status, again.text).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('content-type')).toMatch(/^application\/json/);
    expect(again.text).toBe(first.text);
    expect(JSON.parse(again.text).created.serial).toBe(before + 1);
    expect(executed(CREATE)).toBe(before + 1);
    // The replay has its own request id, and its own audit record: allowed, replayed, no upstream.
    const rid = again.headers.get('x-request-id');
    expect(rid).toBeTruthy();
    expect(rid).not.toBe(first.headers.get('x-request-id'));
    expect(
      await eventually(async () => auditAll().some((r) => r.request_id === rid), 5_000),
      'audit record of the replay',
    ).toBe(true);
    const record = auditAll().find((r) => r.request_id === rid) as Json;
    expect(record.decision).toMatchObject({ allowed: true, rule: 'idempotency.replayed' });
    expect(record).toHaveProperty('upstream_status', null);
    expect(record.response_status).toBe(201);
  });

  it('while the first call still runs, a duplicate is refused with 409 conflict (retryable); once done it is replayed', async () => {
    const alice = await token(stack, { user: 'alice', tenant: 'slowco' });
    const path = '/tickets/tenants/slowco/tickets';
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const remove = stack.tool.handle(path, (_req, res) => {
      void gate.then(() => res.writeHead(201, { 'content-type': 'application/json' }).end('{"created":{"id":"T-SLOW"}}'));
    });
    try {
      const key = fresh('slow');
      const first = post('/tenants/slowco/tickets', alice, ticket('slow one'), { 'idempotency-key': key });
      expect(await eventually(async () => executed(path) === 1, 10_000)).toBe(true);
      const dup = await post('/tenants/slowco/tickets', alice, ticket('slow one'), { 'idempotency-key': key });
      const e = expectDenial(dup, 409, 'conflict', 'idempotency.in_flight');
      expect(e.error.retryable).toBe(true);
      expect(e.error.retry_after_s).toBe(1);
      expect(dup.headers.get('retry-after')).toBe('1');
      release();
      const done = await first;
      expect(done.status, done.text).toBe(201);
      const replay = await post('/tenants/slowco/tickets', alice, ticket('slow one'), { 'idempotency-key': key });
      expect(replay.status).toBe(201);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(replay.text).toBe('{"created":{"id":"T-SLOW"}}');
      expect(executed(path)).toBe(1);
    } finally {
      release();
      remove();
    }
  });

  it('the same key on another body is refused with 422 idempotency.key_reused (not retryable), and runs nothing', async () => {
    const alice = await token(stack, { user: 'alice' });
    const key = fresh('reuse');
    expect((await post('/tenants/acme/tickets', alice, ticket('first'), { 'idempotency-key': key })).status).toBe(201);
    const before = executed(CREATE);
    const e = expectDenial(await post('/tenants/acme/tickets', alice, ticket('second'), { 'idempotency-key': key }), 422, 'invalid_request', 'idempotency.key_reused');
    expect(e.error.retryable).toBe(false);
    // Same body, another path (query) is another request too.
    expectDenial(await post('/tenants/acme/tickets?x=1', alice, ticket('first'), { 'idempotency-key': key }), 422, 'invalid_request', 'idempotency.key_reused');
    expect(executed(CREATE)).toBe(before);
  });

  it('another agent, or another user, with the same key runs its own call and never sees the first answer', async () => {
    const alice = await token(stack, { user: 'alice' });
    const key = fresh('shared');
    const mine = await post('/tenants/acme/tickets', alice, ticket('mine'), { 'idempotency-key': key });
    expect(mine.status).toBe(201);
    for (const other of [await token(stack, { agent: 'alerts', user: 'alice' }), await token(stack, { user: 'bob' })]) {
      const before = executed(CREATE);
      // Same body: would be a replay if the key were not scoped to the caller.
      const theirs = await post('/tenants/acme/tickets', other, ticket('mine'), { 'idempotency-key': key });
      expect(theirs.status, theirs.text).toBe(201);
      expect(theirs.headers.get('idempotent-replayed')).toBeNull();
      expect(theirs.text).not.toBe(mine.text);
      expect(executed(CREATE)).toBe(before + 1);
    }
  });

  it('a 500 from the tool releases the key: the retry executes, and its answer is then replayed', async () => {
    const alice = await token(stack, { user: 'alice', tenant: 'flaky' });
    const path = '/tickets/tenants/flaky/tickets';
    let calls = 0;
    const remove = stack.tool.handle(path, (_req, res) => {
      calls++;
      if (calls === 1) res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"boom"}');
      else res.writeHead(201, { 'content-type': 'application/json' }).end(`{"created":{"attempt":${calls}}}`);
    });
    try {
      const key = fresh('flaky');
      const failed = await post('/tenants/flaky/tickets', alice, ticket('x'), { 'idempotency-key': key });
      expect(failed.status).toBe(500);
      // Released before the 500 left: the immediate retry runs.
      const retry = await post('/tenants/flaky/tickets', alice, ticket('x'), { 'idempotency-key': key });
      expect(retry.status, retry.text).toBe(201);
      expect(retry.headers.get('idempotent-replayed')).toBeNull();
      expect(calls).toBe(2);
      const replay = await post('/tenants/flaky/tickets', alice, ticket('x'), { 'idempotency-key': key });
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(replay.text).toBe('{"created":{"attempt":2}}');
      expect(calls).toBe(2);
    } finally {
      remove();
    }
  });

  it('a call ext_proc refuses (schema) holds no key: the same call retried is refused the same way, not 409', async () => {
    const alice = await token(stack, { user: 'alice' });
    const key = fresh('schema');
    const before = executed(CREATE);
    const bad = { title: 'x', priority: 'urgent' };
    expectDenial(await post('/tenants/acme/tickets', alice, bad, { 'idempotency-key': key }), 400, 'invalid_request', 'inspect.schema');
    expectDenial(await post('/tenants/acme/tickets', alice, bad, { 'idempotency-key': key }), 400, 'invalid_request', 'inspect.schema');
    expect(executed(CREATE)).toBe(before);
  });

  it('stores the redacted body: a secret DLP removed from the answer never comes back raw from the store', async () => {
    const alice = await token(stack, { user: 'alice' });
    const key = fresh('dlp');
    // The tool echoes the ticket, and with it the card number; response DLP redacts it.
    const first = await post('/tenants/acme/tickets', alice, { title: `card ${CARD}`, priority: 'high' }, { 'idempotency-key': key });
    expect(first.status, first.text).toBe(201);
    expect(first.text).not.toContain(CARD);
    const replay = await post('/tenants/acme/tickets', alice, { title: `card ${CARD}`, priority: 'high' }, { 'idempotency-key': key });
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.text).toBe(first.text);
    expect(replay.text).not.toContain(CARD);
    // Nor is it in the store itself.
    const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await client.connect();
      const keys = await client.keys('e2e-idem:idem:*');
      expect(keys.length).toBeGreaterThan(0);
      for (const k of keys) {
        const v = (await client.get(k)) ?? '';
        const parsed = JSON.parse(v) as { body?: string };
        const body = parsed.body ? Buffer.from(parsed.body, 'base64').toString('utf8') : '';
        expect(v + body).not.toContain(CARD);
        expect(v + body).not.toContain(CARD.replace(/ /g, ''));
      }
    } finally {
      client.disconnect();
    }
  });

  it('a key is required for a write on this tool (400 idempotency.key_required), and must be printable and bounded', async () => {
    const alice = await token(stack, { user: 'alice' });
    const before = executed(CREATE);
    const e = expectDenial(await post('/tenants/acme/tickets', alice, ticket('no key')), 400, 'invalid_request', 'idempotency.key_required');
    expect(e.error.message).toMatch(/idempotency-key/);
    expectDenial(await post('/tenants/acme/tickets', alice, ticket('long key'), { 'idempotency-key': 'k'.repeat(256) }), 400, 'invalid_request', 'idempotency.key');
    expect(executed(CREATE)).toBe(before);
  });

  it('GET is never tracked: the same key twice reaches the tool twice', async () => {
    const alice = await token(stack, { user: 'alice' });
    const key = fresh('get');
    const url = `${stack.envoyUrl}/tools/tickets/tenants/acme/tickets`;
    const count = (): number => stack.tool.received.filter((r) => r.method === 'GET' && r.path === CREATE).length;
    const before = count();
    for (let i = 0; i < 2; i++) {
      const r = await call(url, { headers: { authorization: `Bearer ${alice}`, 'idempotency-key': key } });
      expect(r.status, r.text).toBe(200);
      expect(r.headers.get('idempotent-replayed')).toBeNull();
    }
    expect(count()).toBe(before + 2);
  });

  it('a replay is still authorized: a revoked caller gets 403, not the stored answer', async () => {
    const carol = await token(stack, { user: 'carol' });
    const key = fresh('revoked');
    const first = await post('/tenants/acme/tickets', carol, ticket('before revocation'), { 'idempotency-key': key });
    expect(first.status).toBe(201);
    try {
      writeFileSync(`${dataPath}.next`, JSON.stringify({ portcullis: { revoked: { subjects: ['carol'] } } }));
      renameSync(`${dataPath}.next`, dataPath);
      const denied = await post('/tenants/acme/tickets', carol, ticket('before revocation'), { 'idempotency-key': key });
      expectDenial(denied, 403, 'forbidden', 'identity.revoked');
      expect(denied.text).not.toContain('T-2001');
    } finally {
      writeFileSync(`${dataPath}.next`, '{}');
      renameSync(`${dataPath}.next`, dataPath);
    }
  });
});

describe('keys from JSON-RPC body fields (MCP tools/call)', () => {
  const del = (id: number | string, docId: string): Json => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'delete_doc', arguments: { doc_id: docId, tenant: 'acme' } } });
  const deletes = (docId: string): number => stack.tool.received.filter((r) => r.path.startsWith('/mcp') && r.body.includes(`"doc_id":"${docId}"`)).length;

  it('a retried call with the same fields is answered from the store with the retry’s JSON-RPC id; the tool runs once', async () => {
    const alice = await token(stack, { user: 'alice' });
    const docId = fresh('doc').replace(/[^A-Za-z0-9_-]/g, '_');
    const first = await docs(alice, del(1, docId));
    expect(first.status, first.text).toBe(200);
    expect(JSON.parse(first.text)).toMatchObject({ jsonrpc: '2.0', id: 1, result: { content: [{ text: `deleted ${docId}` }] } });
    const retry = await docs(alice, del('retry-7', docId));
    expect(retry.status, retry.text).toBe(200);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    const body = JSON.parse(retry.text) as Json;
    expect(body.id).toBe('retry-7');
    expect({ ...body, id: 1 }).toEqual(JSON.parse(first.text));
    expect(deletes(docId)).toBe(1);
    // A read-only call is never tracked, whatever it carries.
    const search = { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'search_docs', arguments: { query: docId, tenant: 'acme' } } };
    for (let i = 0; i < 2; i++) expect((await docs(alice, search)).headers.get('idempotent-replayed')).toBeNull();
  });

  it('an event-stream answer is not stored: the key is released and a retry runs again', async () => {
    const alice = await token(stack, { user: 'alice' });
    const docId = fresh('sse').replace(/[^A-Za-z0-9_-]/g, '_');
    const first = await docs(alice, del(1, docId), '?sse=1');
    expect(first.status, first.text).toBe(200);
    expect(first.headers.get('content-type')).toMatch(/^text\/event-stream/);
    // Released before the stream started: the immediate retry runs.
    const retry = await docs(alice, del(2, docId), '?sse=1');
    expect(retry.status, retry.text).toBe(200);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    expect(deletes(docId)).toBe(2);
  });
});

describe('two replicas on one Redis', () => {
  async function counts(outcome: string): Promise<[number, number]> {
    const read = async (url: string): Promise<number> => metricValue((await call(`${url}/metrics`)).text, 'portcullis_idempotency_total', { tool: 'tickets', outcome });
    return [await read(stack.adminUrl), await read(stack.replicaAdminUrl as string)];
  }

  it('a call claimed on one replica is replayed by the other', async () => {
    const alice = await token(stack, { user: 'alice' });
    let proven = false;
    for (let attempt = 0; attempt < 8 && !proven; attempt++) {
      const key = fresh('replica');
      const claimed0 = await counts('claimed');
      const first = await post('/tenants/acme/tickets', alice, ticket(`replica ${attempt}`), { 'idempotency-key': key });
      expect(first.status).toBe(201);
      const claimed1 = await counts('claimed');
      const other = claimed1[0] > claimed0[0] ? 1 : 0;
      const before = executed(CREATE);
      for (let i = 0; i < 10 && !proven; i++) {
        const replayed0 = await counts('replayed');
        const r = await post('/tenants/acme/tickets', alice, ticket(`replica ${attempt}`), { 'idempotency-key': key });
        expect(r.status).toBe(201);
        expect(r.headers.get('idempotent-replayed')).toBe('true');
        expect(r.text).toBe(first.text);
        const replayed1 = await counts('replayed');
        if (replayed1[other] > replayed0[other]) proven = true;
      }
      expect(executed(CREATE)).toBe(before);
    }
    expect(proven, 'a replay decided by the replica that did not claim the key').toBe(true);
  });
});

describe('the store is unreachable', () => {
  it('a write with a key is refused (503 idempotency.store_unavailable, JSON-RPC error for MCP), never forwarded unprotected', async () => {
    const alice = await token(stack, { user: 'alice' });
    const before = executed(CREATE);
    const mcpBefore = stack.tool.received.filter((r) => r.path.startsWith('/mcp')).length;
    await redis.stop();
    try {
      const e = expectDenial(await post('/tenants/acme/tickets', alice, ticket('store down'), { 'idempotency-key': fresh('down') }), 503, 'unavailable', 'idempotency.store_unavailable');
      expect(e.error.retryable).toBe(true);
      const rpc = await docs(alice, { jsonrpc: '2.0', id: 'down-1', method: 'tools/call', params: { name: 'delete_doc', arguments: { doc_id: 'down', tenant: 'acme' } } });
      expect(rpc.status, rpc.text).toBe(503);
      expect(JSON.parse(rpc.text)).toMatchObject({ jsonrpc: '2.0', id: 'down-1', error: { data: { type: 'unavailable', rule: 'idempotency.store_unavailable' } } });
      expect(executed(CREATE)).toBe(before);
      expect(stack.tool.received.filter((r) => r.path.startsWith('/mcp')).length).toBe(mcpBefore);
    } finally {
      await redis.start();
    }
  });
});
