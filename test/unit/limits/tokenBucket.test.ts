import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayError } from '../../../src/errors.js';
import { RateLimitedError, RateLimiter, type LimitRequest } from '../../../src/limits/tokenBucket.js';
import { MemoryStore, type BucketRequest, type BucketTake, type Store } from '../../../src/limits/store.js';
import { RedisStore } from '../../../src/limits/redisStore.js';
import type { GatewayConfig, RateLimitRule, ToolConfig } from '../../../src/config/types.js';
import type { Principal } from '../../../src/identity/types.js';
import { startRedis, type RedisServer } from '../../helpers/redis.js';

function tool(name: string, extra: Partial<ToolConfig> = {}): ToolConfig {
  return { name, upstream: 'http://127.0.0.1:1', external: false, dry_run: false, credentials: [], ...extra } as ToolConfig;
}

function config(tools: ToolConfig[], global: RateLimitRule[] = []): GatewayConfig {
  return { tools, rate_limits: global } as unknown as GatewayConfig;
}

function who(p: Partial<Principal>): Principal {
  return { agent: null, agent_version: null, user: null, tenant: null, roles: [], methods: [], proven_by: [], ...p } as unknown as Principal;
}

function req(t: ToolConfig, principal: Principal | null, extra: Partial<LimitRequest> = {}): LimitRequest {
  return { tool: t, principal, httpMethod: 'POST', calls: [], mutating: false, ...extra };
}

async function denial(p: Promise<unknown>): Promise<GatewayError> {
  const r = await p.then(
    () => null,
    (e: unknown) => e,
  );
  if (!(r instanceof GatewayError)) throw new Error(`expected a GatewayError, got ${String(r)}`);
  return r;
}

const rule = (r: Partial<RateLimitRule> & { name: string }): RateLimitRule => ({ per: [], rps: 0.001, burst: 2, ...r });

