import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack, spreadOverReplicas } from '../helpers/index.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { call, eventually, expectDenial, metricValue, token, type Reply } from './authz-support.js';

/**
 * Rate limits by descriptor through the real Envoy, with two portcullis replicas behind it
 * (round robin) sharing one real redis-server: a per-tenant limit holds across both replicas,
 * denials are 429 with the limit's name, Retry-After and the RateLimit headers (plain and
 * JSON-RPC), a batch cannot get around a limit, and an unreachable Redis denies mutating calls,
 * lets read-only ones fall back, and recovers without a restart.
 */

type Json = Record<string, any>;

const WEATHER_BURST = 3;
const DOCS_BURST = 2;
const VERSION = '2025-11-25';

let redis: RedisServer;
let stack: Stack;

beforeAll(async () => {
  redis = await startRedis();
  stack = await startStack({
    replica: true,
    editEnvoy: spreadOverReplicas,
    editConfig: (cfg) => {
      cfg.store = { kind: 'redis', redis: { url: redis.url, key_prefix: 'e2e:', timeout_ms: 300 } };
      const tools = cfg.tools as { name: string; rate_limits?: unknown }[];
      const weather = tools.find((t) => t.name === 'weather');
      const docs = tools.find((t) => t.name === 'docs');
      if (!weather || !docs) throw new Error('demo config lacks the weather or docs tool');
      weather.rate_limits = [{ name: 'tenant-weather', per: ['tenant'], rps: 0.01, burst: WEATHER_BURST }];
      docs.rate_limits = [{ name: 'tenant-docs', per: ['tenant', 'mcp_tool'], rps: 0.01, burst: DOCS_BURST }];
    },
  });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await redis?.stop();
});

function weather(bearer: string): Promise<Reply> {
  return call(`${stack.envoyUrl}/tools/weather/forecast?city=Rome`, { headers: { authorization: `Bearer ${bearer}` } });
}

function docs(bearer: string, body: unknown, raw?: string): Promise<Reply> {
  return call(`${stack.envoyUrl}/tools/docs/`, {
    method: 'POST',
    headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': VERSION },
    body: raw ?? JSON.stringify(body),
  });
}

const search = (id: number, tenant = 'acme'): Json => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'vpn', tenant } } });

async function decisions(adminUrl: string, tool: string): Promise<number> {
  const text = (await call(`${adminUrl}/metrics`)).text;
  return metricValue(text, 'portcullis_authz_decisions_total', { tool, outcome: 'allow' }) + metricValue(text, 'portcullis_authz_decisions_total', { tool, outcome: 'deny' });
}

