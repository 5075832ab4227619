import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../../src/errors.js';
import { parseConfig } from '../../../src/config/load.js';
import type { ToolConfig } from '../../../src/config/types.js';
import type { Principal } from '../../../src/identity/types.js';
import { MemoryStore, type Store } from '../../../src/limits/store.js';
import {
  claimIdempotency,
  doneRecord,
  idempotencyKey,
  idempotencyStoreKey,
  parseEntry,
  pendingMarker,
  requestFingerprint,
  type IdempotencyRequest,
} from '../../../src/limits/idempotency.js';

const config = parseConfig(
  `
policy: { bundle: b.tar.gz }
tools:
  - name: tickets
    upstream: tool_tickets
    idempotency: {}
  - name: strict
    upstream: tool_strict
    idempotency: { required: true, header: x-op-id, ttl_s: 60, in_flight_ttl_s: 5 }
  - name: docs
    upstream: tool_docs
    mcp: { tools: { delete_doc: { mutating: true } } }
    idempotency: { key_from: [params.arguments.execution_id, params.arguments.step] }
`,
  '/etc/portcullis/c.yaml',
);
const tool = (name: string): ToolConfig => config.tools.find((t) => t.name === name) as ToolConfig;

const ALICE: Principal = { agent: 'helpdesk', agent_version: null, user: 'alice', tenant: 'acme', roles: [], methods: ['jwt'], proven_by: ['https://issuer.one'] };

function req(over: Partial<IdempotencyRequest> = {}): IdempotencyRequest {
  const body = over.rawBody ?? Buffer.from('{"title":"t","priority":"high"}');
  return {
    tool: tool('tickets'),
    principal: ALICE,
    method: 'POST',
    path: '/tools/tickets/tenants/acme/tickets',
    headers: { 'idempotency-key': 'k-1' },
    rawBody: body,
    incomplete: false,
    parsedBody: JSON.parse(body.toString('utf8')),
    rpcSingle: false,
    rpcId: null,
    mcpTool: null,
    mutating: true,
    ...over,
  };
}

function rpc(id: number, args: Record<string, unknown>, over: Partial<IdempotencyRequest> = {}): IdempotencyRequest {
  const msg = { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'delete_doc', arguments: args } };
  const raw = Buffer.from(JSON.stringify(msg));
  return req({ tool: tool('docs'), path: '/tools/docs/', headers: {}, rawBody: raw, parsedBody: msg, rpcSingle: true, rpcId: id, mcpTool: 'delete_doc', ...over });
}

async function rejection(p: Promise<unknown>): Promise<GatewayError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return err as GatewayError;
  }
  throw new Error('expected a rejection');
}

/** Completes a claim the way ext_proc does: the pending marker swapped for the answer. */
async function complete(store: Store, key: string, claim: string, status: number, body: string): Promise<void> {
  const fp = parseEntry(claim).body_sha256;
  expect(await store.swap(key, claim, doneRecord(fp, status, [['content-type', 'application/json']], Buffer.from(body), Date.now()), 60_000)).toBe(true);
}

describe('idempotency config', () => {
  it('applies the defaults and keeps what is set', () => {
    expect(tool('tickets').idempotency).toEqual({ header: 'idempotency-key', ttl_s: 86400, in_flight_ttl_s: 300, max_stored_bytes: 1048576, required: false });
    expect(tool('strict').idempotency).toMatchObject({ header: 'x-op-id', required: true, ttl_s: 60, in_flight_ttl_s: 5 });
    expect(tool('docs').idempotency?.key_from).toEqual(['params.arguments.execution_id', 'params.arguments.step']);
  });

  it('refuses malformed settings with their path', () => {
    const bad = (idem: string): (() => unknown) => () => parseConfig(`policy: { bundle: b }\ntools:\n  - { name: t, upstream: u, idempotency: ${idem} }\n`, '/c.yaml');
    expect(bad('{ header: "Idempotency Key" }')).toThrow(/idempotency/);
    expect(bad('{ key_from: ["a..b"] }')).toThrow(/idempotency/);
    expect(bad('{ key_from: [] }')).toThrow(/idempotency/);
    expect(bad('{ ttl_s: 0 }')).toThrow(/idempotency/);
    expect(bad('{ unknown: 1 }')).toThrow(/idempotency/);
  });
});

