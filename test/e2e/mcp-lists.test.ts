import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dirname, join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';
import { readAuditFile, send as sendRaw, startStack, type Reply, type SendOptions, type Stack } from '../helpers/index.js';
import { token } from './authz-support.js';

/**
 * MCP lists through the real Envoy: tools/prompts/resources lists keep only what the caller's
 * roles may use (JSON, batch, SSE, paginated), and what is hidden cannot be used anyway
 * (tools/call, prompts/get, resources/read are denied like any forbidden call).
 */

type Json = Record<string, any>;

const VERSION = '2025-11-25';

function send(stack: Stack, bearer: string, body: unknown, opts: Omit<SendOptions, 'bearer' | 'body'> = {}): Promise<Reply> {
  const headers = { accept: 'application/json, text/event-stream', 'mcp-protocol-version': VERSION, ...opts.headers };
  return sendRaw(stack, '/tools/docs/', { ...opts, headers, bearer, body: JSON.stringify(body) });
}

const rpc = (id: number | string, method: string, params: Json = {}): Json => ({ jsonrpc: '2.0', id, method, params });
const names = (r: Json, key = 'tools', field = 'name'): string[] => (r.result[key] as Json[]).map((x) => x[field] as string);

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The exchange record (ext_proc's, or the Check's for a denial) of a request. */
async function exchangeRecord(stack: Stack, requestId: string): Promise<Json> {
  const file = join(dirname(stack.configPath), 'audit.log');
  for (let i = 0; i < 60; i++) {
    const found = readAuditFile(file).filter((r) => r.request_id === requestId && r.record_type === 'exchange');
    if (found.length > 0) return found[0] as Json;
    await sleep(50);
  }
  throw new Error(`no exchange record for ${requestId}\n${stack.logs().slice(-4000)}`);
}

