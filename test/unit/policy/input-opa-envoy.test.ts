import { describe, expect, it } from 'vitest';
import { goParseQuery, goParseUrl, goQuote } from '../../../src/authz/dropinUrl.js';
import { buildOpaEnvoyInput } from '../../../src/authz/dropinInput.js';
import { parseMultipart } from '../../../src/authz/dropinMultipart.js';
import type { ProtoCheckRequest } from '../../../src/authz/request.js';
import type { Principal } from '../../../src/identity/types.js';

/** Drop-in mode's input: the reference's readings of paths, queries, bodies and attributes. */

function req(http: Record<string, unknown>, extra: Record<string, unknown> = {}): ProtoCheckRequest {
  return { attributes: { request: { http }, ...extra } } as ProtoCheckRequest;
}

function input(r: ProtoCheckRequest, identity: Principal | null = null): Record<string, unknown> {
  const built = buildOpaEnvoyInput(r, identity);
  if (!built.ok) throw new Error(built.error);
  return built.input;
}

describe('Go url.Parse as OPA-Envoy reads a path', () => {
  it('decodes %2F before the path is split, so it adds a segment', () => {
    expect(goParseUrl('/a%2Fb/c%20d?x=1')).toEqual({ ok: true, path: '/a/b/c d', rawQuery: 'x=1' });
  });

  it('keeps + in a path and drops the fragment', () => {
    expect(goParseUrl('/p+q#frag')).toEqual({ ok: true, path: '/p+q', rawQuery: '' });
  });

  it('reads a leading // as an authority', () => {
    expect(goParseUrl('//evil.example/x?y=1')).toEqual({ ok: true, path: '/x', rawQuery: 'y=1' });
    expect(goParseUrl('///x')).toEqual({ ok: true, path: '///x', rawQuery: '' });
  });

  it('words errors as Go does', () => {
    expect(goParseUrl('/a%zz')).toEqual({ ok: false, error: 'parse "/a%zz": invalid URL escape "%zz"' });
    expect(goParseUrl('/a%4')).toEqual({ ok: false, error: 'parse "/a%4": invalid URL escape "%4"' });
    expect(goParseUrl('/a\u0001')).toEqual({ ok: false, error: 'parse "/a\\x01": net/url: invalid control character in URL' });
    expect(goParseUrl('a:b/c')).toMatchObject({ ok: true, path: '' });
    expect(goParseUrl(':x')).toEqual({ ok: false, error: 'parse ":x": missing protocol scheme' });
    expect(goParseUrl('/ok#%zz')).toEqual({ ok: false, error: 'parse "/ok#%zz": invalid URL escape "%zz"' });
  });

  it('quotes like Go %q', () => {
    expect(goQuote('a"b\\c\n\u007f')).toBe('"a\\"b\\\\c\\n\\x7f"');
  });
});

describe('Go url.ParseQuery', () => {
  it('keeps repeated keys in order, + as space, keys without = as ""', () => {
    expect(goParseQuery('x=1&x=2&y&q=a+b&q=%2B&=v').values).toEqual({ x: ['1', '2'], y: [''], q: ['a b', '+'], '': ['v'] });
  });

  it('skips a pair with a semicolon or a bad escape and reports the first problem', () => {
    const r = goParseQuery('ok=1&semi;colon=2&bad=%zz&after=3');
    expect(r.values).toEqual({ ok: ['1'], after: ['3'] });
    expect(r.error).toBe('invalid semicolon separator in query');
    expect(goParseQuery('bad=%zz').error).toBe('invalid URL escape "%zz"');
  });
});

