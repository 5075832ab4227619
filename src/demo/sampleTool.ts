import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

/**
 * Sample upstream behind the demo's logical tools (weather, tickets, docs MCP server, payments,
 * exports, a metered llm).
 * Dependency-free and cheap per request because it is also the benchmark's upstream. Every JSON
 * reply echoes the request as it arrived (`request`), so tests can see which headers the gateway
 * injected or stripped.
 */

/** One request as the tool received it. */
export interface ReceivedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A raw handler that answers one path instead of the built-in routes. */
export type PathHandler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

/** A running sample tool. */
export interface SampleTool {
  port: number;
  /** Requests received, oldest first (the most recent {@link RECEIVED_LIMIT} only). */
  received: ReceivedRequest[];
  /** POST requests executed, by path (without the query): how often a write really ran. */
  executed: Map<string, number>;
  /**
   * Answers requests for exactly `path` (as the tool receives it, without the query) with
   * `handler`, e.g. to stream, compress or leak on purpose; returns a function that removes it.
   */
  handle(path: string, handler: PathHandler): () => void;
  close(): Promise<void>;
}

/** How many received requests are kept (bounded so long benchmark runs do not grow memory). */
export const RECEIVED_LIMIT = 1000;

/** Largest request body accepted; beyond it the tool answers 413. */
const MAX_BODY_BYTES = 10 * 1024 * 1024;
/** Largest `/weather/payload` body served. */
const MAX_PAYLOAD_BYTES = 10 * 1024 * 1024;

type Json = Record<string, unknown>;

interface Reply {
  status: number;
  body: Json | null;
}

const MCP_TOOLS = [
  {
    name: 'search_docs',
    description: 'Full-text search over the tenant\'s documents.',
    inputSchema: {
      type: 'object',
      required: ['query', 'tenant'],
      properties: { query: { type: 'string' }, tenant: { type: 'string' }, limit: { type: 'integer', minimum: 1, maximum: 50 } },
    },
  },
  {
    name: 'delete_doc',
    description: 'Deletes one document.',
    inputSchema: { type: 'object', required: ['doc_id', 'tenant'], properties: { doc_id: { type: 'string' }, tenant: { type: 'string' } } },
  },
];

/** Prompts of the docs server (prompts/list, prompts/get). */
const MCP_PROMPTS = [
  { name: 'summarize_doc', description: 'Summarizes one document.', arguments: [{ name: 'doc_id', required: true }] },
  { name: 'draft_reply', description: 'Drafts a reply to a support ticket from the documentation.', arguments: [{ name: 'ticket', required: true }] },
  { name: 'export_all', description: 'Exports every document of the tenant.', arguments: [] },
];

/** Resources of the docs server (resources/list, resources/read), one page of `PAGE_SIZE` at a time. */
const MCP_RESOURCES = [
  { uri: 'docs://public/handbook.md', name: 'handbook', mimeType: 'text/markdown', text: '# Handbook\nWelcome.' },
  { uri: 'docs://internal/salaries.md', name: 'salaries', mimeType: 'text/markdown', text: '# Salaries\nConfidential.' },
  { uri: 'docs://internal/roadmap.md', name: 'roadmap', mimeType: 'text/markdown', text: '# Roadmap\nNext year.' },
  { uri: 'docs://secret/keys.md', name: 'keys', mimeType: 'text/markdown', text: '# Keys\nNothing to see.' },
  { uri: 'docs://public/faq.md', name: 'faq', mimeType: 'text/markdown', text: '# FAQ\nAsk away.' },
];

const MCP_TEMPLATES = [
  { uriTemplate: 'docs://public/{path}', name: 'public document' },
  { uriTemplate: 'docs://internal/{path}', name: 'internal document' },
  { uriTemplate: 'docs://{section}/{path}', name: 'any document' },
];

/** Items per page of every MCP list (tools fit on one page; resources take three). */
const PAGE_SIZE = 2;

/**
 * One page of a list: the cursor is the opaque `params.cursor` of the previous page's
 * `nextCursor` (`page-<offset>`); an unknown cursor is a JSON-RPC invalid-params error.
 */
