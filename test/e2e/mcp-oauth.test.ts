import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importJWK, SignJWT, type JWK } from 'jose';
import { parse, stringify } from 'yaml';
import { z } from 'zod';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { discoverOAuthProtectedResourceMetadata } from '@modelcontextprotocol/sdk/client/auth.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { startStack, type Stack } from '../helpers/index.js';
import { pointCluster } from '../helpers/envoyConfig.js';
import { call, eventually, expectDenial, ISSUER, token, type Reply } from './authz-support.js';

/**
 * OAuth discovery for MCP clients through the real Envoy: the docs tool is configured as a
 * protected resource, an authorization server written here issues client_credentials tokens, and
 * the official MCP SDK client finds its way from the first 401 to a successful tools/call.
 */

const CLIENT_ID = 'helpdesk';
const CLIENT_SECRET = 'oauth-e2e-client-secret';
const SCOPES = ['docs:read', 'docs:write'];

let stack: Stack;
let as: Server;
let asIssuer: string;
let mcp: Server;
/** The canonical URI of the docs MCP endpoint as clients call it through Envoy. */
let resource: string;
/** Token requests the authorization server received (form parameters). */
const tokenRequests: URLSearchParams[] = [];
/** Authorization headers the MCP server behind the gateway received. */
const upstreamAuthorization: (string | undefined)[] = [];

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      if (addr === null || typeof addr === 'string') reject(new Error('no port'));
      else resolve(addr.port);
    });
  });
}

function close(server: Server | undefined): Promise<void> {
  return new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

/** A JWT signed with the stack's demo key (the key the gateway's JWKS holds). */
async function signed(claims: { iss: string; aud: string | string[]; ttlS?: number }): Promise<string> {
  const jwk = JSON.parse(readFileSync(stack.prepared.privateJwkPath, 'utf8')) as JWK;
  const key = await importJWK(jwk, 'ES256');
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ azp: CLIENT_ID, sub: 'svc-helpdesk', tenant: 'acme', roles: ['support'] })
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT', ...(jwk.kid ? { kid: jwk.kid } : {}) })
    .setIssuer(claims.iss)
    .setAudience(claims.aud)
    .setIssuedAt(now)
    .setExpirationTime(now + (claims.ttlS ?? 300))
    .setJti(randomUUID())
    .sign(key);
}

/**
 * The test authorization server: RFC 8414 metadata, and a token endpoint for client_credentials
 * (client_secret_basic) that insists on the RFC 8707 resource indicator naming the docs resource.
 */
async function handleAs(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = new URL(req.url ?? '/', asIssuer).pathname;
  if (req.method === 'GET' && path === '/.well-known/oauth-authorization-server') {
    sendJson(res, 200, {
      issuer: asIssuer,
      authorization_endpoint: `${asIssuer}/authorize`,
      token_endpoint: `${asIssuer}/token`,
      response_types_supported: ['code'],
      grant_types_supported: ['client_credentials'],
      token_endpoint_auth_methods_supported: ['client_secret_basic'],
      scopes_supported: SCOPES,
    });
    return;
  }
  if (req.method === 'POST' && path === '/token') {
    const form = new URLSearchParams(await readBody(req));
    tokenRequests.push(form);
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const [id, secret] = basic ? Buffer.from(basic, 'base64').toString('utf8').split(':').map(decodeURIComponent) : [];
    if (id !== CLIENT_ID || secret !== CLIENT_SECRET) return sendJson(res, 401, { error: 'invalid_client' });
    if (form.get('grant_type') !== 'client_credentials') return sendJson(res, 400, { error: 'unsupported_grant_type' });
    if (form.get('resource') !== resource) return sendJson(res, 400, { error: 'invalid_target', error_description: `unknown resource ${form.get('resource')}` });
    const accessToken = await signed({ iss: asIssuer, aud: resource });
    sendJson(res, 200, { access_token: accessToken, token_type: 'Bearer', expires_in: 300, scope: form.get('scope') ?? undefined });
    return;
  }
  sendJson(res, 404, { error: 'not_found' });
}

