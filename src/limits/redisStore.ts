import { Redis } from 'ioredis';
import { Counter } from 'prom-client';
import { GatewayError } from '../errors.js';
import { registry } from '../metrics.js';
import { checkDistinct, type BucketRequest, type BucketSpec, type BucketTake, type CounterHit, type Store, type StoreStatus } from './store.js';

/** Failed store operations, by operation; a fallback or a denial follows each. */
export const storeErrors = new Counter({
  name: 'portcullis_store_errors_total',
  help: 'Shared store operations that failed (unreachable, timeout, script error), by operation',
  labelNames: ['op'] as const,
  registers: [registry],
});

/** Connection settings of {@link RedisStore} (config `store.redis`). */
export interface RedisStoreOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://` for TLS. */
  readonly url: string;
  /** Prefix of every key, so several gateways (or other users) can share one Redis. */
  readonly keyPrefix: string;
  /** Longest wait for one command before it fails (then the caller's fallback applies). */
  readonly timeoutMs: number;
  /** Longest wait to (re)establish the connection. */
  readonly connectTimeoutMs: number;
  /** Times one command is retried across reconnects before it fails. */
  readonly maxRetries: number;
}

/**
 * Token buckets on the server's clock (`TIME`), so every replica refills the same bucket at the
 * same rate whatever its own clock says; the same rule as `refill` in store.ts. All or nothing:
 * every bucket is refilled and checked first, and tokens are taken only if each has enough. A
 * key lives until its bucket would be full again: an expired bucket and a full one are the same.
 * ARGV holds capacity, rate and cost per key. Returns `ok`, then per key: enough, whole tokens
 * left, ms until full, ms until enough.
 */
const TAKE_ALL_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tokens = {}
local ok = 1
for i = 1, #KEYS do
  local cap = tonumber(ARGV[3 * i - 2])
  local rate = tonumber(ARGV[3 * i - 1])
  local h = redis.call('HMGET', KEYS[i], 'tk', 'ts')
  local tk = tonumber(h[1])
  local ts = tonumber(h[2])
  if tk == nil or ts == nil then tk = cap ts = now end
  if now > ts then tk = math.min(cap, tk + (now - ts) * rate / 1000) end
  tokens[i] = tk
  if tk < tonumber(ARGV[3 * i]) then ok = 0 end
end
local out = {ok}
for i = 1, #KEYS do
  local cap = tonumber(ARGV[3 * i - 2])
  local rate = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  local tk = tokens[i]
  local enough = 0
  if tk >= cost then enough = 1 end
  if ok == 1 then tk = tk - cost end
  local reset = math.ceil((cap - tk) * 1000 / rate)
  local retry = 0
  if enough == 0 then retry = math.ceil((cost - tk) * 1000 / rate) end
  redis.call('HSET', KEYS[i], 'tk', string.format('%.17g', tk), 'ts', now)
  redis.call('PEXPIRE', KEYS[i], reset + 1000)
  table.insert(out, enough)
  table.insert(out, math.floor(tk))
  table.insert(out, reset)
  table.insert(out, retry)
end
return out
`;

/** Fixed window: the first increment opens the window; a key without expiry gets one. */
const INCR_LUA = `
local n = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) ttl = tonumber(ARGV[1]) end
return {n, ttl}
`;

/** Compare and replace (or delete when ARGV[2] is empty and ARGV[4] is 1): 1 when it matched. */
const SWAP_LUA = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[4] == '1' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
`;

/** Connection states in which a command would only wait for a reconnect. */
const LOST: ReadonlySet<string> = new Set(['reconnecting', 'end', 'close']);

/** Longest key accepted; callers hash anything unbounded (see limits/limiter.ts). */
const MAX_KEY_BYTES = 512;

type ScriptedRedis = Redis & {
  portcullisTakeAll(numKeys: number, ...args: string[]): Promise<number[]>;
  portcullisIncr(key: string, windowMs: string, by: string): Promise<[number, number]>;
  portcullisSwap(key: string, expected: string, next: string, ttlMs: string, del: string): Promise<number>;
};

/** A TTL as Redis takes it: whole milliseconds, at least 1. */
function ttlArg(ms: number): string {
  return String(Math.max(1, Math.ceil(ms)));
}

function checkKey(key: string): void {
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) throw new GatewayError('internal', `store key longer than ${MAX_KEY_BYTES} bytes`, { rule: 'store.key' });
}

/**
 * {@link Store} on Redis through ioredis, shared by every replica. Each multi-step operation is
 * one Lua script (ioredis sends EVALSHA and loads the script on NOSCRIPT). Commands fail at
 * once while a lost connection is re-established and time out after `timeoutMs`, so a lost
 * Redis turns into prompt errors the caller handles; ioredis keeps reconnecting with backoff,
 * and the store serves again as soon as Redis is back, without a restart.
 */