function page<T>(id: unknown, params: Json, items: readonly T[], key: string, map: (item: T) => Json = (i) => i as Json): Json {
  const cursor = params.cursor;
  let offset = 0;
  if (cursor !== undefined) {
    const m = typeof cursor === 'string' ? /^page-(\d+)$/.exec(cursor) : null;
    offset = m ? Number(m[1]) : -1;
    if (offset < 0 || offset >= items.length) return rpcError(id, -32602, `invalid cursor: ${JSON.stringify(cursor)}`);
  }
  const slice = items.slice(offset, offset + PAGE_SIZE).map(map);
  const next = offset + PAGE_SIZE < items.length ? { nextCursor: `page-${offset + PAGE_SIZE}` } : {};
  return { jsonrpc: '2.0', id, result: { [key]: slice, ...next } };
}

function getPrompt(id: unknown, params: Json): Json {
  const prompt = MCP_PROMPTS.find((p) => p.name === params.name);
  if (!prompt) return rpcError(id, -32602, `unknown prompt: ${String(params.name)}`);
  const args = (typeof params.arguments === 'object' && params.arguments !== null ? params.arguments : {}) as Json;
  return {
    jsonrpc: '2.0',
    id,
    result: { description: prompt.description, messages: [{ role: 'user', content: { type: 'text', text: `${prompt.description} ${JSON.stringify(args)}` } }] },
  };
}

function readResource(id: unknown, params: Json): Json {
  const r = MCP_RESOURCES.find((x) => x.uri === params.uri);
  if (!r) return { jsonrpc: '2.0', id: id ?? null, error: { code: -32002, message: 'Resource not found', data: { uri: params.uri ?? null } } };
  return { jsonrpc: '2.0', id, result: { contents: [{ uri: r.uri, mimeType: r.mimeType, text: r.text }] } };
}

const FORECAST = ['sunny', 'cloudy', 'rain', 'showers', 'windy'];

function forecast(city: string): Json {
  // Deterministic per city so tests can compare replies.
  let seed = 0;
  for (let i = 0; i < city.length; i++) seed = (seed * 31 + city.charCodeAt(i)) >>> 0;
  const days = [0, 1, 2].map((d) => {
    const base = (seed >> (d * 3)) % 15;
    return { day: d, summary: FORECAST[(seed + d) % FORECAST.length], high_c: 10 + base, low_c: 2 + (base >> 1) };
  });
  return { city, days };
}

let payloadCache: { bytes: number; text: string } | null = null;

/** Filler of exactly `bytes` characters, cached because the benchmark asks for the same size. */
function filler(bytes: number): string {
  if (payloadCache?.bytes !== bytes) payloadCache = { bytes, text: 'x'.repeat(bytes) };
  return payloadCache.text;
}

function tickets(method: string, tenant: string, rest: string[], body: string, serial: number): Reply {
  const id = rest[0];
  if (rest.length === 0) {
    if (method === 'GET') {
      return {
        status: 200,
        body: {
          tenant,
          tickets: [
            { id: 'T-1001', title: 'VPN drops every hour', priority: 'high', status: 'open' },
            { id: 'T-1002', title: 'New laptop request', priority: 'normal', status: 'pending' },
          ],
        },
      };
    }
    if (method === 'POST') {
      let ticket: unknown = null;
      try {
        ticket = body ? JSON.parse(body) : null;
      } catch {
        return { status: 400, body: { error: { type: 'invalid_request', message: 'body is not JSON' } } };
      }
      // `serial` tells one execution from another (a replayed answer keeps the first one's).
      return { status: 201, body: { tenant, created: { id: 'T-2001', status: 'open', ticket, serial } } };
    }
    return { status: 405, body: { error: { type: 'method_not_allowed', message: `${method} is not supported here` } } };
  }
  if (rest.length === 1 && id && method === 'GET') {
    return {
      status: 200,
      body: {
        tenant,
        // A realistic leak: people paste card numbers and keys into tickets. The gateway's
        // response DLP must redact them before an agent sees them.
        ticket: {
          id,
          title: 'VPN drops every hour',
          priority: 'high',
          status: 'open',
          reporter: 'jane.doe@example.com',
          notes: 'Reported from the Berlin office. Customer paid with 4111 1111 1111 1111; the VPN box uses key AKIAIOSFODNN7EXAMPLF.',
        },
      },
    };
  }
  return { status: 404, body: { error: { type: 'not_found', message: 'no such ticket resource' } } };
}

/** A JSON object body, or null when the body is not one. */
function jsonObject(body: string): Json | null {
  try {
    const v: unknown = body ? JSON.parse(body) : null;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : null;
  } catch {
    return null;
  }
}

