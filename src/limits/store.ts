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

/** Keys one in-memory store holds at most; beyond that new keys are refused, not old ones dropped. */
export const MEMORY_STORE_MAX_KEYS = 200_000;

/**
 * {@link SharedStore} for a single replica. Keys are held in insertion order with their expiry;
 * expired ones are swept from the front as new ones arrive (amortised O(1)), and the whole map is
 * swept before a full store refuses a key. Refusing when full (unlike evicting the oldest) never
 * lets a recorded key be accepted again within its lifetime.
 */
export class MemoryStore implements SharedStore {
  private readonly keys = new Map<string, number>();

  constructor(
    private readonly maxKeys = MEMORY_STORE_MAX_KEYS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Keys currently held (expired ones included until swept). */
  get size(): number {
    return this.keys.size;
  }

  setIfAbsent(key: string, ttlMs: number): boolean {
    const now = this.now();
    const expires = this.keys.get(key);
    if (expires !== undefined && expires > now) return false;
    this.sweepFront(now);
    if (this.keys.size >= this.maxKeys) {
      for (const [k, e] of this.keys) if (e <= now) this.keys.delete(k);
      if (this.keys.size >= this.maxKeys) {
        throw new GatewayError('unavailable', 'the gateway cannot record more one-time values right now; retry later', { rule: 'store.full', retryAfterS: 5 });
      }
    }
    // Re-inserted at the end so insertion order roughly follows expiry.
    this.keys.delete(key);
    this.keys.set(key, now + Math.max(0, ttlMs));
    return true;
  }

  private sweepFront(now: number): void {
    for (const [k, e] of this.keys) {
      if (e > now) return;
      this.keys.delete(k);
    }
  }
}