describe('a per-tenant limit shared by two replicas on one Redis', () => {
  it('holds across both replicas: the burst is the tenant’s whatever replica decides, then 429 with the limit named and the headers', async () => {
    const alice = await token(stack, { user: 'alice', tenant: 'acme' });
    const bob = await token(stack, { user: 'bob', tenant: 'acme' });
    const a0 = await decisions(stack.adminUrl, 'weather');
    const b0 = await decisions(stack.replicaAdminUrl as string, 'weather');

    const replies: Reply[] = [];
    const extra = 17;
    for (let i = 0; i < WEATHER_BURST + extra; i++) replies.push(await weather(i % 2 === 0 ? alice : bob));
    expect(replies.map((r) => r.status), stack.logs().slice(-3000)).toEqual([...Array(WEATHER_BURST).fill(200), ...Array(extra).fill(429)]);
    // Both replicas decided some of them: with a bucket per replica, 2 x burst would have passed.
    expect(await decisions(stack.adminUrl, 'weather')).toBeGreaterThan(a0);
    expect(await decisions(stack.replicaAdminUrl as string, 'weather')).toBeGreaterThan(b0);

    // An allowed call says where it stands.
    const first = replies[0] as Reply;
    expect(first.headers.get('ratelimit-policy')).toBe('"tenant-weather";q=3;w=300');
    expect(first.headers.get('ratelimit')).toMatch(/^"tenant-weather";r=2;t=\d+$/);

    const limited = replies[WEATHER_BURST] as Reply;
    const body = expectDenial(limited, 429, 'rate_limited', 'limits.tenant-weather');
    expect(body.error.message).toContain('"tenant-weather"');
    expect(body.error.retryable).toBe(true);
    const retry = body.error.retry_after_s as number;
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(100);
    expect(limited.headers.get('retry-after')).toBe(String(retry));
    expect(limited.headers.get('ratelimit-policy')).toBe('"tenant-weather";q=3;w=300');
    expect(limited.headers.get('ratelimit')).toBe(`"tenant-weather";r=0;t=${retry}`);

    // Headers that name another tenant are not identity: still the caller's own bucket.
    const spoofed = await call(`${stack.envoyUrl}/tools/weather/forecast?city=Rome`, {
      headers: { authorization: `Bearer ${alice}`, 'x-portcullis-tenant': 'globex', 'x-tenant-id': 'globex', 'X-Portcullis-User': 'nobody' },
    });
    expectDenial(spoofed, 429, 'rate_limited', 'limits.tenant-weather');

    // Another tenant has its own bucket.
    const globex = await token(stack, { user: 'gina', tenant: 'globex' });
    expect((await weather(globex)).status).toBe(200);
  });

  it('JSON-RPC: a limited call is a JSON-RPC error with its id; a batch takes a token per call; another MCP tool has its own bucket', async () => {
    const carol = await token(stack, { user: 'carol', tenant: 'initech' });
    const ok = await docs(carol, search(1, 'initech'));
    expect(ok.status, ok.text).toBe(200);
    // One token left: a batch of two calls does not fit, and both ids are answered.
    const batch = await docs(carol, [search(2, 'initech'), search(3, 'initech')]);
    expect(batch.status, batch.text).toBe(429);
    const errors = JSON.parse(batch.text) as Json[];
    expect(errors.map((e) => e.id)).toEqual([2, 3]);
    for (const e of errors) {
      expect(e.error.code).toBe(-32029);
      expect(e.error.data).toMatchObject({ type: 'rate_limited', rule: 'limits.tenant-docs' });
    }
    expect(batch.headers.get('ratelimit')).toMatch(/^"tenant-docs";r=1;t=\d+$/);
    // The last token is still there for one call; then a single call is refused with its id.
    expect((await docs(carol, search(4, 'initech'))).status).toBe(200);
    const single = await docs(carol, search(5, 'initech'));
    expect(single.status).toBe(429);
    const err = JSON.parse(single.text) as Json;
    expect(err).toMatchObject({ jsonrpc: '2.0', id: 5, error: { code: -32029, data: { type: 'rate_limited', rule: 'limits.tenant-docs' } } });
    expect(Number(single.headers.get('retry-after'))).toBe(err.error.data.retry_after_s);
    expect(single.headers.get('ratelimit-policy')).toBe('"tenant-docs";q=2;w=200');
    // The same MCP tool named through a JSON escape is the same tool, and the same bucket.
    const escaped = JSON.stringify(search(7, 'initech')).replace('search_docs', 'search\\u005fdocs');
    expect(escaped).toContain('search\\u005fdocs');
    const viaEscape = await docs(carol, null, escaped);
    expect(viaEscape.status, viaEscape.text).toBe(429);
    expect(JSON.parse(viaEscape.text)).toMatchObject({ id: 7, error: { data: { rule: 'limits.tenant-docs' } } });
    // tools/list names no MCP tool: its own bucket.
    const list = await docs(carol, { jsonrpc: '2.0', id: 6, method: 'tools/list', params: {} });
    expect(list.status, list.text).toBe(200);
  });
});

describe('when Redis goes away', () => {
  it('mutating calls are denied (503, JSON-RPC error), read-only ones fall back to a local bucket, /readyz and a metric say so; back without a restart', async () => {
    const dave = await token(stack, { user: 'dave', tenant: 'umbrella' });
    const del = (id: number): Json => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'delete_doc', arguments: { doc_id: 'd1', tenant: 'umbrella' } } });
    await redis.stop();
    try {
      const denied = await docs(dave, del(10));
      expect(denied.status, denied.text).toBe(503);
      const e = JSON.parse(denied.text) as Json;
      expect(e).toMatchObject({ id: 10, error: { data: { type: 'unavailable', rule: 'limits.store_unavailable', details: { limit: 'tenant-docs' } } } });
      expect(e.error.message).toContain('"tenant-docs"');
      // Read-only: served from this replica's own bucket.
      expect((await weather(dave)).status).toBe(200);
      const ready = JSON.parse((await call(`${stack.adminUrl}/readyz`)).text) as Json;
      expect(ready.store).toMatchObject({ kind: 'redis', available: false });
      const metrics = (await call(`${stack.adminUrl}/metrics`)).text + (await call(`${stack.replicaAdminUrl as string}/metrics`)).text;
      expect(metricValue(metrics, 'portcullis_store_errors_total', { op: 'take' })).toBeGreaterThan(0);
      expect(metricValue(metrics, 'portcullis_rate_limit_store_fallbacks_total', { limit: 'tenant-docs', action: 'deny' })).toBeGreaterThan(0);
    } finally {
      await redis.start();
    }
    const back = await eventually(async () => {
      const a = JSON.parse((await call(`${stack.adminUrl}/readyz`)).text) as Json;
      const b = JSON.parse((await call(`${stack.replicaAdminUrl as string}/readyz`)).text) as Json;
      return a.store?.available === true && b.store?.available === true;
    }, 20_000);
    expect(back, 'both replicas reconnect to redis').toBe(true);
    const again = await docs(dave, del(11));
    expect(again.status, again.text).toBe(200);
  });
});