let transferSeq = 0;

/** Payments: `POST /payments/transfers {counterparty, amount}` sends a transfer. */
function payments(method: string, rest: string[], body: string): Reply {
  if (rest.length !== 1 || rest[0] !== 'transfers') return { status: 404, body: { error: { type: 'not_found', message: 'no such payments resource' } } };
  if (method !== 'POST') return { status: 405, body: { error: { type: 'method_not_allowed', message: 'use POST' } } };
  const t = jsonObject(body);
  if (!t || typeof t.counterparty !== 'string' || typeof t.amount !== 'number') {
    return { status: 400, body: { error: { type: 'invalid_request', message: 'a transfer is {"counterparty": string, "amount": number}' } } };
  }
  transferSeq += 1;
  return { status: 201, body: { transfer: { id: `TR-${transferSeq}`, counterparty: t.counterparty, amount: t.amount, status: 'sent' } } };
}

/** Exports: `GET /exports/transactions` returns the tenant's transactions. */
function exportsRoute(method: string, rest: string[]): Reply {
  if (rest.length !== 1 || rest[0] !== 'transactions') return { status: 404, body: { error: { type: 'not_found', message: 'no such export' } } };
  if (method !== 'GET') return { status: 405, body: { error: { type: 'method_not_allowed', message: 'use GET' } } };
  return { status: 200, body: { rows: [{ id: 'TR-1', counterparty: 'acme-supplies', amount: 120 }, { id: 'TR-2', counterparty: 'globex', amount: 75 }] } };
}

/**
 * A metered completion (`POST /llm/completions {prompt, max_tokens?, stream?}`): usage is one
 * token per prompt word plus `max_tokens` (default 16), reported as `usage.total_tokens`.
 */
function completion(body: Json): { text: string; usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } } {
  const prompt = typeof body.prompt === 'string' ? body.prompt : '';
  const promptTokens = prompt.split(/\s+/).filter((w) => w !== '').length;
  const completionTokens = Number.isInteger(body.max_tokens) ? Math.max(0, Math.min(4096, body.max_tokens as number)) : 16;
  return { text: `echo: ${prompt}`, usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens } };
}

function llm(method: string, rest: string[], body: string): Reply {
  if (rest.length !== 1 || rest[0] !== 'completions') return { status: 404, body: { error: { type: 'not_found', message: 'no such llm resource' } } };
  if (method !== 'POST') return { status: 405, body: { error: { type: 'method_not_allowed', message: 'use POST' } } };
  const b = jsonObject(body);
  if (!b) return { status: 400, body: { error: { type: 'invalid_request', message: 'body must be a JSON object' } } };
  const c = completion(b);
  return { status: 200, body: { choices: [{ text: c.text }], usage: c.usage } };
}

/** A streamed completion: one event per word, the last one carrying the usage. */
function streamCompletion(res: ServerResponse, body: Json): void {
  const c = completion(body);
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  for (const word of c.text.split(' ')) res.write(`data: ${JSON.stringify({ choices: [{ delta: word }] })}\n\n`);
  res.write(`data: ${JSON.stringify({ choices: [], usage: c.usage })}\n\n`);
  res.end('data: [DONE]\n\n');
}

function rpcError(id: unknown, code: number, message: string): Json {
  return { jsonrpc: '2.0', id: id ?? null, error: { code, message } };
}

function callTool(id: unknown, params: Json): Json {
  const name = params.name;
  const args = (params.arguments ?? {}) as Json;
  if (name === 'search_docs') {
    const query = String(args.query ?? '');
    const limit = typeof args.limit === 'number' ? args.limit : 3;
    const results = Array.from({ length: Math.max(0, Math.min(limit, 3)) }, (_, i) => ({
      doc_id: `doc-${i + 1}`,
      title: `Result ${i + 1} for "${query}"`,
      snippet: `Matched "${query}" in section ${i + 1}.`,
    }));
    return {
      jsonrpc: '2.0',
      id,
      result: {
        content: [{ type: 'text', text: `${results.length} documents matched "${query}"` }],
        structuredContent: { arguments: args, results, internal_notes: 'ranking model v7; index shard eu-2' },
        isError: false,
      },
    };
  }
  if (name === 'delete_doc') {
    return {
      jsonrpc: '2.0',
      id,
      result: { content: [{ type: 'text', text: `deleted ${String(args.doc_id)}` }], structuredContent: { arguments: args, deleted: args.doc_id ?? null }, isError: false },
    };
  }
  return rpcError(id, -32602, `unknown tool: ${String(name)}`);
}

