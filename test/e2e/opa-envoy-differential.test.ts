import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, pointCluster, readAuditFile, repoPath, send, startStack, toolPath, type Stack } from '../helpers/index.js';
import { checkOnce, type CheckResult } from '../helpers/grpc.js';
import { fromStruct } from '../../src/server/struct.js';
import { ACCESS_LOG_KEY } from '../../src/audit/accessLog.js';
import type { ProtoCheckRequest } from '../../src/authz/request.js';
import { eventually, token } from './authz-support.js';

/**
 * Differential test of OPA-Envoy drop-in mode: the reference opa-envoy-plugin and portcullis run
 * the same OPA-Envoy policy (test/fixtures/opa-envoy/policy.rego) and are sent the same
 * CheckRequests over gRPC; their answers must be the same (decision, status, headers, body,
 * dynamic metadata except decision_id's value). Many cases allow with the whole input echoed in
 * dynamic metadata, so the input each server gave the policy is compared field for field. A few
 * cases then go through the real Envoy on a drop-in route.
 */

const FIXTURE = repoPath('test', 'fixtures', 'opa-envoy');
const REFERENCE = repoPath('.tools', 'bin', 'opa-envoy-plugin');
/** Paths the drop-in route in the test's Envoy config takes (the rest keeps the tool routes). */
const DROPIN_ROUTE = '^/(public|write|headers|teapot|search|echo)(/.*)?$';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let stack: Stack;
let scratch: string;
let reference: ChildProcess | null = null;
let referencePort = 0;
let referenceLog = '';
let upstream: Server;
let upstreamSeen: { url: string; headers: IncomingHttpHeaders }[] = [];

