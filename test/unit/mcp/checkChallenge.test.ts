import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import { Authorizer, type AuthzDeps } from '../../../src/authz/check.js';
import { toCheckResponse } from '../../../src/authz/response.js';
import { HandoffKey } from '../../../src/authz/handoff.js';
import type { ProtoCheckRequest } from '../../../src/authz/request.js';
import type { IdentityRequest } from '../../../src/identity/index.js';
import { ToolRegistry } from '../../../src/tools/registry.js';
import { RateLimiter } from '../../../src/limits/tokenBucket.js';
import type { Decision } from '../../../src/policy/result.js';
import { GatewayError } from '../../../src/errors.js';

const AS = 'https://as.example';
const METADATA = 'https://gw.example/.well-known/oauth-protected-resource/tools/docs/';

/** An Authorizer over a real config, with identity and policy stand-ins that record what they were given. */
function authorizer(identityRequired: boolean): { a: Authorizer; seen: IdentityRequest[] } {
  const config = parseConfig(
    `
identity:
  required: ${identityRequired}
  jwt: [{ issuer: "${AS}", audiences: [portcullis], jwks_file: jwks.json, algorithms: [ES256] }]
policy: { bundle: b.tar.gz }
tools:
  - name: docs
    upstream: tool_docs
    mcp: { tools: { search_docs: {} } }
    oauth: { resource: "https://gw.example/tools/docs/", authorization_servers: ["${AS}"], scopes: [docs:read] }
  - { name: weather, upstream: tool_weather }
`,
    '/etc/portcullis/c.yaml',
  );
  const seen: IdentityRequest[] = [];
  // The policy denies anonymous callers (identity optional: an OPA-Envoy policy decides).
  const deny: Decision = { allowed: false, headers: null, responseHeadersToAdd: null, requestHeadersToRemove: null, body: null, httpStatus: 401, dynamicMetadata: null, reason: 'sign in', rule: 'policy.anonymous' };
  const deps = {
    config,
    tools: new ToolRegistry(config.tools),
    identity: {
      credentialHeaders: ['authorization'],
      verify: async (req: IdentityRequest) => {
        seen.push(req);
        if (req.headers.authorization) throw new GatewayError('unauthenticated', 'the bearer token was not issued for this resource', { rule: 'identity.jwt' });
        if (req.headers['x-api-key']) throw new GatewayError('unauthenticated', 'unknown API key', { rule: 'identity.api_key' });
        return null;
      },
    },
    policy: { evaluate: () => deny, status: () => ({ version: 'test' }), settled: () => null },
    credentials: { headersFor: () => [] },
    limiter: new RateLimiter(),
    scanner: { scan: () => [] },
  } as unknown as AuthzDeps;
  return { a: new Authorizer(deps), seen };
}

function request(path: string, tool: string, headers: Record<string, string> = {}): ProtoCheckRequest {
  const body = JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list' });
  const all = { ':method': 'POST', ':path': path, 'content-type': 'application/json', 'content-length': String(body.length), ...headers };
  return { attributes: { request: { http: { method: 'POST', path, headers: all, rawBody: Buffer.from(body) } }, contextExtensions: { route_tool: tool } } };
}

function wwwAuthenticate(out: Awaited<ReturnType<Authorizer['check']>>): string | undefined {
  const rendered = toCheckResponse(out, HandoffKey.ephemeral());
  return rendered.deniedResponse?.headers.find((h) => h.header.key === 'www-authenticate')?.header.value;
}

describe('the Check and OAuth protected resources', () => {
  it('hands the identity stage the audience binding of the tool the path resolves to, and none elsewhere', async () => {
    const { a, seen } = authorizer(true);
    await a.check(request('/tools/docs/', 'docs'));
    await a.check(request('/tools/weather/x', 'weather'));
    await a.check(request('/tools/nope/', 'nope'));
    expect(seen.map((r) => r.resource ?? null)).toEqual([{ resource: 'https://gw.example/tools/docs/', issuers: [AS] }, null, null]);
  });

  it('puts the resource metadata challenge on the 401 of a protected resource only', async () => {
    const { a } = authorizer(true);
    expect(wwwAuthenticate(await a.check(request('/tools/docs/', 'docs')))).toBe(`Bearer realm="portcullis", resource_metadata="${METADATA}", scope="docs:read"`);
    expect(wwwAuthenticate(await a.check(request('/tools/weather/x', 'weather')))).toBe('Bearer realm="portcullis"');
    expect(wwwAuthenticate(await a.check(request('/tools/nope/', 'nope')))).toBe('Bearer realm="portcullis"');
  });

  it('says invalid_token only when a presented bearer token failed, not for another credential', async () => {
    const { a } = authorizer(true);
    expect(wwwAuthenticate(await a.check(request('/tools/docs/', 'docs', { authorization: 'Bearer x' })))).toMatch(/, error="invalid_token"$/);
    const apiKey = wwwAuthenticate(await a.check(request('/tools/docs/', 'docs', { 'x-api-key': 'nope' })));
    expect(apiKey).toContain(`resource_metadata="${METADATA}"`);
    expect(apiKey).not.toContain('error=');
  });

  it('challenges a 401 the policy gives an anonymous caller when identity is optional', async () => {
    const { a } = authorizer(false);
    const out = await a.check(request('/tools/docs/', 'docs'));
    expect(out.allowed).toBe(false);
    expect(out.allowed ? null : out.error.code).toBe('unauthenticated');
    expect(wwwAuthenticate(out)).toContain(`resource_metadata="${METADATA}"`);
  });
});
