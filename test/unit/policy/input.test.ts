import { describe, expect, it } from 'vitest';
import { buildPolicyInput, parsePath, parseQuery, timestampToRfc3339, type PolicyTool } from '../../../src/policy/input.js';
import { authorizationService } from '../../../src/server/protos.js';
import type { ProtoCheckRequest } from '../../../src/authz/request.js';
import type { Principal } from '../../../src/identity/types.js';
import type { McpCall } from '../../../src/inspect/mcp.js';

const NONE = { identity: null, tool: null, mcp: null, body: null } as const;

/** Encodes and decodes a CheckRequest exactly as the gRPC server does. */
function decoded(obj: Record<string, unknown>): ProtoCheckRequest {
  const check = authorizationService().Check as unknown as {
    requestSerialize(v: unknown): Buffer;
    requestDeserialize(b: Buffer): ProtoCheckRequest;
  };
  return check.requestDeserialize(check.requestSerialize(obj));
}

function plain<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

function http(extra: Record<string, unknown>): ProtoCheckRequest {
  return { attributes: { request: { http: { method: 'GET', path: '/', headers: {}, ...extra } } } };
}

describe('buildPolicyInput: the OPA-Envoy input document', () => {
  it('matches the OPA-Envoy shape for a decoded CheckRequest', () => {
    const req = decoded({
      attributes: {
        source: { address: { socketAddress: { address: '10.244.0.1', portValue: 55424 } }, principal: 'spiffe://demo/agent' },
        destination: { address: { socketAddress: { address: '10.244.0.20', portValue: 8080 } } },
        request: {
          time: { seconds: 1700000000, nanos: 123000000 },
          http: {
            id: '42',
            method: 'GET',
            headers: { ':authority': 'gw', ':method': 'GET', ':path': '/people/a%20b?lang=en&lang=fr&x', 'user-agent': 'curl' },
            path: '/people/a%20b?lang=en&lang=fr&x',
            host: 'gw',
            scheme: 'http',
            protocol: 'HTTP/1.1',
            size: 5,
          },
        },
        metadataContext: { filterMetadata: { 'envoy.filters.http.jwt_authn': { fields: { sub: { stringValue: 'alice' }, n: { numberValue: 2 }, l: { listValue: { values: [{ boolValue: true }, { nullValue: 0 }] } } } } } },
        contextExtensions: { route: 'tools' },
      },
    });
    const input = plain(buildPolicyInput(req, NONE));
    expect(input).toEqual({
      attributes: {
        source: { address: { socketAddress: { address: '10.244.0.1', portValue: 55424 } }, principal: 'spiffe://demo/agent' },
        destination: { address: { socketAddress: { address: '10.244.0.20', portValue: 8080 } } },
        request: {
          time: '2023-11-14T22:13:20.123Z',
          http: {
            id: '42',
            method: 'GET',
            headers: { ':authority': 'gw', ':method': 'GET', ':path': '/people/a%20b?lang=en&lang=fr&x', 'user-agent': 'curl' },
            path: '/people/a%20b?lang=en&lang=fr&x',
            host: 'gw',
            scheme: 'http',
            protocol: 'HTTP/1.1',
            // int64 renders as a string in protojson.
            size: '5',
          },
        },
        metadataContext: { filterMetadata: { 'envoy.filters.http.jwt_authn': { sub: 'alice', n: 2, l: [true, null] } } },
        contextExtensions: { route: 'tools' },
      },
      parsed_path: ['people', 'a b'],
      parsed_query: { lang: ['en', 'fr'], x: [''] },
      parsed_body: null,
      truncated_body: false,
      version: { encoding: 'protojson', ext_authz: 'v3' },
      identity: null,
      tool: null,
      mcp: null,
    });
  });

  it('drops raw body bytes and carries the body as text', () => {
    const body = '{"tenant":"acme"}';
    const req = decoded({ attributes: { request: { http: { method: 'POST', path: '/t', headers: { 'content-type': 'application/json' }, rawBody: Buffer.from(body) } } } });
    expect(Buffer.isBuffer(req.attributes?.request?.http?.rawBody)).toBe(true);
    const input = buildPolicyInput(req, { ...NONE, body });
    const h = (input.attributes.request as { http: Record<string, unknown> }).http;
    expect('rawBody' in h).toBe(false);
    expect(h.body).toBe(body);
    expect(input.parsed_body).toEqual({ tenant: 'acme' });
    // The request object handed in is not modified.
    expect(Buffer.isBuffer(req.attributes?.request?.http?.rawBody)).toBe(true);
  });

  it('falls back to the string body Envoy sends when no text is given', () => {
    const input = buildPolicyInput(http({ method: 'POST', body: 'a=1', headers: { 'content-type': 'application/x-www-form-urlencoded' } }), NONE);
    expect(plain(input.parsed_body)).toEqual({ a: ['1'] });
  });

  it('passes the portcullis additions through unchanged', () => {
    const identity: Principal = { agent: 'reporter', agent_version: '1', user: 'alice', tenant: 'acme', roles: ['viewer'], methods: ['jwt'], proven_by: ['iss'] };
    const tool: PolicyTool = { name: 'docs', mutating: false, external: false, upstream: 'tool_docs' };
    const mcp: McpCall = { method: 'tools/call', id: 1, tool: 'search_docs', arguments: { q: 1 } };
    const input = buildPolicyInput(http({}), { identity, tool, mcp, body: null });
    expect(input.identity).toBe(identity);
    expect(input.tool).toBe(tool);
    expect(input.mcp).toBe(mcp);
  });

  it('handles an empty CheckRequest', () => {
    expect(plain(buildPolicyInput({}, NONE))).toEqual({
      attributes: {},
      parsed_path: [''],
      parsed_query: {},
      parsed_body: null,
      truncated_body: false,
      version: { encoding: 'protojson', ext_authz: 'v3' },
      identity: null,
      tool: null,
      mcp: null,
    });
  });

  it('uses the :path header and the query field when path has none', () => {
    const input = buildPolicyInput({ attributes: { request: { http: { headers: { ':path': '/a/b' }, query: 'k=v' } } } }, NONE);
    expect(input.parsed_path).toEqual(['a', 'b']);
    expect(plain(input.parsed_query)).toEqual({ k: ['v'] });
  });
});

