import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { MemoryEventStore } from './eventStore.js';
import { installPrompts } from './prompts.js';
import { checkHostAndOrigin, LOOPBACK_HOSTNAMES } from './rebinding.js';
import { installResources } from './resources.js';
import { installTools } from './tools.js';

/**
 * The project's MCP conformance target: a streamable HTTP MCP server made with the official SDK
 * that implements everything the conformance suite's server scenarios exercise (tools of every
 * content kind, logging, progress, sampling, elicitation, resources and templates, subscriptions,
 * prompts, completion, resumable SSE streams, DNS-rebinding protection). Stateful: one McpServer
 * and transport per session, found by `Mcp-Session-Id`.
 */

/** Options for {@link startConformanceServer}. */
export interface ConformanceServerOptions {
  /** Port on 127.0.0.1; 0 (default) picks a free one. */
  port?: number;
  /**
   * Host names accepted in `Host` and `Origin` besides the loopback names, e.g. the name a
   * gateway rewrites `Host` to.
   */
  extraHostnames?: string[];
  /**
   * No sessions: every POST gets its own server and transport and a JSON (not SSE) response, as
   * a horizontally scaled MCP server runs. GET and DELETE are refused. For load tests, where one
   * client sends the same request (same id) on many connections at once.
   */
  stateless?: boolean;
}

/** A running conformance target. */
export interface ConformanceServer {
  /** The MCP endpoint, `http://127.0.0.1:PORT/mcp`. */
  url: string;
  port: number;
  /** Sessions currently open. */
  sessions(): number;
  close(): Promise<void>;
}

/** MCP endpoint paths: `/mcp` directly, `/mcp/` behind a prefix-rewriting proxy. */
const PATHS = new Set(['/mcp', '/mcp/']);
/** Largest POST body read. */
const MAX_BODY = 1 << 20;
/** SSE `retry` the priming event suggests: short, so resumption scenarios finish quickly. */
const RETRY_MS = 200;

const SERVER_INFO = { name: 'portcullis-conformance-target', version: '1.0.0' };

/** One session's MCP server, with every feature installed. */
function newMcpServer(): McpServer {
  const mcp = new McpServer(SERVER_INFO, {
    capabilities: {
      tools: { listChanged: true },
      resources: { subscribe: true, listChanged: true },
      prompts: { listChanged: true },
      logging: {},
      completions: {},
    },
  });
  installTools(mcp.server);
  installResources(mcp);
  installPrompts(mcp);
  return mcp;
}

/** A JSON-RPC error with no id, for requests refused before any message was read. */
function refuse(res: ServerResponse, status: number, code: number, message: string): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

/** The request body as JSON; `undefined` when it is not JSON; throws past {@link MAX_BODY}. */
async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new Error('body too large');
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/** Starts the target on 127.0.0.1. */
export async function startConformanceServer(opts: ConformanceServerOptions = {}): Promise<ConformanceServer> {
  const hostnames = [...LOOPBACK_HOSTNAMES, ...(opts.extraHostnames ?? [])];
  const transports = new Map<string, StreamableHTTPServerTransport>();

  /** A new session for an `initialize` POST; it registers itself once the SDK assigns its id. */
  async function openSession(req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    const mcp = newMcpServer();
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore: new MemoryEventStore(),
      retryInterval: RETRY_MS,
      onsessioninitialized: (id) => void transports.set(id, transport),
    });
    transport.onclose = () => {
      if (transport.sessionId) transports.delete(transport.sessionId);
      void mcp.close();
    };
    await mcp.connect(transport);
    await transport.handleRequest(req, res, body);
  }

  /**
   * Stateless answers: each request gets a transport of its own (two requests at once may carry
   * the same JSON-RPC id) and a server that nothing else uses while it runs, taken from a pool of
   * idle servers rather than built anew, since building one costs more than answering a call.
   */
  const idle: McpServer[] = [];
  async function answerStateless(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return refuse(res, 405, -32000, 'this server is stateless: POST only');
    }
    const body = await readJson(req);
    if (body === undefined) return refuse(res, 400, -32700, 'the body is not JSON');
    const mcp = idle.pop() ?? newMcpServer();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    // Closing the transport detaches the server, which can then serve another request.
    res.on('close', () => void transport.close().then(() => idle.push(mcp)));
    await mcp.connect(transport);
    await transport.handleRequest(req, res, body);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://target').pathname;
    if (!PATHS.has(path)) return refuse(res, 404, -32601, `no MCP endpoint at ${path}`);
    const verdict = checkHostAndOrigin(req.headers, hostnames);
    if (verdict) return refuse(res, verdict.status, -32000, verdict.reason);
    if (opts.stateless) return answerStateless(req, res);

    const header = req.headers['mcp-session-id'];
    const sessionId = typeof header === 'string' ? header : undefined;
    const transport = sessionId ? transports.get(sessionId) : undefined;
    if (sessionId && !transport) return refuse(res, 404, -32001, 'session not found: initialize a new session');

    if (req.method === 'POST') {
      const body = await readJson(req);
      if (body === undefined) return refuse(res, 400, -32700, 'the body is not JSON');
      if (transport) return transport.handleRequest(req, res, body);
      if (isInitializeRequest(body)) return openSession(req, res, body);
      return refuse(res, 400, -32000, 'no Mcp-Session-Id: only initialize may start a session');
    }
    if (req.method === 'GET' || req.method === 'DELETE') {
      if (!transport) return refuse(res, 400, -32000, 'Mcp-Session-Id is required');
      return transport.handleRequest(req, res);
    }
    res.setHeader('allow', 'GET, POST, DELETE');
    return refuse(res, 405, -32000, `method ${req.method ?? ''} not allowed`);
  }

  const http: HttpServer = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => refuse(res, 500, -32603, err instanceof Error ? err.message : 'internal error'));
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (http.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}/mcp`,
    port,
    sessions: () => transports.size,
    async close() {
      await Promise.all([...transports.values()].map((t) => t.close()));
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