/** The JSON-RPC messages of an SSE body. */
function events(text: string): Json[] {
  return text
    .split(/\n\n/)
    .map((e) => e.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n'))
    .filter((d) => d !== '')
    .map((d) => JSON.parse(d) as Json);
}

function received(stack: Stack, needle: string): number {
  return stack.tool.received.filter((r) => r.path.startsWith('/mcp') && r.body.includes(needle)).length;
}

describe('MCP lists filtered by policy', () => {
  let stack: Stack;
  let viewer: string;
  let support: string;

  beforeAll(async () => {
    stack = await startStack({
      // These tests swap the server behind the docs tool (the sample server, fakes, the official
      // SDK server): its tool definitions change on purpose, which is flagged, not blocked, here.
      editConfig: (cfg) => {
        const docs = (cfg.tools as Json[]).find((t) => t.name === 'docs')!;
        docs.mcp = { ...(docs.mcp as Json), on_change: 'flag' };
      },
    });
    viewer = await token(stack, { agent: 'reporter', user: 'vera', roles: ['viewer'] });
    support = await token(stack, { agent: 'helpdesk', user: 'sam', roles: ['support'] });
  }, 90_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it('two principals see different tools, prompts and resources', async () => {
    const v = await send(stack, viewer, rpc(1, 'tools/list'));
    expect(v.status, v.text).toBe(200);
    expect(names(v.json as Json)).toEqual(['search_docs']);
    expect(v.text).not.toContain('delete_doc');
    const s = await send(stack, support, rpc(1, 'tools/list'));
    expect(names(s.json as Json)).toEqual(['search_docs', 'delete_doc']);

    const vp = await send(stack, viewer, rpc('p', 'prompts/list'));
    expect(names(vp.json as Json, 'prompts')).toEqual(['summarize_doc']);
    const sp = await send(stack, support, rpc('p', 'prompts/list'));
    expect(names(sp.json as Json, 'prompts')).toEqual(['summarize_doc', 'draft_reply']);

    const vt = await send(stack, viewer, rpc('t', 'resources/templates/list'));
    expect(names(vt.json as Json, 'resourceTemplates', 'uriTemplate')).toEqual(['docs://public/{path}']);
    const st = await send(stack, support, rpc('t', 'resources/templates/list'));
    expect(names(st.json as Json, 'resourceTemplates', 'uriTemplate')).toEqual(['docs://public/{path}', 'docs://internal/{path}']);
  });

  it('pagination: the server cursor is kept, a page emptied by filtering still leads on to the next', async () => {
    const seen: string[] = [];
    const pages: { count: number; next: string | undefined }[] = [];
    let cursor: string | undefined;
    for (let i = 0; i < 10; i++) {
      const r = await send(stack, viewer, rpc(i, 'resources/list', cursor === undefined ? {} : { cursor }));
      expect(r.status, r.text).toBe(200);
      const res = (r.json as Json).result as Json;
      seen.push(...(res.resources as Json[]).map((x) => x.uri as string));
      cursor = res.nextCursor as string | undefined;
      pages.push({ count: (res.resources as Json[]).length, next: cursor });
      if (cursor === undefined) break;
    }
    expect(seen).toEqual(['docs://public/handbook.md', 'docs://public/faq.md']);
    expect(pages).toEqual([{ count: 1, next: 'page-2' }, { count: 0, next: 'page-4' }, { count: 1, next: undefined }]);
  });

  it('an SSE answer is filtered event by event', async () => {
    const r = await send(stack, viewer, [rpc(1, 'tools/list'), rpc(2, 'prompts/list')], { headers: { accept: 'text/event-stream, application/json;q=0.5' } });
    expect(r.status, r.text).toBe(200);
    expect(r.headers['content-type']).toBe('text/event-stream');
    const msgs = events(r.text);
    expect(msgs.map((m) => m.id)).toEqual([1, 2]);
    expect(names(msgs[0]!)).toEqual(['search_docs']);
    expect(names(msgs[1]!, 'prompts')).toEqual(['summarize_doc']);
    expect(r.text).not.toContain('delete_doc');
    expect(r.text).not.toContain('draft_reply');
  });

  it('a JSON-RPC batch with a list and a call: the list is filtered, the call result is untouched', async () => {
    const r = await send(stack, viewer, [rpc(1, 'tools/list'), rpc(2, 'tools/call', { name: 'search_docs', arguments: { query: 'vpn', tenant: 'acme' } })]);
    expect(r.status, r.text).toBe(200);
    const [list, call] = r.json as Json[];
    expect(names(list!)).toEqual(['search_docs']);
    expect(call).toMatchObject({ id: 2, result: { isError: false } });
    expect(call!.result.content[0].text).toMatch(/documents matched "vpn"/);
  });

  it('a hidden tool called anyway is denied like any forbidden call (same status, same JSON-RPC error), alone or in a batch', async () => {
    const before = received(stack, 'delete_doc');
    const hidden = await send(stack, viewer, rpc(7, 'tools/call', { name: 'delete_doc', arguments: { doc_id: 'd1', tenant: 'acme' } }));
    const never = await send(stack, viewer, rpc(7, 'tools/call', { name: 'drop_everything', arguments: {} }));
    for (const r of [hidden, never]) {
      expect(r.status, r.text).toBe(403);
      expect(r.json).toMatchObject({ jsonrpc: '2.0', id: 7, error: { code: (never.json as Json).error.code, data: { type: 'forbidden', rule: 'role.read_only' } } });
    }
    const batch = await send(stack, viewer, [rpc(1, 'tools/list'), rpc(2, 'tools/call', { name: 'delete_doc', arguments: { doc_id: 'd1', tenant: 'acme' } })]);
    expect(batch.status, batch.text).toBe(403);
    expect((batch.json as Json[]).map((m) => [m.id, m.error?.data?.type])).toEqual([[1, 'forbidden'], [2, 'forbidden']]);
    expect(received(stack, 'delete_doc')).toBe(before);
    // The same call is allowed for a role that sees the tool.
    const ok = await send(stack, support, rpc(8, 'tools/call', { name: 'delete_doc', arguments: { doc_id: 'd1', tenant: 'acme' } }));
    expect(ok.status, ok.text).toBe(200);
  });

  it('prompts/get and resources/read are denied for a forbidden name or URI, allowed for a granted one', async () => {
    const prompt = await send(stack, viewer, rpc(11, 'prompts/get', { name: 'draft_reply', arguments: { ticket: 'T-1' } }));
    expect(prompt.status, prompt.text).toBe(403);
    expect(prompt.json).toMatchObject({ jsonrpc: '2.0', id: 11, error: { data: { type: 'forbidden', rule: 'mcp.prompt_not_allowed' } } });
    expect((prompt.json as Json).error.message).toMatch(/prompt "draft_reply"/);
    const okPrompt = await send(stack, viewer, rpc(12, 'prompts/get', { name: 'summarize_doc', arguments: { doc_id: 'd1' } }));
    expect(okPrompt.status, okPrompt.text).toBe(200);

    const before = received(stack, 'salaries');
    for (const uri of ['docs://internal/salaries.md', 'docs://public/../internal/salaries.md', 'docs://public/%2e%2e/internal/salaries.md']) {
      const r = await send(stack, viewer, rpc(13, 'resources/read', { uri }));
      expect(r.status, `${uri} ${r.text}`).toBe(403);
      expect(r.json).toMatchObject({ id: 13, error: { data: { type: 'forbidden', rule: 'mcp.resource_not_allowed' } } });
    }
    // A completion of a forbidden prompt's arguments reveals them too: denied alike.
    const completion = await send(stack, viewer, rpc(14, 'completion/complete', { ref: { type: 'ref/prompt', name: 'draft_reply' }, argument: { name: 'ticket', value: 'T' } }));
    expect(completion.status, completion.text).toBe(403);
    expect(received(stack, 'salaries')).toBe(before);
    const okRead = await send(stack, viewer, rpc(15, 'resources/read', { uri: 'docs://public/handbook.md' }));
    expect(okRead.status, okRead.text).toBe(200);
    expect((okRead.json as Json).result.contents[0].text).toContain('Handbook');
    const supportRead = await send(stack, support, rpc(16, 'resources/read', { uri: 'docs://internal/salaries.md' }));
    expect(supportRead.status, supportRead.text).toBe(200);
  });

  it('audit records name the method, tool/prompt/resource, session, protocol version and the hidden count', async () => {
    const list = await send(stack, viewer, rpc(21, 'tools/list'));
    const rec = await exchangeRecord(stack, String(list.headers['x-request-id']));
    // The sample server is stateless (no session); session binding and its record: mcp-transport.test.ts.
    expect(rec.mcp).toEqual({ method: 'tools/list', tool: null, prompt: null, resource: null, session: null, protocol_version: VERSION, hidden: 1, would_hide: null });

    const denied = await send(stack, viewer, rpc(22, 'prompts/get', { name: 'export_all' }));
    expect(denied.status).toBe(403);
    const drec = await exchangeRecord(stack, String(denied.headers['x-request-id']));
    expect(drec.decision).toMatchObject({ allowed: false, rule: 'mcp.prompt_not_allowed' });
    expect(drec.mcp).toMatchObject({ method: 'prompts/get', prompt: 'export_all', session: null, protocol_version: VERSION });

    const read = await send(stack, viewer, rpc(23, 'resources/read', { uri: 'docs://public/faq.md' }));
    const rrec = await exchangeRecord(stack, String(read.headers['x-request-id']));
    expect(rrec.mcp).toMatchObject({ method: 'resources/read', resource: 'docs://public/faq.md', hidden: null });
  });

  it('metrics count MCP calls by method and configured tool name, and hidden items, with bounded labels', async () => {
    await send(stack, support, rpc(31, 'tools/call', { name: 'made_up_tool_9f3e', arguments: {} }));
    await send(stack, viewer, rpc(32, 'tools/list'));
    // The exchange record (and the hidden count) is written at the end of the exchange.
    await sleep(200);
    const text = await (await fetch(`${stack.adminUrl}/metrics`)).text();
    expect(text).toMatch(/portcullis_mcp_list_items_hidden_total\{tool="docs",method="tools\/list",mode="hidden"\} [1-9]/);
    expect(text).toMatch(/portcullis_mcp_calls_total\{tool="docs",method="tools\/list",mcp_tool="_none",outcome="allow"\} [1-9]/);
    expect(text).toMatch(/portcullis_mcp_calls_total\{tool="docs",method="prompts\/get",mcp_tool="_none",outcome="deny"\} [1-9]/);
    expect(text).toMatch(/portcullis_mcp_calls_total\{tool="docs",method="tools\/call",mcp_tool="delete_doc",outcome="deny"\} [1-9]/);
    expect(text).toMatch(/mcp_tool="_unlisted"/);
    expect(text).not.toContain('made_up_tool_9f3e');
  });

  it('a list for an id the exchange did not send is filtered by its shape; a list not shaped as one is withheld', async () => {
    const remove = stack.tool.handle('/mcp/', (_req, res, body) => {
      const msg = JSON.parse(body) as Json;
      const answer =
        msg.method === 'ping'
          ? [{ jsonrpc: '2.0', id: msg.id, result: {} }, { jsonrpc: '2.0', id: 'other', result: { tools: [{ name: 'delete_doc' }] } }]
          : { jsonrpc: '2.0', id: msg.id, result: { tools: { name: 'delete_doc' } } };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    });
    try {
      const replay = await send(stack, viewer, rpc(41, 'ping'));
      expect(replay.status, replay.text).toBe(200);
      expect(replay.json).toEqual([{ jsonrpc: '2.0', id: 41, result: {} }, { jsonrpc: '2.0', id: 'other', result: { tools: [] } }]);
      const odd = await send(stack, viewer, rpc(42, 'tools/list'));
      expect(odd.status, odd.text).toBe(200);
      expect(odd.json).toMatchObject({ jsonrpc: '2.0', id: 42, error: { data: { type: 'unavailable', rule: 'mcp.list_malformed' } } });
      for (const r of [replay, odd]) expect(r.text).not.toContain('delete_doc');
    } finally {
      remove();
    }
  });

  it('a list answer that is not one JSON document is refused, not passed on unfiltered; a BOM is read as the encoding mark', async () => {
    let framing: 'bom' | 'two' | 'bytes' = 'bom';
    const remove = stack.tool.handle('/mcp/', (_req, res, body) => {
      const msg = JSON.parse(body) as Json;
      const doc = JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { tools: [{ name: 'delete_doc', inputSchema: { type: 'object' } }, { name: 'search_docs', inputSchema: { type: 'object' } }] } });
      // Two documents: a reader that takes the first line would see the whole list.
      if (framing === 'bytes') {
        // Not valid UTF-8: read as bytes, not as a document, yet a lenient decoder would read the whole list.
        const [head, tail] = doc.split('delete_doc');
        res.writeHead(200, { 'content-type': 'application/json' }).end(Buffer.concat([Buffer.from(`${head}delete_doc`), Buffer.from([0xff]), Buffer.from(tail!)]));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(framing === 'bom' ? `\ufeff${doc}` : `${doc}\n${doc}`);
    });
    try {
      const bom = await send(stack, viewer, rpc(51, 'tools/list'));
      expect(bom.status, bom.text).toBe(200);
      expect(bom.text.startsWith('\ufeff')).toBe(true);
      expect(names(JSON.parse(bom.text.slice(1)) as Json)).toEqual(['search_docs']);
      framing = 'two';
      const two = await send(stack, viewer, rpc(52, 'tools/list'));
      expect(two.text).not.toContain('delete_doc');
      expect(two.json).toMatchObject({ jsonrpc: '2.0', id: 52, error: { data: { type: 'unavailable', rule: 'mcp.list_unreadable' } } });
      framing = 'bytes';
      const bytes = await send(stack, viewer, rpc(53, 'tools/list'));
      expect(bytes.text).not.toContain('delete_doc');
      expect(bytes.json).toMatchObject({ jsonrpc: '2.0', id: 53, error: { data: { type: 'unavailable', rule: 'mcp.list_unreadable' } } });
    } finally {
      remove();
    }
  });

  const connect = async (bearer: string, path = '/tools/docs/?sse=1'): Promise<Client> => {
    const client = new Client({ name: 'portcullis-e2e', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(path, stack.envoyUrl), { requestInit: { headers: { authorization: `Bearer ${bearer}` } } });
    await client.connect(transport);
    return client;
  };

  it('the official MCP client sees the filtered list and cannot call what is hidden', async () => {
    // Event-stream answers (?sse=1): the sample server's JSON replies carry an echo of the request the SDK's strict schema refuses.
    const v = await connect(viewer);
    try {
      expect((await v.listTools()).tools.map((t) => t.name)).toEqual(['search_docs']);
      expect((await v.listPrompts()).prompts.map((p) => p.name)).toEqual(['summarize_doc']);
      await expect(v.callTool({ name: 'delete_doc', arguments: { doc_id: 'd1', tenant: 'acme' } })).rejects.toThrow(/403|forbidden|read-only/);
    } finally {
      await v.close();
    }
    const s = await connect(support);
    try {
      expect((await s.listTools()).tools.map((t) => t.name)).toEqual(['search_docs', 'delete_doc']);
    } finally {
      await s.close();
    }
  });
  it('the official MCP server answering in event streams, through the gateway to the official client: lists filtered, hidden items refused', async () => {
    const text = (t: string) => ({ content: [{ type: 'text' as const, text: t }] });
    const remove = stack.tool.handle('/mcp/', (req, res, body) => {
      // Stateless: one server and transport per request, answers as SSE (no JSON responses).
      const server = new McpServer({ name: 'docs-sdk', version: '1.0.0' });
      server.registerTool('search_docs', { description: 'Search', inputSchema: { query: z.string(), tenant: z.string() } }, ({ query }) => text(`found ${query}`));
      server.registerTool('delete_doc', { description: 'Delete', inputSchema: { doc_id: z.string(), tenant: z.string() } }, () => text('deleted'));
      server.registerPrompt('summarize_doc', { description: 'Summarize' }, () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'summarize' } }] }));
      server.registerPrompt('draft_reply', { description: 'Draft' }, () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'draft' } }] }));
      server.registerResource('handbook', 'docs://public/handbook.md', { mimeType: 'text/markdown' }, (uri) => ({ contents: [{ uri: uri.href, text: '# Handbook' }] }));
      server.registerResource('salaries', 'docs://internal/salaries.md', { mimeType: 'text/markdown' }, (uri) => ({ contents: [{ uri: uri.href, text: '# Salaries' }] }));
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      res.on('close', () => {
        void transport.close();
        void server.close();
      });
      void server.connect(transport).then(() => transport.handleRequest(req, res, body === '' ? undefined : JSON.parse(body)));
    });
    const v = await connect(viewer, '/tools/docs/');
    try {
      expect((await v.listTools()).tools.map((t) => t.name)).toEqual(['search_docs']);
      expect((await v.listPrompts()).prompts.map((p) => p.name)).toEqual(['summarize_doc']);
      expect((await v.listResources()).resources.map((r) => r.uri)).toEqual(['docs://public/handbook.md']);
      expect((await v.readResource({ uri: 'docs://public/handbook.md' })).contents[0]).toMatchObject({ text: '# Handbook' });
      await expect(v.readResource({ uri: 'docs://internal/salaries.md' })).rejects.toThrow(/403|forbidden|resource/);
      await expect(v.getPrompt({ name: 'draft_reply' })).rejects.toThrow(/403|forbidden|prompt/);
      expect((await v.callTool({ name: 'search_docs', arguments: { query: 'vpn', tenant: 'acme' } })).content).toEqual([{ type: 'text', text: 'found vpn' }]);
    } finally {
      await v.close();
      remove();
    }
  });
});

