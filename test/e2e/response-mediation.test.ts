import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request as httpRequest, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import { connect as http2Connect } from 'node:http2';
import { dirname, join } from 'node:path';
import { readAuditFile, startStack, type Stack } from '../helpers/index.js';
import { token as demoToken } from './authz-support.js';

/**
 * Every byte that leaves is inspected, tried the way a tool (or whoever controls one) would get
 * data past the gateway: secrets in response headers (GET, HEAD, 204, HTTP/2), bodies that
 * declare a non-text type or another charset, the gateway's own injected credential echoed
 * back, field filtering dodged with a batch or an SSE reply, and large downloads that would
 * starve other agents' calls.
 */

const AWS_KEY = 'AKIA2OGYBAH6TQWERTYU';
const GITHUB_PAT = 'ghp_R4nd0mLooking1234567890abcdefABCDEFG';
const PEM = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----';
/** Response bytes held for inspection across all streams, lowered so the budget test stays small. */
const BUDGET = 8 * 1024 * 1024;

let stack: Stack;
let token: string;
let weatherKey: string;

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  error: Error | null;
}

function raw(path: string, opts: { method?: string; headers?: Record<string, string>; body?: string; bearer?: string } = {}): Promise<RawResponse> {
  const url = new URL(path, stack.envoyUrl);
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: opts.method ?? 'GET', headers: { authorization: `Bearer ${opts.bearer ?? token}`, ...opts.headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let error: Error | null = null;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => (error = err));
      res.on('close', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), error: error ?? (res.complete ? null : new Error('incomplete response')) }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** The same request over HTTP/2 (prior knowledge, as gRPC-style agents connect). */
function rawH2(path: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const session = http2Connect(stack.envoyUrl);
    session.on('error', reject);
    const req = session.request({ ':method': 'GET', ':path': path, authorization: `Bearer ${token}` });
    const chunks: Buffer[] = [];
    let headers: Record<string, string | string[] | undefined> = {};
    req.on('response', (h) => (headers = h as Record<string, string | string[] | undefined>));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      session.close();
      resolve({ status: Number(headers[':status']), headers, body: Buffer.concat(chunks) });
    });
    req.on('error', reject);
    req.end();
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The completion record of a request (the file sink appends asynchronously: poll). */
async function auditRecord(requestId: string): Promise<Record<string, unknown>> {
  const file = join(dirname(stack.configPath), 'audit.log');
  for (let i = 0; i < 60; i++) {
    const found = readAuditFile(file).filter((r) => r.request_id === requestId);
    if (found.length > 0) return found.at(-1)!;
    await sleep(50);
  }
  throw new Error(`no audit record for ${requestId}\n${stack.logs().slice(-4000)}`);
}

function leakyHeaders(res: ServerResponse): void {
  res.setHeader('x-debug-token', `upstream key ${AWS_KEY}`);
  res.setHeader('set-cookie', ['theme=dark; Path=/', `session=${GITHUB_PAT}; HttpOnly`]);
}