describe('parsed_path', () => {
  it.each([
    ['/', ['']],
    ['', ['']],
    ['/tools/weather/forecast', ['tools', 'weather', 'forecast']],
    ['//a//b/', ['a', '', 'b', '']],
    ['/t/tenants/ac%20me', ['t', 'tenants', 'ac me']],
    ['/a%2Fb/c', ['a/b', 'c']],
    ['/bad%zz/x', ['bad%zz', 'x']],
    ['/caf%C3%A9', ['café']],
  ])('%s', (path, expected) => {
    expect(parsePath(path)).toEqual(expected);
  });

  it('ignores query and fragment', () => {
    expect(buildPolicyInput(http({ path: '/a/b?c=/d#frag' }), NONE).parsed_path).toEqual(['a', 'b']);
  });
});

describe('parsed_query', () => {
  it('maps each name to all its values like Go url.ParseQuery', () => {
    expect(plain(parseQuery('a=1&a=2&b&c=x+y&d=%zz&e;f=1&&=v&%41=%42&g=a=b', false))).toEqual({ a: ['1', '2'], b: [''], c: ['x y'], '': ['v'], A: ['B'], g: ['a=b'] });
  });

  it('is strict for bodies', () => {
    expect(parseQuery('a=1&b=%zz', true)).toBeNull();
    expect(parseQuery('a=1;b=2', true)).toBeNull();
  });

  it('keeps __proto__ as an ordinary name', () => {
    const q = parseQuery('__proto__=x', false) as Record<string, string[]>;
    expect(Object.hasOwn(q, '__proto__')).toBe(true);
    expect(JSON.parse(JSON.stringify(q))).toEqual(JSON.parse('{"__proto__":["x"]}'));
  });

  it('comes from the path', () => {
    expect(plain(buildPolicyInput(http({ path: '/x?tenant=acme&tenant=globex' }), NONE).parsed_query)).toEqual({ tenant: ['acme', 'globex'] });
  });
});

describe('parsed_body and truncated_body', () => {
  const post = (contentType: string | undefined, extraHeaders: Record<string, string> = {}): ProtoCheckRequest =>
    http({ method: 'POST', headers: { ...(contentType ? { 'content-type': contentType } : {}), ...extraHeaders } });

  it.each([
    ['application/json', '{"a":[1,2]}', { a: [1, 2] }],
    ['application/json; charset=utf-8', '[1]', [1]],
    ['Application/JSON', '"s"', 's'],
    ['application/vnd.api+json', '{"x":null}', { x: null }],
    ['application/json', '{broken', null],
    ['application/json', '', null],
    ['application/x-www-form-urlencoded', 'a=1&a=2&b=x+y', { a: ['1', '2'], b: ['x y'] }],
    ['application/x-www-form-urlencoded', 'a=%zz', null],
    ['text/plain', '{"a":1}', null],
    ['application/jsonp', '{"a":1}', null],
    [undefined, '{"a":1}', null],
  ])('%s %s', (ct, body, expected) => {
    const input = buildPolicyInput(post(ct), { ...NONE, body });
    expect(plain(input.parsed_body)).toEqual(expected);
    expect(input.truncated_body).toBe(false);
  });

  it('marks a partial body from Envoy as truncated and does not parse it', () => {
    const input = buildPolicyInput(post('application/json', { 'x-envoy-auth-partial-body': 'true' }), { ...NONE, body: '{"a":1}' });
    expect(input.truncated_body).toBe(true);
    expect(input.parsed_body).toBeNull();
  });

  it('marks a body shorter than content-length as truncated (as OPA-Envoy does)', () => {
    const short = buildPolicyInput(post('application/json', { 'content-length': '100' }), { ...NONE, body: '{"a":1}' });
    expect(short.truncated_body).toBe(true);
    expect(short.parsed_body).toBeNull();
    const exact = buildPolicyInput(post('application/json', { 'content-length': String(Buffer.byteLength('{"é":1}')) }), { ...NONE, body: '{"é":1}' });
    expect(exact.truncated_body).toBe(false);
    expect(exact.parsed_body).toEqual({ é: 1 });
  });

  it('is not truncated when the header says false', () => {
    expect(buildPolicyInput(post('application/json', { 'x-envoy-auth-partial-body': 'false' }), { ...NONE, body: '{}' }).truncated_body).toBe(false);
  });
});

describe('timestampToRfc3339', () => {
  it.each([
    [{ seconds: '0' }, '1970-01-01T00:00:00Z'],
    [{ seconds: '1700000000', nanos: 5 }, '2023-11-14T22:13:20.000000005Z'],
    [{ seconds: '1700000000', nanos: 120000 }, '2023-11-14T22:13:20.000120Z'],
    [{ seconds: '1700000000', nanos: 500000000 }, '2023-11-14T22:13:20.500Z'],
    [{ seconds: 'x' }, null],
    [{ seconds: '1', nanos: -1 }, null],
  ])('%j', (ts, expected) => {
    expect(timestampToRfc3339(ts)).toBe(expected);
  });
});