describe('MCP lists of a tool in dry run', () => {
  let stack: Stack;
  let viewer: string;

  beforeAll(async () => {
    stack = await startStack({
      editConfig: (cfg) => {
        const docs = (cfg.tools as Json[]).find((t) => t.name === 'docs')!;
        docs.dry_run = true;
      },
    });
    viewer = await token(stack, { agent: 'reporter', user: 'vera', roles: ['viewer'] });
  }, 90_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it('hides nothing and records how many items would have been hidden', async () => {
    const r = await send(stack, viewer, rpc(1, 'tools/list'));
    expect(r.status, r.text).toBe(200);
    expect(names(r.json as Json)).toEqual(['search_docs', 'delete_doc']);
    const rec = await exchangeRecord(stack, String(r.headers['x-request-id']));
    expect(rec.decision).toMatchObject({ allowed: true, dry_run: true });
    expect(rec.mcp).toMatchObject({ method: 'tools/list', hidden: 0, would_hide: 1 });
    const text = await (await fetch(`${stack.adminUrl}/metrics`)).text();
    expect(text).toMatch(/portcullis_mcp_list_items_hidden_total\{tool="docs",method="tools\/list",mode="would_hide"\} [1-9]/);
    expect(text).not.toMatch(/portcullis_mcp_list_items_hidden_total\{[^}]*mode="hidden"\}/);
  });
});
