import { GatewayError } from '../errors.js';

/**
 * The state the gateway shares between requests, behind one small interface so that one replica
 * keeps it in memory and several can share it on Redis (`SET key 1 NX PX ttl` is exactly
 * {@link SharedStore.setIfAbsent}). A call never needs more than one round trip.
 */
export interface SharedStore {
  /**
   * Records `key` for `ttlMs` milliseconds if it is not recorded yet. Resolves true when this
   * call recorded it, false when it was already there (and not expired). Rejects (or throws)
   * when the store cannot answer; callers fail closed.
   */
  setIfAbsent(key: string, ttlMs: number): boolean | Promise<boolean>;
}

/** Outcome of one token bucket take. */
export interface BucketTake {
  /** Whether `cost` tokens were taken (nothing is taken when not). */
  readonly allowed: boolean;
  /** Whole tokens left after the take. */
  readonly remaining: number;
  /** Milliseconds until the bucket is full again. */
  readonly resetMs: number;
  /** Milliseconds until `cost` tokens are available (0 when allowed). */
  readonly retryAfterMs: number;
}

/** A token bucket: `capacity` tokens, refilled continuously at `ratePerS`. */
export interface BucketSpec {
  readonly capacity: number;
  readonly ratePerS: number;
}

/** One bucket of a {@link Store.takeAll}. */
export interface BucketRequest {
  readonly key: string;
  readonly bucket: BucketSpec;
  readonly cost: number;
}

/** Outcome of one fixed-window counter increment. */
export interface CounterHit {
  /** The count after this increment, within the current window. */
  readonly count: number;
  /** Milliseconds until the window (and the count) expires. */
  readonly ttlMs: number;
}

/** What `/readyz` shows of a store. */
export interface StoreStatus {
  readonly kind: 'memory' | 'redis';
  /** Whether the store answers now. */
  readonly available: boolean;
  /** Connection state (`ready`, `connecting`, `reconnecting`, ...); `ready` for memory. */
  readonly state: string;
  /** Failed operations since start. */
  readonly errors: number;
}

/**
 * Shared state: token buckets, fixed-window counters and one-time values. Every operation is
 * atomic on its own (one Lua script on Redis). Operations reject when the store cannot answer;
 * each caller decides explicitly what that means (see limits/limiter.ts).
 */
export interface Store extends SharedStore {
  /** Takes `cost` tokens from the bucket `key` (created full), or none when fewer are left. */
  take(key: string, bucket: BucketSpec, cost: number): Promise<BucketTake>;
  /**
   * Takes from every bucket (distinct keys) at once, or from none: one atomic step, so a request
   * refused by one limit costs nothing in the others. Each result's `allowed` says whether that
   * bucket had enough; tokens were taken only when all did.
   */
  takeAll(requests: readonly BucketRequest[]): Promise<BucketTake[]>;
  /**
   * Adds `by` (a whole number, default 1) to the counter `key`; its window of `windowMs` starts
   * at the first increment.
   */
  increment(key: string, windowMs: number, by?: number): Promise<CounterHit>;
  /** The value of `key`, null when absent or expired. */
  get(key: string): Promise<string | null>;
  /** The values of `keys` in one round trip (null for each absent or expired one). */
  getMany(keys: readonly string[]): Promise<(string | null)[]>;
  /** Records `key` = `value` for `ttlMs` unless present; true when this call recorded it. */
  setIfAbsent(key: string, ttlMs: number, value?: string): Promise<boolean>;
  /** Records `key` = `value` for `ttlMs`, replacing any value. */
  set(key: string, value: string, ttlMs: number): Promise<void>;
  /**
   * Atomically: if `key` holds exactly `expected`, replaces it with `next` for `ttlMs` (or
   * deletes it when `next` is null) and resolves true; otherwise changes nothing and resolves
   * false. Lets the owner of a marker finish or release it without touching a newer owner's.
   */
  swap(key: string, expected: string, next: string | null, ttlMs: number): Promise<boolean>;
  /** Current state, for readiness and logs. */
  status(): StoreStatus;
  /** Releases connections. */
  close(): Promise<void>;
}

/** Keys one in-memory store holds at most; beyond that new keys are refused, not old ones dropped. */
export const MEMORY_STORE_MAX_KEYS = 200_000;

/** Buckets one in-memory store holds at most; the least recently used is dropped beyond that. */
export const MEMORY_STORE_MAX_BUCKETS = 100_000;

interface Bucket {
  tokens: number;
  updatedMs: number;
}

interface Entry {
  value: string;
  expires: number;
}

/** Refills `b` to `nowMs`: the token bucket rule, shared with the Redis script (limits/redisStore.ts). */
function refill(b: Bucket, spec: BucketSpec, nowMs: number): void {
  if (nowMs > b.updatedMs) b.tokens = Math.min(spec.capacity, b.tokens + ((nowMs - b.updatedMs) / 1000) * spec.ratePerS);
  b.updatedMs = Math.max(b.updatedMs, nowMs);
}

/** What a bucket reports after a take (or a refusal) of `cost`. */
function report(b: Bucket, spec: BucketSpec, cost: number, enough: boolean): BucketTake {
  return {
    allowed: enough,
    remaining: Math.floor(b.tokens),
    resetMs: Math.ceil(((spec.capacity - b.tokens) * 1000) / spec.ratePerS),
    retryAfterMs: enough ? 0 : Math.ceil(((cost - b.tokens) * 1000) / spec.ratePerS),
  };
}

