import { describe, expect, it } from 'vitest';
import { checkBatchSize, firstRpcId, parseJsonRpc } from '../../../src/inspect/mcp.js';

describe('parseJsonRpc', () => {
  it('reads a tools/call request', () => {
    const message = { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'q', tenant: 'acme' } } };
    expect(parseJsonRpc(JSON.stringify(message))).toEqual({
      batch: false,
      size: 1,
      calls: [{ method: 'tools/call', id: 7, tool: 'search_docs', arguments: { query: 'q', tenant: 'acme' }, prompt: null, resource: null }],
      messages: [message],
    });
  });

  it('reads other methods without tool or arguments', () => {
    expect(parseJsonRpc('{"jsonrpc":"2.0","id":"a-1","method":"tools/list","params":{"name":"x"}}')?.calls).toEqual([
      { method: 'tools/list', id: 'a-1', tool: null, arguments: null, prompt: null, resource: null },
    ]);
  });

  it('gives notifications and invalid ids a null id', () => {
    expect(parseJsonRpc('{"jsonrpc":"2.0","method":"notifications/initialized"}')?.calls[0]?.id).toBeNull();
    expect(parseJsonRpc('{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}')?.calls[0]?.id).toBeNull();
  });

  it('tolerates a tools/call without params or with a non-string name', () => {
    expect(parseJsonRpc('{"jsonrpc":"2.0","id":1,"method":"tools/call"}')?.calls).toEqual([{ method: 'tools/call', id: 1, tool: null, arguments: null, prompt: null, resource: null }]);
    expect(parseJsonRpc('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5,"arguments":[1]}}')?.calls).toEqual([
      { method: 'tools/call', id: 1, tool: null, arguments: [1], prompt: null, resource: null },
    ]);
  });

  it('reads a batch in order and counts every element with a method', () => {
    const body = JSON.stringify([
      { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'search_docs', arguments: {} } },
      { method: 'tools/call', id: 2, params: { name: 'delete_doc', arguments: { id: 'd' } } },
      { jsonrpc: '2.0', id: 9, result: {} },
      42,
    ]);
    const r = parseJsonRpc(body);
    expect(r?.batch).toBe(true);
    expect(r?.calls.map((c) => [c.id, c.tool])).toEqual([
      [1, 'search_docs'],
      [2, 'delete_doc'],
    ]);
    // Each call keeps its own message (its policy input); the size counts every element.
    expect(r?.messages.map((m) => (m as { id: number }).id)).toEqual([1, 2]);
    expect(r?.size).toBe(4);
  });

  it('refuses a batch over the limit, whatever its elements are', () => {
    const batch = (n: number): string => JSON.stringify(Array.from({ length: n }, (_, i) => (i === 0 ? { jsonrpc: '2.0', id: i, method: 'ping' } : i)));
    expect(() => checkBatchSize(parseJsonRpc(batch(3))!, 3)).not.toThrow();
    expect(() => checkBatchSize(parseJsonRpc(batch(4))!, 3)).toThrow(/batch of 4 messages exceeds the limit of 3/);
    expect(() => checkBatchSize(parseJsonRpc('{"jsonrpc":"2.0","id":1,"method":"ping"}')!, 0)).not.toThrow();
  });

  it('reads duplicate members as not JSON-RPC at all (the strict reader refuses them)', () => {
    expect(parseJsonRpc('{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping"}')).toBeNull();
  });

  it('treats a JSON-RPC response as JSON-RPC without calls', () => {
    expect(parseJsonRpc('{"jsonrpc":"2.0","id":3,"result":{}}')).toEqual({ calls: [], messages: [], batch: false, size: 1 });
  });

  it('returns null for anything that is not JSON-RPC', () => {
    for (const body of ['', '   ', 'hello', '{"method":"tools/call"}', '{"jsonrpc":"1.0","method":"x"}', '[]', '[1,2]', '[{"method":"x"}]', '{"jsonrpc":"2.0"', 'null', '"2.0"', '{"a":', '\u0000\u0001']) {
      expect(parseJsonRpc(body), body).toBeNull();
    }
  });
});

describe('firstRpcId', () => {
  it('reads the id of a message or the first id in a batch', () => {
    expect(firstRpcId('{"jsonrpc":"2.0","id":"x","method":"a"}')).toBe('x');
    expect(firstRpcId('[{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":5,"method":"a"}]')).toBe(5);
    expect(firstRpcId('{"jsonrpc":"2.0","method":"n"}')).toBeNull();
    expect(firstRpcId('not json')).toBeNull();
  });

  it('finds a top-level id in a truncated body, not one nested in params', () => {
    expect(firstRpcId('{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"arguments":{"text":"abc')).toBe(12);
    expect(firstRpcId('{"jsonrpc":"2.0", "params":{"id":99}, "id" : "req-\\"1\\"", "method":"tools/ca')).toBe('req-"1"');
    expect(firstRpcId('[{"jsonrpc":"2.0","id":"b1","method":"x","params":{"q":"')).toBe('b1');
  });

  it('does not trust an id cut off by truncation or a value that is not an id', () => {
    expect(firstRpcId('{"jsonrpc":"2.0","id":12')).toBeNull();
    expect(firstRpcId('{"jsonrpc":"2.0","params":{"x":"y"},"text":"\\"id\\":4, ')).toBeNull();
    expect(firstRpcId('{"jsonrpc":"2.0","id":{"a":1},"method":"x","params":{')).toBeNull();
  });
});
