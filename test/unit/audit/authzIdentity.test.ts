import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildAuditRecord, buildForwardedRecord } from '../../../src/audit/record.js';
import { auditFromAuthz } from '../../../src/authz/audit.js';
import { Authorizer, type AuthzDeps, type CheckOutcome } from '../../../src/authz/check.js';
import { HandoffKey, handoffStruct, readHandoff, sealHandoff, AUTHZ_METADATA_NAMESPACE } from '../../../src/authz/handoff.js';
import type { ProtoCheckRequest } from '../../../src/authz/request.js';
import { parseConfig } from '../../../src/config/load.js';
import { SecretStore } from '../../../src/credentials/secrets.js';
import { IdentityVerifier } from '../../../src/identity/index.js';
import { RateLimiter } from '../../../src/limits/tokenBucket.js';
import type { Decision } from '../../../src/policy/result.js';
import { ToolRegistry } from '../../../src/tools/registry.js';

const GOOD_KEY = 'k-reporter-0123456789';
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

/** An Authorizer with real identity verification (API keys) and tool registry; the policy allows. */
async function authorizer(): Promise<Authorizer> {
  const config = parseConfig(
    `
policy: { bundle: b.tar.gz }
identity:
  api_keys:
    - { id: reporter-key, sha256: "${sha(GOOD_KEY)}", agent: reporter, tenant: acme, roles: [support, billing] }
tools:
  - { name: docs, upstream: tool_docs, mcp: { tools: { search_docs: {} } } }
`,
    '/etc/portcullis/c.yaml',
  );
  const allow: Decision = { allowed: true, headers: null, responseHeadersToAdd: null, requestHeadersToRemove: null, body: null, httpStatus: null, dynamicMetadata: null, reason: null, rule: 'allow.test' };
  const deps = {
    config,
    tools: new ToolRegistry(config.tools),
    identity: await IdentityVerifier.create(config.identity, '/etc/portcullis', new SecretStore('/etc/portcullis')),
    policy: { evaluate: () => allow, status: () => ({ version: 'test' }), settled: () => null },
    credentials: { headersFor: () => [] },
    limiter: new RateLimiter(),
    scanner: { scan: () => [] },
  } as unknown as AuthzDeps;
  return new Authorizer(deps);
}

function request(path: string, headers: Record<string, string>, body?: string): ProtoCheckRequest {
  const all: Record<string, string> = { ':method': 'POST', ':path': path, ...headers };
  if (body !== undefined) Object.assign(all, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
  return {
    attributes: {
      request: { http: { method: 'POST', path, headers: all, ...(body !== undefined ? { rawBody: Buffer.from(body) } : {}) } },
      contextExtensions: { route_tool: 'docs' },
    },
  };
}

function denied(o: CheckOutcome): Extract<CheckOutcome, { allowed: false }> {
  if (o.allowed) throw new Error('expected a denial');
  return o;
}

const call = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'search_docs', arguments: { q: 'x' } } });
// Denied while the tool is resolved, before identity is established.
const steering = { 'x-envoy-original-dst-host': '10.0.0.1:80' };

describe('identity on records of requests denied before authentication', () => {
  it('names the caller when the presented credential verifies, without changing the denial', async () => {
    const a = await authorizer();
    const anonymous = denied(await a.check(request('/tools/docs/', steering)));
    const known = denied(await a.check(request('/tools/docs/', { ...steering, 'x-api-key': GOOD_KEY })));
    expect(known.error.code).toBe(anonymous.error.code);
    expect(known.error.rule).toBe('tool.direct_upstream');
    expect(known.error.httpStatus).toBe(anonymous.error.httpStatus);
    expect(known.isJsonRpc).toBe(anonymous.isJsonRpc);
    expect(known.metadata).toMatchObject({ agent: 'reporter', tenant: 'acme', roles: ['support', 'billing'], auth_methods: ['api_key'], auth_error: null });
    expect(anonymous.metadata).toMatchObject({ agent: null, roles: [], auth_methods: [], auth_error: null });
    const r = buildAuditRecord({ ...auditFromAuthz(known.metadata), responseStatus: 400 });
    expect(r).toMatchObject({ agent_id: 'reporter', tenant_id: 'acme', roles: ['billing', 'support'], auth_error: null, decision: { allowed: false, rule: 'tool.direct_upstream' } });
  });

  it('says the credential did not verify (no identity, the auth rule) and keeps the denial', async () => {
    const a = await authorizer();
    const bad = denied(await a.check(request('/tools/docs/', { ...steering, 'x-api-key': 'wrong' })));
    expect(bad.error.rule).toBe('tool.direct_upstream');
    expect(bad.metadata).toMatchObject({ agent: null, auth_methods: [], auth_error: 'identity.api_key' });
    const r = buildAuditRecord(auditFromAuthz(bad.metadata));
    expect(r).toMatchObject({ agent_id: null, auth_methods: [], auth_error: 'identity.api_key' });
  });

  it('records the failed verification when it is the denial itself', async () => {
    const a = await authorizer();
    const bad = denied(await a.check(request('/tools/nope/', { 'x-api-key': 'wrong' })));
    expect(bad.error.code).toBe('unauthenticated');
    expect(bad.metadata.auth_error).toBe('identity.api_key');
  });
});

describe('MCP call and roles through the hand-off to the records', () => {
  it('an allowed tools/call carries method, tool and roles, signed in the hand-off', async () => {
    const a = await authorizer();
    const out = await a.check(request('/tools/docs/', { 'x-api-key': GOOD_KEY }, call));
    expect(out.allowed).toBe(true);
    const key = HandoffKey.ephemeral();
    const sealed = sealHandoff(out.metadata, key);
    const read = readHandoff({ [AUTHZ_METADATA_NAMESPACE]: handoffStruct(sealed) }, key);
    expect(read.ok).toBe(true);
    if (!read.ok) return;
    expect(read.meta).toEqual(out.metadata);
    const fwd = buildForwardedRecord(auditFromAuthz(read.meta));
    expect(fwd).toMatchObject({ record_type: 'forwarded', mcp: { method: 'tools/call', tool: 'search_docs' }, roles: ['billing', 'support'], agent_id: 'reporter' });
    // Roles are signed: a changed role list is a forgery.
    const forged = handoffStruct({ ...sealed, roles: ['admin'] });
    expect(readHandoff({ [AUTHZ_METADATA_NAMESPACE]: forged }, key)).toEqual({ ok: false, problem: 'forged' });
  });
});
