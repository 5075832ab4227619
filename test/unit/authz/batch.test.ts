import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import { Authorizer, type AuthzDeps } from '../../../src/authz/check.js';
import type { ProtoCheckRequest } from '../../../src/authz/request.js';
import { ToolRegistry } from '../../../src/tools/registry.js';
import { RateLimiter } from '../../../src/limits/tokenBucket.js';
import type { PolicyInput } from '../../../src/policy/input.js';
import type { Decision } from '../../../src/policy/result.js';

/** An Authorizer over a real config and registry, with an identity, policy and credentials stand-in. */
function authorizer(opts: { budgetMs?: number; evaluateMs?: number } = {}): { a: Authorizer; inputs: PolicyInput[] } {
  const config = parseConfig(
    `
policy: { bundle: b.tar.gz }
inspect: { policy_budget_ms: ${opts.budgetMs ?? 50} }
tools:
  - { name: docs, upstream: tool_docs, mcp: { tools: { search_docs: {}, delete_doc: { mutating: true } } } }
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
        const until = Date.now() + (opts.evaluateMs ?? 0);
        while (Date.now() < until) {
          // Simulates a slow policy.
        }
        return allow;
      },
      status: () => ({ version: 'test' }),
      settled: () => null,
    },
    credentials: { headersFor: () => [] },
    limiter: new RateLimiter(),
    scanner: { scan: () => [] },
  } as unknown as AuthzDeps;
  return { a: new Authorizer(deps), inputs };
}

function request(body: string): ProtoCheckRequest {
  const headers = { ':method': 'POST', ':path': '/tools/docs/', 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), authorization: 'Bearer t' };
  return { attributes: { request: { http: { method: 'POST', path: '/tools/docs/', headers, rawBody: Buffer.from(body) } }, contextExtensions: { route_tool: 'docs' } } };
}

function batch(n: number): string {
  return JSON.stringify(Array.from({ length: n }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'search_docs', arguments: { query: `q${i}`, tenant: 'acme' } } })));
}

describe('Check: JSON-RPC batches', () => {
  it('judges each call on its own message, not on the whole batch', async () => {
    const { a, inputs } = authorizer();
    const out = await a.check(request(batch(3)));
    expect(out.allowed).toBe(true);
    expect(inputs).toHaveLength(3);
    inputs.forEach((input, i) => {
      expect(input.mcp).toMatchObject({ id: i, tool: 'search_docs' });
      expect(input.parsed_body).toMatchObject({ id: i, params: { arguments: { query: `q${i}` } } });
      expect(JSON.parse((input.attributes.request as { http: { body: string } }).http.body)).toMatchObject({ id: i });
      expect(input.truncated_body).toBe(false);
    });
  });

  it('a single message keeps the whole body as its input', async () => {
    const { a, inputs } = authorizer();
    const one = JSON.stringify({ jsonrpc: '2.0', id: 'x', method: 'tools/list' });
    await a.check(request(one));
    expect(inputs).toHaveLength(1);
    expect((inputs[0]!.attributes.request as { http: { body: string } }).http.body).toBe(one);
  });

  it('refuses a batch over max_batch_calls before any evaluation, answering every id', async () => {
    const { a, inputs } = authorizer();
    const out = await a.check(request(batch(17)));
    expect(out.allowed).toBe(false);
    if (!out.allowed) {
      expect(out.error.rule).toBe('inspect.batch_size');
      expect(out.batchIds).toHaveLength(17);
    }
    expect(inputs).toHaveLength(0);
  });

  it('stops evaluating once the request has used its policy budget', async () => {
    const { a, inputs } = authorizer({ budgetMs: 5, evaluateMs: 3 });
    const out = await a.check(request(batch(16)));
    expect(out.allowed).toBe(false);
    if (!out.allowed) expect(out.error.rule).toBe('authz.budget');
    expect(inputs.length).toBeLessThan(16);
  });
});
