import { describe, expect, it } from 'vitest';
import type { ToolConfig } from '../../../src/config/types.js';
import { GatewayError } from '../../../src/errors.js';
import { isJsonContentType, readRequestBody, requireJsonContentType } from '../../../src/inspect/requestBody.js';

function tool(extra: Partial<ToolConfig> = {}): ToolConfig {
  return {
    name: 't',
    upstream: 'tool_t',
    external: false,
    dry_run: false,
    credentials: [],
    request: { max_body_bytes: 1024, injection: 'off', dlp: false },
    response: { drop_fields: [], dlp: false, binary: 'inspect' },
    ...extra,
  };
}

const schemaTool = tool({ request: { max_body_bytes: 1024, injection: 'off', dlp: false, schema: 's.json' } });
const plainTool = tool();

function failure(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (err) {
    if (err instanceof GatewayError) return err;
    throw err;
  }
  throw new Error('expected a GatewayError');
}

describe('isJsonContentType', () => {
  it('accepts application/json and +json with UTF-8 or no charset', () => {
    for (const ct of ['application/json', 'Application/JSON', ' application/json ; charset=utf-8', 'application/json;charset="UTF-8"', 'application/problem+json', 'application/vnd.api+json; ext=x']) {
      expect(isJsonContentType(ct), ct).toBe(true);
    }
  });
  it('refuses look-alikes and other charsets', () => {
    for (const ct of [undefined, '', 'text/plain', 'text/json', 'application/x-json', 'application/jsonl', 'application/json-seq', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16', 'multipart/form-data']) {
      expect(isJsonContentType(ct), String(ct)).toBe(false);
    }
  });
});

describe('requireJsonContentType', () => {
  it('is 415 for a JSON tool with another type, silent otherwise', () => {
    const err = failure(() => requireJsonContentType(schemaTool, 'text/plain'));
    expect(err.httpStatus).toBe(415);
    expect(err.rule).toBe('inspect.content_type');
    expect(() => requireJsonContentType(schemaTool, 'application/json')).not.toThrow();
    expect(() => requireJsonContentType(plainTool, 'text/plain')).not.toThrow();
  });
});

describe('readRequestBody', () => {
  it('reads a JSON tool body as JSON whatever its type, strictly', () => {
    const r = readRequestBody(Buffer.from('{"a":1}'), undefined, schemaTool);
    expect(r).toMatchObject({ json: true, value: { a: 1 }, rpc: null });
    expect(failure(() => readRequestBody(Buffer.from('{"a":1,"a":2}'), 'application/json', schemaTool)).details).toEqual({ problem: 'duplicate_key' });
    expect(failure(() => readRequestBody(Buffer.from('a=1'), 'application/json', plainTool)).rule).toBe('inspect.json');
  });
  it('recognises JSON-RPC from the same value', () => {
    const r = readRequestBody(Buffer.from('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{}}}'), 'application/json', plainTool);
    expect(r.rpc?.calls).toEqual([{ method: 'tools/call', id: 1, tool: 'x', arguments: {}, prompt: null, resource: null }]);
  });
  it('leaves text bodies of other tools as text, but refuses ambiguous JSON documents in them', () => {
    expect(readRequestBody(Buffer.from('{not json'), 'text/plain', plainTool)).toMatchObject({ json: false, value: undefined, text: '{not json' });
    expect(readRequestBody(Buffer.from('{"a":1}'), 'text/plain', plainTool)).toMatchObject({ json: false, value: { a: 1 } });
    expect(failure(() => readRequestBody(Buffer.from('{"a":1,"a":2}'), 'text/plain', plainTool)).details).toEqual({ problem: 'duplicate_key' });
  });
  it('refuses bad UTF-8 for every tool', () => {
    expect(failure(() => readRequestBody(Buffer.from([0xff, 0xfe]), 'application/octet-stream', plainTool)).rule).toBe('inspect.encoding');
  });
});