describe('idempotency key derivation', () => {
  const cfg = tool('docs').idempotency!;

  it('reads the header, or every key_from field of the body; the two never collide', () => {
    const body = { params: { arguments: { execution_id: 'run-1', step: 3 } } };
    expect(idempotencyKey(tool('tickets').idempotency!, { 'idempotency-key': 'abc' }, null, true)).toBe(JSON.stringify(['header', 'abc']));
    expect(idempotencyKey(cfg, {}, body, true)).toBe(JSON.stringify(['body', ['run-1', '3']]));
    // One field missing: the header, if any.
    expect(idempotencyKey(cfg, { 'idempotency-key': 'h' }, { params: { arguments: { execution_id: 'run-1' } } }, true)).toBe(JSON.stringify(['header', 'h']));
    expect(idempotencyKey(cfg, {}, { params: { arguments: { execution_id: 'run-1' } } }, true)).toBeNull();
    // A header that spells a body key is still another key.
    expect(idempotencyKey(cfg, { 'idempotency-key': JSON.stringify(['run-1', '3']) }, null, true)).not.toBe(idempotencyKey(cfg, {}, body, true));
    // Not read from a batch (no single message to read it from).
    expect(idempotencyKey(cfg, {}, body, false)).toBeNull();
    // Inherited properties are not fields of the body.
    expect(idempotencyKey({ ...cfg, key_from: ['constructor'] }, {}, {}, true)).toBeNull();
  });

  it('refuses empty, long, unprintable or structured keys (400 idempotency.key)', () => {
    const tickets = tool('tickets').idempotency!;
    for (const v of ['', 'x'.repeat(256), 'a\u0000b', 'ключ', 'a\tb']) {
      expect(() => idempotencyKey(tickets, { 'idempotency-key': v }, null, true), JSON.stringify(v)).toThrow(expect.objectContaining({ code: 'invalid_request', rule: 'idempotency.key', httpStatus: 400 }));
    }
    expect(idempotencyKey(tickets, { 'idempotency-key': 'x'.repeat(255) }, null, true)).not.toBeNull();
    for (const v of [{ a: 1 }, [1], null, '', 'x'.repeat(300)]) {
      expect(() => idempotencyKey(cfg, {}, { params: { arguments: { execution_id: v, step: 1 } } }, true), JSON.stringify(v)).toThrow(expect.objectContaining({ rule: 'idempotency.key' }));
    }
  });

  it('scopes the store key to tool, MCP tool and caller (issuer, user, agent, tenant)', () => {
    const base = idempotencyStoreKey('tickets', null, ALICE, 'k');
    expect(base).toMatch(/^idem:[A-Za-z0-9_-]{43}$/);
    expect(idempotencyStoreKey('tickets', null, ALICE, 'k')).toBe(base);
    const others = [
      idempotencyStoreKey('docs', null, ALICE, 'k'),
      idempotencyStoreKey('tickets', 'delete_doc', ALICE, 'k'),
      idempotencyStoreKey('tickets', null, { ...ALICE, agent: 'reporter' }, 'k'),
      idempotencyStoreKey('tickets', null, { ...ALICE, user: 'bob' }, 'k'),
      idempotencyStoreKey('tickets', null, { ...ALICE, tenant: 'globex' }, 'k'),
      idempotencyStoreKey('tickets', null, { ...ALICE, proven_by: ['https://issuer.two'] }, 'k'),
      idempotencyStoreKey('tickets', null, null, 'k'),
      idempotencyStoreKey('tickets', null, ALICE, 'k2'),
    ];
    expect(new Set([base, ...others]).size).toBe(others.length + 1);
  });

  it('fingerprints method, path and body; a single JSON-RPC message without its id', () => {
    const a = requestFingerprint('POST', '/p', Buffer.from('{"a":1}'), { a: 1 }, false);
    expect(requestFingerprint('post', '/p', Buffer.from('{"a":1}'), { a: 1 }, false)).toBe(a);
    expect(requestFingerprint('PUT', '/p', Buffer.from('{"a":1}'), { a: 1 }, false)).not.toBe(a);
    expect(requestFingerprint('POST', '/p?x=1', Buffer.from('{"a":1}'), { a: 1 }, false)).not.toBe(a);
    expect(requestFingerprint('POST', '/p', Buffer.from('{"a": 1}'), { a: 1 }, false)).not.toBe(a);
    const m1 = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'x' } };
    const m2 = { ...m1, id: 'other' };
    expect(requestFingerprint('POST', '/p', undefined, m1, true)).toBe(requestFingerprint('POST', '/p', undefined, m2, true));
    expect(requestFingerprint('POST', '/p', undefined, m1, true)).not.toBe(requestFingerprint('POST', '/p', undefined, { ...m1, params: { name: 'y' } }, true));
  });
});

