import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../../../src/limits/tokenBucket.js';
import { GatewayError } from '../../../src/errors.js';

describe('token bucket', () => {
  it('allows a burst, then denies with retry_after, then refills', () => {
    const rl = new RateLimiter();
    const limit = { rps: 2, burst: 3, key: 'agent' as const };
    for (let i = 0; i < 3; i++) rl.take('t', limit, 'a', 1000);
    let err: GatewayError | null = null;
    try {
      rl.take('t', limit, 'a', 1000);
    } catch (e) {
      err = e as GatewayError;
    }
    expect(err?.code).toBe('rate_limited');
    expect(err?.httpStatus).toBe(429);
    expect(err?.retryAfterS).toBe(1);
    rl.take('t', limit, 'b', 1000); // other keys have their own bucket
    rl.take('t', limit, 'a', 1600); // 0.6 s at 2 rps refills one token
    expect(() => rl.take('t', limit, 'a', 1600)).toThrow(GatewayError);
  });
});
