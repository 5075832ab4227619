import { GatewayError } from '../errors.js';
import type { RateLimitConfig } from '../config/types.js';

interface Bucket {
  tokens: number;
  updatedMs: number;
}

/** Upper bound on tracked buckets; the least recently refilled are evicted first. */
const MAX_BUCKETS = 100_000;

/**
 * In-process token buckets, one per (tool, key). A bucket refills continuously at `rps` up to
 * `burst`. Denials carry `retry_after_s` so agents can back off precisely.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  /** Takes one token or throws `rate_limited`. */
  take(tool: string, limit: RateLimitConfig, key: string, nowMs: number): void {
    const id = `${tool}\u0000${key}`;
    let b = this.buckets.get(id);
    if (!b) {
      if (this.buckets.size >= MAX_BUCKETS) {
        const oldest = this.buckets.keys().next().value;
        if (oldest !== undefined) this.buckets.delete(oldest);
      }
      b = { tokens: limit.burst, updatedMs: nowMs };
    } else {
      this.buckets.delete(id); // re-insert below to keep Map order = recency
      b.tokens = Math.min(limit.burst, b.tokens + ((nowMs - b.updatedMs) / 1000) * limit.rps);
      b.updatedMs = nowMs;
    }
    this.buckets.set(id, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return;
    }
    const retryAfterS = Math.max(1, Math.ceil((1 - b.tokens) / limit.rps));
    throw new GatewayError('rate_limited', `rate limit of ${limit.rps}/s (burst ${limit.burst}) per ${limit.key} exceeded for tool "${tool}"`, {
      retryAfterS,
      rule: 'limits.rate',
    });
  }
}
