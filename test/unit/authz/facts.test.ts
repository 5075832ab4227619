import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import { Authorizer, type AuthzDeps } from '../../../src/authz/check.js';
import type { ProtoCheckRequest } from '../../../src/authz/request.js';
import { ToolRegistry } from '../../../src/tools/registry.js';
import { RateLimiter } from '../../../src/limits/tokenBucket.js';
import { MemoryStore, type Store } from '../../../src/limits/store.js';
import { parseFactRecord } from '../../../src/limits/facts.js';
import type { PolicyInput } from '../../../src/policy/input.js';
import type { Decision } from '../../../src/policy/result.js';

/** An Authorizer over a real config, registry and store, with identity, policy and credentials stand-ins. */
function authorizer(store: Store): { a: Authorizer; inputs: PolicyInput[] } {
  const config = parseConfig(
    `
policy: { bundle: b.tar.gz }
tools:
  - name: docs
    upstream: tool_docs
    mcp: { tools: { search_docs: {} } }
    facts: [{ name: searched, kind: seen, key: [agent, "arg:query"] }]
  - { name: weather, upstream: tool_weather }
`,
    '/etc/portcullis/c.yaml',
  );
  const inputs: PolicyInput[] = [];
  const allow: Decision = { allowed: true, headers: null, responseHeadersToAdd: null, requestHeadersToRemove: null, body: null, httpStatus: null, dynamicMetadata: null, reason: null, rule: 'allow.test' };
  const deps = {
    config,
    tools: new ToolRegistry(config.tools),
    identity: { credentialHeaders: ['authorization'], verify: async () => ({ agent: 'a', agent_version: null, user: 'u', tenant: 'acme', roles: ['r'], methods: ['jwt'], proven_by: ['test'] }) },
    policy: {
      evaluate: (input: PolicyInput): Decision => {
        inputs.push(input);
        return allow;
      },
      status: () => ({ version: 'test' }),
      settled: () => null,
    },
    credentials: { headersFor: () => [] },
    limiter: new RateLimiter(store),
    scanner: { scan: () => [] },
  } as unknown as AuthzDeps;
  return { a: new Authorizer(deps), inputs };
}

function request(tool: string, body: string | null): ProtoCheckRequest {
  const path = `/tools/${tool}/`;
  const headers: Record<string, string> = { ':method': body === null ? 'GET' : 'POST', ':path': path, authorization: 'Bearer t' };
  if (body !== null) Object.assign(headers, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
  return {
    attributes: { request: { http: { method: headers[':method'], path, headers, ...(body === null ? {} : { rawBody: Buffer.from(body) }) } }, contextExtensions: { route_tool: tool } },
  };
}

const search = (id: number, query?: string): unknown => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'search_docs', arguments: query === undefined ? { tenant: 'acme' } : { query, tenant: 'acme' } } });

describe('Check: policy facts', () => {
  it('gives each call of a batch its own facts and hands the records to ext_proc', async () => {
    const store = new MemoryStore();
    const { a, inputs } = authorizer(store);
    const first = await a.check(request('docs', JSON.stringify(search(1, 'vpn'))));
    expect(first.allowed).toBe(true);
    expect(inputs[0]?.facts).toEqual({ searched: false });
    for (const s of first.metadata.fact_records) await store.set(parseFactRecord(s)!.key, '1', 60_000);
    inputs.length = 0;
    const out = await a.check(request('docs', JSON.stringify([search(1, 'other'), search(2, 'vpn'), search(3)])));
    expect(out.allowed).toBe(true);
    expect(inputs.map((i) => i.facts)).toEqual([{ searched: false }, { searched: true }, {}]);
    expect(out.metadata.fact_records).toHaveLength(2);
    expect(out.metadata.budget_records).toEqual([]);
  });

  it('a tool without facts has no input.facts and reads nothing from the store', async () => {
    const never: Store = Object.assign(Object.create(new MemoryStore()) as Store, { getMany: () => Promise.reject(new Error('must not be called')) });
    const { a, inputs } = authorizer(never);
    const out = await a.check(request('weather', null));
    expect(out.allowed).toBe(true);
    expect(inputs[0] && 'facts' in inputs[0]).toBe(false);
    expect(out.metadata.fact_records).toEqual([]);
  });

  it('an unreachable store denies before policy runs, as a JSON-RPC error for JSON-RPC', async () => {
    const broken: Store = Object.assign(Object.create(new MemoryStore()) as Store, { getMany: () => Promise.reject(new Error('ECONNREFUSED')) });
    const { a, inputs } = authorizer(broken);
    const out = await a.check(request('docs', JSON.stringify(search(9, 'vpn'))));
    expect(out.allowed).toBe(false);
    if (out.allowed) return;
    expect(out.error).toMatchObject({ code: 'unavailable', rule: 'facts.store_unavailable', httpStatus: 503 });
    expect(out.isJsonRpc).toBe(true);
    expect(out.rpcId).toBe(9);
    expect(inputs).toHaveLength(0);
  });
});
