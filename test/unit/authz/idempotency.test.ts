import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import { Authorizer, type AuthzDeps, type CheckOutcome } from '../../../src/authz/check.js';
import type { ProtoCheckRequest } from '../../../src/authz/request.js';
import { toCheckResponse } from '../../../src/authz/response.js';
import { HandoffKey, readHandoff, AUTHZ_METADATA_NAMESPACE } from '../../../src/authz/handoff.js';
import { ToolRegistry } from '../../../src/tools/registry.js';
import { RateLimiter } from '../../../src/limits/tokenBucket.js';
import { MemoryStore } from '../../../src/limits/store.js';
import { doneRecord, parseEntry } from '../../../src/limits/idempotency.js';
import type { Decision } from '../../../src/policy/result.js';

const ALLOW: Decision = { allowed: true, headers: null, responseHeadersToAdd: null, requestHeadersToRemove: null, body: null, httpStatus: null, dynamicMetadata: null, reason: null, rule: 'allow.test' };

/** An Authorizer over a real config, registry, rate limiter and store; identity and policy stand-ins. */
function authorizer(): { a: Authorizer; store: MemoryStore; policy: { deny: boolean; credentialsFail: boolean } } {
  const config = parseConfig(
    `
policy: { bundle: b.tar.gz }
tools:
  - name: tickets
    upstream: tool_tickets
    idempotency: { ttl_s: 60 }
    rate_limits: [{ name: burst, per: [agent], rps: 0.001, burst: 3 }]
  - name: docs
    upstream: tool_docs
    mcp: { tools: { delete_doc: { mutating: true }, search_docs: { mutating: false } } }
    idempotency: {}
`,
    '/etc/portcullis/c.yaml',
  );
  const store = new MemoryStore();
  const policy = { deny: false, credentialsFail: false };
  const deps = {
    config,
    tools: new ToolRegistry(config.tools),
    identity: { credentialHeaders: ['authorization'], verify: async () => ({ agent: 'a', agent_version: null, user: 'u', tenant: 'acme', roles: ['r'], methods: ['jwt'], proven_by: ['test'] }) },
    policy: {
      evaluate: (): Decision => (policy.deny ? { ...ALLOW, allowed: false, rule: 'identity.revoked', reason: 'revoked' } : ALLOW),
      status: () => ({ version: 'test' }),
      settled: () => null,
    },
    credentials: {
      headersFor: () => {
        if (policy.credentialsFail) throw new Error('secret missing');
        return [];
      },
    },
    limiter: new RateLimiter(store),
    scanner: { scan: () => [] },
  } as unknown as AuthzDeps;
  return { a: new Authorizer(deps), store, policy };
}

function request(path: string, body: string, headers: Record<string, string> = {}, method = 'POST'): ProtoCheckRequest {
  const h = { ':method': method, ':path': path, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), authorization: 'Bearer t', ...headers };
  const tool = path.split('/')[2] as string;
  return { attributes: { request: { http: { method, path, headers: h, rawBody: Buffer.from(body) } }, contextExtensions: { route_tool: tool } } };
}

const TICKET = '{"title":"t","priority":"high"}';
const tickets = (key: string, body = TICKET): ProtoCheckRequest => request('/tools/tickets/tenants/acme/tickets', body, { 'idempotency-key': key });

/** Completes the claim an allowed outcome carries, as ext_proc would. */
async function complete(store: MemoryStore, out: CheckOutcome, status: number, body: string): Promise<void> {
  if (!out.allowed) throw new Error(`denied: ${out.error.rule}`);
  const { idempotency_key: key, idempotency_claim: claim } = out.metadata;
  if (!key || !claim) throw new Error('no claim');
  expect(await store.swap(key, claim, doneRecord(parseEntry(claim).body_sha256, status, [['content-type', 'application/json']], Buffer.from(body), Date.now()), 60_000)).toBe(true);
}

