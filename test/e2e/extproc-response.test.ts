import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request as httpRequest, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { readAuditFile, startStack, type Stack } from '../helpers/index.js';
import { mintToken } from '../../src/identity/mint.js';

/**
 * Response-side inspection through the real Envoy: buffered JSON redaction, compressed upstream
 * bodies, SSE streaming redaction (split secrets, latency of the first event, blocks mid-stream),
 * response field filtering, and the per-principal DLP alert.
 */

const AWS_KEY = 'AKIAIOSFODNN7EXAMPLF';
const CARD = '4111 1111 1111 1111';
const BAD_CARD = '4111 1111 1111 1112';
const RSA_KEY = '-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7xQvq1u0n3c9Zkq8\nT2a4Q9nZ1xLw0pYh3s8R\n-----END RSA PRIVATE KEY-----';
const PKCS8_KEY = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----';
/** Threshold of DLP events per principal before an alert (lowered so the test stays short). */
const ALERT_THRESHOLD = 5;

let stack: Stack;
let token: string;

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** Every chunk as the client socket delivered it, with its arrival time (ms since the request). */
  chunks: { at: number; data: Buffer }[];
  /** Set when the connection failed or was reset mid-body. */
  error: Error | null;
}

/** A request through Envoy with node:http, so bodies and headers are seen exactly as sent. */
function raw(path: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<RawResponse> {
  const url = new URL(path, stack.envoyUrl);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method: opts.method ?? 'GET', headers: { authorization: `Bearer ${token}`, ...opts.headers }, agent: false },
      (res) => {
        const chunks: { at: number; data: Buffer }[] = [];
        let error: Error | null = null;
        res.on('data', (c: Buffer) => chunks.push({ at: performance.now() - t0, data: c }));
        res.on('error', (err) => (error = err));
        res.on('close', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks.map((c) => c.data)), chunks, error: error ?? (res.complete ? null : new Error('response ended before it was complete')) }),
        );
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function json(res: RawResponse): Record<string, unknown> {
  return JSON.parse(res.body.toString('utf8')) as Record<string, unknown>;
}

/** Answers like a typical JSON API: one body with its content-length. */
function sendJson(res: ServerResponse, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
}

