import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { EventStore } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { pointCluster } from '../helpers/envoyConfig.js';
import { startStack, type Stack } from '../helpers/index.js';
import { auditRecords, eventually, token } from './authz-support.js';

/**
 * The MCP Streamable HTTP transport through the real Envoy, against an MCP server built with the
 * official SDK: sessions bound to the principal that opened them, the GET stream, DELETE and
 * resumption with the session's authorization, client notifications and replies, the Origin /
 * Host allow-list, and the 2026-07-28 standard headers (`Mcp-Method`, `Mcp-Name`) agreeing with
 * the body, also on a route where the Check decides on the headers alone.
 */

type Json = Record<string, unknown>;

/** Events of every stream, in order, so a GET with Last-Event-ID can replay them. */
class MemoryEventStore implements EventStore {
  private readonly events: { id: string; stream: string; message: JSONRPCMessage }[] = [];

  async storeEvent(stream: string, message: JSONRPCMessage): Promise<string> {
    const id = `${stream}_${this.events.length}`;
    this.events.push({ id, stream, message });
    return id;
  }

  async replayEventsAfter(lastEventId: string, { send }: { send: (id: string, message: JSONRPCMessage) => Promise<void> }): Promise<string> {
    const at = this.events.findIndex((e) => e.id === lastEventId);
    if (at < 0) throw new Error(`unknown event ${lastEventId}`);
    const stream = this.events[at]!.stream;
    for (const e of this.events.slice(at + 1)) if (e.stream === stream && Object.keys(e.message).length > 0) await send(e.id, e.message);
    return stream;
  }
}

/** What the upstream MCP server saw. */
interface Upstream {
  port: number;
  /** Session ids the server issued. */
  issued: Set<string>;
  /** Every Mcp-Session-Id header that reached the server. */
  presented: string[];
  /** Names of the tools the server executed, in order. */
  executed: string[];
  close(): Promise<void>;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function mcpServer(up: Upstream): McpServer {
  const server = new McpServer({ name: 'docs-under-test', version: '1.0.0' });
  const args = { query: z.string(), tenant: z.string(), limit: z.number().int().optional() };
  server.registerTool('search_docs', { inputSchema: args }, async ({ query }) => {
    up.executed.push('search_docs');
    return { content: [{ type: 'text', text: `results for ${query}` }] };
  });
  server.registerTool('delete_doc', { inputSchema: { doc_id: z.string(), tenant: z.string() } }, async ({ doc_id }) => {
    up.executed.push('delete_doc');
    return { content: [{ type: 'text', text: `deleted ${doc_id}` }] };
  });
  // Asks the client (elicitation) before answering: the client's reply is a POST of a JSON-RPC response.
  server.registerTool('confirm_delete', { inputSchema: { doc_id: z.string(), tenant: z.string() } }, async ({ doc_id }, extra) => {
    up.executed.push('confirm_delete');
    // Sent on the call's own response stream (not the GET stream, which may not be open yet).
    const answer = await server.server.elicitInput(
      { message: `Delete ${doc_id}?`, requestedSchema: { type: 'object', properties: { confirm: { type: 'boolean' } }, required: ['confirm'] } },
      { relatedRequestId: extra.requestId },
    );
    return { content: [{ type: 'text', text: `answer ${answer.action} ${JSON.stringify(answer.content ?? {})}` }] };
  });
  return server;
}

/** A stateful MCP server (one SDK transport per session, an event store for resumption). */
async function startUpstream(): Promise<Upstream> {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const up: Upstream = { port: 0, issued: new Set(), presented: [], executed: [], close: async () => undefined };
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const text = req.method === 'POST' ? await readBody(req) : '';
    const body: unknown = text === '' ? undefined : JSON.parse(text);
    const sid = req.headers['mcp-session-id'];
    if (typeof sid === 'string') up.presented.push(sid);
    let transport = typeof sid === 'string' ? transports.get(sid) : undefined;
    if (!transport && sid === undefined && (body as Json | undefined)?.method === 'initialize') {
      const t = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        eventStore: new MemoryEventStore(),
        onsessioninitialized: (id) => {
          up.issued.add(id);
          transports.set(id, t);
        },
      });
      await mcpServer(up).connect(t);
      transport = t;
    }
    if (!transport) {
      res.writeHead(typeof sid === 'string' ? 404 : 400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message: typeof sid === 'string' ? 'Session not found' : 'No session' } }));
      return;
    }
    await transport.handleRequest(req, res, body);
  };
  const http: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  up.port = (http.address() as AddressInfo).port;
  up.close = async () => {
    for (const t of transports.values()) await t.close().catch(() => undefined);
    http.closeAllConnections();
    await new Promise<void>((resolve) => http.close(() => resolve()));
  };
  return up;
}