describe('buildOpaEnvoyInput', () => {
  it('renders attributes as the reference does: set fields only, int64 as numbers, Timestamp as seconds/nanos, bytes as base64', () => {
    const r = {
      attributes: {
        source: { address: { socketAddress: { address: '10.0.0.1', portValue: 5555, portSpecifier: 'portValue' }, address: 'socketAddress' }, principal: 'spiffe://a' },
        request: {
          time: { seconds: '1764600000', nanos: 0 },
          http: { method: 'POST', path: '/x', size: '12', body: '', rawBody: Buffer.from('hi'), headers: {}, id: '' },
        },
        contextExtensions: { portcullis_mode: 'opa-envoy' },
      },
    } as unknown as ProtoCheckRequest;
    const i = input(r);
    expect(i.attributes).toEqual({
      source: { address: { socketAddress: { address: '10.0.0.1', portValue: 5555 } }, principal: 'spiffe://a' },
      request: { time: { seconds: 1764600000 }, http: { method: 'POST', path: '/x', size: 12, rawBody: 'aGk=' } },
      contextExtensions: { portcullis_mode: 'opa-envoy' },
    });
    expect(i.source_principal).toBe('spiffe://a');
    expect(i.version).toEqual({ ext_authz: 'v3', encoding: 'protojson' });
    expect(i.parsed_path).toEqual(['x']);
    expect(i.parsed_query).toEqual({});
  });

  it('offers the gateway additions: the verified identity, tool and mcp null', () => {
    const principal = { user: 'alice' } as unknown as Principal;
    const i = input(req({ path: '/' }), principal);
    expect(i).toMatchObject({ identity: principal, tool: null, mcp: null, parsed_path: [''] });
  });

  it('parses JSON only for a content type containing application/json (case-sensitive), from body or raw_body', () => {
    expect(input(req({ path: '/', headers: { 'content-type': 'application/json' }, body: '{"a":1,"a":2}' })).parsed_body).toEqual({ a: 2 });
    expect(input(req({ path: '/', headers: { 'content-type': 'application/json' }, rawBody: Buffer.from('[1]') })).parsed_body).toEqual([1]);
    expect(input(req({ path: '/', headers: { 'content-type': 'Application/JSON' }, body: '{"a":1}' })).parsed_body).toBeNull();
    expect(input(req({ path: '/', headers: { 'content-type': 'text/plain' }, body: 'x' })).parsed_body).toBeNull();
    expect(input(req({ path: '/', body: '{"a":1}' })).parsed_body).toBeNull();
  });

  it('marks a body shorter than its content-length truncated for JSON and forms only', () => {
    const cut = input(req({ path: '/', headers: { 'content-type': 'application/json', 'content-length': '50' }, body: '{"a":' }));
    expect(cut).toMatchObject({ parsed_body: null, truncated_body: true });
    const text = input(req({ path: '/', headers: { 'content-type': 'text/plain', 'content-length': '50' }, body: 'abc' }));
    expect(text.truncated_body).toBe(false);
    const form = input(req({ path: '/', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': '50' }, body: 'a=1' }));
    expect(form.truncated_body).toBe(true);
  });

  it('answers a request_parse_error where the reference does', () => {
    expect(buildOpaEnvoyInput(req({ path: '/a%zz' }), null)).toEqual({ ok: false, error: 'request_parse_error: parse "/a%zz": invalid URL escape "%zz"' });
    expect(buildOpaEnvoyInput(req({ path: '/', headers: { 'content-type': 'application/json' }, body: '{' }), null).ok).toBe(false);
    expect(buildOpaEnvoyInput(req({ path: '/', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a=1;b' }), null)).toEqual({
      ok: false,
      error: 'request_parse_error: invalid semicolon separator in query',
    });
    expect(buildOpaEnvoyInput(req({ path: '/', headers: { 'content-type': 'application/json', 'content-length': 'x' }, body: '{}' }), null)).toEqual({
      ok: false,
      error: 'request_parse_error: strconv.ParseInt: parsing "x": invalid syntax',
    });
  });

  it('reads multipart form data by part name, JSON parts parsed', () => {
    const body = ['--b', 'Content-Disposition: form-data; name="u"', '', 'one', '--b', 'Content-Disposition: form-data; name="j"', 'Content-Type: application/json', '', '{"k":1}', '--b', 'Content-Disposition: attachment; name="skip"', '', 'x', '--b--', ''].join('\r\n');
    const i = input(req({ path: '/', headers: { 'content-type': 'multipart/form-data; boundary=b' }, body }));
    expect(i.parsed_body).toEqual({ u: ['one'], j: [{ k: 1 }] });
    expect(input(req({ path: '/', headers: { 'content-type': 'multipart/form-data' }, body })).parsed_body).toBeNull();
    expect(() => parseMultipart('no boundary here', 'b')).toThrow(/EOF/);
    expect(() => parseMultipart('--b\r\nContent-Disposition: form-data; name="u"\r\n\r\nunfinished', 'b')).toThrow(/EOF/);
  });
});