beforeAll(async () => {
  stack = await startStack({
    editConfig: (cfg) => {
      cfg.inspect = { ...(cfg.inspect as object), response_memory_budget_bytes: BUDGET };
      const tools = cfg.tools as { name: string; response?: Record<string, unknown> }[];
      // A second, DLP-free view of the weather tool's upstream, to show the scrub needs no DLP.
      const weather = tools.find((t) => t.name === 'weather')!;
      weather.response = { ...weather.response, binary: 'inspect' };
      // A CRM-like tool whose job is returning e-mail addresses.
      const tickets = tools.find((t) => t.name === 'tickets')!;
      tickets.response = { ...tickets.response, dlp_overrides: { 'pii.email': { action: 'flag' } } };
    },
  });
  token = await demoToken(stack);
  weatherKey = stack.prepared.secrets['secrets/weather-api-key']!;
  expect(weatherKey.length).toBeGreaterThan(8);
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

describe('response headers', () => {
  it('redacts secrets in any header value on a JSON GET, keeping the other cookie intact', async () => {
    stack.tool.handle('/weather/h-json', (_req, res) => {
      leakyHeaders(res);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
    const res = await raw('/tools/weather/h-json');
    expect(res.status).toBe(200);
    expect(res.headers['x-debug-token']).toBe('upstream key [REDACTED:aws.access_key_id]');
    const cookies = res.headers['set-cookie'] ?? [];
    expect(cookies).toContain('theme=dark; Path=/');
    expect(cookies.join('\n')).not.toContain(GITHUB_PAT);
    expect(cookies.join('\n')).toContain('[REDACTED:');
    const rec = await auditRecord(String(res.headers['x-request-id']));
    expect((rec.dlp as { response: { action: string; rules: string[] } }).response.action).toBe('redacted');
    expect((rec.dlp as { response: { rules: string[] } }).response.rules).toContain('aws.access_key_id');
  });

  for (const [name, status, method] of [
    ['HEAD', 200, 'HEAD'],
    ['204 No Content', 204, 'GET'],
  ] as const) {
    it(`redacts header secrets on a response without a body (${name})`, async () => {
      stack.tool.handle(`/weather/h-${status}`, (_req, res) => {
        leakyHeaders(res);
        res.writeHead(status, { 'content-type': 'application/json' }).end();
      });
      const res = await raw(`/tools/weather/h-${status}`, { method });
      expect(res.status).toBe(status);
      expect(res.headers['x-debug-token']).toBe('upstream key [REDACTED:aws.access_key_id]');
      expect((res.headers['set-cookie'] ?? []).join('\n')).not.toContain(GITHUB_PAT);
    });
  }

  it('redacts header secrets over HTTP/2 too', async () => {
    stack.tool.handle('/weather/h-h2', (_req, res) => {
      leakyHeaders(res);
      res.writeHead(200, { 'content-type': 'text/plain' }).end('fine');
    });
    const res = await rawH2('/tools/weather/h-h2');
    expect(res.status).toBe(200);
    expect(res.headers['x-debug-token']).toBe('upstream key [REDACTED:aws.access_key_id]');
    expect(JSON.stringify(res.headers)).not.toContain(GITHUB_PAT);
    expect(JSON.stringify(res.headers)).not.toContain(AWS_KEY);
  });

  it('blocks a response whose header carries a block-rule secret, before any of it leaves', async () => {
    stack.tool.handle('/weather/h-pem', (_req, res) => {
      res.setHeader('x-key', PEM.replace(/\n/g, ' '));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
    const res = await raw('/tools/weather/h-pem');
    expect(res.status).toBe(403);
    expect(res.headers['x-key']).toBeUndefined();
    expect(JSON.parse(res.body.toString('utf8'))).toMatchObject({ error: { type: 'blocked_content', rule: 'dlp.response' } });
  });
});

describe('bodies of every content type', () => {
  it('masks an AWS key inside an application/octet-stream body in place (same length, other bytes untouched)', async () => {
    const blob = Buffer.concat([Buffer.from([0x00, 0xff, 0x13, 0x80, 0xfe]), Buffer.from(`deploy key ${AWS_KEY}`), Buffer.from([0x00, 0xc3, 0x28, 0x99])]);
    stack.tool.handle('/weather/bin', (_req, res) => res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.length }).end(blob));
    const res = await raw('/tools/weather/bin');
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(blob.length);
    expect(res.body.includes(Buffer.from(AWS_KEY))).toBe(false);
    expect(res.body.subarray(0, 5)).toEqual(blob.subarray(0, 5));
    expect(res.body.subarray(-4)).toEqual(blob.subarray(-4));
    expect(res.body.toString('latin1')).toContain('deploy key ');
    const rec = await auditRecord(String(res.headers['x-request-id']));
    expect((rec.dlp as { response: { action: string; rules: string[] } }).response).toMatchObject({ action: 'redacted', rules: ['aws.access_key_id'] });
  });

  it('blocks a PEM private key inside a binary body', async () => {
    const blob = Buffer.concat([Buffer.from([0x89, 0x50, 0x00, 0xff]), Buffer.from(PEM), Buffer.from([0x00, 0x01])]);
    stack.tool.handle('/weather/bin-pem', (_req, res) => res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.length }).end(blob));
    const res = await raw('/tools/weather/bin-pem');
    expect(res.status).toBe(403);
    expect(res.body.toString('latin1')).not.toContain('MIIEvQIBADAN');
  });

  for (const ct of ['multipart/mixed; boundary=xyz', 'application/x-json-stream', 'application/vnd.acme.report']) {
    it(`redacts a secret in a ${ct.split(';')[0]} body`, async () => {
      const body = ct.startsWith('multipart') ? `--xyz\r\ncontent-type: text/plain\r\n\r\nkey ${AWS_KEY}\r\n--xyz--\r\n` : `{"n":1}\n{"key":"${AWS_KEY}"}\n`;
      const path = `/weather/ct-${ct.split(/[;/]/)[1]}`;
      stack.tool.handle(path, (_req, res) => res.writeHead(200, { 'content-type': ct }).end(body));
      const res = await raw(`/tools${path}`);
      expect(res.status).toBe(200);
      expect(res.body.toString('utf8')).not.toContain(AWS_KEY);
      expect(res.body.toString('utf8')).toContain('[REDACTED:aws.access_key_id]');
    });
  }

  for (const [charset, encode] of [
    ['utf-16le', (s: string) => Buffer.from(s, 'utf16le')],
    ['utf-16be', (s: string) => Buffer.from(s, 'utf16le').swap16()],
  ] as const) {
    it(`decodes a ${charset} body before scanning and answers in the same charset`, async () => {
      const body = encode(`token: ${AWS_KEY} — café`);
      stack.tool.handle(`/weather/${charset}`, (_req, res) => res.writeHead(200, { 'content-type': `text/plain; charset=${charset}`, 'content-length': body.length }).end(body));
      const res = await raw(`/tools/weather/${charset}`);
      expect(res.status).toBe(200);
      const decoded = charset === 'utf-16le' ? res.body.toString('utf16le') : Buffer.from(res.body).swap16().toString('utf16le');
      expect(decoded).toBe('token: [REDACTED:aws.access_key_id] — café');
      expect(res.headers['content-length']).toBe(String(res.body.length));
    });
  }
});

describe('encodings and streams', () => {
  it('finds secrets behind JSON \\u escapes and base64, and redacts them in the original text', async () => {
    const escaped = `\\u0041\\u004bIA${AWS_KEY.slice(3)}`;
    const b64 = Buffer.from(`aws_access_key_id=${AWS_KEY}`).toString('base64');
    stack.tool.handle('/weather/enc', (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(`{"a":"${escaped}","b":"${b64}","c":"fine"}`));
    const res = await raw('/tools/weather/enc');
    expect(res.status).toBe(200);
    const text = res.body.toString('utf8');
    const body = JSON.parse(text) as Record<string, string>;
    expect(JSON.stringify(body)).not.toContain(AWS_KEY);
    expect(text).not.toContain(b64);
    expect(body.c).toBe('fine');
    expect(text).toContain('[REDACTED:aws.access_key_id]');
  });

  it('catches a key streamed token by token over SSE events, and escaped inside SSE data', async () => {
    stack.tool.handle('/weather/tokens', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const deltas = ['Here is the ', 'deploy key AKI', 'A2OGYB', 'AH6TQWERTYU', ' and ', `\\u0041KIA${AWS_KEY.slice(4)}`, ' bye'];
      let i = 0;
      const next = (): void => {
        if (i === deltas.length) return void res.end();
        res.write(`data: {"delta":"${deltas[i++]}"}\n\n`);
        setTimeout(next, 30);
      };
      next();
    });
    const res = await raw('/tools/weather/tokens');
    expect(res.status).toBe(200);
    const text = res.body.toString('utf8');
    const deltas = text.split('\n\n').filter(Boolean).map((e) => (JSON.parse(e.replace(/^data: /, '')) as { delta: string }).delta);
    expect(deltas).toHaveLength(7);
    const joined = deltas.join('');
    expect(joined).not.toMatch(/AKI|2OGYB|AH6TQ|WERTYU/);
    expect(joined.startsWith('Here is the deploy key [REDACTED:aws.access_key_id] and ')).toBe(true);
    const rec = await auditRecord(String(res.headers['x-request-id']));
    expect((rec.dlp as { response: { rules: string[]; count: number } }).response).toMatchObject({ rules: ['aws.access_key_id'], count: 2 });
  });
});

describe('PII and rules without context', () => {
  it('redacts e-mail, phone numbers and a Twilio key by default, and a tool whose job is e-mail keeps it', async () => {
    const twilio = `SK${'0123456789abcdef'.repeat(2)}`;
    const body = JSON.stringify({ owner: 'jane.doe@example.com', phone: '+1 415 555 2671', sid: twilio });
    stack.tool.handle('/weather/pii', (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(body));
    const res = await raw('/tools/weather/pii');
    const got = JSON.parse(res.body.toString('utf8')) as Record<string, string>;
    expect(got.owner).toBe('[REDACTED:pii.email]');
    expect(got.phone).toContain('[REDACTED:');
    expect(got.sid).toBe('[REDACTED:twilio.api_key]');
    stack.tool.handle('/tickets/tenants/acme/contacts', (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ owner: 'jane.doe@example.com' })));
    const crm = await raw('/tools/tickets/tenants/acme/contacts');
    expect(crm.status).toBe(200);
    expect(JSON.parse(crm.body.toString('utf8'))).toEqual({ owner: 'jane.doe@example.com' });
    const rec = await auditRecord(String(crm.headers['x-request-id']));
    expect((rec.dlp as { response: { action: string } }).response.action).toBe('flagged');
  });
});

describe('the credential portcullis injected', () => {
  it('never comes back: raw, base64 and URL-encoded, in JSON, text/plain and headers', async () => {
    stack.tool.handle('/weather/echo', (req, res) => {
      const got = String(req.headers['x-api-key']);
      res.setHeader('x-upstream-auth', `rejected ${got}`);
      const body = `upstream rejected credential ${got}; as base64 ${Buffer.from(got).toString('base64')}; in a link https://x.example/?k=${encodeURIComponent(got)}`;
      res.writeHead(401, { 'content-type': req.url?.includes('json') ? 'application/json' : 'text/plain' }).end(req.url?.includes('json') ? JSON.stringify({ error: body }) : body);
    });
    for (const path of ['/tools/weather/echo', '/tools/weather/echo?json=1']) {
      const res = await raw(path);
      expect(res.status).toBe(401);
      const text = res.body.toString('utf8');
      expect(text).toContain('upstream rejected credential [REDACTED:portcullis.injected_credential]');
      expect(text).not.toContain(weatherKey);
      expect(text).not.toContain(Buffer.from(weatherKey).toString('base64').replace(/=+$/, ''));
      expect(String(res.headers['x-upstream-auth'])).not.toContain(weatherKey);
      const rec = await auditRecord(String(res.headers['x-request-id']));
      expect((rec.dlp as { response: { rules: string[] } }).response.rules).toContain('portcullis.injected_credential');
    }
  });
});

describe('field filtering cannot be dodged', () => {
  const call = { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'vpn', tenant: 'acme' } } };

  it('drops the field from every result of a JSON-RPC batch', async () => {
    const res = await raw('/tools/docs/', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify([call]) });
    expect(res.status).toBe(200);
    const body = JSON.parse(res.body.toString('utf8')) as { result: { structuredContent: Record<string, unknown> } }[];
    expect(Array.isArray(body)).toBe(true);
    expect(body[0]!.result.structuredContent.results).toBeDefined();
    expect(res.body.toString('utf8')).not.toContain('internal_notes');
  });

  it('drops the field from an MCP reply sent as server-sent events', async () => {
    const remove = stack.tool.handle('/mcp/', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: 7, result: { content: [], structuredContent: { hits: 1, internal_notes: 'shard eu-2' } } })}\n\n`);
      res.end();
    });
    try {
      const res = await raw('/tools/docs/', { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: JSON.stringify(call) });
      expect(res.status).toBe(200);
      const text = res.body.toString('utf8');
      expect(text).toContain('event: message');
      expect(text).not.toContain('internal_notes');
      const data = JSON.parse(/data: (.*)/.exec(text)![1]!) as { result: { structuredContent: Record<string, unknown> } };
      expect(data.result.structuredContent).toEqual({ hits: 1 });
    } finally {
      remove();
    }
  });
});

describe('memory for held responses is bounded', () => {
  it('refuses large responses past the budget with a retryable 503 while another agent is served', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024, 'a');
    stack.tool.handle('/weather/large', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': big.length });
      // Arriving slowly: every response holds its share while the others arrive.
      res.write(big.subarray(0, 2 * 1024 * 1024));
      setTimeout(() => res.end(big.subarray(2 * 1024 * 1024)), 1500);
    });
    stack.tool.handle('/weather/small', (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
    const other = await demoToken(stack, { user: 'bob' });
    const large = Array.from({ length: 6 }, () => raw('/tools/weather/large'));
    await sleep(500);
    const small = await Promise.all(Array.from({ length: 10 }, () => raw('/tools/weather/small', { bearer: other })));
    const results = await Promise.all(large);
    expect(small.map((r) => r.status)).toEqual(Array(10).fill(200));
    const served = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 503);
    expect(served.length + refused.length).toBe(6);
    // Large bodies may use 3/4 of the 8 MiB together: two of 3 MiB fit, the others are refused
    // before anything of them left, while the small answers of another agent still find room.
    expect(refused.length).toBeGreaterThan(0);
    expect(served.length).toBeGreaterThanOrEqual(2);
    for (const r of served) expect(r.body.length).toBe(big.length);
    for (const r of refused) {
      expect(JSON.parse(r.body.toString('utf8'))).toMatchObject({ error: { type: 'unavailable', retryable: true, rule: 'inspect.memory_budget' } });
      expect(r.headers['retry-after']).toBe('1');
    }
    // Everything held was given back: a large response is served again.
    const again = await raw('/tools/weather/large');
    expect(again.status).toBe(200);
    expect(again.body.length).toBe(big.length);
  }, 30_000);

  it('cuts a body of unknown length that outgrows the budget instead of delivering it uninspected', async () => {
    const chunk = Buffer.alloc(1024 * 1024, 'b');
    stack.tool.handle('/weather/endless', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      let sent = 0;
      const more = (): void => {
        if (res.destroyed || sent >= 12) return void res.end();
        sent += 1;
        res.write(chunk, () => setImmediate(more));
      };
      more();
    });
    const res = await raw('/tools/weather/endless');
    // Its headers had left (the length was unknown); the reset keeps every uninspected byte back.
    expect(res.error).not.toBeNull();
    expect(res.body.length).toBe(0);
    const rec = await auditRecord(String(res.headers['x-request-id']));
    expect(rec.error).toEqual({ type: 'unavailable', rule: 'inspect.memory_budget' });
  }, 30_000);
});
