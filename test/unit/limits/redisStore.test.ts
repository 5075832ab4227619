import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { GatewayError } from '../../../src/errors.js';
import { RedisStore } from '../../../src/limits/redisStore.js';
import { startRedis, type RedisServer } from '../../helpers/redis.js';
import { valueOperationsContract } from '../../helpers/storeContract.js';

let server: RedisServer;
let raw: Redis;
const stores: RedisStore[] = [];

function store(prefix = 'test:'): RedisStore {
  const s = new RedisStore({ url: server.url, keyPrefix: prefix, timeoutMs: 300, connectTimeoutMs: 500, maxRetries: 1 });
  stores.push(s);
  return s;
}

async function until(probe: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not happen within 15 s`);
}

beforeAll(async () => {
  server = await startRedis();
  raw = new Redis(server.url);
});

afterAll(async () => {
  for (const s of stores) await s.close();
  raw?.disconnect();
  await server?.stop();
});

describe('RedisStore against a real redis-server', () => {
  let n = 0;
  valueOperationsContract(() => store(`contract${++n}:`));

  it('token bucket: burst, denial with the wait, on keys under the prefix, with an expiry', async () => {
    const s = store('p1:');
    await until(async () => s.status().available, 'connect');
    const spec = { capacity: 3, ratePerS: 0.5 };
    for (let i = 2; i >= 0; i--) expect(await s.take('bucket', spec, 1)).toMatchObject({ allowed: true, remaining: i });
    const denied = await s.take('bucket', spec, 1);
    expect(denied.allowed).toBe(false);
    expect(denied.remaining).toBe(0);
    // 1 token at 0.5/s: up to 2 s (less the ms since the last take).
    expect(denied.retryAfterMs).toBeGreaterThan(1_500);
    expect(denied.retryAfterMs).toBeLessThanOrEqual(2_000);
    // The key carries the prefix and expires once the bucket would be full again.
    expect(await raw.exists('p1:bucket')).toBe(1);
    const ttl = await raw.pttl('p1:bucket');
    expect(ttl).toBeGreaterThan(5_000);
    expect(ttl).toBeLessThanOrEqual(7_000);
  });

  it('two clients (two replicas) draw from one bucket', async () => {
    const a = store('shared:');
    const b = store('shared:');
    await until(async () => a.status().available && b.status().available, 'connect');
    const spec = { capacity: 4, ratePerS: 0.01 };
    const results = await Promise.all([a, b, a, b, a, b, a, b].map((s) => s.take('k', spec, 1)));
    expect(results.filter((r) => r.allowed)).toHaveLength(4);
    // A cost larger than what is left takes nothing.
    const c = store('cost:');
    expect(await c.take('k', { capacity: 3, ratePerS: 1 }, 4)).toMatchObject({ allowed: false, remaining: 3 });
    expect(await c.take('k', { capacity: 3, ratePerS: 1 }, 3)).toMatchObject({ allowed: true, remaining: 0 });
  });

  it('takeAll is all or nothing, in one script', async () => {
    const s = store('all:');
    const wide = { capacity: 5, ratePerS: 0.01 };
    const tight = { capacity: 1, ratePerS: 0.01 };
    const both = [
      { key: 'wide', bucket: wide, cost: 1 },
      { key: 'tight', bucket: tight, cost: 1 },
    ];
    expect((await s.takeAll(both)).map((r) => r.allowed)).toEqual([true, true]);
    const refused = await s.takeAll(both);
    expect(refused.map((r) => r.allowed)).toEqual([true, false]);
    expect(refused[0]?.remaining).toBe(4);
    // Nothing was taken from "wide" by the refusal.
    expect(await s.take('wide', wide, 4)).toMatchObject({ allowed: true, remaining: 0 });
    await expect(s.takeAll([both[0] as (typeof both)[number], both[0] as (typeof both)[number]])).rejects.toBeInstanceOf(GatewayError);
  });

  it('refills on the server clock: a bucket refills with time, fractional tokens survive', async () => {
    const s = store('refill:');
    const spec = { capacity: 1, ratePerS: 20 };
    expect((await s.take('r', spec, 1)).allowed).toBe(true);
    await until(async () => (await s.take('r', spec, 1)).allowed, 'refill');
    const stored = await raw.hget('refill:r', 'tk');
    expect(Number(stored)).toBeGreaterThanOrEqual(0);
    expect(Number(stored)).toBeLessThan(1);
  });

  it('loads its scripts again after SCRIPT FLUSH (EVALSHA falls back on NOSCRIPT)', async () => {
    const s = store('flush:');
    expect((await s.take('f', { capacity: 2, ratePerS: 1 }, 1)).allowed).toBe(true);
    await raw.script('FLUSH');
    expect(await s.take('f', { capacity: 2, ratePerS: 1 }, 1)).toMatchObject({ allowed: true, remaining: 0 });
    expect(await s.increment('n', 1_000)).toMatchObject({ count: 1 });
  });

  it('fixed-window counter with expiry; set-if-absent and get with TTL', async () => {
    const s = store('ctr:');
    expect(await s.increment('w', 10_000)).toMatchObject({ count: 1 });
    const second = await s.increment('w', 10_000);
    expect(second.count).toBe(2);
    expect(second.ttlMs).toBeGreaterThan(9_000);
    expect(second.ttlMs).toBeLessThanOrEqual(10_000);
    // A counter key left without expiry (written by something else) gets one.
    await raw.set('ctr:stale', '5');
    expect(await s.increment('stale', 2_000)).toMatchObject({ count: 6, ttlMs: 2_000 });
    expect(await raw.pttl('ctr:stale')).toBeGreaterThan(0);

    expect(await s.setIfAbsent('once', 60_000, 'v')).toBe(true);
    expect(await s.setIfAbsent('once', 60_000, 'w')).toBe(false);
    expect(await s.get('once')).toBe('v');
    expect(await s.get('missing')).toBeNull();
    expect(await raw.pttl('ctr:once')).toBeGreaterThan(50_000);
  });

  it('refuses unbounded keys', async () => {
    const s = store('big:');
    await expect(s.get('x'.repeat(600))).rejects.toBeInstanceOf(GatewayError);
  });

  it('fails fast and counts while redis is down, then serves again without a restart', async () => {
    const s = store('down:');
    await until(async () => s.status().available, 'connect');
    await server.stop();
    const err = await s.take('d', { capacity: 2, ratePerS: 1 }, 1).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('unavailable');
    expect((err as GatewayError).rule).toBe('store.unavailable');
    await expect(s.setIfAbsent('x', 1_000)).rejects.toBeInstanceOf(GatewayError);
    expect(s.status().available).toBe(false);
    expect(s.status().errors).toBeGreaterThanOrEqual(2);
    await server.start();
    await until(async () => s.status().available, 'reconnect');
    expect((await s.take('d', { capacity: 2, ratePerS: 1 }, 1)).allowed).toBe(true);
  });
});