describe('the idempotency stage', () => {
  it('claims, refuses a duplicate in flight (409), then replays the stored answer (same status, body, headers)', async () => {
    const store = new MemoryStore();
    const first = await claimIdempotency(store, req());
    expect(first.kind).toBe('claimed');
    if (first.kind !== 'claimed') return;
    expect(JSON.parse(first.claim)).toMatchObject({ state: 'pending', owner: expect.any(String), body_sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    const busy = await rejection(claimIdempotency(store, req()));
    expect(busy).toMatchObject({ code: 'conflict', rule: 'idempotency.in_flight', httpStatus: 409, retryAfterS: 1 });
    expect(busy.retryable).toBe(true);
    await complete(store, first.key, first.claim, 201, '{"created":1}');
    const again = await claimIdempotency(store, req());
    expect(again).toMatchObject({ kind: 'replay', key: first.key });
    if (again.kind !== 'replay') return;
    expect(again.response.status).toBe(201);
    expect(again.response.body.toString()).toBe('{"created":1}');
    expect(again.response.headers).toEqual([{ key: 'content-type', value: 'application/json' }, { key: 'idempotent-replayed', value: 'true' }]);
  });

  it('refuses the same key on another body, method or path (422, not retryable), pending or done', async () => {
    const store = new MemoryStore();
    const first = await claimIdempotency(store, req());
    if (first.kind !== 'claimed') throw new Error('not claimed');
    const other = Buffer.from('{"title":"other","priority":"high"}');
    for (const r of [req({ rawBody: other, parsedBody: JSON.parse(other.toString()) }), req({ method: 'PUT' }), req({ path: '/tools/tickets/tenants/acme/tickets?x=1' })]) {
      const e = await rejection(claimIdempotency(store, r));
      expect(e).toMatchObject({ code: 'invalid_request', rule: 'idempotency.key_reused', httpStatus: 422 });
      expect(e.retryable).toBe(false);
    }
    await complete(store, first.key, first.claim, 200, '{}');
    expect(await rejection(claimIdempotency(store, req({ method: 'PUT' })))).toMatchObject({ rule: 'idempotency.key_reused' });
  });

  it('never lets another caller read or block an entry with the same key', async () => {
    const store = new MemoryStore();
    const first = await claimIdempotency(store, req());
    if (first.kind !== 'claimed') throw new Error('not claimed');
    // In flight for alice: another agent, user, tenant or issuer with the same key runs its own call.
    for (const p of [{ ...ALICE, agent: 'reporter' }, { ...ALICE, user: 'mallory' }, { ...ALICE, tenant: 'globex' }, { ...ALICE, proven_by: ['https://evil'] }]) {
      expect((await claimIdempotency(store, req({ principal: p }))).kind).toBe('claimed');
    }
    await complete(store, first.key, first.claim, 201, '{"secret":"alice"}');
    const mallory = await claimIdempotency(store, req({ principal: { ...ALICE, user: 'mallory2' } }));
    expect(mallory.kind).toBe('claimed');
  });

  it('released (a failed call) lets the retry run', async () => {
    const store = new MemoryStore();
    const first = await claimIdempotency(store, req());
    if (first.kind !== 'claimed') throw new Error('not claimed');
    expect(await store.swap(first.key, first.claim, null, 0)).toBe(true);
    expect((await claimIdempotency(store, req())).kind).toBe('claimed');
  });

  it('tracks only mutating calls of tools with idempotency, and requires a key when told to', async () => {
    const store = new MemoryStore();
    expect(await claimIdempotency(store, req({ mutating: false }))).toEqual({ kind: 'untracked' });
    expect(await claimIdempotency(store, req({ headers: {} }))).toEqual({ kind: 'untracked' });
    expect(await claimIdempotency(store, req({ tool: { ...tool('tickets'), idempotency: undefined } }))).toEqual({ kind: 'untracked' });
    expect(await rejection(claimIdempotency(store, req({ tool: tool('strict'), headers: { 'idempotency-key': 'k' } })))).toMatchObject({ code: 'invalid_request', rule: 'idempotency.key_required', httpStatus: 400 });
    expect((await claimIdempotency(store, req({ tool: tool('strict'), headers: { 'x-op-id': 'k' } }))).kind).toBe('claimed');
    // A required key is not required of read-only calls.
    expect(await claimIdempotency(store, req({ tool: tool('strict'), headers: {}, mutating: false }))).toEqual({ kind: 'untracked' });
    expect(store.size).toBe(1);
  });

  it('refuses a keyed call whose body it could not read whole (413)', async () => {
    expect(await rejection(claimIdempotency(new MemoryStore(), req({ incomplete: true })))).toMatchObject({ code: 'payload_too_large', rule: 'idempotency.body_window' });
  });

  it('a key from body fields: a retry with a new JSON-RPC id is replayed with that id', async () => {
    const store = new MemoryStore();
    const first = await claimIdempotency(store, rpc(1, { doc_id: 'd1', tenant: 'acme', execution_id: 'run-7', step: 2 }));
    if (first.kind !== 'claimed') throw new Error('not claimed');
    await complete(store, first.key, first.claim, 200, JSON.stringify({ jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'deleted d1' }] } }));
    const again = await claimIdempotency(store, rpc(99, { doc_id: 'd1', tenant: 'acme', execution_id: 'run-7', step: 2 }));
    if (again.kind !== 'replay') throw new Error(`not replayed: ${again.kind}`);
    expect(JSON.parse(again.response.body.toString())).toEqual({ jsonrpc: '2.0', id: 99, result: { content: [{ type: 'text', text: 'deleted d1' }] } });
    // The next step is another key; the same step with other arguments is a reuse.
    expect((await claimIdempotency(store, rpc(3, { doc_id: 'd1', tenant: 'acme', execution_id: 'run-7', step: 3 }))).kind).toBe('claimed');
    expect(await rejection(claimIdempotency(store, rpc(4, { doc_id: 'd2', tenant: 'acme', execution_id: 'run-7', step: 2 })))).toMatchObject({ rule: 'idempotency.key_reused' });
    // The MCP tool is part of the key.
    expect(idempotencyStoreKey('docs', 'delete_doc', ALICE, 'k')).not.toBe(idempotencyStoreKey('docs', 'other_tool', ALICE, 'k'));
  });
});