/** Throws unless every key of a takeAll is distinct (one bucket cannot be read twice in one step). */
export function checkDistinct(requests: readonly BucketRequest[]): void {
  if (new Set(requests.map((r) => r.key)).size !== requests.length) throw new GatewayError('internal', 'one bucket named twice in one take', { rule: 'store.key' });
}

/**
 * {@link Store} for a single replica. One-time values and counters are held in insertion order
 * with their expiry; expired ones are swept from the front as new ones arrive (amortised O(1)),
 * and the whole map is swept before a full store refuses a key. Refusing when full (unlike
 * evicting the oldest) never lets a recorded key be accepted again within its lifetime. Buckets
 * are kept in recency order and the least recently used is dropped when full (a dropped bucket
 * only comes back full).
 */
export class MemoryStore implements Store {
  private readonly keys = new Map<string, Entry>();
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly maxKeys = MEMORY_STORE_MAX_KEYS,
    private readonly now: () => number = Date.now,
    private readonly maxBuckets = MEMORY_STORE_MAX_BUCKETS,
  ) {}

  /** Keys currently held (expired ones included until swept). */
  get size(): number {
    return this.keys.size;
  }

  /** Buckets currently held. */
  get bucketCount(): number {
    return this.buckets.size;
  }

  setIfAbsent(key: string, ttlMs: number, value = '1'): Promise<boolean> {
    try {
      return Promise.resolve(this.setIfAbsentNow(key, ttlMs, value));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  get(key: string): Promise<string | null> {
    const e = this.keys.get(key);
    return Promise.resolve(e && e.expires > this.now() ? e.value : null);
  }

  getMany(keys: readonly string[]): Promise<(string | null)[]> {
    const now = this.now();
    return Promise.resolve(
      keys.map((k) => {
        const e = this.keys.get(k);
        return e && e.expires > now ? e.value : null;
      }),
    );
  }

  increment(key: string, windowMs: number, by = 1): Promise<CounterHit> {
    const now = this.now();
    const e = this.keys.get(key);
    if (e && e.expires > now) {
      const count = (Number(e.value) || 0) + by;
      e.value = String(count);
      return Promise.resolve({ count, ttlMs: e.expires - now });
    }
    try {
      this.setIfAbsentNow(key, windowMs, String(by));
    } catch (err) {
      return Promise.reject(err);
    }
    return Promise.resolve({ count: by, ttlMs: Math.max(0, windowMs) });
  }

  set(key: string, value: string, ttlMs: number): Promise<void> {
    try {
      this.keys.delete(key);
      this.setIfAbsentNow(key, ttlMs, value);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  swap(key: string, expected: string, next: string | null, ttlMs: number): Promise<boolean> {
    const e = this.keys.get(key);
    if (!e || e.expires <= this.now() || e.value !== expected) return Promise.resolve(false);
    if (next === null) {
      this.keys.delete(key);
      return Promise.resolve(true);
    }
    return this.set(key, next, ttlMs).then(() => true);
  }

  async take(key: string, bucket: BucketSpec, cost: number): Promise<BucketTake> {
    return (await this.takeAll([{ key, bucket, cost }]))[0] as BucketTake;
  }

  takeAll(requests: readonly BucketRequest[]): Promise<BucketTake[]> {
    try {
      return Promise.resolve(this.takeAllNow(requests));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Synchronous {@link takeAll}, for the local fallback buckets. */
  takeAllNow(requests: readonly BucketRequest[]): BucketTake[] {
    checkDistinct(requests);
    const now = this.now();
    const buckets = requests.map((r) => this.bucket(r.key, r.bucket, now));
    buckets.forEach((b, i) => refill(b, (requests[i] as BucketRequest).bucket, now));
    const all = buckets.every((b, i) => b.tokens >= (requests[i] as BucketRequest).cost);
    return buckets.map((b, i) => {
      const r = requests[i] as BucketRequest;
      const enough = b.tokens >= r.cost;
      if (all) b.tokens -= r.cost;
      return report(b, r.bucket, r.cost, enough);
    });
  }

  private bucket(key: string, spec: BucketSpec, now: number): Bucket {
    let b = this.buckets.get(key);
    if (b) this.buckets.delete(key); // re-inserted below: Map order is recency
    else {
      if (this.buckets.size >= this.maxBuckets) {
        const oldest = this.buckets.keys().next().value;
        if (oldest !== undefined) this.buckets.delete(oldest);
      }
      b = { tokens: spec.capacity, updatedMs: now };
    }
    this.buckets.set(key, b);
    return b;
  }

  status(): StoreStatus {
    return { kind: 'memory', available: true, state: 'ready', errors: 0 };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private setIfAbsentNow(key: string, ttlMs: number, value: string): boolean {
    const now = this.now();
    const existing = this.keys.get(key);
    if (existing !== undefined && existing.expires > now) return false;
    this.sweepFront(now);
    if (this.keys.size >= this.maxKeys) {
      for (const [k, e] of this.keys) if (e.expires <= now) this.keys.delete(k);
      if (this.keys.size >= this.maxKeys) {
        throw new GatewayError('unavailable', 'the gateway cannot record more one-time values right now; retry later', { rule: 'store.full', retryAfterS: 5 });
      }
    }
    // Re-inserted at the end so insertion order roughly follows expiry.
    this.keys.delete(key);
    this.keys.set(key, { value, expires: now + Math.max(0, ttlMs) });
    return true;
  }

  private sweepFront(now: number): void {
    for (const [k, e] of this.keys) {
      if (e.expires > now) return;
      this.keys.delete(k);
    }
  }
}