/** Audit records written so far, parsed (the file sink appends asynchronously: poll). */
async function auditRecord(requestId: string): Promise<Record<string, unknown>> {
  const file = join(dirname(stack.configPath), 'audit.log');
  for (let i = 0; i < 50; i++) {
    const lines = readAuditFile(file);
    const found = lines.filter((r) => r.request_id === requestId);
    if (found.length > 0) {
      expect(found).toHaveLength(1);
      return found[0]!;
    }
    await sleep(50);
  }
  throw new Error(`no audit record for ${requestId}\n${stack.logs().slice(-4000)}`);
}

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${stack.adminUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

beforeAll(async () => {
  stack = await startStack({
    editConfig: (cfg) => {
      // RSA PEM keys block by default; redact them here so one response shows every marker.
      cfg.dlp = { overrides: { 'private_key.rsa': { action: 'redact' } } };
      cfg.alerting = { dlp_threshold: ALERT_THRESHOLD, window_s: 300 };
    },
  });
  token = await mintToken({ issuer: 'https://issuer.demo.portcullis', audience: 'portcullis', agent: 'helpdesk', user: 'alice', tenant: 'acme', roles: ['support'], ttlS: 300, privateJwkPath: stack.prepared.privateJwkPath });
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

describe('buffered JSON responses', () => {
  it('redacts an AWS key id, a PEM private key and a Luhn-valid card, leaves checksum failures, fixes content-length', async () => {
    stack.tool.handle('/weather/leak', (_req, res) =>
      sendJson(res, { aws: AWS_KEY, pem: RSA_KEY, card: CARD, not_a_card: BAD_CARD, ok: 'forecast: sunny' }),
    );
    const res = await raw('/tools/weather/leak');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers['content-length']).toBe(String(res.body.length));
    expect(res.headers['content-encoding']).toBeUndefined();
    expect(json(res)).toEqual({
      aws: '[REDACTED:aws.access_key_id]',
      pem: '[REDACTED:private_key.rsa]',
      card: '[REDACTED:pii.credit_card]',
      not_a_card: BAD_CARD,
      ok: 'forecast: sunny',
    });
    const text = res.body.toString('utf8');
    for (const secret of [AWS_KEY, 'MIIEowIBAAKCAQEA', CARD]) expect(text).not.toContain(secret);
    // The upstream was asked for an uncompressed body.
    expect(stack.tool.received.at(-1)?.headers['accept-encoding']).toBe('identity');

    const rec = await auditRecord(String(res.headers['x-request-id']));
    expect(rec.dlp).toEqual({
      request: { action: 'none', rules: [], count: 0 },
      response: { action: 'redacted', rules: ['aws.access_key_id', 'pii.credit_card', 'private_key.rsa'], count: 3 },
    });
  });

  it('blocks a response carrying a block-rule secret with 403 blocked_content and none of its bytes', async () => {
    stack.tool.handle('/weather/key', (_req, res) => sendJson(res, { note: 'here is the key', key: PKCS8_KEY }));
    const res = await raw('/tools/weather/key');
    expect(res.status).toBe(403);
    expect(res.headers['content-type']).toBe('application/json');
    const body = json(res);
    expect(body).toEqual({
      error: {
        type: 'blocked_content',
        message: 'the response of tool "weather" carried data that may not be returned',
        retryable: false,
        retry_after_s: null,
        request_id: res.headers['x-request-id'],
        rule: 'dlp.response',
        details: { rules: ['private_key.pkcs8'] },
      },
    });
    expect(res.body.toString('utf8')).not.toContain('MIIEvQIBADANBgkqhkiG9w0BAQEFAASC');
    const rec = await auditRecord(String(res.headers['x-request-id']));
    expect(rec.upstream_status).toBe(200);
    expect(rec.response_status).toBe(403);
    expect(rec.error).toEqual({ type: 'blocked_content', rule: 'dlp.response' });
    expect((rec.dlp as { response: unknown }).response).toEqual({ action: 'blocked', rules: ['private_key.pkcs8'], count: 1 });
  });

  for (const [encoding, compress] of [
    ['gzip', gzipSync],
    ['br', brotliCompressSync],
  ] as const) {
    it(`inspects a ${encoding} upstream body and returns it redacted and uncompressed`, async () => {
      const payload = JSON.stringify({ card: CARD, aws: AWS_KEY, filler: 'weather '.repeat(200) });
      stack.tool.handle(`/weather/${encoding}`, (_req, res) => {
        const body = compress(Buffer.from(payload));
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': encoding, 'content-length': body.length }).end(body);
      });
      const res = await raw(`/tools/weather/${encoding}`, { headers: { 'accept-encoding': 'gzip, br' } });
      expect(res.status).toBe(200);
      expect(res.headers['content-encoding']).toBeUndefined();
      expect(res.headers['content-length']).toBe(String(res.body.length));
      expect(json(res)).toEqual({ card: '[REDACTED:pii.credit_card]', aws: '[REDACTED:aws.access_key_id]', filler: 'weather '.repeat(200) });
    });
  }

  it('inspects a body too large for Envoy to buffer (3 MB) without stalling, and redacts its last bytes', async () => {
    const big = JSON.stringify({ rows: 'weather '.repeat(375_000), tail: AWS_KEY });
    stack.tool.handle('/weather/big', (_req, res) => res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(big) }).end(big));
    const t0 = performance.now();
    const res = await raw('/tools/weather/big');
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(res.status).toBe(200);
    expect(res.error).toBeNull();
    // The length is only known once the whole body is inspected, so it goes out chunked.
    expect(res.headers['content-length']).toBeUndefined();
    expect(res.headers['transfer-encoding']).toBe('chunked');
    expect(json(res)).toEqual({ rows: 'weather '.repeat(375_000), tail: '[REDACTED:aws.access_key_id]' });
  });

  it('inspects a JSON body of unknown length (chunked upstream, gzip) before any of it is delivered', async () => {
    stack.tool.handle('/weather/chunked', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      const zipped = gzipSync(`{"note":"first half, then ${AWS_KEY}"}`);
      res.write(zipped.subarray(0, 20));
      setTimeout(() => res.end(zipped.subarray(20)), 200);
    });
    const res = await raw('/tools/weather/chunked');
    expect(res.status).toBe(200);
    expect(res.headers['content-encoding']).toBeUndefined();
    expect(res.headers['content-length']).toBeUndefined();
    expect(json(res)).toEqual({ note: 'first half, then [REDACTED:aws.access_key_id]' });
    // Held until complete: the first half did not go out on its own before the rest was seen.
    expect(res.chunks[0]!.at).toBeGreaterThan(150);
  });

  it('fails closed on a compressed body it cannot decode', async () => {
    stack.tool.handle('/weather/badgz', (_req, res) =>
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }).end(Buffer.from(`not gzip ${AWS_KEY}`)),
    );
    const res = await raw('/tools/weather/badgz');
    expect(res.status).toBe(503);
    expect(res.body.toString('utf8')).not.toContain(AWS_KEY);
    expect(json(res)).toMatchObject({ error: { type: 'unavailable', retryable: true, request_id: res.headers['x-request-id'] } });
  });
});