/** One JSON-RPC message; `null` for notifications (no reply). */
function rpcOne(msg: unknown): Json | null {
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return rpcError(null, -32600, 'invalid request');
  const m = msg as Json;
  if (!('id' in m)) return null;
  const id = m.id;
  const params = (typeof m.params === 'object' && m.params !== null ? m.params : {}) as Json;
  switch (m.method) {
    case 'initialize':
      return {
        jsonrpc: '2.0',
        id,
        result: {
          protocolVersion: '2025-06-18',
          capabilities: { tools: { listChanged: false }, prompts: { listChanged: false }, resources: { listChanged: false, subscribe: false } },
          serverInfo: { name: 'portcullis-sample-docs', version: '1.0.0' },
        },
      };
    case 'ping':
      return { jsonrpc: '2.0', id, result: {} };
    case 'tools/list':
      return page(id, params, MCP_TOOLS, 'tools');
    case 'tools/call':
      return callTool(id, params);
    case 'prompts/list':
      return page(id, params, MCP_PROMPTS, 'prompts');
    case 'prompts/get':
      return getPrompt(id, params);
    case 'resources/list':
      return page(id, params, MCP_RESOURCES, 'resources', ({ uri, name, mimeType }) => ({ uri, name, mimeType }));
    case 'resources/templates/list':
      return page(id, params, MCP_TEMPLATES, 'resourceTemplates');
    case 'resources/read':
      return readResource(id, params);
    default:
      return rpcError(id, -32601, `method not found: ${String(m.method)}`);
  }
}

/**
 * Whether an MCP reply goes out as an event stream: the request's `Accept` ranks
 * `text/event-stream` above `application/json` (by q, then by order), or the `sse` query
 * parameter asks for it (a test hook).
 */
export function prefersEventStream(accept: string | undefined, query: URLSearchParams): boolean {
  if (query.get('sse') === '1') return true;
  if (!accept) return false;
  let best: { type: string; q: number } | null = null;
  for (const part of accept.split(',')) {
    const [type = '', ...params] = part.split(';').map((x) => x.trim().toLowerCase());
    if (type !== 'text/event-stream' && type !== 'application/json') continue;
    const qp = params.find((p) => p.startsWith('q='));
    const q = qp ? Number(qp.slice(2)) : 1;
    if (!Number.isFinite(q) || q <= 0) continue;
    if (!best || q > best.q) best = { type, q };
  }
  return best?.type === 'text/event-stream';
}

/** Replies as SSE `message` events, one per JSON-RPC response. */
function sendEvents(res: ServerResponse, replies: readonly Json[]): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  for (const r of replies) res.write(`event: message\ndata: ${JSON.stringify(r)}\n\n`);
  res.end();
}

function mcp(method: string, body: string): Reply | { status: number; batch: Json[] } {
  if (method !== 'POST') return { status: 405, body: { error: { type: 'method_not_allowed', message: 'MCP endpoint accepts POST' } } };
  let msg: unknown;
  try {
    msg = JSON.parse(body);
  } catch {
    return { status: 400, body: rpcError(null, -32700, 'parse error') };
  }
  if (Array.isArray(msg)) {
    const replies = msg.map(rpcOne).filter((r): r is Json => r !== null);
    return replies.length === 0 ? { status: 202, body: null } : { status: 200, batch: replies };
  }
  const reply = rpcOne(msg);
  return reply === null ? { status: 202, body: null } : { status: 200, body: reply };
}