describe('Check: idempotency stage', () => {
  it('hands the claim to ext_proc in the signed hand-off, and renders a replay as a local reply with the stored status', async () => {
    const { a, store } = authorizer();
    const first = await a.check(tickets('k1'));
    expect(first.allowed).toBe(true);
    expect(first.metadata).toMatchObject({ idempotency_key: expect.stringMatching(/^idem:/), idempotency_claim: expect.stringContaining('"pending"') });
    const key = new HandoffKey(() => 'k'.repeat(32));
    const sealed = toCheckResponse(first, key);
    const verified = readHandoff({ [AUTHZ_METADATA_NAMESPACE]: sealed.dynamicMetadata }, key);
    expect(verified.ok && verified.meta.idempotency_claim).toBe(first.metadata.idempotency_claim);
    await complete(store, first, 201, '{"created":"T-1"}');

    const replay = await a.check(tickets('k1'));
    expect(replay.allowed).toBe(true);
    if (!replay.allowed) return;
    expect(replay.replay?.status).toBe(201);
    expect(replay.metadata).toMatchObject({ allowed: true, rule: 'idempotency.replayed', idempotency_key: first.metadata.idempotency_key, idempotency_claim: null });
    const r = toCheckResponse(replay, key);
    expect(r.okResponse).toBeUndefined();
    expect(r.deniedResponse?.status.code).toBe(201);
    expect(r.deniedResponse?.body).toBe('{"created":"T-1"}');
    expect(r.deniedResponse?.headers.map((h) => [h.header.key, h.header.value])).toEqual([
      ['content-type', 'application/json'],
      ['idempotent-replayed', 'true'],
    ]);
    const m = readHandoff({ [AUTHZ_METADATA_NAMESPACE]: r.dynamicMetadata }, key);
    expect(m.ok && m.meta.rule).toBe('idempotency.replayed');
  });

  it('a replay is still authorized: a caller the policy now denies gets the denial, not the stored answer', async () => {
    const { a, store, policy } = authorizer();
    await complete(store, await a.check(tickets('k2')), 201, '{"created":"T-2"}');
    policy.deny = true;
    const out = await a.check(tickets('k2'));
    expect(out.allowed).toBe(false);
    if (!out.allowed) expect(out.error).toMatchObject({ code: 'forbidden', rule: 'identity.revoked' });
    expect(toCheckResponse(out, HandoffKey.ephemeral()).deniedResponse?.body).not.toContain('T-2');
  });

  it('a call denied after it was claimed (rate limit) releases its key: the retry later runs', async () => {
    const { a, store } = authorizer();
    for (let i = 0; i < 3; i++) expect((await a.check(tickets(`fill-${i}`))).allowed).toBe(true);
    const limited = await a.check(tickets('k3'));
    expect(limited.allowed).toBe(false);
    if (!limited.allowed) expect(limited.error.rule).toBe('limits.burst');
    expect(limited.metadata.idempotency_key).toBeNull();
    // Nothing held for k3: only the three claims of the calls that were allowed.
    await new Promise((r) => setImmediate(r));
    expect(store.size).toBe(3);
  });

  it('a claim made before a later stage failed is released (the call ran nowhere), so the retry runs', async () => {
    const { a, store, policy } = authorizer();
    policy.credentialsFail = true;
    const failed = await a.check(tickets('k4'));
    expect(failed.allowed).toBe(false);
    if (!failed.allowed) expect(failed.error.code).toBe('internal');
    expect(failed.metadata.idempotency_claim).toBeNull();
    await new Promise((r) => setImmediate(r));
    expect(store.size).toBe(0);
    policy.credentialsFail = false;
    const retry = await a.check(tickets('k4'));
    expect(retry.allowed && retry.metadata.idempotency_claim).toBeTruthy();
  });

  it('answers a duplicate in flight as 409 conflict, as a JSON-RPC error with the id for an MCP call', async () => {
    const { a } = authorizer();
    const del = (id: number): ProtoCheckRequest =>
      request('/tools/docs/', JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'delete_doc', arguments: { doc_id: 'd1' } } }), { 'idempotency-key': 'del-1' });
    expect((await a.check(del(1))).allowed).toBe(true);
    const busy = await a.check(del(2));
    expect(busy.allowed).toBe(false);
    const r = toCheckResponse(busy, HandoffKey.ephemeral());
    expect(r.deniedResponse?.status.code).toBe(409);
    expect(r.deniedResponse?.headers.find((h) => h.header.key === 'retry-after')?.header.value).toBe('1');
    expect(JSON.parse(r.deniedResponse?.body ?? '')).toMatchObject({ jsonrpc: '2.0', id: 2, error: { code: -32009, data: { type: 'conflict', rule: 'idempotency.in_flight', retryable: true, retry_after_s: 1 } } });
    // A read-only MCP call with the same key is not tracked at all.
    const search = request('/tools/docs/', JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'q' } } }), { 'idempotency-key': 'del-1' });
    const s = await a.check(search);
    expect(s.allowed).toBe(true);
    expect(s.metadata.idempotency_key).toBeNull();
  });

  it('a batch with a mutating call is tracked as one request: a duplicate gets a 409 for every id', async () => {
    const { a } = authorizer();
    const body = JSON.stringify([
      { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'q' } } },
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'delete_doc', arguments: { doc_id: 'd9' } } },
    ]);
    const first = await a.check(request('/tools/docs/', body, { 'idempotency-key': 'batch-1' }));
    expect(first.allowed && first.metadata.idempotency_claim).toBeTruthy();
    const dup = await a.check(request('/tools/docs/', body, { 'idempotency-key': 'batch-1' }));
    const r = toCheckResponse(dup, HandoffKey.ephemeral());
    expect(r.deniedResponse?.status.code).toBe(409);
    const replies = JSON.parse(r.deniedResponse?.body ?? '') as { id: number; error: { data: { type: string } } }[];
    expect(replies.map((x) => [x.id, x.error.data.type])).toEqual([
      [1, 'conflict'],
      [2, 'conflict'],
    ]);
  });

  it('GET is never tracked, whatever key it sends', async () => {
    const { a, store } = authorizer();
    const get = await a.check(request('/tools/tickets/tenants/acme/tickets', '', { 'idempotency-key': 'g' }, 'GET'));
    expect(get.allowed).toBe(true);
    expect(get.metadata.idempotency_key).toBeNull();
    expect(store.size).toBe(0);
  });
});