describe('rate limits by descriptor', () => {
  it('one bucket per tenant for the tool; the denial names the limit, the wait and the headers', async () => {
    const docs = tool('docs', { rate_limits: [rule({ name: 'per-tenant', per: ['tenant'], burst: 2, rps: 0.5 })] });
    const cfg = config([docs]);
    const rl = new RateLimiter(new MemoryStore());
    const acme = who({ tenant: 'acme', agent: 'a1' });
    const ok = await rl.check(cfg, req(docs, acme));
    expect(ok.headers).toEqual([
      { key: 'ratelimit-policy', value: '"per-tenant";q=2;w=4' },
      { key: 'ratelimit', value: '"per-tenant";r=1;t=2' },
    ]);
    // Another agent of the same tenant shares the bucket.
    await rl.check(cfg, req(docs, who({ tenant: 'acme', agent: 'a2' })));
    const err = await denial(rl.check(cfg, req(docs, acme)));
    expect(err).toBeInstanceOf(RateLimitedError);
    expect(err.code).toBe('rate_limited');
    expect(err.httpStatus).toBe(429);
    expect(err.rule).toBe('limits.per-tenant');
    expect(err.retryAfterS).toBe(2);
    expect(err.message).toContain('"per-tenant"');
    expect((err as RateLimitedError).headers).toEqual([
      { key: 'ratelimit-policy', value: '"per-tenant";q=2;w=4' },
      { key: 'ratelimit', value: '"per-tenant";r=0;t=2' },
    ]);
    // Another tenant has its own bucket.
    await rl.check(cfg, req(docs, who({ tenant: 'globex' })));
  });

  it('a batch takes one token per call: batching is no way around a limit', async () => {
    const docs = tool('docs', { rate_limits: [rule({ name: 'calls', per: ['agent'], burst: 3 })] });
    const cfg = config([docs]);
    const rl = new RateLimiter(new MemoryStore());
    const call = { method: 'tools/call', tool: 'search' };
    await rl.check(cfg, req(docs, who({ agent: 'a' }), { calls: [call, call] }));
    const err = await denial(rl.check(cfg, req(docs, who({ agent: 'a' }), { calls: [call, call] })));
    expect(err.rule).toBe('limits.calls');
    expect(err.message).toContain('2 calls');
    // A batch larger than the burst can never pass, and says so.
    const never = await denial(rl.check(cfg, req(docs, who({ agent: 'b' }), { calls: [call, call, call, call] })));
    expect(never.message).toContain('send at most 3 calls per request');
  });

  it('mcp_tool and method split buckets; a call without them shares the null bucket', async () => {
    const docs = tool('docs', { rate_limits: [rule({ name: 'per-mcp-tool', per: ['mcp_tool', 'method'], burst: 1 })] });
    const cfg = config([docs]);
    const rl = new RateLimiter(new MemoryStore());
    const p = who({ agent: 'a' });
    await rl.check(cfg, req(docs, p, { calls: [{ method: 'tools/call', tool: 'search' }] }));
    await rl.check(cfg, req(docs, p, { calls: [{ method: 'tools/call', tool: 'fetch' }] }));
    await rl.check(cfg, req(docs, p, { calls: [{ method: 'tools/list', tool: null }] }));
    expect((await denial(rl.check(cfg, req(docs, p, { calls: [{ method: 'tools/call', tool: 'search' }] })))).rule).toBe('limits.per-mcp-tool');
    // A plain request is keyed by its HTTP method, whatever its case.
    await rl.check(cfg, req(docs, p, { httpMethod: 'get' }));
    expect((await denial(rl.check(cfg, req(docs, p, { httpMethod: 'GET' })))).rule).toBe('limits.per-mcp-tool');
  });

  it('values are hashed into the key: a separator in one value cannot reach another bucket', async () => {
    const keys: string[] = [];
    const inner = new MemoryStore();
    const spy: Store = Object.assign(Object.create(inner) as Store, {
      takeAll: (requests: readonly BucketRequest[]): Promise<BucketTake[]> => {
        keys.push(...requests.map((r) => r.key));
        return inner.takeAll(requests);
      },
    });
    const docs = tool('docs', { rate_limits: [rule({ name: 'pair', per: ['tenant', 'user'], burst: 1 })] });
    const cfg = config([docs]);
    const rl = new RateLimiter(spy);
    await rl.check(cfg, req(docs, who({ tenant: 'a:b', user: 'c' })));
    await rl.check(cfg, req(docs, who({ tenant: 'a', user: 'b:c' })));
    await rl.check(cfg, req(docs, who({ tenant: 'x'.repeat(10_000), user: 'u' })));
    expect(new Set(keys).size).toBe(3);
    for (const k of keys) expect(k.length).toBeLessThan(120);
  });

  it('global limits apply to every tool, split by tool only when asked; buckets outlive a reload', async () => {
    const a = tool('a');
    const b = tool('b');
    const rl = new RateLimiter(new MemoryStore());
    const cfg = config([a, b], [rule({ name: 'tenant-wide', per: ['tenant'], burst: 2 })]);
    const p = who({ tenant: 't' });
    await rl.check(cfg, req(a, p));
    await rl.check(cfg, req(b, p));
    expect((await denial(rl.check(cfg, req(a, p)))).rule).toBe('limits.tenant-wide');
    // The same limits in a reloaded configuration keep their buckets.
    const reloaded = config([tool('a'), tool('b')], [rule({ name: 'tenant-wide', per: ['tenant'], burst: 2 })]);
    expect((await denial(rl.check(reloaded, req(reloaded.tools[0] as ToolConfig, p)))).rule).toBe('limits.tenant-wide');
  });

  it('a request refused by one limit costs nothing in the others (all or nothing)', async () => {
    const t = tool('t', { rate_limits: [rule({ name: 'tight', per: ['user'], burst: 1 })] });
    const cfg = config([t], [rule({ name: 'wide', per: ['tenant'], burst: 3 })]);
    const rl = new RateLimiter(new MemoryStore());
    await rl.check(cfg, req(t, who({ tenant: 'x', user: 'u1' })));
    // u1 is out of "tight": these refusals must not drain the tenant's "wide" bucket.
    for (let i = 0; i < 5; i++) expect((await denial(rl.check(cfg, req(t, who({ tenant: 'x', user: 'u1' }))))).rule).toBe('limits.tight');
    await rl.check(cfg, req(t, who({ tenant: 'x', user: 'u2' })));
    await rl.check(cfg, req(t, who({ tenant: 'x', user: 'u3' })));
    expect((await denial(rl.check(cfg, req(t, who({ tenant: 'x', user: 'u4' }))))).rule).toBe('limits.wide');
  });

  it('the legacy rate_limit key is one limit named "rate", keyed per tool and by its key', async () => {
    const w = tool('weather', { rate_limit: { rps: 0.001, burst: 1, key: 'user' } });
    const cfg = config([w, tool('other', { rate_limit: { rps: 0.001, burst: 1, key: 'user' } })]);
    const rl = new RateLimiter(new MemoryStore());
    await rl.check(cfg, req(w, who({ user: 'u', agent: 'x' })));
    expect((await denial(rl.check(cfg, req(w, who({ user: 'u', agent: 'y' }))))).rule).toBe('limits.rate');
    // Without a user, the agent keys the bucket (as before).
    await rl.check(cfg, req(w, who({ agent: 'x' })));
    await rl.check(cfg, req(cfg.tools[1] as ToolConfig, who({ user: 'u' })));
  });

  it('refuses a configuration whose denials could not be told apart', () => {
    const rl = new RateLimiter(new MemoryStore());
    expect(() => rl.prepare(config([tool('a', { rate_limits: [rule({ name: 'x' }), rule({ name: 'x' })] })]))).toThrow(/used twice/);
    expect(() => rl.prepare(config([tool('a', { rate_limits: [rule({ name: 'g' })] })], [rule({ name: 'g' })]))).toThrow(/global/);
    expect(() => rl.prepare(config([tool('a', { rate_limit: { rps: 1, burst: 1, key: 'agent' }, rate_limits: [rule({ name: 'rate' })] })]))).toThrow(/used twice/);
  });
});

