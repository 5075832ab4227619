import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../../src/errors.js';
import { parseJsonRpc, type JsonRpcBody } from '../../../src/inspect/mcp.js';
import { callFromHeaders, checkHeadersAgree, decodeHeaderValue, readStandardHeaders, repeatedHeaders, type StandardHeaders } from '../../../src/mcp/headers.js';

function rpc(body: unknown): JsonRpcBody {
  const r = parseJsonRpc(JSON.stringify(body));
  if (!r) throw new Error('not JSON-RPC');
  return r;
}

function std(h: Record<string, string>): StandardHeaders {
  return readStandardHeaders(h);
}

function refusal(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(GatewayError);
    return e as GatewayError;
  }
  throw new Error('expected a refusal');
}

const b64 = (s: string): string => `=?base64?${Buffer.from(s, 'utf8').toString('base64')}?=`;
const call = (name: string, args: Record<string, unknown> = {}): unknown => ({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } });

describe('header value encoding (SEP-2243)', () => {
  it('plain values are trimmed of surrounding whitespace; Base64 sentinels are decoded as UTF-8', () => {
    expect(decodeHeaderValue('Mcp-Name', '  my-tool_name \t')).toBe('my-tool_name');
    expect(decodeHeaderValue('Mcp-Name', b64('Hello, 世界'))).toBe('Hello, 世界');
    expect(decodeHeaderValue('Mcp-Name', b64(' padded '))).toBe(' padded ');
    expect(decodeHeaderValue('Mcp-Name', 'file:///path/to/file%20name.txt')).toBe('file:///path/to/file%20name.txt');
  });

  it('the sentinel markers are case-sensitive: other spellings are literal values', () => {
    expect(decodeHeaderValue('Mcp-Name', '=?BASE64?Zm9v?=')).toBe('=?BASE64?Zm9v?=');
  });

  it('refuses bad Base64, bytes that are not UTF-8, and characters a header value cannot carry', () => {
    for (const bad of ['=?base64?@@@@?=', '=?base64?Zm9v?=x'.slice(0, 12) + '?=', `=?base64?${Buffer.from([0xff, 0xfe]).toString('base64')}?=`, 'a\u0000b', 'né', 'a\nb']) {
      expect(refusal(() => decodeHeaderValue('Mcp-Name', bad)).rule, JSON.stringify(bad)).toBe('mcp.header_mismatch');
    }
  });
});

describe('reading the standard headers', () => {
  it('refuses a repeated standard header and a method joined from several headers', () => {
    expect(refusal(() => readStandardHeaders({ 'mcp-method': 'tools/call' }, new Set(['mcp-method']))).rule).toBe('mcp.header_mismatch');
    expect(refusal(() => readStandardHeaders({ 'mcp-method': 'tools/list,tools/call' })).rule).toBe('mcp.header_mismatch');
    expect(refusal(() => readStandardHeaders({ 'mcp-method': '' })).rule).toBe('mcp.header_mismatch');
    expect(repeatedHeaders([{ key: 'Mcp-Method' }, { key: 'mcp-method' }, { key: 'x' }])).toEqual(new Set(['mcp-method']));
  });

  it('absent headers read as null', () => {
    expect(readStandardHeaders({})).toEqual({ method: null, name: null, protocolVersion: null });
  });
});