function startReference(port: number): ChildProcess {
  if (!existsSync(REFERENCE)) {
    throw new Error(`the reference opa-envoy-plugin is not installed at ${REFERENCE}: run "bash scripts/install-bench-tools.sh" (npm test does it)`);
  }
  const child = spawn(
    REFERENCE,
    [
      'run', '--server', '--addr=127.0.0.1:0',
      `--set=plugins.envoy_ext_authz_grpc.addr=127.0.0.1:${port}`,
      '--set=plugins.envoy_ext_authz_grpc.path=envoy/authz/allow',
      '--set=decision_logs.console=false',
      join(FIXTURE, 'policy.rego'),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const keep = (c: Buffer): void => {
    referenceLog = (referenceLog + c.toString('utf8')).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return child;
}

async function referenceCheck(req: ProtoCheckRequest): Promise<CheckResult> {
  return checkOnce({ kind: 'plaintext' }, referencePort, 'plaintext', req);
}

async function gatewayCheck(req: ProtoCheckRequest): Promise<CheckResult> {
  return checkOnce(stack.channel, stack.grpcPort, 'envoy', req);
}

/** One request of the corpus. */
interface Case {
  name: string;
  path: string;
  method?: string;
  /** Replaces the default headers; `:path`/`:method` are added unless `bare`. */
  headers?: Record<string, string>;
  /** No headers at all. */
  bare?: boolean;
  body?: string;
  rawBody?: Buffer;
  size?: string;
  principal?: string;
  metadata?: Record<string, unknown>;
  /** The reference's parser error text cannot be matched word for word (Go's JSON messages): compare the prefix only. */
  parseError?: boolean;
}

function checkRequest(c: Case): ProtoCheckRequest {
  const method = c.method ?? 'GET';
  const headers = c.bare
    ? undefined
    : { ':authority': 'gateway.local', ':method': method, ':path': c.path, ':scheme': 'http', 'user-agent': 'diff/1.0', 'x-request-id': 'b5c1e0e2-5f0e-4c8e-9a53-6f1d2b7c4e10', ...(c.headers ?? {}) };
  const req: Record<string, unknown> = {
    attributes: {
      source: { address: { socketAddress: { address: '10.1.2.3', portValue: 43210 } }, ...(c.principal ? { principal: c.principal } : {}) },
      destination: { address: { socketAddress: { address: '10.0.0.10', portValue: 10000 } } },
      request: {
        time: { seconds: '1764600000', nanos: 123456789 },
        http: {
          id: '4242424242',
          method,
          ...(headers ? { headers } : {}),
          path: c.path,
          host: 'gateway.local',
          scheme: 'http',
          protocol: 'HTTP/1.1',
          ...(c.size !== undefined ? { size: c.size } : {}),
          ...(c.body !== undefined ? { body: c.body } : {}),
          ...(c.rawBody !== undefined ? { rawBody: c.rawBody } : {}),
        },
      },
      contextExtensions: { portcullis_mode: 'opa-envoy' },
      ...(c.metadata ? { metadataContext: { filterMetadata: c.metadata } } : {}),
    },
  };
  return req as ProtoCheckRequest;
}

type Header = { header?: { key?: string; value?: string } } & Record<string, unknown>;

function sortHeaders(list: unknown): unknown {
  if (!Array.isArray(list)) return list;
  return [...(list as Header[])].sort((a, b) => `${a.header?.key}\0${a.header?.value}`.localeCompare(`${b.header?.key}\0${b.header?.value}`));
}

/** An answer in comparable form: header order (a Go map's) ignored, decision_id's value replaced. */
function normal(r: CheckResult, parseError: boolean): Record<string, unknown> {
  if (!r.ok) return { grpcError: r.err.code, details: r.err.details };
  const res = r.res as Record<string, Record<string, unknown> | undefined>;
  const meta = res.dynamicMetadata ? fromStruct(res.dynamicMetadata) : {};
  const decisionId = meta.decision_id;
  delete meta.decision_id;
  // The gateway's (redacted) path for Envoy's access log, on every answer it gives.
  delete meta[ACCESS_LOG_KEY];
  const status = { ...(res.status ?? {}) };
  const denied: Record<string, unknown> | undefined = res.deniedResponse ? { ...res.deniedResponse, headers: sortHeaders(res.deniedResponse.headers) } : undefined;
  if (parseError) {
    if (typeof status.message === 'string') status.message = status.message.split(':')[0];
    if (denied && typeof denied.body === 'string') denied.body = denied.body.split(':')[0];
  }
  const ok = res.okResponse
    ? { ...res.okResponse, headers: sortHeaders(res.okResponse.headers), responseHeadersToAdd: sortHeaders(res.okResponse.responseHeadersToAdd) }
    : undefined;
  return { status, httpResponse: res.httpResponse, ok, denied, meta, decisionId: typeof decisionId === 'string' && UUID.test(decisionId) ? 'uuid' : decisionId };
}

const json = { 'content-type': 'application/json' };
const form = { 'content-type': 'application/x-www-form-urlencoded' };
const boundary = 'XyZzY42';
const multipart = [
  `--${boundary}`,
  'Content-Disposition: form-data; name="user"',
  '',
  'alice',
  `--${boundary}`,
  'Content-Disposition: form-data; name="user"',
  '',
  'bob',
  `--${boundary}`,
  'Content-Disposition: form-data; name="meta"',
  'Content-Type: application/json',
  '',
  '{"k":[1,2]}',
  `--${boundary}--`,
  '',
].join('\r\n');

const CORPUS: Case[] = [
  { name: 'GET allowed by a boolean rule', path: '/public/index.html' },
  { name: 'HEAD allowed by a boolean rule', path: '/public', method: 'HEAD' },
  { name: 'POST denied by the default (boolean false)', path: '/public/x', method: 'POST' },
  { name: 'exact parsed_path match', path: '/api/v1/ping' },
  { name: 'parsed_path with a trailing slash does not match', path: '/api/v1/ping/' },
  { name: 'unknown path: default deny', path: '/nothing/here' },
  { name: 'echo: %2F and encoded characters in the path', path: '/echo/a%2Fb/c%20d/%E2%9C%93/plus+sign' },
  { name: 'echo: repeated query keys, empty values, + and %2B', path: '/echo?x=1&x=2&y&q=a+b&q=%2B&=v&e=' },
  { name: 'echo: a semicolon pair and a bad escape are skipped in parsed_query', path: '/echo?ok=1&semi;colon=2&bad=%zz&after=3' },
  { name: 'echo: double slashes', path: '/echo//double//slash/' },
  { name: 'echo: a path starting with // is an authority', path: '//evil.example/echo/x?y=1' },
  { name: 'echo: JSON body', path: '/echo/json', method: 'POST', headers: json, body: '{"a":1,"b":[true,null,"s"],"c":{"d":-2.5}}', size: '44' },
  { name: 'echo: JSON with charset parameter', path: '/echo/json', method: 'POST', headers: { 'content-type': 'application/json; charset=utf-8' }, body: '{"k":"v"}' },
  { name: 'echo: JSON content type in capitals is not parsed', path: '/echo/json', method: 'POST', headers: { 'content-type': 'Application/JSON' }, body: '{"k":"v"}' },
  { name: 'echo: vendor JSON type (substring match)', path: '/echo/json', method: 'POST', headers: { 'content-type': 'application/vnd.api+json; application/json' }, body: '[1,2,3]' },
  { name: 'echo: JSON duplicate keys (last wins)', path: '/echo/json', method: 'POST', headers: json, body: '{"a":1,"a":2}' },
  { name: 'echo: empty JSON body', path: '/echo/json', method: 'POST', headers: json, body: '' },
  { name: 'echo: JSON from raw_body', path: '/echo/raw', method: 'POST', headers: { ...json, 'content-length': '13' }, rawBody: Buffer.from('{"raw":"yes"}') },
  { name: 'echo: binary raw_body with no content type', path: '/echo/raw', method: 'POST', headers: { 'content-length': '4' }, rawBody: Buffer.from([0, 255, 10, 128]) },
  { name: 'echo: truncated JSON (content-length exceeds the body)', path: '/echo/cut', method: 'POST', headers: { ...json, 'content-length': '100' }, body: '{"a":' },
  { name: 'echo: truncated form', path: '/echo/cut', method: 'POST', headers: { ...form, 'content-length': '50' }, body: 'a=1' },
  { name: 'echo: text body longer content-length is not truncated', path: '/echo/text', method: 'POST', headers: { 'content-type': 'text/plain', 'content-length': '100' }, body: 'hello' },
  { name: 'echo: body without content type', path: '/echo/none', method: 'PUT', body: 'just bytes' },
  { name: 'echo: form body with repeated keys and escapes', path: '/echo/form', method: 'POST', headers: form, body: 'user=alice&user=bob&x=%41+b&flag' },
  { name: 'echo: multipart form with a JSON part', path: '/echo/multi', method: 'POST', headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }, body: multipart },
  { name: 'echo: multipart without boundary', path: '/echo/multi', method: 'POST', headers: { 'content-type': 'multipart/form-data' }, body: 'x' },
  { name: 'echo: big size', path: '/echo/big', method: 'POST', size: '123456789012' },
  { name: 'echo: header with several values joined', path: '/echo/h', headers: { accept: 'text/html, application/json;q=0.9', 'x-multi': '1,2', cookie: 'a=1; b=2' } },
  { name: 'echo: no headers at all', path: '/echo/bare', bare: true },
  { name: 'echo: source principal and filter metadata', path: '/echo/meta', principal: 'spiffe://acme/agent', metadata: { 'envoy.filters.http.jwt_authn': { fields: { sub: { stringValue: 'u1' }, n: { numberValue: 2 }, ok: { boolValue: true } } } } },
  { name: 'echo-deny: denial with body and metadata', path: '/echo-deny/x?z=9', method: 'DELETE' },
  { name: 'bad escape in the path: 400 request_parse_error', path: '/echo/%zz' },
  { name: 'control character in the path: 400 request_parse_error', path: '/echo/\u0001x' },
  { name: 'invalid JSON body: 400 request_parse_error', path: '/echo/json', method: 'POST', headers: json, body: '{"a":', parseError: true },
  { name: 'form body with a semicolon: 400 request_parse_error', path: '/echo/form', method: 'POST', headers: form, body: 'a=1;b=2' },
  { name: 'header decision object: headers, removals, response headers, metadata', path: '/headers' },
  { name: 'method + header rule: allowed', path: '/write/doc', method: 'POST', headers: { 'x-api-key': 'k-123' } },
  { name: 'method + header rule: denied 401 with JSON body and headers', path: '/write/doc', method: 'POST', headers: { 'x-api-key': 'wrong' } },
  { name: 'query rule: role=admin among repeated values', path: '/search?role=user&role=admin' },
  { name: 'query rule: no admin', path: '/search?role=user' },
  { name: 'form body rule', path: '/form', method: 'POST', headers: form, body: 'user=alice' },
  { name: 'JSON body rule: allowed', path: '/pay', method: 'POST', headers: json, body: '{"amount":50}' },
  { name: 'JSON body rule: 429 with retry-after', path: '/pay', method: 'POST', headers: json, body: '{"amount":500}' },
  { name: 'truncated body rule: 413', path: '/upload', method: 'POST', headers: { ...json, 'content-length': '70000' }, body: '{"part":' },
  { name: 'http_status 418 (not in Envoy StatusCode)', path: '/teapot' },
  { name: 'http_status 103 (not in Envoy StatusCode)', path: '/status-103' },
  { name: 'http_status as a string', path: '/status-string' },
  { name: 'decision object without allowed', path: '/no-allowed' },
  { name: 'allowed not a boolean', path: '/allowed-string' },
  { name: 'header value not a string', path: '/bad-header' },
  { name: 'dynamic_metadata not an object', path: '/bad-metadata' },
  { name: 'body not a string', path: '/bad-body' },
  { name: 'request_headers_to_remove not an array', path: '/bad-remove' },
  { name: 'decision is a string', path: '/string-decision' },
];

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'portcullis-opa-envoy-'));
  const bundle = join(scratch, 'bundle.tar.gz');
  execFileSync(toolPath('opa'), ['build', '-t', 'wasm', '-e', 'envoy/authz/allow', '-o', bundle, 'policy.rego'], { cwd: FIXTURE });
  referencePort = await freePort();
  reference = startReference(referencePort);

  upstream = createServer((req, res) => {
    upstreamSeen.push({ url: req.url ?? '', headers: req.headers });
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('upstream ok');
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const upstreamPort = (upstream.address() as { port: number }).port;

  stack = await startStack({
    editConfig: (cfg) => {
      const policy = cfg.policy as Record<string, unknown>;
      policy.bundle = bundle;
      delete policy.data;
      cfg.opa_envoy = { enabled: true };
    },
    editEnvoy: (cfg) => {
      pointCluster(cfg, 'tool_docs', upstreamPort);
      addDropinRoutes(cfg);
    },
  });

  // The reference is ready once it answers a Check.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await referenceCheck(checkRequest({ name: 'ready', path: '/public' }));
    if (r.ok) break;
    if (Date.now() > deadline || reference.exitCode !== null) throw new Error(`opa-envoy-plugin did not start\n${referenceLog}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  reference?.kill('SIGTERM');
  await new Promise<void>((resolve) => (upstream ? upstream.close(() => resolve()) : resolve()));
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/**
 * The drop-in routes of the test's Envoy config: ext_authz with `portcullis_mode: opa-envoy`,
 * ext_proc off (drop-in routes are ext_authz only); one more route keeps ext_proc on, to show a
 * drop-in decision (which carries no signed hand-off) is then refused by ext_proc.
 */
function addDropinRoutes(cfg: Record<string, unknown>): void {
  type Json = Record<string, unknown>;
  const listeners = (cfg.static_resources as Json).listeners as Json[];
  const agents = listeners.find((l) => l.name === 'agents') as Json;
  const hcm = (((agents.filter_chains as Json[])[0] as Json).filters as Json[])[0] as Json;
  const vhost = (((hcm.typed_config as Json).route_config as Json).virtual_hosts as Json[])[0] as Json;
  const routes = vhost.routes as Json[];
  const authz = { '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute', check_settings: { context_extensions: { portcullis_mode: 'opa-envoy' } } };
  const dropin = {
    name: 'opa_envoy_dropin',
    match: { safe_regex: { regex: DROPIN_ROUTE } },
    route: { cluster: 'tool_docs' },
    typed_per_filter_config: {
      'envoy.filters.http.ext_authz': authz,
      'envoy.filters.http.ext_proc': { '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute', disabled: true },
    },
  };
  const withExtproc = { name: 'opa_envoy_extproc_on', match: { prefix: '/api/' }, route: { cluster: 'tool_docs' }, typed_per_filter_config: { 'envoy.filters.http.ext_authz': authz } };
  const fallback = routes.findIndex((r) => r.name === 'unknown_tool');
  if (fallback === -1) throw new Error('envoy.yaml: no unknown_tool route');
  routes.splice(fallback, 0, dropin, withExtproc);
}

describe('OPA-Envoy drop-in mode against the reference opa-envoy-plugin', () => {
  it('has a corpus of at least 30 CheckRequests', () => {
    expect(CORPUS.length).toBeGreaterThanOrEqual(30);
  });

  it.each(CORPUS)('$name', async (c) => {
    const req = checkRequest(c);
    const [ref, ours] = await Promise.all([referenceCheck(req), gatewayCheck(req)]);
    const expected = normal(ref, c.parseError === true);
    expect(normal(ours, c.parseError === true)).toEqual(expected);
    // Every answer the reference gives as a CheckResponse past input parsing carries a decision id.
    if (ref.ok && (ref.res.status as { message?: string } | undefined)?.message === undefined) expect(expected.decisionId).toBe('uuid');
  });

  it('echo cases really compare the whole input (the comparison would see a difference)', async () => {
    const req = checkRequest({ name: 'echo', path: '/echo/a%2Fb?x=1&x=2', method: 'POST', headers: json, body: '{"n":1}', size: '7' });
    const ours = await gatewayCheck(req);
    expect(ours.ok).toBe(true);
    const meta = fromStruct((ours as unknown as { res: { dynamicMetadata: unknown } }).res.dynamicMetadata);
    const input = meta.input as Record<string, unknown>;
    expect(input.parsed_path).toEqual(['echo', 'a', 'b']);
    expect(input.parsed_query).toEqual({ x: ['1', '2'] });
    expect(input.parsed_body).toEqual({ n: 1 });
    const http = ((input.attributes as Record<string, Record<string, unknown>>).request as Record<string, unknown>).http as Record<string, unknown>;
    expect(http.size).toBe(7);
    expect((input.attributes as Record<string, Record<string, unknown>>).request?.time).toEqual({ seconds: 1764600000, nanos: 123456789 });
    expect(typeof meta.decision_id).toBe('string');
  });

  it('gives the policy input.tool null and input.identity null for an unauthenticated request', async () => {
    const ours = await gatewayCheck(checkRequest({ name: 'additions', path: '/additions' }));
    expect(ours.ok).toBe(true);
    const meta = fromStruct((ours as unknown as { res: { dynamicMetadata: unknown } }).res.dynamicMetadata);
    expect(meta).toMatchObject({ tool: null, identity: null, mcp: null });
    // The reference has no such fields: the same rule is undefined there, so it denies.
    const ref = await referenceCheck(checkRequest({ name: 'additions', path: '/additions' }));
    expect(ref.ok && (ref.res.status as { code?: number }).code).toBe(7);
  });

  it('offers a verified credential as input.identity, never caller-supplied identity headers', async () => {
    const bearer = await token(stack, { user: 'alice', tenant: 'acme' });
    const verified = await gatewayCheck(checkRequest({ name: 'identity', path: '/additions', headers: { authorization: `Bearer ${bearer}` } }));
    expect(verified.ok).toBe(true);
    const identity = fromStruct((verified as unknown as { res: { dynamicMetadata: unknown } }).res.dynamicMetadata).identity as Record<string, unknown>;
    expect(identity).toMatchObject({ user: 'alice', tenant: 'acme' });
    const spoofed = await gatewayCheck(checkRequest({ name: 'spoofed', path: '/additions', headers: { 'x-user-id': 'alice', 'x-portcullis-user': 'alice', authorization: 'Bearer not.a.jwt' } }));
    expect(fromStruct((spoofed as unknown as { res: { dynamicMetadata: unknown } }).res.dynamicMetadata).identity).toBeNull();
  });

  it('strips the gateway headers and caller-supplied identity from an allowed request, keeping what the policy sets', async () => {
    const req = checkRequest({ name: 'spoof', path: '/write/doc', method: 'POST', headers: { 'x-api-key': 'k-123', 'x-portcullis-user': 'mallory', 'x-user-id': 'eve', 'x-role': 'admin' } });
    const ours = await gatewayCheck(req);
    expect(ours.ok).toBe(true);
    const ok = (ours as unknown as { res: { okResponse: { headersToRemove: string[]; headers: Header[] } } }).res.okResponse;
    expect(ok.headersToRemove.sort()).toEqual(['x-portcullis-user', 'x-user-id']);
    expect(ok.headers.map((h) => h.header)).toEqual([{ key: 'x-role', value: 'writer' }]);
  });
});

describe('OPA-Envoy drop-in route through the real Envoy', () => {
  it('forwards an allowed request and answers a boolean denial with an empty 403', async () => {
    upstreamSeen = [];
    const allowed = await send(stack, '/public/page');
    expect(allowed.status).toBe(200);
    expect(allowed.text).toBe('upstream ok');
    expect(upstreamSeen.map((s) => s.url)).toEqual(['/public/page']);
    const denied = await send(stack, '/public/page', { method: 'POST', body: '{}' });
    expect(denied.status).toBe(403);
    expect(denied.text).toBe('');
    expect(upstreamSeen).toHaveLength(1);
  });

  it('applies the policy headers and removals, and never forwards caller-supplied gateway or identity headers', async () => {
    upstreamSeen = [];
    const r = await send(stack, '/write/doc', { method: 'POST', body: '{}', headers: { 'x-api-key': 'k-123', 'x-portcullis-user': 'mallory', 'X-User-Id': 'eve', 'x-role': 'admin' } });
    expect(r.status).toBe(200);
    const seen = upstreamSeen[0]?.headers ?? {};
    expect(seen['x-role']).toBe('writer');
    expect(seen['x-portcullis-user']).toBeUndefined();
    expect(seen['x-user-id']).toBeUndefined();
    upstreamSeen = [];
    const h = await send(stack, '/headers', { headers: { 'x-drop-me': 'secret' } });
    expect(h.status).toBe(200);
    expect(upstreamSeen[0]?.headers['x-set']).toBe('one');
    expect(upstreamSeen[0]?.headers['x-drop-me']).toBeUndefined();
    expect(h.headers['x-resp']).toBeDefined();
  });

  it('sends the policy status, body and headers of a denial', async () => {
    const r = await send(stack, '/write/doc', { method: 'POST', body: '{}', headers: { 'x-api-key': 'nope' } });
    expect(r.status).toBe(401);
    expect(r.json).toEqual({ error: 'bad key' });
    expect(r.headers['www-authenticate']).toBe('ApiKey');
    const q = await send(stack, '/search?role=user&role=admin');
    expect(q.status).toBe(200);
    const none = await send(stack, '/search?role=user');
    expect(none.status).toBe(403);
  });

  it('writes an audit record of a drop-in denial, with its rule and no tool', async () => {
    const r = await send(stack, '/public/audited', { method: 'DELETE' });
    expect(r.status).toBe(403);
    const file = join(dirname(stack.configPath), 'audit.log');
    const mine = (x: Record<string, unknown>): boolean => x.path === '/public/audited' && x.method === 'DELETE';
    const found = await eventually(async () => readAuditFile(file).some(mine), 5_000);
    if (!found) throw new Error(`no audit record of the denial; the file has:\n${JSON.stringify(readAuditFile(file).slice(-3), null, 1)}`);
    const record = readAuditFile(file).find(mine) as Record<string, unknown>;
    expect(record.tool).toBeNull();
    expect(record.decision).toMatchObject({ allowed: false, rule: 'opa_envoy.deny' });
  });

  it('writes a durable forwarded record of an allowed drop-in request before it goes upstream (no ext_proc runs there)', async () => {
    upstreamSeen = [];
    const r = await send(stack, '/public/forwarded-record');
    expect(r.status).toBe(200);
    expect(upstreamSeen).toHaveLength(1);
    const file = join(dirname(stack.configPath), 'audit.log');
    const mine = (x: Record<string, unknown>): boolean => x.path === '/public/forwarded-record' && x.record_type === 'forwarded';
    const record = readAuditFile(file, { all: true }).find(mine) as Record<string, unknown> | undefined;
    // Awaited before Envoy was told to forward: it is on file by the time the answer arrives.
    if (!record) throw new Error(`no forwarded record; the file ends with:\n${JSON.stringify(readAuditFile(file, { all: true }).slice(-3), null, 1)}`);
    expect(record.tool).toBeNull();
    expect(record.decision).toMatchObject({ allowed: true });
  });

  it('never lets an encoded slash reach the drop-in policy: the project Envoy rejects it at the edge', async () => {
    upstreamSeen = [];
    const r = await send(stack, '/echo/a%2Fb');
    expect(r.status).toBe(400);
    expect(upstreamSeen).toHaveLength(0);
  });

  it('denies when the decision is an error (status 418): Envoy answers its status_on_error, as for the reference', async () => {
    upstreamSeen = [];
    const r = await send(stack, '/teapot');
    expect(r.status).toBe(503);
    expect(upstreamSeen).toHaveLength(0);
  });

  it('fails closed on a drop-in route that leaves ext_proc on (no signed hand-off)', async () => {
    upstreamSeen = [];
    const r = await send(stack, '/api/v1/ping');
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(upstreamSeen).toHaveLength(0);
  });

  it('keeps the agent-friendly default everywhere else: a path off the drop-in route gets the structured JSON error', async () => {
    // Drop-in mode would run the policy (an empty 403); the default mode asks for identity first.
    const r = await send(stack, '/nothing/here');
    expect(r.status).toBe(401);
    expect((r.json as { error: { type: string } }).error.type).toBe('unauthenticated');
  });
});