/** A store that cannot answer, as when Redis is unreachable. */
class DownStore extends MemoryStore {
  override takeAll(): Promise<BucketTake[]> {
    return Promise.reject(new GatewayError('unavailable', 'the shared state store is unavailable', { rule: 'store.unavailable' }));
  }
}

describe('when the store cannot answer', () => {
  it('denies mutating calls by default, with a retryable structured error naming the limit', async () => {
    const t = tool('t', { rate_limits: [rule({ name: 'l', burst: 5 })] });
    const rl = new RateLimiter(new DownStore());
    const err = await denial(rl.check(config([t]), req(t, null, { mutating: true })));
    expect(err.code).toBe('unavailable');
    expect(err.rule).toBe('limits.store_unavailable');
    expect(err.retryAfterS).toBe(1);
    expect(err.details).toMatchObject({ limit: 'l' });
  });

  it('read-only calls fall back to a local bucket that still limits', async () => {
    const t = tool('t', { rate_limits: [rule({ name: 'l', burst: 2 })] });
    const rl = new RateLimiter(new DownStore());
    const cfg = config([t]);
    await rl.check(cfg, req(t, null));
    await rl.check(cfg, req(t, null));
    expect((await denial(rl.check(cfg, req(t, null)))).rule).toBe('limits.l');
  });

  it('on_store_error overrides the default either way', async () => {
    const t = tool('t', {
      rate_limits: [rule({ name: 'strict', burst: 5, on_store_error: 'deny' }), rule({ name: 'lenient', per: ['user'], burst: 5, on_store_error: 'allow_local' })],
    });
    const rl = new RateLimiter(new DownStore());
    expect((await denial(rl.check(config([t]), req(t, null)))).rule).toBe('limits.store_unavailable');
    const u = tool('u', { rate_limits: [rule({ name: 'lenient', burst: 1, on_store_error: 'allow_local' })] });
    await rl.check(config([u]), req(u, null, { mutating: true }));
    expect((await denial(rl.check(config([u]), req(u, null, { mutating: true })))).rule).toBe('limits.lenient');
  });
});

describe('on a real redis-server that goes away and comes back', () => {
  let server: RedisServer;
  let store: RedisStore;
  beforeAll(async () => {
    server = await startRedis();
    store = new RedisStore({ url: server.url, keyPrefix: 'lim:', timeoutMs: 300, connectTimeoutMs: 500, maxRetries: 1 });
  });
  afterAll(async () => {
    await store?.close();
    await server?.stop();
  });

  it('two limiters (two replicas) share the buckets; while redis is down each use does what it says; then they share again', async () => {
    const t = tool('t', { rate_limits: [rule({ name: 'shared', per: ['tenant'], burst: 3 })] });
    const cfg = config([t]);
    const replicaA = new RateLimiter(store);
    const other = new RedisStore({ url: server.url, keyPrefix: 'lim:', timeoutMs: 300, connectTimeoutMs: 500, maxRetries: 1 });
    try {
      const replicaB = new RateLimiter(other);
      const p = who({ tenant: 'acme' });
      await replicaA.check(cfg, req(t, p));
      await replicaB.check(cfg, req(t, p));
      await replicaA.check(cfg, req(t, p));
      expect((await denial(replicaB.check(cfg, req(t, p)))).rule).toBe('limits.shared');

      await server.stop();
      // Mutating: denied. Read-only: the local bucket of this replica (fresh, so it allows).
      expect((await denial(replicaA.check(cfg, req(t, p, { mutating: true })))).rule).toBe('limits.store_unavailable');
      await replicaA.check(cfg, req(t, p));
      expect(store.status().available).toBe(false);

      await server.start(); // empty: nothing was saved
      const deadline = Date.now() + 15_000;
      while (!(store.status().available && other.status().available) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(store.status().available).toBe(true);
      for (let i = 0; i < 3; i++) await (i % 2 === 0 ? replicaA : replicaB).check(cfg, req(t, p, { mutating: true }));
      expect((await denial(replicaB.check(cfg, req(t, p, { mutating: true })))).rule).toBe('limits.shared');
    } finally {
      await other.close();
    }
  });
});