describe('streamed (SSE) responses', () => {
  it('never delivers any part of a secret split across two chunks, and delivers the marker', async () => {
    let upstreamEnd = 0;
    stack.tool.handle('/weather/sse-split', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('data: key AKIAIOSFOD');
      setTimeout(() => {
        res.end('NN7EXAMPLF more\n\n');
        upstreamEnd = performance.now();
      }, 300);
    });
    const t0 = performance.now();
    const res = await raw('/tools/weather/sse-split');
    expect(res.status).toBe(200);
    expect(res.error).toBeNull();
    expect(res.headers['content-type']).toBe('text/event-stream');
    expect(res.headers['content-length']).toBeUndefined();
    expect(res.body.toString('utf8')).toBe('data: key [REDACTED:aws.access_key_id] more\n\n');
    // No chunk, and no concatenation of received bytes, ever carries a piece of the key.
    const seen = res.body.toString('latin1');
    for (const piece of ['AKIA', 'IOSFOD', 'NN7EX', 'EXAMPLF']) expect(seen).not.toContain(piece);
    for (const c of res.chunks) expect(c.data.toString('latin1')).not.toMatch(/AKIA|IOSFOD|NN7|EXAMPLF/);
    // The whole key only existed once the upstream finished; it took the redactor no extra wait.
    expect(upstreamEnd - t0).toBeGreaterThanOrEqual(290);
    const rec = await auditRecord(String(res.headers['x-request-id']));
    expect((rec.dlp as { response: unknown }).response).toEqual({ action: 'redacted', rules: ['aws.access_key_id'], count: 1 });
  });

  it('delivers the first event well before the upstream ends the stream', async () => {
    let secondWrittenAt = 0;
    const t0 = performance.now();
    stack.tool.handle('/weather/sse-slow', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('event: forecast\ndata: {"day":0,"summary":"sunny"}\n\n');
      setTimeout(() => {
        secondWrittenAt = performance.now() - t0;
        res.end('event: forecast\ndata: {"day":1,"summary":"rain"}\n\n');
      }, 1000);
    });
    const res = await raw('/tools/weather/sse-slow');
    expect(res.status).toBe(200);
    expect(res.body.toString('utf8')).toBe('event: forecast\ndata: {"day":0,"summary":"sunny"}\n\nevent: forecast\ndata: {"day":1,"summary":"rain"}\n\n');
    const first = res.chunks[0]!;
    expect(first.data.toString('utf8')).toContain('"summary":"sunny"');
    expect(secondWrittenAt).toBeGreaterThan(950);
    // The first event arrived while the upstream was still waiting to send the second.
    expect(first.at).toBeLessThan(500);
    expect(res.chunks.at(-1)!.at).toBeGreaterThan(950);
  });

  it('ends a stream that turns to a block-rule secret with an error event, after the earlier events', async () => {
    stack.tool.handle('/weather/sse-block', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: first event\n\n');
      setTimeout(() => res.write(`data: ${PKCS8_KEY.split('\n')[0]}\n`), 100);
      setTimeout(() => res.end(`data: ${PKCS8_KEY.split('\n').slice(1).join('\ndata: ')}\n\ndata: after\n\n`), 200);
    });
    const res = await raw('/tools/weather/sse-block');
    expect(res.status).toBe(200);
    const text = res.body.toString('utf8');
    expect(text.startsWith('data: first event\n\n')).toBe(true);
    expect(text).not.toContain('MIIEvQIBADANBgkqhkiG9w0BAQEFAASC');
    expect(text).not.toContain('data: after');
    const errorEvent = /event: error\ndata: (.*)\n\n$/.exec(text);
    expect(errorEvent).not.toBeNull();
    expect(JSON.parse(errorEvent![1]!)).toMatchObject({ error: { type: 'blocked_content', rule: 'dlp.response', request_id: res.headers['x-request-id'] } });
    const rec = await auditRecord(String(res.headers['x-request-id']));
    expect((rec.dlp as { response: { action: string; rules: string[] } }).response).toMatchObject({ action: 'blocked', rules: ['private_key.pkcs8'] });
    expect(rec.error).toEqual({ type: 'blocked_content', rule: 'dlp.response' });
  });

  it('refuses a compressed event stream (it could not be inspected) instead of passing it', async () => {
    stack.tool.handle('/weather/sse-gz', (_req, res) =>
      res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'gzip' }).end(gzipSync(`data: ${AWS_KEY}\n\n`)),
    );
    const res = await raw('/tools/weather/sse-gz');
    expect(res.status).toBe(503);
    expect(json(res)).toMatchObject({ error: { type: 'unavailable', request_id: res.headers['x-request-id'] } });
  });
});

