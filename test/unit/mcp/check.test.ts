import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import { Authorizer, type AuthzDeps, type CheckOutcome } from '../../../src/authz/check.js';
import type { ProtoCheckRequest } from '../../../src/authz/request.js';
import { HandoffKey } from '../../../src/authz/handoff.js';
import type { Principal } from '../../../src/identity/types.js';
import { ToolRegistry } from '../../../src/tools/registry.js';
import { RateLimiter } from '../../../src/limits/tokenBucket.js';
import type { PolicyInput } from '../../../src/policy/input.js';
import type { Decision } from '../../../src/policy/result.js';
import { SessionBinder, sessionIdentity } from '../../../src/mcp/session.js';

/** The Check's MCP transport stages over a real config and registry; identity and policy recorded. */

const PRINCIPAL: Principal = { agent: 'a', agent_version: null, user: 'u', tenant: 'acme', roles: ['r'], methods: ['jwt'], proven_by: ['test-issuer'] };
const binder = new SessionBinder(new HandoffKey(() => 'check-test-key-0123456789abcdef0123456789'));

function authorizer(): { a: Authorizer; inputs: PolicyInput[] } {
  const config = parseConfig(
    `
policy: { bundle: b.tar.gz }
tools:
  - name: docs
    upstream: tool_docs
    mcp:
      tools: { search_docs: {}, delete_doc: { mutating: true } }
      allowed_origins: [https://app.example.com]
`,
    '/etc/portcullis/c.yaml',
  );
  const inputs: PolicyInput[] = [];
  const allow: Decision = { allowed: true, headers: null, responseHeadersToAdd: null, requestHeadersToRemove: null, body: null, httpStatus: null, dynamicMetadata: null, reason: null, rule: 'allow.test' };
  const deps = {
    config,
    tools: new ToolRegistry(config.tools),
    identity: { credentialHeaders: ['authorization'], verify: async () => PRINCIPAL },
    policy: {
      evaluate: (input: PolicyInput): Decision => {
        inputs.push(input);
        return allow;
      },
      status: () => ({ version: 'test' }),
      settled: () => null,
    },
    credentials: { headersFor: () => [] },
    limiter: new RateLimiter(),
    scanner: { scan: () => [] },
    sessions: binder,
  } as unknown as AuthzDeps;
  return { a: new Authorizer(deps), inputs };
}

/** A POST to the docs tool; `body: null` announces a body of `length` bytes the Check was not sent. */
function request(headers: Record<string, string>, body: string | null, length = 120, method = 'POST'): ProtoCheckRequest {
  const h: Record<string, string> = { ':method': method, ':path': '/tools/docs/', authorization: 'Bearer t', ...headers };
  if (method === 'POST') {
    h['content-type'] = 'application/json';
    h['content-length'] = String(body === null ? length : Buffer.byteLength(body));
  }
  const http = { method, path: '/tools/docs/', headers: h, ...(body === null ? {} : { rawBody: Buffer.from(body) }) };
  return { attributes: { request: { http }, contextExtensions: { route_tool: 'docs' } } };
}

function denied(out: CheckOutcome): Extract<CheckOutcome, { allowed: false }> {
  expect(out.allowed).toBe(false);
  return out as Extract<CheckOutcome, { allowed: false }>;
}

const deleteCall = JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'delete_doc', arguments: { doc_id: 'd' } } });

describe('Check: a call decided on the MCP standard headers', () => {
  it('without the body, the policy sees the call from the headers, marked as such, and the hand-off says so', async () => {
    const { a, inputs } = authorizer();
    const out = await a.check(request({ 'mcp-method': 'tools/call', 'mcp-name': 'delete_doc' }, null));
    expect(out.allowed).toBe(true);
    expect(inputs).toHaveLength(1);
    expect(inputs[0]!.mcp).toMatchObject({ method: 'tools/call', tool: 'delete_doc', arguments: null, source: 'headers' });
    expect(inputs[0]!.tool?.mutating).toBe(true);
    expect(out.metadata.mcp_decided_on).toBe('headers');
    expect(out.metadata.body_sha256).toBeNull();
    expect(out.metadata.mcp_method).toBe('tools/call');
    expect(out.metadata.mcp_tool).toBe('delete_doc');
  });

  it('without the body and without Mcp-Method, nothing can be decided (413)', async () => {
    const { a, inputs } = authorizer();
    expect(denied(await a.check(request({}, null))).error.rule).toBe('inspect.body_window');
    expect(inputs).toHaveLength(0);
  });

  it('with the body, the body decides and the headers must agree with it', async () => {
    const { a, inputs } = authorizer();
    const out = await a.check(request({ 'mcp-method': 'tools/call', 'mcp-name': 'delete_doc' }, deleteCall));
    expect(out.allowed).toBe(true);
    expect(out.metadata.mcp_decided_on).toBeNull();
    expect(out.metadata.body_sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(inputs[0]!.mcp).toMatchObject({ id: 3, arguments: { doc_id: 'd' } });
    const lie = denied(await a.check(request({ 'mcp-method': 'tools/list' }, deleteCall)));
    expect(lie.error.rule).toBe('mcp.header_mismatch');
    expect(lie.rpcId).toBe(3);
    expect(inputs).toHaveLength(1);
  });

  it('hands the principal on for ext_proc', async () => {
    const { a } = authorizer();
    const out = await a.check(request({}, deleteCall));
    const m = out.metadata;
    expect({ agent: m.agent, user: m.user, tenant: m.tenant, roles: m.roles, methods: m.auth_methods, proven_by: m.proven_by }).toEqual({
      agent: PRINCIPAL.agent, user: PRINCIPAL.user, tenant: PRINCIPAL.tenant, roles: PRINCIPAL.roles, methods: PRINCIPAL.methods, proven_by: PRINCIPAL.proven_by,
    });
  });
});

describe('Check: MCP sessions and origins', () => {
  it('a binding of this principal is unwrapped: the tool gets its own session id', async () => {
    const { a } = authorizer();
    const bound = binder.bind(sessionIdentity(PRINCIPAL), 'docs', 'server-session-1');
    const out = await a.check(request({ 'mcp-session-id': bound }, null, 0, 'GET'));
    expect(out.allowed).toBe(true);
    if (out.allowed) expect(out.setHeaders).toContainEqual({ key: 'mcp-session-id', value: 'server-session-1' });
  });

  it('another principal\'s binding is 404 before policy', async () => {
    const { a, inputs } = authorizer();
    const theirs = binder.bind(sessionIdentity({ ...PRINCIPAL, user: 'someone-else' }), 'docs', 'server-session-1');
    const out = denied(await a.check(request({ 'mcp-session-id': theirs }, null, 0, 'DELETE')));
    expect(out.error.rule).toBe('mcp.session_foreign');
    expect(out.error.httpStatus).toBe(404);
    expect(inputs).toHaveLength(0);
  });

  it('a foreign Origin is 403 before policy; the allowed one passes', async () => {
    const { a, inputs } = authorizer();
    const out = denied(await a.check(request({ origin: 'https://evil.example.com' }, deleteCall)));
    expect(out.error.rule).toBe('mcp.origin');
    expect(out.error.httpStatus).toBe(403);
    expect(out.rpcId).toBe(3);
    expect(inputs).toHaveLength(0);
    expect((await a.check(request({ origin: 'https://app.example.com' }, deleteCall))).allowed).toBe(true);
  });
});
