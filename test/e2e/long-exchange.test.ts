import { afterAll, beforeAll, expect, it } from 'vitest';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { resolve } from 'node:path';
import { readAuditFile, startStack, type Stack } from '../helpers/index.js';
import { token as demoToken } from './authz-support.js';

/**
 * Exchanges that last about a minute, through the real Envoy and the shipped envoy.yaml. Agents
 * hold MCP calls and SSE streams open that long routinely; the end of such an exchange must not
 * take Envoy down (with graceful ext_proc close enabled, Envoy 1.38-1.40 crash there), and the
 * docs MCP route must not cut them at a fixed timeout. The scenarios run concurrently, so the file
 * takes about one exchange's time.
 */

/** Long enough to pass the ~50 s at which the crash appeared, and the old 60 s route timeout. */
const LONG_MS = 62_000;
const SSE_EVERY_MS = 10_000;

let stack: Stack;
let token: string;

beforeAll(async () => {
  stack = await startStack();
  token = await demoToken(stack);
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

interface Outcome {
  status: number;
  body: string;
  /** The response ended cleanly (not reset). */
  complete: boolean;
  requestId: string | null;
  /** The request was aborted by this client. */
  aborted: boolean;
}

/** One MCP request through Envoy; `abortAfterMs` makes this client give up, like an agent would. */
function mcp(opts: { method: 'GET' | 'POST'; id: string; accept: string; abortAfterMs?: number }): Promise<Outcome> {
  const body = opts.method === 'POST' ? JSON.stringify({ jsonrpc: '2.0', id: opts.id, method: 'tools/call', params: { name: 'search_docs', arguments: { query: opts.id, tenant: 'acme' } } }) : undefined;
  return new Promise((done, reject) => {
    let res: IncomingMessage | null = null;
    let aborted = false;
    const req = httpRequest(
      new URL(`/tools/docs/?case=${opts.id}`, stack.envoyUrl),
      {
        method: opts.method,
        agent: false,
        // No Mcp-Session-Id: the gateway forwards only session ids it issued (this tool issues none).
        headers: { authorization: `Bearer ${token}`, accept: opts.accept, ...(body ? { 'content-type': 'application/json' } : {}) },
      },
      (r) => {
        res = r;
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('error', () => undefined);
        r.on('close', () =>
          done({ status: r.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), complete: r.complete, requestId: (r.headers['x-request-id'] as string | undefined) ?? null, aborted }),
        );
      },
    );
    req.on('error', (err) => {
      if (aborted) done({ status: 0, body: '', complete: false, requestId: null, aborted });
      else reject(err);
    });
    if (opts.abortAfterMs !== undefined) {
      setTimeout(() => {
        aborted = true;
        if (res) res.destroy();
        else req.destroy();
      }, opts.abortAfterMs);
    }
    req.end(body);
  });
}

function auditFile(): string {
  return resolve(stack.configPath, '..', 'audit.log');
}

/** Whether Envoy still answers its admin port and never logged a crash. */
async function envoyAlive(): Promise<{ ready: string; crashed: boolean }> {
  const ready = await fetch(`${stack.envoyAdminUrl}/ready`, { signal: AbortSignal.timeout(2_000) })
    .then((r) => r.text())
    .catch((err: Error) => `unreachable: ${err.message}`);
  return { ready: ready.trim(), crashed: /Caught Segmentation fault|Caught Aborted|backtrace/.test(stack.logs()) };
}

it(
  'MCP calls and SSE streams held for a minute end cleanly, aborted ones too, and Envoy keeps serving',
  async () => {
    // The docs tool, scripted per case: a JSON answer after LONG_MS, an SSE answer with an event
    // every SSE_EVERY_MS until LONG_MS, a server-to-client GET stream the client closes, and a call
    // that is never answered (the client gives up).
    stack.tool.handle('/mcp/', (req, res, body) => {
      const id = new URL(req.url ?? '/', 'http://tool').searchParams.get('case') ?? '';
      const sse = (): void => {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
        let n = 0;
        const timer = setInterval(() => {
          n += 1;
          res.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/progress', params: { progress: n } })}\n\n`);
        }, SSE_EVERY_MS);
        res.on('close', () => clearInterval(timer));
        if (id === 'sse-post') {
          setTimeout(() => {
            clearInterval(timer);
            res.end(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: 'done' }] } })}\n\n`);
          }, LONG_MS);
        }
      };
      if (id === 'json') {
        const rpc = JSON.parse(body) as { id: string };
        setTimeout(() => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ jsonrpc: '2.0', id: rpc.id, result: { content: [{ type: 'text', text: 'slow answer' }] } }));
        }, LONG_MS);
      } else if (id === 'sse-post' || id === 'sse-get') {
        sse();
      }
      // 'abandoned': never answered; the agent gives up.
    });

    const auditBefore = readAuditFile(auditFile()).length;
    const [json, ssePost, sseGet, abandoned] = await Promise.all([
      mcp({ method: 'POST', id: 'json', accept: 'application/json, text/event-stream' }),
      mcp({ method: 'POST', id: 'sse-post', accept: 'application/json, text/event-stream' }),
      mcp({ method: 'GET', id: 'sse-get', accept: 'text/event-stream', abortAfterMs: LONG_MS }),
      mcp({ method: 'POST', id: 'abandoned', accept: 'application/json, text/event-stream', abortAfterMs: LONG_MS }),
    ]);

    // A minute-long JSON answer arrives whole (no 60 s route timeout any more).
    expect(json.status, json.body).toBe(200);
    expect(json.complete).toBe(true);
    expect(JSON.parse(json.body)).toMatchObject({ id: 'json', result: { content: [{ text: 'slow answer' }] } });
    // The SSE answer streamed every event and the final result, inspected on the way.
    expect(ssePost.status, ssePost.body).toBe(200);
    expect(ssePost.complete).toBe(true);
    expect(ssePost.body.match(/notifications\/progress/g)?.length).toBeGreaterThanOrEqual(Math.floor(LONG_MS / SSE_EVERY_MS) - 1);
    expect(ssePost.body).toContain('"result"');
    // The GET stream stayed open until the agent closed it.
    expect(sseGet.status).toBe(200);
    expect(sseGet.aborted).toBe(true);
    expect(sseGet.body.match(/notifications\/progress/g)?.length).toBeGreaterThanOrEqual(Math.floor(LONG_MS / SSE_EVERY_MS) - 1);
    expect(abandoned.aborted).toBe(true);

    // Give Envoy the moment in which it used to crash (the end of the ext_proc stream).
    await new Promise((r) => setTimeout(r, 1_500));
    const alive = await envoyAlive();
    expect(alive.crashed, stack.logs().slice(-4_000)).toBe(false);
    expect(alive.ready).toBe('LIVE');

    // And it still serves: a fresh call goes through the whole chain.
    stack.tool.handle('/mcp/', (_req, res, body) => {
      const rpc = JSON.parse(body) as { id: string };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', id: rpc.id, result: { content: [{ type: 'text', text: 'fresh' }] } }));
    });
    const fresh = await mcp({ method: 'POST', id: 'fresh', accept: 'application/json' });
    expect(fresh.status, fresh.body).toBe(200);
    expect(fresh.body).toContain('fresh');

    // Every long exchange, the abandoned ones included, left its audit record (the file sink
    // writes in batches: wait for it, bounded).
    let records: Record<string, unknown>[] = [];
    for (let i = 0; i < 50; i++) {
      records = readAuditFile(auditFile()).slice(auditBefore).filter((a) => a.tool === 'docs');
      if (records.length >= 5) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const r of [json, ssePost]) expect(records.some((a) => a.request_id === r.requestId)).toBe(true);
    expect(records.length, JSON.stringify(records.map((a) => [a.method, a.response_status, a.error]))).toBe(5);
  },
  LONG_MS + 60_000,
);
