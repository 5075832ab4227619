import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { checkHostAndOrigin, LOOPBACK_HOSTNAMES } from './rebinding.js';
import { startConformanceServer, type ConformanceServer } from './server.js';
import { worsenedChecks, type Check } from './suite.js';
import { TOOL_INPUT_SCHEMAS } from './tools.js';

/**
 * The conformance target on its own: its DNS-rebinding guard tried the ways a hostile page or a
 * confused proxy would dress up a foreign name, and its session handling refusing what the
 * streamable HTTP transport says servers must refuse.
 */

describe('checkHostAndOrigin', () => {
  const ok = (headers: Record<string, string>, extra: string[] = []): boolean => checkHostAndOrigin(headers, [...LOOPBACK_HOSTNAMES, ...extra]) === null;

  it('accepts the loopback names on any port, in any case, with or without a loopback Origin', () => {
    expect(ok({ host: '127.0.0.1:8080' })).toBe(true);
    expect(ok({ host: 'LocalHost:1' })).toBe(true);
    expect(ok({ host: '[::1]:3000', origin: 'http://localhost:5173' })).toBe(true);
    expect(ok({ host: 'docs.tools.internal' }, ['docs.tools.internal'])).toBe(true);
  });

  it('refuses a foreign Host, including names that merely start or end like a loopback name', () => {
    for (const host of ['evil.example.com', 'localhost.evil.example.com', '127.0.0.1.nip.io', 'evil-localhost', '127.0.0.2:80', '']) {
      expect(ok({ host }), host).toBe(false);
    }
    expect(ok({})).toBe(false);
  });

  it('refuses a foreign Origin behind a loopback Host (the rebinding case), and origins that hide their host', () => {
    for (const origin of ['http://evil.example.com', 'http://localhost@evil.example.com', 'null', 'file://localhost/x', 'http://localhost.evil.example.com', 'not a url']) {
      expect(ok({ host: '127.0.0.1:1', origin }), origin).toBe(false);
    }
  });
});

let target: ConformanceServer;

function post(headers: Record<string, string>, body: unknown): Promise<{ status: number; text: string; headers: Record<string, string | string[] | undefined> }> {
  const url = new URL(target.url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString('utf8')));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'test', version: '1' } } };

describe('conformance target', () => {
  beforeAll(async () => {
    target = await startConformanceServer();
  });
  afterAll(async () => {
    await target?.close();
  });

  it('refuses an initialize whose Host or Origin is foreign, before any session exists', async () => {
    const byHost = await post({ host: 'evil.example.com' }, initialize);
    expect(byHost.status).toBe(403);
    expect(JSON.parse(byHost.text)).toMatchObject({ jsonrpc: '2.0', error: { code: -32000 }, id: null });
    const byOrigin = await post({ origin: 'http://evil.example.com' }, initialize);
    expect(byOrigin.status).toBe(403);
    expect(target.sessions()).toBe(0);
  });

  it('starts a session only with initialize, and refuses ids it never issued', async () => {
    const call = { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'test_simple_text', arguments: {} } };
    expect((await post({}, call)).status).toBe(400);
    expect((await post({ 'mcp-session-id': 'forged' }, call)).status).toBe(404);
    const init = await post({}, initialize);
    expect(init.status).toBe(200);
    expect(typeof init.headers['mcp-session-id']).toBe('string');
  });

  it('publishes the 2020-12 schema as written and derives the others from their argument types', () => {
    expect(TOOL_INPUT_SCHEMAS.json_schema_2020_12_tool).toMatchObject({ $schema: 'https://json-schema.org/draft/2020-12/schema', $defs: { address: {} }, additionalProperties: false });
    expect(TOOL_INPUT_SCHEMAS.test_sampling).toMatchObject({ type: 'object', properties: { prompt: { type: 'string' } }, required: ['prompt'] });
  });
});

describe('stateless conformance target', () => {
  let stateless: ConformanceServer;
  beforeAll(async () => {
    stateless = await startConformanceServer({ stateless: true });
  });
  afterAll(async () => {
    await stateless?.close();
  });

  it('answers the same request id on many connections at once, each with its own result', async () => {
    const url = stateless.url;
    const bodies = Array.from({ length: 20 }, (_, i) => ({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'json_schema_2020_12_tool', arguments: { name: `caller-${i}` } } }));
    const answers = await Promise.all(
      bodies.map(async (b) => {
        const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: JSON.stringify(b) });
        return (await r.json()) as { id: number; result: { content: { text: string }[] } };
      }),
    );
    // The tool echoes its arguments: every caller gets the answer to its own request.
    expect(answers.map((a) => [a.id, a.result.content[0]?.text])).toEqual(bodies.map((_, i) => [7, `JSON Schema 2020-12 tool called with: {"name":"caller-${i}"}`]));
  });
});

describe('worsenedChecks', () => {
  const c = (id: string, status: Check['status']): Check => ({ id, status });

  it('reports checks that came out worse or not at all, by each id\'s best outcome', () => {
    const direct = [c('call', 'SUCCESS'), c('event', 'INFO'), c('event', 'SUCCESS'), c('priming', 'WARNING'), c('stream', 'INFO')];
    const gateway = [c('call', 'INFO'), c('event', 'INFO'), c('event', 'SUCCESS'), c('priming', 'WARNING'), c('refused', 'WARNING')];
    expect(worsenedChecks(direct, gateway)).toEqual(['call (SUCCESS -> INFO)', 'stream (INFO -> missing)']);
    expect(worsenedChecks(direct, direct)).toEqual([]);
  });
});
