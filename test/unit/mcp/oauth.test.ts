import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../../src/config/load.js';
import type { GatewayConfig } from '../../../src/config/types.js';
import { OAuthResources, oauthResources, urlProblem } from '../../../src/mcp/oauth.js';
import { wellKnownResponse } from '../../../src/authz/response.js';

const AS = 'https://as.example';

/** A config with the given `oauth` blocks (YAML flow mappings) on tools docs and tickets. */
function config(docsOAuth: string | null, ticketsOAuth: string | null = null, issuers = [AS]): GatewayConfig {
  const text = `
identity:
  jwt:
${issuers.map((i) => `    - { issuer: "${i}", audiences: [portcullis], jwks_file: jwks.json, algorithms: [ES256] }`).join('\n')}
policy: { bundle: b.tar.gz }
tools:
  - name: docs
    upstream: tool_docs
${docsOAuth ? `    oauth: ${docsOAuth}` : ''}
  - name: tickets
    upstream: tool_tickets
${ticketsOAuth ? `    oauth: ${ticketsOAuth}` : ''}
`;
  return parseConfig(text, 'test.yaml');
}

function schemaProblems(docsOAuth: string): string[] {
  try {
    config(docsOAuth);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.map((p) => `${p.path}: ${p.message}`);
  }
  throw new Error('expected a ConfigError');
}

const docs = `{ resource: "https://gw.example/tools/docs/", authorization_servers: ["${AS}"], scopes: [docs:read, docs:write], resource_name: Docs }`;

describe('tools[].oauth configuration', () => {
  it('is validated by the schema: required keys, no unknown keys, scope tokens that can be quoted, no fragment or query', () => {
    expect(schemaProblems('{ resource: "https://gw.example/tools/docs/" }').join('\n')).toContain('missing required key "authorization_servers"');
    expect(schemaProblems(`{ resource: "https://gw.example/x/", authorization_servers: ["${AS}"], audience: x }`).join('\n')).toContain('unknown key "audience"');
    expect(schemaProblems(`{ resource: "https://gw.example/x/", authorization_servers: ["${AS}"], scopes: ['a"b'] }`).join('\n')).toMatch(/oauth\.scopes\/0|oauth\.scopes\[0\]/);
    expect(schemaProblems(`{ resource: "https://gw.example/x/", authorization_servers: ["${AS}"], scopes: ["a b"] }`).length).toBeGreaterThan(0);
    expect(schemaProblems(`{ resource: "https://gw.example/x/#frag", authorization_servers: ["${AS}"] }`).join('\n')).toContain('$.tools[0].oauth.resource');
    expect(schemaProblems(`{ resource: "https://gw.example/x/?a=1", authorization_servers: ["${AS}"] }`).join('\n')).toContain('$.tools[0].oauth.resource');
    expect(schemaProblems(`{ resource: "ftp://gw.example/x/", authorization_servers: ["${AS}"] }`).join('\n')).toContain('$.tools[0].oauth.resource');
    expect(schemaProblems(`{ resource: "https://gw.example/x/", authorization_servers: [] }`).join('\n')).toContain('authorization_servers');
    expect(config(docs).tools[0]?.oauth?.scopes).toEqual(['docs:read', 'docs:write']);
    expect(config(`{ resource: "https://gw.example/x/", authorization_servers: ["${AS}"] }`).tools[0]?.oauth?.scopes).toEqual([]);
  });

  it('accepts https URLs, and http only on loopback; canonical form only', () => {
    expect(urlProblem('https://gw.example/tools/docs/', 'resource')).toBeNull();
    expect(urlProblem('https://gw.example', 'resource')).toBeNull();
    for (const ok of ['http://127.0.0.1:10000/tools/docs/', 'http://localhost:8080/mcp', 'http://[::1]:1/x']) expect(urlProblem(ok, 'resource'), ok).toBeNull();
    expect(urlProblem('http://gw.example/tools/docs/', 'resource')).toMatch(/must use https/);
    expect(urlProblem('http://127.0.0.1.evil.example/x', 'resource')).toMatch(/must use https/);
    expect(urlProblem('http://localhost.evil.example/x', 'resource')).toMatch(/must use https/);
    expect(urlProblem('https://gw.example/x#', 'resource')).toMatch(/fragment/);
    expect(urlProblem('https://gw.example/x?', 'resource')).toMatch(/query/);
    expect(urlProblem('https://user:pw@gw.example/x', 'resource')).toMatch(/user information/);
    expect(urlProblem('HTTPS://GW.example/x', 'resource')).toContain('"https://gw.example/x"');
    expect(urlProblem('https://gw.example:443/x', 'resource')).toContain('"https://gw.example/x"');
    expect(urlProblem('https://gw.example/a/../x', 'resource')).toContain('"https://gw.example/x"');
    expect(urlProblem('/tools/docs/', 'resource')).toMatch(/absolute URL/);
  });

  it('reports every problem at load, with its path: bad URLs, an authorization server the gateway does not trust, duplicates', () => {
    const plain = (r: string, as = AS): string => `{ resource: "${r}", authorization_servers: ["${as}"] }`;
    const problems = (c: GatewayConfig): string[] => OAuthResources.problems(c).map((p) => `${p.path}: ${p.message}`);
    expect(problems(config(plain('http://gw.example/tools/docs/')))).toEqual([expect.stringMatching(/^\$\.tools\[0\]\.oauth\.resource: resource must use https/)]);
    expect(problems(config(plain('https://gw.example/tools/docs/', 'https://stranger.example')))).toEqual([
      expect.stringMatching(/^\$\.tools\[0\]\.oauth\.authorization_servers\[0\]: "https:\/\/stranger\.example" is not a configured identity\.jwt issuer/),
    ]);
    expect(problems(config(plain('https://gw.example/tools/docs/'), plain('https://gw.example/tools/docs/')))).toEqual([
      expect.stringMatching(/^\$\.tools\[1\]\.oauth\.resource: .*also the resource of tool "docs"/),
    ]);
    // Same path on another origin: one metadata path cannot serve both.
    expect(problems(config(plain('https://gw.example/tools/docs/'), plain('https://other.example/tools/docs/')))).toEqual([
      expect.stringMatching(/^\$\.tools\[1\]\.oauth\.resource: its metadata path \/\.well-known\/oauth-protected-resource\/tools\/docs\/ is also that of tool "docs"/),
    ]);
    // The resource as an issuer audience would make a docs token good for every tool.
    const leaky = parseConfig(
      `
identity: { jwt: [{ issuer: "${AS}", audiences: [portcullis, "https://gw.example/tools/docs/"], jwks_file: jwks.json, algorithms: [ES256] }] }
policy: { bundle: b.tar.gz }
tools: [{ name: docs, upstream: tool_docs, oauth: ${plain('https://gw.example/tools/docs/')} }]
`,
      'test.yaml',
    );
    expect(problems(leaky)).toEqual([expect.stringMatching(/^\$\.tools\[0\]\.oauth\.resource: .*also an audience of issuer "https:\/\/as\.example", so its tokens would be accepted by every tool/)]);
    expect(() => oauthResources(config(plain('http://gw.example/tools/docs/')))).toThrow(/tools\[0\]\.oauth\.resource/);
    expect(oauthResources(config(null)).enabled).toBe(false);
  });
});