describe('response field filtering', () => {
  const call = { jsonrpc: '2.0', id: 41, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'vpn', tenant: 'acme' } } };

  it('drops result.structuredContent.internal_notes from MCP results', async () => {
    const res = await raw('/tools/docs/', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(call) });
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe(String(res.body.length));
    const body = json(res) as { id: number; result: { structuredContent: Record<string, unknown> } };
    expect(body.id).toBe(41);
    expect(body.result.structuredContent.results).toHaveLength(3);
    expect(body.result.structuredContent).not.toHaveProperty('internal_notes');
    expect(res.body.toString('utf8')).not.toContain('ranking model v7');
  });

  it('drops the field before DLP runs, so a secret inside it is neither returned nor counted', async () => {
    const remove = stack.tool.handle('/mcp/', (_req, res) =>
      sendJson(res, { jsonrpc: '2.0', id: 42, result: { content: [{ type: 'text', text: 'ok' }], structuredContent: { hits: 1, internal_notes: `debug key ${AWS_KEY}` } } }),
    );
    try {
      const res = await raw('/tools/docs/', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...call, id: 42 }) });
      expect(res.status).toBe(200);
      expect(json(res)).toEqual({ jsonrpc: '2.0', id: 42, result: { content: [{ type: 'text', text: 'ok' }], structuredContent: { hits: 1 } } });
      const rec = await auditRecord(String(res.headers['x-request-id']));
      expect((rec.dlp as { response: unknown }).response).toEqual({ action: 'none', rules: [], count: 0 });
    } finally {
      remove();
    }
  });
});

describe('DLP alerting', () => {
  it('raises portcullis_dlp_alerts_total once a principal crosses the threshold within the window', async () => {
    const bob = await mintToken({ issuer: 'https://issuer.demo.portcullis', audience: 'portcullis', agent: 'helpdesk', user: 'bob', tenant: 'acme', roles: ['support'], ttlS: 300, privateJwkPath: stack.prepared.privateJwkPath });
    stack.tool.handle('/weather/card', (_req, res) => sendJson(res, { card: CARD }));
    const labels = 'tool="weather"';
    const before = await metric('portcullis_dlp_alerts_total', labels);
    // One redaction per call: up to the threshold nothing fires.
    for (let i = 0; i < ALERT_THRESHOLD; i++) {
      const res = await raw('/tools/weather/card', { headers: { authorization: `Bearer ${bob}` } });
      expect(json(res)).toEqual({ card: '[REDACTED:pii.credit_card]' });
    }
    await sleep(50);
    expect(await metric('portcullis_dlp_alerts_total', labels)).toBe(before);
    await raw('/tools/weather/card', { headers: { authorization: `Bearer ${bob}` } });
    await sleep(50);
    expect(await metric('portcullis_dlp_alerts_total', labels)).toBe(before + 1);
    // Once per window per principal, not once per call.
    await raw('/tools/weather/card', { headers: { authorization: `Bearer ${bob}` } });
    await sleep(50);
    expect(await metric('portcullis_dlp_alerts_total', labels)).toBe(before + 1);
    // Logs are written asynchronously in small batches: wait (bounded) for the line.
    for (let i = 0; i < 50 && !/"principal":"bob".*DLP alert/.test(stack.logs()); i++) await sleep(100);
    expect(stack.logs()).toMatch(/"principal":"bob".*DLP alert/);
  });
});