describe('headers and body must agree', () => {
  it('accepts agreeing headers for tools/call, prompts/get, resources/read and methods without a name', () => {
    checkHeadersAgree(std({ 'mcp-method': 'tools/call', 'mcp-name': 'search_docs' }), rpc(call('search_docs')));
    checkHeadersAgree(std({ 'mcp-method': 'prompts/get', 'mcp-name': b64('résumé') }), rpc({ jsonrpc: '2.0', id: 2, method: 'prompts/get', params: { name: 'résumé' } }));
    checkHeadersAgree(std({ 'mcp-method': 'resources/read', 'mcp-name': 'https://example.com/resource?id=123' }), rpc({ jsonrpc: '2.0', id: 3, method: 'resources/read', params: { uri: 'https://example.com/resource?id=123' } }));
    checkHeadersAgree(std({ 'mcp-method': 'tools/list' }), rpc({ jsonrpc: '2.0', id: 4, method: 'tools/list' }));
    checkHeadersAgree(std({ 'mcp-method': 'notifications/initialized' }), rpc({ jsonrpc: '2.0', method: 'notifications/initialized' }));
  });

  it('refuses another method, another case, another name, a missing name and a name where none belongs', () => {
    const cases: [Record<string, string>, unknown][] = [
      [{ 'mcp-method': 'tools/list' }, call('delete_doc')],
      [{ 'mcp-method': 'TOOLS/CALL', 'mcp-name': 'delete_doc' }, call('delete_doc')],
      [{ 'mcp-method': 'tools/call', 'mcp-name': 'search_docs' }, call('delete_doc')],
      [{ 'mcp-method': 'tools/call', 'mcp-name': b64('search_docs') }, call('delete_doc')],
      [{ 'mcp-method': 'tools/call', 'mcp-name': 'Delete_Doc' }, call('delete_doc')],
      [{ 'mcp-method': 'tools/call' }, call('delete_doc')],
      [{ 'mcp-method': 'tools/list', 'mcp-name': 'delete_doc' }, { jsonrpc: '2.0', id: 1, method: 'tools/list' }],
      [{ 'mcp-name': 'delete_doc' }, call('delete_doc')],
      [{ 'mcp-method': 'resources/read', 'mcp-name': 'file:///a' }, { jsonrpc: '2.0', id: 1, method: 'resources/read', params: { uri: 'file:///b' } }],
      [{ 'mcp-method': 'tools/call', 'mcp-name': 'x' }, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 7 } }],
    ];
    for (const [h, body] of cases) {
      expect(refusal(() => checkHeadersAgree(std(h), rpc(body))).rule, JSON.stringify(h)).toBe('mcp.header_mismatch');
    }
  });

  it('refuses headers over a batch, even one whose first message agrees, and over a response', () => {
    const batch = rpc([{ jsonrpc: '2.0', id: 1, method: 'tools/list' }, call('delete_doc')]);
    const e = refusal(() => checkHeadersAgree(std({ 'mcp-method': 'tools/list' }), batch));
    expect(e.httpStatus).toBe(400);
    expect(e.code).toBe('invalid_request');
    expect(refusal(() => checkHeadersAgree(std({ 'mcp-method': 'tools/call' }), rpc({ jsonrpc: '2.0', id: 1, result: {} }))).rule).toBe('mcp.header_mismatch');
  });

  it('without headers: fine for older protocol versions, refused when the declared version requires them', () => {
    checkHeadersAgree(std({}), rpc(call('delete_doc')));
    checkHeadersAgree(std({ 'mcp-protocol-version': '2025-11-25' }), rpc(call('delete_doc')));
    expect(refusal(() => checkHeadersAgree(std({ 'mcp-protocol-version': '2026-07-28' }), rpc(call('delete_doc')))).rule).toBe('mcp.header_mismatch');
    // A client's reply carries no method to mirror.
    checkHeadersAgree(std({ 'mcp-protocol-version': '2026-07-28' }), rpc({ jsonrpc: '2.0', id: 5, result: { action: 'accept' } }));
  });

  it('carries the spec\'s HeaderMismatch code in the error details', () => {
    const e = refusal(() => checkHeadersAgree(std({ 'mcp-method': 'tools/list' }), rpc(call('delete_doc'))));
    expect(e.details?.mcp_error_code).toBe(-32020);
  });
});

describe('a call read from the headers alone', () => {
  it('is marked as such, with the name as the tool of a tools/call and no arguments', () => {
    expect(callFromHeaders(std({ 'mcp-method': 'tools/call', 'mcp-name': 'delete_doc' }))).toEqual({ method: 'tools/call', id: null, tool: 'delete_doc', arguments: null, source: 'headers', name: 'delete_doc' });
    expect(callFromHeaders(std({ 'mcp-method': 'resources/read', 'mcp-name': 'file:///x' })).tool).toBeNull();
  });

  it('needs Mcp-Name exactly where the method takes one', () => {
    expect(refusal(() => callFromHeaders(std({ 'mcp-method': 'tools/call' }))).rule).toBe('mcp.header_mismatch');
    expect(refusal(() => callFromHeaders(std({ 'mcp-method': 'tools/list', 'mcp-name': 'x' }))).rule).toBe('mcp.header_mismatch');
    expect(refusal(() => callFromHeaders(std({ 'mcp-name': 'x' }))).rule).toBe('mcp.header_mismatch');
  });
});

describe('protocol version header and body', () => {
  const withMeta = (version: string): unknown => ({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': version } } });

  it('must state the same version', () => {
    checkHeadersAgree(std({ 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list' }), rpc(withMeta('2026-07-28')));
    expect(refusal(() => checkHeadersAgree(std({ 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list' }), rpc(withMeta('2025-11-25')))).rule).toBe('mcp.header_mismatch');
    expect(refusal(() => checkHeadersAgree(std({ 'mcp-protocol-version': '2025-11-25' }), rpc(withMeta('2026-07-28')))).rule).toBe('mcp.header_mismatch');
  });
});