describe('protected resource metadata', () => {
  const resources = OAuthResources.compile(config(docs));

  it('is one document per resource, naming only what is configured', () => {
    const a = resources.answer('GET', '/.well-known/oauth-protected-resource/tools/docs/');
    expect(a?.kind).toBe('document');
    if (a?.kind !== 'document') return;
    expect(a.status).toBe(200);
    expect(JSON.parse(a.body)).toEqual({
      resource: 'https://gw.example/tools/docs/',
      authorization_servers: [AS],
      scopes_supported: ['docs:read', 'docs:write'],
      bearer_methods_supported: ['header'],
      resource_name: 'Docs',
    });
    expect(a.headers).toContainEqual({ key: 'cache-control', value: 'public, max-age=3600' });
    // Without scopes or a name, neither key appears.
    const bare = OAuthResources.compile(config(`{ resource: "https://gw.example/tools/docs/", authorization_servers: ["${AS}"] }`));
    const b = bare.answer('GET', '/.well-known/oauth-protected-resource/tools/docs/');
    expect(b?.kind === 'document' ? Object.keys(JSON.parse(b.body) as object) : null).toEqual(['resource', 'authorization_servers', 'bearer_methods_supported']);
  });

  it('is served at the RFC 9728 path, at the path without the trailing slash, whatever the query; for a pathless resource at the root', () => {
    for (const p of ['/.well-known/oauth-protected-resource/tools/docs/', '/.well-known/oauth-protected-resource/tools/docs', '/.well-known/oauth-protected-resource/tools/docs/?x=1']) {
      expect(resources.answer('GET', p)?.kind, p).toBe('document');
    }
    for (const p of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/tools/doc', '/.well-known/oauth-protected-resource/tools/docs/x', '/.well-known/oauth-protected-resource/tools/tickets/']) {
      const a = resources.answer('GET', p);
      expect(a?.kind === 'error' ? [a.error.code, a.error.httpStatus, a.error.rule] : null, p).toEqual(['unknown_tool', 404, 'oauth.no_metadata']);
    }
    // Not under the well-known prefix: the ordinary Check decides.
    for (const p of ['/tools/docs/', '/.well-known/oauth-protected-resourcex', '/.well-known/openid-configuration', '/x/.well-known/oauth-protected-resource/tools/docs/']) {
      expect(resources.answer('GET', p), p).toBeNull();
    }
    const root = OAuthResources.compile(config(`{ resource: "https://mcp.example", authorization_servers: ["${AS}"] }`));
    expect(root.answer('GET', '/.well-known/oauth-protected-resource')?.kind).toBe('document');
    expect(root.forTool('docs')?.metadataUrl).toBe('https://mcp.example/.well-known/oauth-protected-resource');
  });

  it('answers GET, HEAD and the CORS preflight; every other method is refused with 405', () => {
    expect(resources.answer('head', '/.well-known/oauth-protected-resource/tools/docs/')?.kind).toBe('document');
    const pre = resources.answer('OPTIONS', '/.well-known/oauth-protected-resource/tools/docs/');
    expect(pre?.kind === 'document' ? pre.status : null).toBe(204);
    for (const m of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const a = resources.answer(m, '/.well-known/oauth-protected-resource/tools/docs/');
      expect(a?.kind === 'error' ? [a.error.httpStatus, a.error.rule] : null, m).toEqual([405, 'oauth.metadata_method']);
    }
  });

  it('challenges with the metadata URL built from the configured resource, the scopes, and invalid_token only when a token failed', () => {
    expect(resources.challengeFor('docs', false)).toBe(
      'Bearer realm="portcullis", resource_metadata="https://gw.example/.well-known/oauth-protected-resource/tools/docs/", scope="docs:read docs:write"',
    );
    expect(resources.challengeFor('docs', true)).toMatch(/, error="invalid_token"$/);
    expect(resources.challengeFor('tickets', true)).toBeNull();
    expect(resources.challengeFor(null, false)).toBeNull();
    expect(resources.forTool('docs')?.binding).toEqual({ resource: 'https://gw.example/tools/docs/', issuers: [AS] });
  });

  it('is rendered as an ext_authz local reply: status 200 with the document, or the structured error with the request id', () => {
    const req = (method: string, path: string) => ({ attributes: { request: { http: { method, path, headers: { 'x-request-id': 'rid-1' } } } } });
    const ok = wellKnownResponse(req('GET', '/.well-known/oauth-protected-resource/tools/docs/'), resources);
    expect(ok?.okResponse).toBeUndefined();
    expect(ok?.status.code).not.toBe(0);
    expect(ok?.deniedResponse?.status.code).toBe(200);
    expect(JSON.parse(ok?.deniedResponse?.body ?? '{}')).toMatchObject({ resource: 'https://gw.example/tools/docs/' });
    const refused = wellKnownResponse(req('POST', '/.well-known/oauth-protected-resource/tools/docs/'), resources);
    expect(refused?.deniedResponse?.status.code).toBe(405);
    expect(JSON.parse(refused?.deniedResponse?.body ?? '{}')).toMatchObject({ error: { type: 'invalid_request', request_id: 'rid-1', rule: 'oauth.metadata_method' } });
    expect(wellKnownResponse(req('GET', '/tools/docs/'), resources)).toBeNull();
  });
});

describe('the demo configuration', () => {
  it('documents an oauth block for the docs tool that loads and compiles as written once uncommented', () => {
    const path = 'scripts/demo/portcullis.yaml';
    const text = readFileSync(path, 'utf8');
    const block = /^ {4}# oauth:\n(?: {4}# {3}.*\n)+/m.exec(text)?.[0];
    expect(block).toBeDefined();
    const cfg = parseConfig(text.replace(block ?? '', (block ?? '').replace(/^ {4}# /gm, '    ')), path);
    const docsTool = cfg.tools.find((t) => t.name === 'docs');
    expect(docsTool?.oauth?.resource).toBe('http://127.0.0.1:10000/tools/docs/');
    const r = OAuthResources.compile(cfg).forTool('docs');
    expect(r?.metadataUrl).toBe('http://127.0.0.1:10000/.well-known/oauth-protected-resource/tools/docs/');
    expect(r?.binding.issuers).toEqual(['https://issuer.demo.portcullis']);
  });
});