/** A reply read whole. */
interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/**
 * One HTTP/1.1 request through Envoy with exact headers: names as written (case variants),
 * repeated headers as arrays, any Host. Reads at most `maxMs` of a streamed body, then stops.
 */
function raw(stack: Stack, opts: { method?: string; path?: string; headers?: Record<string, string | string[]>; body?: string; maxMs?: number; until?: (text: string) => boolean }): Promise<Raw> {
  const url = new URL(opts.path ?? '/tools/docs/', stack.envoyUrl);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | string[]> = { accept: 'application/json, text/event-stream', ...opts.headers };
    if (opts.body !== undefined) {
      headers['content-type'] ??= 'application/json';
      headers['content-length'] = String(Buffer.byteLength(opts.body));
    }
    const req = httpRequest({ host: url.hostname, port: url.port, path: url.pathname + url.search, method: opts.method ?? 'POST', headers, setHost: !Object.keys(headers).some((k) => k.toLowerCase() === 'host') }, (res) => {
      let text = '';
      const done = (): void => resolve({ status: res.statusCode ?? 0, headers: res.headers, text });
      const timer = setTimeout(() => {
        res.destroy();
        done();
      }, opts.maxMs ?? 10_000);
      res.on('data', (c: Buffer) => {
        text += c.toString('utf8');
        if (opts.until?.(text)) {
          clearTimeout(timer);
          res.destroy();
          done();
        }
      });
      res.on('end', () => {
        clearTimeout(timer);
        done();
      });
      res.on('error', () => undefined);
    });
    req.on('error', reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

/** The gateway's error of a denial without a JSON-RPC body (GET, DELETE): its type and rule. */
function plainError(r: Raw): { type: string; rule?: string; message: string; request_id: string | null } {
  expect(r.headers['content-type'], r.text).toMatch(/^application\/json/);
  const e = (JSON.parse(r.text) as { error: { type: string; rule?: string; message: string; request_id: string | null } }).error;
  expect(e.message.length).toBeGreaterThan(10);
  expect(e.request_id).toBe(r.headers['x-request-id']);
  return e;
}

/** The JSON-RPC error of a denial: the gateway's error data with its type and rule. */
function rpcError(r: Raw): { code: number; message: string; data: { type: string; rule?: string; request_id: string | null } } {
  const body = JSON.parse(r.text) as Json;
  expect(body.jsonrpc, r.text).toBe('2.0');
  const error = body.error as { code: number; message: string; data: { type: string; rule?: string; request_id: string | null } };
  expect(typeof error.message).toBe('string');
  expect(error.message.length).toBeGreaterThan(10);
  expect(error.data.request_id).toBe(r.headers['x-request-id']);
  return error;
}

function bearer(t: string): Record<string, string> {
  return { authorization: `Bearer ${t}` };
}

const INIT = (id: number | string = 1): string =>
  JSON.stringify({ jsonrpc: '2.0', id, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });

function toolCall(id: number | string, name: string, args: Json): Json {
  return { jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } };
}

/** The SSE `data:` payloads of an event stream that are JSON-RPC messages. */
function sseMessages(text: string): Json[] {
  const out: Json[] = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    const data = block
      .split(/\r?\n/)
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).trimStart())
      .join('\n');
    if (data.trim() !== '') out.push(JSON.parse(data) as Json);
  }
  return out;
}

function sseIds(text: string): string[] {
  return [...text.matchAll(/^id: ?(.+)$/gm)].map((m) => m[1]!.trim());
}