describe('the idempotency stage fails closed', () => {
  it('denies with 503 idempotency.store_unavailable when the store cannot answer', async () => {
    const down = new MemoryStore();
    down.setIfAbsent = () => Promise.reject(new Error('connection refused'));
    const e = await rejection(claimIdempotency(down, req()));
    expect(e).toMatchObject({ code: 'unavailable', rule: 'idempotency.store_unavailable', httpStatus: 503 });
    const half = new MemoryStore();
    await half.set(idempotencyStoreKey('tickets', null, ALICE, JSON.stringify(['header', 'k-1'])), pendingMarker('0'.repeat(64), 1), 60_000);
    half.get = () => Promise.reject(new Error('timeout'));
    expect(await rejection(claimIdempotency(half, req()))).toMatchObject({ rule: 'idempotency.store_unavailable' });
  });

  it('never takes a malformed stored value for absent or done', async () => {
    const key = idempotencyStoreKey('tickets', null, ALICE, JSON.stringify(['header', 'k-1']));
    const fp = requestFingerprint('POST', '/tools/tickets/tenants/acme/tickets', req().rawBody, req().parsedBody, false);
    const good = JSON.parse(doneRecord(fp, 201, [['content-type', 'application/json']], Buffer.from('{}'), 1)) as Record<string, unknown>;
    const values = [
      'not json',
      '[]',
      'null',
      JSON.stringify({ ...good, state: 'finished' }),
      JSON.stringify({ ...good, status: 500 }),
      JSON.stringify({ ...good, status: 299 }),
      JSON.stringify({ ...good, status: '201' }),
      JSON.stringify({ ...good, body: 42 }),
      JSON.stringify({ ...good, body: 'not base64!' }),
      JSON.stringify({ ...good, headers: [['set-cookie', 'sid=1']] }),
      JSON.stringify({ ...good, headers: [['content-type', 'a\r\nx-evil: 1']] }),
      JSON.stringify({ ...good, headers: 'content-type' }),
      JSON.stringify({ ...good, body_sha256: 'short' }),
      JSON.stringify({ state: 'pending', body_sha256: fp, at: 1 }),
    ];
    for (const v of values) {
      const store = new MemoryStore();
      await store.set(key, v, 60_000);
      const e = await rejection(claimIdempotency(store, req()));
      expect(e, v).toMatchObject({ code: 'unavailable', rule: 'idempotency.stored_invalid' });
    }
    const store = new MemoryStore();
    await store.set(key, JSON.stringify(good), 60_000);
    expect((await claimIdempotency(store, req())).kind).toBe('replay');
  });

  it('stores only the headers that may be replayed', () => {
    const d = JSON.parse(doneRecord('0'.repeat(64), 200, [['content-type', 'application/json'], ['set-cookie', 's=1'], ['connection', 'close'], ['location', '/t/1']], Buffer.alloc(0), 1)) as { headers: unknown };
    expect(d.headers).toEqual([['content-type', 'application/json'], ['location', '/t/1']]);
  });
});