/** The MCP server behind the gateway (stateless streamable HTTP, JSON responses). */
async function handleMcp(req: IncomingMessage, res: ServerResponse): Promise<void> {
  upstreamAuthorization.push(req.headers.authorization);
  const server = new McpServer({ name: 'docs-under-test', version: '1.0.0' });
  server.registerTool(
    'search_docs',
    { description: 'Search the documents.', inputSchema: { query: z.string(), tenant: z.string() } },
    async ({ query }) => ({ content: [{ type: 'text', text: `found: ${query}` }] }),
  );
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  res.on('close', () => {
    void transport.close();
    void server.close();
  });
  await server.connect(transport);
  const raw = req.method === 'POST' ? await readBody(req) : '';
  await transport.handleRequest(req, res, raw ? (JSON.parse(raw) as unknown) : undefined);
}

/** Adds (or replaces) the docs tool's oauth block in the running config and reloads it. */
async function configureOAuth(oauth: Record<string, unknown>): Promise<void> {
  const cfg = parse(readFileSync(stack.configPath, 'utf8')) as { tools: Record<string, unknown>[] };
  const docs = cfg.tools.find((t) => t.name === 'docs');
  if (!docs) throw new Error('no docs tool in the demo config');
  docs.oauth = oauth;
  writeFileSync(stack.configPath, stringify(cfg));
  const r = await call(`${stack.adminUrl}/reload`, { method: 'POST' });
  expect(r.status, r.text).toBe(200);
}

const initialize = JSON.stringify({
  jsonrpc: '2.0',
  id: 7,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'curl', version: '1' } },
});

function mcpPost(bearer: string | null, body = initialize, extra: Record<string, string> = {}): Promise<Reply> {
  return call(`${stack.envoyUrl}/tools/docs/`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
      ...extra,
    },
    body,
  });
}

/** A request sent as written (fetch would resolve dot segments and refuses to set Host). */
function raw(path: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  const url = new URL(stack.envoyUrl);
  return new Promise<Reply>((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, method: opts.method ?? 'GET', headers: opts.headers ?? {}, timeout: 15_000 }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString('utf8')));
      res.on('end', () => {
        const headers = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
        resolve({ status: res.statusCode ?? 0, headers, text });
      });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(opts.body);
  });
}

/** The parameters of a `Bearer` challenge (RFC 6750 auth-param list). */
function challengeParams(header: string | null): Record<string, string> {
  expect(header ?? '').toMatch(/^Bearer /);
  const out: Record<string, string> = {};
  for (const m of (header ?? '').slice('Bearer '.length).matchAll(/([a-z_]+)="([^"]*)"/g)) out[m[1] as string] = m[2] as string;
  return out;
}

function metadataUrl(): string {
  const u = new URL(resource);
  return `${u.origin}/.well-known/oauth-protected-resource${u.pathname}`;
}

beforeAll(async () => {
  as = createServer((req, res) => void handleAs(req, res).catch((err: Error) => sendJson(res, 500, { error: 'server_error', error_description: err.message })));
  asIssuer = `http://127.0.0.1:${await listen(as)}`;
  mcp = createServer((req, res) => void handleMcp(req, res).catch(() => res.destroy()));
  const mcpPort = await listen(mcp);
  stack = await startStack({
    editConfig: (cfg) => {
      // The test authorization server is one more trusted issuer, with the demo's key.
      const identity = cfg.identity as { jwt: Record<string, unknown>[] };
      identity.jwt.push({ issuer: asIssuer, audiences: ['portcullis'], jwks_file: 'keys/jwks.json', algorithms: ['ES256'] });
    },
    editEnvoy: (cfg) => pointCluster(cfg, 'tool_docs', mcpPort),
  });
  resource = `${stack.envoyUrl}/tools/docs/`;
  await configureOAuth({ resource, authorization_servers: [asIssuer], scopes: SCOPES, resource_name: 'Document search' });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await close(as);
  await close(mcp);
});