function route(method: string, path: string, query: URLSearchParams, body: string, serial = 0): Reply | { status: number; batch: Json[] } {
  if (path === '/healthz') return { status: 200, body: { status: 'ok' } };
  if (path === '/weather/forecast') {
    if (method !== 'GET') return { status: 405, body: { error: { type: 'method_not_allowed', message: 'use GET' } } };
    const city = query.get('city');
    if (!city) return { status: 400, body: { error: { type: 'invalid_request', message: 'city is required' } } };
    return { status: 200, body: forecast(city) };
  }
  if (path === '/weather/payload') {
    const n = Number(query.get('bytes') ?? '1024');
    if (!Number.isInteger(n) || n < 0 || n > MAX_PAYLOAD_BYTES) {
      return { status: 400, body: { error: { type: 'invalid_request', message: `bytes must be an integer in 0..${MAX_PAYLOAD_BYTES}` } } };
    }
    return { status: 200, body: { bytes: n, data: filler(n) } };
  }
  if (path.startsWith('/tickets/tenants/')) {
    const [tenant, kind, ...rest] = path.slice('/tickets/tenants/'.length).split('/').filter((s) => s !== '');
    if (tenant && kind === 'tickets') return tickets(method, decodeURIComponent(tenant), rest, body, serial);
  }
  if (path === '/mcp/' || path === '/mcp') return mcp(method, body);
  const [section, ...rest] = path.split('/').filter((x) => x !== '');
  if (section === 'payments') return payments(method, rest, body);
  if (section === 'exports') return exportsRoute(method, rest);
  if (section === 'llm') return llm(method, rest, body);
  return { status: 404, body: { error: { type: 'not_found', message: `no route for ${method} ${path}` } } };
}

function send(res: ServerResponse, status: number, payload: unknown): void {
  const text = payload === null ? '' : JSON.stringify(payload);
  const headers: Record<string, string | number> = { 'content-length': Buffer.byteLength(text) };
  if (payload !== null) headers['content-type'] = 'application/json';
  res.writeHead(status, headers).end(text);
}

/** Starts the sample tool; `port: 0` picks a free port (read it back from the result). */
export async function startSampleTool(opts: { port: number; host?: string }): Promise<SampleTool> {
  const received: ReceivedRequest[] = [];
  const executed = new Map<string, number>();
  const custom = new Map<string, PathHandler>();

  const handle = (req: IncomingMessage, res: ServerResponse, body: string): void => {
    const url = new URL(req.url ?? '/', 'http://tool.local');
    const method = req.method ?? 'GET';
    const echo: ReceivedRequest = { method, path: req.url ?? '/', headers: { ...req.headers }, body };
    received.push(echo);
    if (received.length > RECEIVED_LIMIT) received.shift();
    const serial = method === 'POST' ? (executed.get(url.pathname) ?? 0) + 1 : 0;
    if (method === 'POST') executed.set(url.pathname, serial);
    const own = custom.get(url.pathname);
    if (own) {
      own(req, res, body);
      return;
    }
    if (url.pathname === '/llm/completions' && method === 'POST' && jsonObject(body)?.stream === true) {
      streamCompletion(res, jsonObject(body) as Json);
      return;
    }
    const reply = route(method, url.pathname, url.searchParams, body, serial);
    const isMcp = url.pathname === '/mcp/' || url.pathname === '/mcp';
    if (isMcp && reply.status === 200 && prefersEventStream(req.headers.accept, url.searchParams)) {
      sendEvents(res, 'batch' in reply ? reply.batch : reply.body ? [reply.body] : []);
      return;
    }
    if ('batch' in reply) {
      send(res, reply.status, reply.batch);
      return;
    }
    send(res, reply.status, reply.body === null ? null : { ...reply.body, request: echo });
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('end', () => {
      if (tooLarge) {
        send(res, 413, { error: { type: 'payload_too_large', message: `request body over ${MAX_BODY_BYTES} bytes` } });
        return;
      }
      try {
        handle(req, res, Buffer.concat(chunks).toString('utf8'));
      } catch (err) {
        send(res, 500, { error: { type: 'internal', message: (err as Error).message } });
      }
    });
    req.on('error', () => res.destroy());
  });
  // Above Envoy's upstream idle timeout, so Envoy always closes a pooled connection first.
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    received,
    executed,
    handle: (path, handler) => {
      custom.set(path, handler);
      return () => {
        if (custom.get(path) === handler) custom.delete(path);
      };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function isMain(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

if (isMain()) {
  const { values } = parseArgs({ options: { port: { type: 'string', default: '8081' }, host: { type: 'string', default: '127.0.0.1' } }, strict: true });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write('sample tool: --port must be a port number\n');
    process.exit(2);
  }
  startSampleTool({ port, host: values.host }).then(
    (tool) => {
      process.stdout.write(`sample tool listening on ${values.host}:${tool.port}\n`);
      const stop = (): void => {
        tool.close().then(() => process.exit(0), () => process.exit(1));
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    },
    (err: unknown) => {
      process.stderr.write(`sample tool: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}