export class RedisStore implements Store {
  private readonly redis: ScriptedRedis;
  private errors = 0;

  constructor(opts: RedisStoreOptions) {
    const redis = new Redis(opts.url, {
      keyPrefix: opts.keyPrefix,
      commandTimeout: opts.timeoutMs,
      connectTimeout: opts.connectTimeoutMs,
      maxRetriesPerRequest: opts.maxRetries,
      // Commands wait for the first connection (bounded by commandTimeout); once a connection
      // is lost, run() fails them at once instead (see below).
      enableOfflineQueue: true,
      // Reconnect forever, backing off to 2 s between attempts.
      retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
      lazyConnect: false,
    });
    // Errors are counted per operation; the connection's own are expected while Redis is away.
    redis.on('error', () => undefined);
    // Without numberOfKeys the key count is the first argument (a request names several buckets).
    redis.defineCommand('portcullisTakeAll', { lua: TAKE_ALL_LUA });
    redis.defineCommand('portcullisIncr', { numberOfKeys: 1, lua: INCR_LUA });
    redis.defineCommand('portcullisSwap', { numberOfKeys: 1, lua: SWAP_LUA });
    this.redis = redis as ScriptedRedis;
  }

  async take(key: string, bucket: BucketSpec, cost: number): Promise<BucketTake> {
    return (await this.takeAll([{ key, bucket, cost }]))[0] as BucketTake;
  }

  async takeAll(requests: readonly BucketRequest[]): Promise<BucketTake[]> {
    if (requests.length === 0) return [];
    const flat = await this.run('take', () => {
      checkDistinct(requests);
      for (const r of requests) checkKey(r.key);
      const args = [...requests.map((r) => r.key), ...requests.flatMap((r) => [String(r.bucket.capacity), String(r.bucket.ratePerS), String(r.cost)])];
      return this.redis.portcullisTakeAll(requests.length, ...args);
    });
    return requests.map((_, i) => ({
      allowed: flat[1 + 4 * i] === 1,
      remaining: Number(flat[2 + 4 * i]),
      resetMs: Number(flat[3 + 4 * i]),
      retryAfterMs: Number(flat[4 + 4 * i]),
    }));
  }

  async increment(key: string, windowMs: number, by = 1): Promise<CounterHit> {
    const [count, ttlMs] = await this.run('increment', () => {
      checkKey(key);
      if (!Number.isSafeInteger(by)) throw new GatewayError('internal', 'a counter grows by whole numbers', { rule: 'store.value' });
      return this.redis.portcullisIncr(key, ttlArg(windowMs), String(by));
    });
    return { count, ttlMs };
  }

  getMany(keys: readonly string[]): Promise<(string | null)[]> {
    if (keys.length === 0) return Promise.resolve([]);
    return this.run('get', () => {
      for (const k of keys) checkKey(k);
      return this.redis.mget(...keys);
    });
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    await this.run('set', () => {
      checkKey(key);
      return this.redis.set(key, value, 'PX', ttlArg(ttlMs));
    });
  }

  async swap(key: string, expected: string, next: string | null, ttlMs: number): Promise<boolean> {
    const r = await this.run('swap', () => {
      checkKey(key);
      return this.redis.portcullisSwap(key, expected, next ?? '', ttlArg(ttlMs), next === null ? '1' : '0');
    });
    return r === 1;
  }

  get(key: string): Promise<string | null> {
    return this.run('get', () => {
      checkKey(key);
      return this.redis.get(key);
    });
  }

  async setIfAbsent(key: string, ttlMs: number, value = '1'): Promise<boolean> {
    const r = await this.run('set_if_absent', () => {
      checkKey(key);
      return this.redis.set(key, value, 'PX', ttlArg(ttlMs), 'NX');
    });
    return r === 'OK';
  }

  status(): StoreStatus {
    const state = this.redis.status;
    return { kind: 'redis', available: state === 'ready', state, errors: this.errors };
  }

  async close(): Promise<void> {
    this.redis.disconnect();
    return Promise.resolve();
  }

  private async run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      // A connection known lost fails at once: a request must not wait on a Redis that is away.
      if (LOST.has(this.redis.status)) throw new Error(`redis connection is ${this.redis.status}`);
      return await fn();
    } catch (err) {
      this.errors++;
      storeErrors.inc({ op });
      throw new GatewayError('unavailable', 'the shared state store is unavailable', { rule: 'store.unavailable', retryAfterS: 1, cause: err });
    }
  }
}