type Node = Record<string, unknown>;

function routes(cfg: Node): Node[] {
  const listener = ((cfg.static_resources as Node).listeners as Node[]).find((l) => l.name === 'agents')!;
  const hcm = ((listener.filter_chains as Node[])[0]!.filters as Node[])[0]!.typed_config as Node;
  return ((hcm.route_config as Node).virtual_hosts as Node[])[0]!.routes as Node[];
}

/** Requests carrying this header take a docs route whose Check is not sent the body. */
const HEADER_ROUTE = { 'x-route-variant': 'headers-only' };

describe('MCP transport through the gateway', () => {
  let stack: Stack;
  let up: Upstream;
  let alice: string;
  let bob: string;
  let aliceOtherAgent: string;

  beforeAll(async () => {
    up = await startUpstream();
    stack = await startStack({
      editConfig: (cfg) => {
        const docs = (cfg.tools as Node[]).find((t) => t.name === 'docs')!;
        const mcp = docs.mcp as Node;
        (mcp.tools as Node).confirm_delete = { mutating: true, input_schema: 'schemas/delete_doc.json' };
        mcp.allowed_origins = ['http://app.example.com'];
        mcp.allowed_hosts = ['127.0.0.1', 'localhost'];
      },
      editEnvoy: (cfg) => {
        pointCluster(cfg, 'tool_docs', up.port);
        const list = routes(cfg);
        const docs = list.find((r) => r.name === 'docs')!;
        const variant = structuredClone(docs);
        variant.name = 'docs_headers_only';
        variant.match = { prefix: '/tools/docs/', headers: [{ name: 'x-route-variant', string_match: { exact: 'headers-only' } }] };
        const authz = (variant.typed_per_filter_config as Node)['envoy.filters.http.ext_authz'] as Node;
        (authz.check_settings as Node).disable_request_body_buffering = true;
        list.splice(list.indexOf(docs), 0, variant);
      },
    });
    alice = await token(stack, { agent: 'helpdesk', user: 'alice' });
    bob = await token(stack, { agent: 'helpdesk', user: 'bob' });
    aliceOtherAgent = await token(stack, { agent: 'reporter', user: 'alice', roles: ['support'] });
  }, 90_000);

  afterAll(async () => {
    await stack?.stop();
    await up?.close();
  });

  /** An SDK client through Envoy as the holder of `tok`. */
  async function connect(tok: string, capabilities: Json = {}): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
    const transport = new StreamableHTTPClientTransport(new URL('/tools/docs/', stack.envoyUrl), { requestInit: { headers: bearer(tok) } });
    const client = new Client({ name: 'agent-under-test', version: '1.0.0' }, { capabilities });
    await client.connect(transport);
    return { client, transport };
  }

  /** A raw session opened by `tok`: the id the gateway handed out. */
  async function openSession(tok: string): Promise<string> {
    const r = await raw(stack, { headers: bearer(tok), body: INIT(), until: (t) => t.includes('"result"') });
    expect(r.status, r.text).toBe(200);
    const sid = r.headers['mcp-session-id'];
    expect(typeof sid).toBe('string');
    const note = await raw(stack, { headers: { ...bearer(tok), 'mcp-session-id': sid as string, 'mcp-protocol-version': '2025-11-25' }, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
    expect(note.status, note.text).toBe(202);
    return sid as string;
  }

  describe('sessions are bound to the principal that opened them', () => {
    it('the SDK client works through the gateway; it holds a binding, the server only ever sees its own id', async () => {
      const { client, transport } = await connect(alice);
      const held = transport.sessionId!;
      expect(held).toMatch(/^ps1\.[\x21-\x7e]+\.[A-Za-z0-9_-]{43}$/);
      const serverId = held.slice(4, held.lastIndexOf('.'));
      expect(up.issued.has(serverId)).toBe(true);
      const tools = await client.listTools();
      expect(tools.tools.map((t) => t.name).sort()).toEqual(['confirm_delete', 'delete_doc', 'search_docs']);
      const result = await client.callTool({ name: 'search_docs', arguments: { query: 'vpn', tenant: 'acme' } });
      expect(JSON.stringify(result.content)).toContain('results for vpn');
      expect(up.presented.length).toBeGreaterThan(0);
      expect(up.presented.every((p) => up.issued.has(p))).toBe(true);
      expect(up.presented.some((p) => p.startsWith('ps1.'))).toBe(false);
      await client.close();
    });

    it('the same session id presented by another user is 404 "session not found", recorded in the audit', async () => {
      const sid = await openSession(alice);
      const before = up.executed.length;
      const r = await raw(stack, { headers: { ...bearer(bob), 'mcp-session-id': sid }, body: JSON.stringify(toolCall(7, 'search_docs', { query: 'x', tenant: 'acme' })) });
      expect(r.status, r.text).toBe(404);
      const e = rpcError(r);
      expect(e.data.rule).toBe('mcp.session_foreign');
      expect((JSON.parse(r.text) as Json).id).toBe(7);
      expect(up.executed.length).toBe(before);
      const rid = r.headers['x-request-id'] as string;
      expect(await eventually(async () => auditRecords(stack).some((x) => x.request_id === rid), 5_000)).toBe(true);
      const rec = auditRecords(stack).find((x) => x.request_id === rid) as { decision: { allowed: boolean; rule: string }; user_id: string };
      expect(rec.decision.allowed).toBe(false);
      expect(rec.decision.rule).toBe('mcp.session_foreign');
      expect(rec.user_id).toBe('bob');
      // The owner's call is recorded with the tool's own session id (what its logs name), not the binding.
      const ok = await raw(stack, { headers: { ...bearer(alice), 'mcp-session-id': sid }, body: JSON.stringify(toolCall(9, 'search_docs', { query: 'x', tenant: 'acme' })) });
      expect(ok.status, ok.text).toBe(200);
      const okId = ok.headers['x-request-id'] as string;
      const serverId = sid.slice(4, sid.lastIndexOf('.'));
      const named = (): boolean => auditRecords(stack).some((x) => x.request_id === okId && (x as { mcp?: { session?: string } }).mcp?.session === serverId);
      expect(await eventually(async () => named(), 5_000)).toBe(true);
    });

    it('the same user through another agent is another principal: 404', async () => {
      const sid = await openSession(alice);
      const r = await raw(stack, { headers: { ...bearer(aliceOtherAgent), 'mcp-session-id': sid }, body: JSON.stringify(toolCall(8, 'search_docs', { query: 'x', tenant: 'acme' })) });
      expect(r.status, r.text).toBe(404);
      expect(rpcError(r).data.rule).toBe('mcp.session_foreign');
    });

    it('the owner keeps using the session (a fresh token of the same principal too)', async () => {
      const sid = await openSession(alice);
      const again = await token(stack, { agent: 'helpdesk', user: 'alice' });
      const r = await raw(stack, { headers: { ...bearer(again), 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' }, body: JSON.stringify(toolCall(9, 'search_docs', { query: 'owner', tenant: 'acme' })), until: (t) => t.includes('results for owner') });
      expect(r.status, r.text).toBe(200);
      expect(r.text).toContain('results for owner');
    });

    it('the server\'s raw id, an altered binding, or a repeated header never reach the server: 404', async () => {
      const sid = await openSession(alice);
      const serverId = sid.slice(4, sid.lastIndexOf('.'));
      const tampered = `${sid.slice(0, -2)}${sid.endsWith('AA') ? 'BB' : 'AA'}`;
      const swapped = `ps1.${randomUUID()}.${sid.slice(sid.lastIndexOf('.') + 1)}`;
      const presentedBefore = up.presented.length;
      for (const [value, rule] of [
        [serverId, 'mcp.session_invalid'],
        [tampered, 'mcp.session_foreign'],
        [swapped, 'mcp.session_foreign'],
      ] as const) {
        const r = await raw(stack, { headers: { ...bearer(alice), 'mcp-session-id': value }, body: JSON.stringify(toolCall(10, 'search_docs', { query: 'x', tenant: 'acme' })) });
        expect(r.status, `${value}: ${r.text}`).toBe(404);
        expect(rpcError(r).data.rule).toBe(rule);
      }
      // Two headers (Envoy joins them for the Check): not one binding, refused.
      const twice = await raw(stack, { headers: { ...bearer(alice), 'Mcp-Session-Id': [sid, sid] }, body: JSON.stringify(toolCall(11, 'search_docs', { query: 'x', tenant: 'acme' })) });
      expect(twice.status, twice.text).toBe(404);
      expect(up.presented.length).toBe(presentedBefore);
    });

    it('a request without a session id passes and is answered by the server itself', async () => {
      const r = await raw(stack, { headers: bearer(alice), body: JSON.stringify(toolCall(12, 'search_docs', { query: 'x', tenant: 'acme' })) });
      expect(r.status, r.text).toBe(400);
      expect(r.text).toContain('No session');
    });
  });

  describe('GET stream, DELETE and resumption carry the session\'s authorization', () => {
    it('the owner opens the GET stream; another principal gets 404', async () => {
      const sid = await openSession(alice);
      const owner = await raw(stack, { method: 'GET', headers: { ...bearer(alice), accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' }, maxMs: 1_500 });
      expect(owner.status, owner.text).toBe(200);
      expect(owner.headers['content-type']).toMatch(/^text\/event-stream/);
      const other = await raw(stack, { method: 'GET', headers: { ...bearer(bob), accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' } });
      expect(other.status, other.text).toBe(404);
      expect(plainError(other).rule).toBe('mcp.session_foreign');
    });

    it('resumption with Last-Event-ID replays the stream through the gateway, for the owner only', async () => {
      const sid = await openSession(alice);
      const headers = { ...bearer(alice), 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
      const first = await raw(stack, { headers, body: JSON.stringify(toolCall(20, 'search_docs', { query: 'resume-me', tenant: 'acme' })), until: (t) => t.includes('resume-me') && /\n\n$/.test(t) });
      expect(first.status, first.text).toBe(200);
      const ids = sseIds(first.text);
      expect(ids.length, first.text).toBeGreaterThanOrEqual(2);
      const resumeHeaders = { ...headers, accept: 'text/event-stream', 'last-event-id': ids[0]! };
      const replay = await raw(stack, { method: 'GET', headers: resumeHeaders, until: (t) => t.includes('resume-me'), maxMs: 5_000 });
      expect(replay.status, replay.text).toBe(200);
      const replayed = sseMessages(replay.text);
      expect(replayed.some((m) => m.id === 20 && JSON.stringify(m.result).includes('results for resume-me')), replay.text).toBe(true);
      const other = await raw(stack, { method: 'GET', headers: { ...resumeHeaders, ...bearer(bob) } });
      expect(other.status, other.text).toBe(404);
      expect(plainError(other).rule).toBe('mcp.session_foreign');
    });

    it('the policy sees GET and DELETE: a read-only caller ends its own session, an agent not bound to the tool is refused', async () => {
      const viewer = await token(stack, { agent: 'reporter', user: 'victor', roles: ['viewer'] });
      const sid = await openSession(viewer);
      const del = await raw(stack, { method: 'DELETE', headers: { ...bearer(viewer), 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' } });
      expect(del.status, del.text).toBe(200);
      const unbound = await token(stack, { agent: 'alerts', user: 'alice', roles: ['support'] });
      const get = await raw(stack, { method: 'GET', headers: { ...bearer(unbound), accept: 'text/event-stream' } });
      expect(get.status, get.text).toBe(403);
      expect(plainError(get).rule).toBe('agent.not_bound');
    });

    it('DELETE by another principal is 404 and leaves the session; the owner\'s DELETE ends it', async () => {
      const sid = await openSession(alice);
      const other = await raw(stack, { method: 'DELETE', headers: { ...bearer(bob), 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' } });
      expect(other.status, other.text).toBe(404);
      expect(plainError(other).rule).toBe('mcp.session_foreign');
      const still = await raw(stack, { headers: { ...bearer(alice), 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' }, body: JSON.stringify({ jsonrpc: '2.0', id: 30, method: 'tools/list' }), until: (t) => t.includes('search_docs') });
      expect(still.status, still.text).toBe(200);
      const owner = await raw(stack, { method: 'DELETE', headers: { ...bearer(alice), 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' } });
      expect(owner.status, owner.text).toBe(200);
      const after = await raw(stack, { headers: { ...bearer(alice), 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' }, body: JSON.stringify({ jsonrpc: '2.0', id: 31, method: 'tools/list' }) });
      expect(after.status, after.text).toBe(404);
      expect(after.text).toContain('Session not found');
    });
  });

  describe('client notifications and replies pass', () => {
    it('notifications/cancelled is accepted (202)', async () => {
      const sid = await openSession(alice);
      const r = await raw(stack, {
        headers: { ...bearer(alice), 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' },
        body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 99, reason: 'no longer needed' } }),
      });
      expect(r.status, r.text).toBe(202);
    });

    it('an elicitation reply (a JSON-RPC response POSTed by the client) reaches the server', async () => {
      const { client } = await connect(alice, { elicitation: {} });
      client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { confirm: true } }));
      const result = await client.callTool({ name: 'confirm_delete', arguments: { doc_id: 'd-1', tenant: 'acme' } }, undefined, { timeout: 10_000 });
      expect(JSON.stringify(result.content)).toContain('answer accept');
      expect(JSON.stringify(result.content)).toContain('confirm');
      await client.close();
    });
  });

  describe('Origin / Host allow-list (DNS rebinding)', () => {
    it('a foreign Origin is refused with 403 before it reaches the server', async () => {
      const before = up.issued.size;
      const r = await raw(stack, { headers: { ...bearer(alice), origin: 'http://evil.example.com' }, body: INIT(41) });
      expect(r.status, r.text).toBe(403);
      const e = rpcError(r);
      expect(e.data.rule).toBe('mcp.origin');
      expect(e.data.type).toBe('forbidden');
      expect(up.issued.size).toBe(before);
    });

    it('a foreign Host (with or without its Origin) is refused with 403', async () => {
      const variants: Record<string, string>[] = [{ host: 'evil.example.com' }, { Host: 'evil.example.com', Origin: 'http://evil.example.com' }];
      for (const headers of variants) {
        const r = await raw(stack, { headers: { ...bearer(alice), ...headers }, body: INIT(42) });
        expect(r.status, r.text).toBe(403);
        expect(rpcError(r).data.rule).toMatch(/^mcp\.(host|origin)$/);
      }
    });

    it('an allowed Origin (any case), and no Origin at all, pass', async () => {
      for (const origin of ['http://app.example.com', 'HTTP://APP.EXAMPLE.COM:80']) {
        const r = await raw(stack, { headers: { ...bearer(alice), origin }, body: INIT(43), until: (t) => t.includes('"result"') });
        expect(r.status, `${origin}: ${r.text}`).toBe(200);
      }
      const lookalike = await raw(stack, { headers: { ...bearer(alice), origin: 'http://app.example.com.evil.example.com' }, body: INIT(44) });
      expect(lookalike.status).toBe(403);
      const none = await raw(stack, { headers: bearer(alice), body: INIT(45), until: (t) => t.includes('"result"') });
      expect(none.status).toBe(200);
    });
  });

  describe('2026-07-28 standard headers must agree with the body', () => {
    const deleteCall = JSON.stringify(toolCall(50, 'delete_doc', { doc_id: 'd-9', tenant: 'acme' }));

    it('Mcp-Method "tools/list" over a tools/call of delete_doc never passes, in any header spelling', async () => {
      const before = up.executed.filter((n) => n === 'delete_doc').length;
      for (const name of ['Mcp-Method', 'mcp-method', 'MCP-METHOD']) {
        const r = await raw(stack, { headers: { ...bearer(alice), [name]: 'tools/list' }, body: deleteCall });
        expect(r.status, `${name}: ${r.text}`).toBe(400);
        const e = rpcError(r);
        expect(e.data.rule).toBe('mcp.header_mismatch');
        expect(e.data.type).toBe('invalid_request');
        expect((JSON.parse(r.text) as Json).id).toBe(50);
      }
      expect(up.executed.filter((n) => n === 'delete_doc').length).toBe(before);
    });

    it('the method value is case-sensitive, a repeated header is refused, surrounding whitespace is not a difference', async () => {
      const upper = await raw(stack, { headers: { ...bearer(alice), 'mcp-method': 'TOOLS/CALL', 'mcp-name': 'delete_doc' }, body: deleteCall });
      expect(upper.status, upper.text).toBe(400);
      const repeated = await raw(stack, { headers: { ...bearer(alice), 'mcp-method': ['tools/call', 'tools/list'], 'mcp-name': 'delete_doc' }, body: deleteCall });
      expect(repeated.status, repeated.text).toBe(400);
      expect(rpcError(repeated).data.rule).toBe('mcp.header_mismatch');
      const sameTwice = await raw(stack, { headers: { ...bearer(alice), 'mcp-method': ['tools/call', 'tools/call'], 'mcp-name': 'delete_doc' }, body: deleteCall });
      expect(sameTwice.status, sameTwice.text).toBe(400);
      const spaced = await raw(stack, { headers: { ...bearer(alice), 'mcp-method': '  tools/call ', 'mcp-name': ' search_docs\t' }, body: JSON.stringify(toolCall(51, 'search_docs', { query: 'spaced', tenant: 'acme' })), until: (t) => t.includes('results for spaced') });
      expect(spaced.status, spaced.text).toBe(400);
      expect(spaced.text).toContain('No session');
    });

    it('Mcp-Name must name the called tool; Base64 sentinel values are decoded before comparing', async () => {
      const wrong = await raw(stack, { headers: { ...bearer(alice), 'mcp-method': 'tools/call', 'mcp-name': 'search_docs' }, body: deleteCall });
      expect(wrong.status, wrong.text).toBe(400);
      expect(rpcError(wrong).message).toMatch(/Mcp-Name/);
      const encodedWrong = await raw(stack, { headers: { ...bearer(alice), 'mcp-method': 'tools/call', 'mcp-name': `=?base64?${Buffer.from('search_docs').toString('base64')}?=` }, body: deleteCall });
      expect(encodedWrong.status, encodedWrong.text).toBe(400);
      const missing = await raw(stack, { headers: { ...bearer(alice), 'mcp-method': 'tools/call' }, body: deleteCall });
      expect(missing.status, missing.text).toBe(400);
      const sid = await openSession(alice);
      const encodedRight = await raw(stack, {
        headers: { ...bearer(alice), 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25', 'mcp-method': 'tools/call', 'mcp-name': `=?base64?${Buffer.from('search_docs').toString('base64')}?=` },
        body: JSON.stringify(toolCall(52, 'search_docs', { query: 'encoded', tenant: 'acme' })),
        until: (t) => t.includes('results for encoded'),
      });
      expect(encodedRight.status, encodedRight.text).toBe(200);
    });

    it('a batch cannot carry the headers of one of its messages', async () => {
      const batch = JSON.stringify([{ jsonrpc: '2.0', id: 60, method: 'tools/list' }, toolCall(61, 'delete_doc', { doc_id: 'd-9', tenant: 'acme' })]);
      const r = await raw(stack, { headers: { ...bearer(alice), 'mcp-method': 'tools/list' }, body: batch });
      expect(r.status, r.text).toBe(400);
      const body = JSON.parse(r.text) as Json[];
      expect(Array.isArray(body)).toBe(true);
      expect(body.map((m) => m.id).sort()).toEqual([60, 61]);
      expect(body.every((m) => (m.error as { data: { rule: string } }).data.rule === 'mcp.header_mismatch')).toBe(true);
    });

    it('a client declaring protocol 2026-07-28 must send Mcp-Method', async () => {
      const r = await raw(stack, { headers: { ...bearer(alice), 'mcp-protocol-version': '2026-07-28' }, body: deleteCall });
      expect(r.status, r.text).toBe(400);
      expect(rpcError(r).data.rule).toBe('mcp.header_mismatch');
    });
  });

  describe('a route that decides on the headers alone (the Check is not sent the body)', () => {
    it('the Check really decides without the body there: without Mcp-Method the JSON body cannot be decided (413)', async () => {
      const r = await raw(stack, { headers: { ...bearer(alice), ...HEADER_ROUTE }, body: JSON.stringify(toolCall(70, 'search_docs', { query: 'x', tenant: 'acme' })) });
      expect(r.status, r.text).toBe(413);
      expect(plainError(r).rule).toBe('inspect.body_window');
    });

    it('headers that agree with the body pass to the server', async () => {
      const sid = await openSession(alice);
      const r = await raw(stack, {
        headers: { ...bearer(alice), ...HEADER_ROUTE, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25', 'mcp-method': 'tools/call', 'mcp-name': 'search_docs' },
        body: JSON.stringify(toolCall(71, 'search_docs', { query: 'by-headers', tenant: 'acme' })),
        until: (t) => t.includes('results for by-headers'),
      });
      expect(r.status, r.text).toBe(200);
    });

    it('the policy decides on the headers: a read-only caller cannot delete even without a body at the Check', async () => {
      const viewer = await token(stack, { agent: 'reporter', user: 'victor', roles: ['viewer'] });
      const r = await raw(stack, { headers: { ...bearer(viewer), ...HEADER_ROUTE, 'mcp-method': 'tools/call', 'mcp-name': 'delete_doc' }, body: deleteBody(72) });
      expect(r.status, r.text).toBe(403);
      expect(rpcError(r).data.rule).toBe('role.read_only');
    });

    it('headers saying search_docs over a body calling delete_doc are refused by ext_proc before the server', async () => {
      const sid = await openSession(alice);
      const before = up.executed.filter((n) => n === 'delete_doc').length;
      const r = await raw(stack, {
        headers: { ...bearer(alice), ...HEADER_ROUTE, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25', 'mcp-method': 'tools/call', 'mcp-name': 'search_docs' },
        body: deleteBody(73),
      });
      expect(r.status, r.text).toBe(400);
      const e = rpcError(r);
      expect(e.data.rule).toBe('mcp.header_mismatch');
      expect((JSON.parse(r.text) as Json).id).toBe(73);
      expect(up.executed.filter((n) => n === 'delete_doc').length).toBe(before);
    });

    it('a policy condition on arguments still holds: ext_proc decides again on the body (tenant mismatch)', async () => {
      const sid = await openSession(alice);
      const before = up.executed.length;
      const r = await raw(stack, {
        headers: { ...bearer(alice), ...HEADER_ROUTE, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25', 'mcp-method': 'tools/call', 'mcp-name': 'search_docs' },
        body: JSON.stringify(toolCall(74, 'search_docs', { query: 'other tenant', tenant: 'globex' })),
      });
      expect(r.status, r.text).toBe(403);
      const e = rpcError(r);
      expect(e.data.rule).toBe('tenant.mismatch');
      expect((JSON.parse(r.text) as Json).id).toBe(74);
      expect(up.executed.length).toBe(before);
      // The exchange record says the Check allowed on the headers and ext_proc refused on the body.
      const rid = r.headers['x-request-id'] as string;
      expect(await eventually(async () => auditRecords(stack).some((x) => x.request_id === rid), 5_000)).toBe(true);
      const rec = auditRecords(stack).find((x) => x.request_id === rid) as { decision: { allowed: boolean }; error: { type: string; rule: string } };
      expect(rec.decision.allowed).toBe(true);
      expect(rec.error).toEqual({ type: 'forbidden', rule: 'tenant.mismatch' });
    });

    it('a batch on the header route is refused (headers describe one message)', async () => {
      const batch = JSON.stringify([toolCall(75, 'search_docs', { query: 'a', tenant: 'acme' }), toolCall(76, 'delete_doc', { doc_id: 'd', tenant: 'acme' })]);
      const r = await raw(stack, { headers: { ...bearer(alice), ...HEADER_ROUTE, 'mcp-method': 'tools/call', 'mcp-name': 'search_docs' }, body: batch });
      expect(r.status, r.text).toBe(400);
      expect(r.text).toContain('mcp.header_mismatch');
    });
  });
});

function deleteBody(id: number): string {
  return JSON.stringify(toolCall(id, 'delete_doc', { doc_id: 'd-9', tenant: 'acme' }));
}
