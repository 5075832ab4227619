import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RECEIVED_LIMIT, startSampleTool, type SampleTool } from '../../../src/demo/sampleTool.js';

let tool: SampleTool;
let base: string;

beforeAll(async () => {
  tool = await startSampleTool({ port: 0 });
  base = `http://127.0.0.1:${tool.port}`;
});
afterAll(() => tool.close());

async function call(path: string, init?: RequestInit): Promise<{ status: number; json: Record<string, any> }> {
  const res = await fetch(base + path, init);
  return { status: res.status, json: (await res.json()) as Record<string, any> };
}

function rpc(body: unknown): RequestInit {
  return { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
}

describe('sample tool', () => {
  it('serves a deterministic forecast and echoes the request, injected headers included', async () => {
    const a = await call('/weather/forecast?city=Berlin', { headers: { 'x-api-key': 'injected-by-gateway' } });
    const b = await call('/weather/forecast?city=Berlin');
    expect(a.status).toBe(200);
    expect(a.json.city).toBe('Berlin');
    expect(a.json.days).toHaveLength(3);
    expect(a.json.days).toEqual(b.json.days);
    expect(a.json.request).toMatchObject({ method: 'GET', path: '/weather/forecast?city=Berlin', body: '' });
    expect(a.json.request.headers['x-api-key']).toBe('injected-by-gateway');
    expect(tool.received.at(-1)?.path).toBe('/weather/forecast?city=Berlin');
  });

  it('requires a city and GET for forecasts', async () => {
    expect((await call('/weather/forecast')).status).toBe(400);
    expect((await call('/weather/forecast?city=x', { method: 'POST', body: '{}' })).status).toBe(405);
  });

  it('serves payloads of the requested size', async () => {
    const res = await fetch(`${base}/weather/payload?bytes=20000`);
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text.length).toBeGreaterThanOrEqual(20000);
    expect(text.length).toBeLessThan(21000);
    expect((JSON.parse(text) as { data: string }).data).toHaveLength(20000);
    expect((await call('/weather/payload?bytes=-1')).status).toBe(400);
  });

  it('lists, creates and reads tickets per tenant', async () => {
    const list = await call('/tickets/tenants/acme/tickets');
    expect(list.status).toBe(200);
    expect(list.json.tenant).toBe('acme');
    expect(list.json.tickets.length).toBeGreaterThan(0);

    const created = await call('/tickets/tenants/acme/tickets', rpc({ title: 'VPN', priority: 'high' }));
    expect(created.status).toBe(201);
    expect(created.json.created.ticket).toEqual({ title: 'VPN', priority: 'high' });
    expect(created.json.request.body).toBe('{"title":"VPN","priority":"high"}');

    const one = await call('/tickets/tenants/acme/tickets/T-1001');
    expect(one.json.ticket.id).toBe('T-1001');
    expect((await call('/tickets/tenants/acme/tickets', { method: 'DELETE' })).status).toBe(405);
    expect((await call('/tickets/tenants/acme/tickets', { method: 'POST', body: 'not json' })).status).toBe(400);
  });

  it('speaks MCP JSON-RPC: initialize, tools/list, tools/call with the request id', async () => {
    const init = await call('/mcp/', rpc({ jsonrpc: '2.0', id: 1, method: 'initialize', params: {} }));
    expect(init.json).toMatchObject({ jsonrpc: '2.0', id: 1, result: { serverInfo: { name: 'portcullis-sample-docs' } } });

    const list = await call('/mcp/', rpc({ jsonrpc: '2.0', id: 'l', method: 'tools/list' }));
    expect(list.json.id).toBe('l');
    expect(list.json.result.tools.map((t: { name: string }) => t.name)).toEqual(['search_docs', 'delete_doc']);

    const args = { query: 'vpn', tenant: 'acme', limit: 2 };
    const search = await call('/mcp/', rpc({ jsonrpc: '2.0', id: 42, method: 'tools/call', params: { name: 'search_docs', arguments: args } }));
    expect(search.json.id).toBe(42);
    expect(search.json.result.structuredContent.arguments).toEqual(args);
    expect(search.json.result.structuredContent.results).toHaveLength(2);
    expect(search.json.result.structuredContent.internal_notes).toBeTypeOf('string');
    expect(search.json.request.method).toBe('POST');

    const del = await call('/mcp/', rpc({ jsonrpc: '2.0', id: 43, method: 'tools/call', params: { name: 'delete_doc', arguments: { doc_id: 'd1', tenant: 'acme' } } }));
    expect(del.json.result.structuredContent.deleted).toBe('d1');
  });

  it('lists prompts, resources and templates a page at a time, following nextCursor to the end', async () => {
    const uris: string[] = [];
    let cursor: string | undefined;
    for (let pages = 0; pages < 10; pages++) {
      const r = await call('/mcp/', rpc({ jsonrpc: '2.0', id: pages, method: 'resources/list', params: cursor === undefined ? {} : { cursor } }));
      expect(r.json.result.resources.length).toBeLessThanOrEqual(2);
      uris.push(...r.json.result.resources.map((x: { uri: string }) => x.uri));
      cursor = r.json.result.nextCursor;
      if (cursor === undefined) break;
    }
    expect(uris).toEqual(['docs://public/handbook.md', 'docs://internal/salaries.md', 'docs://internal/roadmap.md', 'docs://secret/keys.md', 'docs://public/faq.md']);
    const prompts = await call('/mcp/', rpc({ jsonrpc: '2.0', id: 1, method: 'prompts/list' }));
    expect(prompts.json.result.prompts.map((p: { name: string }) => p.name)).toEqual(['summarize_doc', 'draft_reply']);
    expect(prompts.json.result.nextCursor).toBe('page-2');
    const templates = await call('/mcp/', rpc({ jsonrpc: '2.0', id: 2, method: 'resources/templates/list', params: { cursor: 'page-2' } }));
    expect(templates.json.result).toEqual({ resourceTemplates: [{ uriTemplate: 'docs://{section}/{path}', name: 'any document' }] });
    const bad = await call('/mcp/', rpc({ jsonrpc: '2.0', id: 3, method: 'tools/list', params: { cursor: 'page-99' } }));
    expect(bad.json.error.code).toBe(-32602);
  });

  it('answers prompts/get and resources/read, with errors for unknown names and URIs', async () => {
    const p = await call('/mcp/', rpc({ jsonrpc: '2.0', id: 1, method: 'prompts/get', params: { name: 'summarize_doc', arguments: { doc_id: 'd1' } } }));
    expect(p.json.result.messages[0].content.text).toContain('d1');
    expect((await call('/mcp/', rpc({ jsonrpc: '2.0', id: 2, method: 'prompts/get', params: { name: 'nope' } }))).json.error.code).toBe(-32602);
    const r = await call('/mcp/', rpc({ jsonrpc: '2.0', id: 3, method: 'resources/read', params: { uri: 'docs://internal/salaries.md' } }));
    expect(r.json.result.contents[0].text).toContain('Confidential');
    expect((await call('/mcp/', rpc({ jsonrpc: '2.0', id: 4, method: 'resources/read', params: { uri: 'docs://none' } }))).json.error.code).toBe(-32002);
  });

  it('answers as an event stream when Accept prefers it (or ?sse=1), one event per response', async () => {
    const body = JSON.stringify([{ jsonrpc: '2.0', id: 1, method: 'tools/list' }, { jsonrpc: '2.0', id: 2, method: 'ping' }]);
    const sse = await fetch(`${base}/mcp/`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream, application/json;q=0.5' }, body });
    expect(sse.headers.get('content-type')).toBe('text/event-stream');
    const events = (await sse.text()).split('\n\n').filter((e) => e !== '');
    expect(events.map((e) => JSON.parse(e.split('data: ')[1]!).id)).toEqual([1, 2]);
    const json = await fetch(`${base}/mcp/`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body });
    expect(json.headers.get('content-type')).toBe('application/json');
    const hook = await fetch(`${base}/mcp/?sse=1`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(hook.headers.get('content-type')).toBe('text/event-stream');
  });

  it('returns JSON-RPC errors for unknown tools, unknown methods and bad JSON; 202 for notifications', async () => {
    const unknownTool = await call('/mcp/', rpc({ jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'rm_rf' } }));
    expect(unknownTool.json.error.code).toBe(-32602);
    expect(unknownTool.json.id).toBe(5);
    const unknownMethod = await call('/mcp/', rpc({ jsonrpc: '2.0', id: 6, method: 'sampling/createMessage' }));
    expect(unknownMethod.json.error.code).toBe(-32601);
    const bad = await call('/mcp/', { method: 'POST', body: '{' });
    expect(bad.status).toBe(400);
    expect(bad.json.error.code).toBe(-32700);
    const note = await fetch(`${base}/mcp/`, rpc({ jsonrpc: '2.0', method: 'notifications/initialized' }));
    expect(note.status).toBe(202);
    expect(await note.text()).toBe('');
  });

  it('answers 404 JSON for anything else', async () => {
    const r = await call('/admin');
    expect(r.status).toBe(404);
    expect(r.json.request.path).toBe('/admin');
  });

  it('keeps a bounded history of received requests', async () => {
    const own = await startSampleTool({ port: 0 });
    try {
      const url = `http://127.0.0.1:${own.port}/healthz`;
      for (let i = 0; i < RECEIVED_LIMIT + 5; i += 50) {
        await Promise.all(Array.from({ length: 50 }, () => fetch(url).then((r) => r.arrayBuffer())));
      }
      expect(own.received.length).toBe(RECEIVED_LIMIT);
    } finally {
      await own.close();
    }
  });
});