describe('OAuth discovery for MCP clients (RFC 9728, RFC 8707)', () => {
  it('the official SDK client goes from the first 401 through discovery and a client_credentials token to a successful tools/call', async () => {
    tokenRequests.length = 0;
    upstreamAuthorization.length = 0;
    const provider = new ClientCredentialsProvider({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, expectedIssuer: asIssuer, scope: 'docs:read' });
    const transport = new StreamableHTTPClientTransport(new URL(resource), { authProvider: provider });
    const client = new Client({ name: 'oauth-e2e', version: '1.0.0' });
    await client.connect(transport);
    const result = await client.callTool({ name: 'search_docs', arguments: { query: 'gateways', tenant: 'acme' } });
    expect(result.content).toEqual([{ type: 'text', text: 'found: gateways' }]);
    await client.close();

    // One token, asked for this resource (RFC 8707) with the requested scope.
    expect(tokenRequests).toHaveLength(1);
    expect(tokenRequests[0]?.get('resource')).toBe(resource);
    expect(tokenRequests[0]?.get('scope')).toBe('docs:read');
    const issued = provider.tokens()?.access_token ?? '';
    expect(issued).not.toBe('');
    // The agent's token never reaches the tool: the gateway injects the tool's own credential.
    expect(upstreamAuthorization.length).toBeGreaterThan(0);
    for (const a of upstreamAuthorization) {
      expect(a).toBe(`Bearer ${stack.prepared.env.DOCS_TOKEN}`);
      expect(a).not.toContain(issued);
    }
  });

  it('a client holding a token for another resource is told invalid_token and recovers through discovery', async () => {
    tokenRequests.length = 0;
    const provider = new ClientCredentialsProvider({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, expectedIssuer: asIssuer });
    const stale = await signed({ iss: asIssuer, aud: `${stack.envoyUrl}/tools/weather/` });
    provider.saveTokens({ access_token: stale, token_type: 'Bearer' });
    const client = new Client({ name: 'oauth-e2e-stale', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(resource), { authProvider: provider }));
    const result = await client.callTool({ name: 'search_docs', arguments: { query: 'again', tenant: 'acme' } });
    expect(result.content).toEqual([{ type: 'text', text: 'found: again' }]);
    await client.close();
    expect(tokenRequests.map((f) => f.get('resource'))).toEqual([resource]);
    expect(provider.tokens()?.access_token).not.toBe(stale);
  });

  it('answers an unauthenticated curl-style call with 401, a JSON-RPC error and the resource metadata challenge', async () => {
    const r = await mcpPost(null);
    expect(r.status).toBe(401);
    const body = JSON.parse(r.text) as { jsonrpc: string; id: number; error: { code: number; data: { type: string } } };
    expect(body.jsonrpc).toBe('2.0');
    expect(body.id).toBe(7);
    expect(body.error.data.type).toBe('unauthenticated');
    const www = r.headers.get('www-authenticate');
    expect(www).toMatch(/^Bearer realm="portcullis", /);
    const params = challengeParams(www);
    expect(params.resource_metadata).toBe(metadataUrl());
    expect(params.scope).toBe(SCOPES.join(' '));
    // No token was presented, so it is not an invalid one.
    expect(params.error).toBeUndefined();
  });

  it('every 401 of the tool carries the challenge: GET, DELETE, other paths under the tool, an API key that fails', async () => {
    for (const [method, path, headers] of [
      ['GET', '/tools/docs/', { accept: 'text/event-stream' }],
      ['DELETE', '/tools/docs/', {}],
      ['POST', '/tools/docs/other?x=1', { 'content-type': 'application/json' }],
      ['GET', '/tools/docs/', { 'x-api-key': 'not-a-key' }],
    ] as const) {
      const r = await call(`${stack.envoyUrl}${path}`, { method, headers, ...(method === 'POST' ? { body: initialize } : {}) });
      expect(r.status, `${method} ${path}`).toBe(401);
      expect(challengeParams(r.headers.get('www-authenticate')).resource_metadata, `${method} ${path}`).toBe(metadataUrl());
    }
  });

  it('challenges a batch, a token sent in the query string instead of the header, and a non-Bearer scheme', async () => {
    const batch = JSON.stringify([
      { jsonrpc: '2.0', id: 1, method: 'tools/list' },
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'q', tenant: 'acme' } } },
    ]);
    const b = await mcpPost(null, batch);
    expect(b.status).toBe(401);
    expect((JSON.parse(b.text) as { id: number }[]).map((e) => e.id)).toEqual([1, 2]);
    expect(challengeParams(b.headers.get('www-authenticate')).resource_metadata).toBe(metadataUrl());

    // bearer_methods_supported is ["header"]: a valid token elsewhere is no credential.
    const good = await signed({ iss: asIssuer, aud: resource });
    const q = await call(`${stack.envoyUrl}/tools/docs/?access_token=${good}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: initialize,
    });
    expect(q.status).toBe(401);
    expect(challengeParams(q.headers.get('www-authenticate')).error).toBeUndefined();

    const basic = await mcpPost(null, initialize, { authorization: `Basic ${Buffer.from('helpdesk:x').toString('base64')}` });
    expect(basic.status).toBe(401);
    expect(challengeParams(basic.headers.get('www-authenticate')).error).toBe('invalid_token');
    // The scheme name is case-insensitive (RFC 7235): the same token as "bearer" is accepted.
    expect((await mcpPost(null, initialize, { authorization: `bearer ${good}` })).status).toBe(200);
  });

  it('builds the metadata URL from the configured resource, never from the Host header', async () => {
    for (const host of ['evil.example', 'evil.example:443', `127.0.0.1:1`]) {
      const r = await raw('/tools/docs/', { method: 'POST', headers: { host, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: initialize });
      expect(r.status).toBe(401);
      expect(challengeParams(r.headers.get('www-authenticate')).resource_metadata).toBe(metadataUrl());
      expect(r.headers.get('www-authenticate')).not.toContain('evil');
    }
  });

  it('serves the metadata document without a token, at the RFC 9728 path and at the form the SDK derives (no trailing slash)', async () => {
    for (const url of [metadataUrl(), metadataUrl().replace(/\/$/, ''), `${metadataUrl()}?probe=1`]) {
      const r = await call(url, { headers: { 'mcp-protocol-version': '2025-11-25' } });
      expect(r.status, url).toBe(200);
      expect(r.headers.get('content-type')).toMatch(/^application\/json/);
      expect(r.headers.get('cache-control')).toMatch(/max-age=\d+/);
      expect(JSON.parse(r.text)).toEqual({
        resource,
        authorization_servers: [asIssuer],
        scopes_supported: SCOPES,
        bearer_methods_supported: ['header'],
        resource_name: 'Document search',
      });
    }
    // A presented (even invalid) token changes nothing: the document is public.
    const withBadToken = await call(metadataUrl(), { headers: { authorization: 'Bearer not.a.token' } });
    expect(withBadToken.status).toBe(200);
    expect((JSON.parse(withBadToken.text) as { resource: string }).resource).toBe(resource);
  });

  it('lets the SDK find the document by path-aware discovery alone (without the challenge)', async () => {
    const doc = await discoverOAuthProtectedResourceMetadata(new URL(resource));
    expect(doc.resource).toBe(resource);
    expect(doc.authorization_servers).toEqual([asIssuer]);
  });

  it('keeps the last good configuration when a reload brings an oauth block it cannot serve', async () => {
    const before = await call(metadataUrl());
    const cfg = parse(readFileSync(stack.configPath, 'utf8')) as { tools: Record<string, unknown>[] };
    const good = readFileSync(stack.configPath, 'utf8');
    const docs = cfg.tools.find((t) => t.name === 'docs') as Record<string, unknown>;
    docs.oauth = { resource, authorization_servers: ['https://stranger.example'] };
    writeFileSync(stack.configPath, stringify(cfg));
    try {
      const r = await call(`${stack.adminUrl}/reload`, { method: 'POST' });
      expect(r.status).not.toBe(200);
      expect(r.text).toContain('is not a configured identity.jwt issuer');
      const after = await call(metadataUrl());
      expect(after.status).toBe(200);
      expect(after.text).toBe(before.text);
    } finally {
      writeFileSync(stack.configPath, good);
      expect((await call(`${stack.adminUrl}/reload`, { method: 'POST' })).status).toBe(200);
    }
  });

  it('publishes no document for tools without oauth, nor at the root, and never reaches a tool from the well-known path', async () => {
    upstreamAuthorization.length = 0;
    for (const path of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/tools/weather/', '/.well-known/oauth-protected-resource/tools/nope/']) {
      const r = await call(`${stack.envoyUrl}${path}`);
      expectDenial(r, 404, 'unknown_tool', 'oauth.no_metadata');
      // Says nothing about which tools exist.
      expect(r.text).not.toMatch(/weather|docs|tickets/);
    }
    // Only GET/HEAD/OPTIONS: a JSON-RPC POST to the document's path is refused and goes nowhere.
    const post = await call(metadataUrl(), { method: 'POST', headers: { 'content-type': 'application/json' }, body: initialize });
    expectDenial(post, 405, 'invalid_request', 'oauth.metadata_method');
    expect(post.headers.get('allow')).toBe('GET, HEAD, OPTIONS');
    const head = await call(metadataUrl(), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.text).toBe('');
    const preflight = await call(metadataUrl(), { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('*');
    // Dot segments are resolved by Envoy before the Check: no way from the well-known path to a tool.
    const dotted = await raw('/.well-known/oauth-protected-resource/../../tools/docs/', { method: 'POST', headers: { 'content-type': 'application/json' }, body: initialize });
    expect(dotted.status).toBe(401);
    expect(upstreamAuthorization).toHaveLength(0);
  });

  it('refuses a token issued for another resource, or only for the issuer audience, with 401 invalid_token', async () => {
    const cases: [string, string][] = [
      ['another resource', await signed({ iss: asIssuer, aud: `${stack.envoyUrl}/tools/weather/` })],
      ['a resource differing by its trailing slash', await signed({ iss: asIssuer, aud: resource.replace(/\/$/, '') })],
      ['the issuer audience only', await signed({ iss: asIssuer, aud: 'portcullis' })],
      ['the demo issuer (not an authorization server of the resource), even with the resource as audience', await signed({ iss: ISSUER, aud: [resource, 'portcullis'] })],
      ['the demo token', await token(stack)],
    ];
    for (const [what, bearer] of cases) {
      const r = await mcpPost(bearer);
      expect(r.status, what).toBe(401);
      const params = challengeParams(r.headers.get('www-authenticate'));
      expect(params.error, what).toBe('invalid_token');
      expect(params.resource_metadata, what).toBe(metadataUrl());
      const body = JSON.parse(r.text) as { id: number; error: { message: string; data: { rule: string } } };
      expect(body.id, what).toBe(7);
      expect(body.error.data.rule, what).toBe('identity.jwt');
    }
    // The same token is refused again once cached verification kicks in (cache hit path).
    const again = await mcpPost(cases[2]![1]);
    expect(again.status).toBe(401);
  });

  it('accepts a multi-audience token for the resource, and binds the resource audience to this tool only', async () => {
    const multi = await signed({ iss: asIssuer, aud: ['portcullis', resource] });
    const ok = await mcpPost(multi);
    expect(ok.status, ok.text).toBe(200);
    // Twice: the second use comes from the verified-token cache and must decide the same.
    expect((await mcpPost(multi)).status).toBe(200);
    // The same multi-audience token works for a tool without oauth (issuer audience).
    const weather = await call(`${stack.envoyUrl}/tools/weather/forecast?city=paris`, { headers: { authorization: `Bearer ${multi}` } });
    expect(weather.status, weather.text).toBe(200);
    // A token only for the docs resource is not a token for weather.
    const docsOnly = await signed({ iss: asIssuer, aud: resource });
    expect((await mcpPost(docsOnly)).status).toBe(200);
    const refused = await call(`${stack.envoyUrl}/tools/weather/forecast?city=paris`, { headers: { authorization: `Bearer ${docsOnly}` } });
    expectDenial(refused, 401, 'unauthenticated', 'identity.jwt');
    // weather is no protected resource: its 401 names no metadata.
    expect(refused.headers.get('www-authenticate')).toBe('Bearer realm="portcullis"');
  });

  it('is logged by Envoy like any request: the path portcullis handed over, the catch-all route, status 200', async () => {
    expect((await call(metadataUrl())).status).toBe(200);
    const logged = (): boolean =>
      stack
        .logs()
        .split('\n')
        .some((l) => l.includes('"path":"/.well-known/oauth-protected-resource/tools/docs/"') && l.includes('"status":200') && l.includes('"route":"unknown_tool"'));
    // Envoy flushes its stdout log on a timer (10 s by default).
    expect(await eventually(async () => logged(), 30_000)).toBe(true);
  }, 60_000);
});
