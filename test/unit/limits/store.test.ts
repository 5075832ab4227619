import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../../src/errors.js';
import { MemoryStore } from '../../../src/limits/store.js';

describe('MemoryStore.setIfAbsent', () => {
  it('records a key once until it expires', () => {
    let now = 1_000;
    const s = new MemoryStore(100, () => now);
    expect(s.setIfAbsent('a', 500)).toBe(true);
    expect(s.setIfAbsent('a', 500)).toBe(false);
    now = 1_499;
    expect(s.setIfAbsent('a', 500)).toBe(false);
    now = 1_500;
    expect(s.setIfAbsent('a', 500)).toBe(true);
    expect(s.setIfAbsent('b', 0)).toBe(true);
    expect(s.setIfAbsent('b', 10)).toBe(true);
  });

  it('sweeps expired keys and refuses new ones when full of live keys, never forgetting a live one', () => {
    let now = 0;
    const s = new MemoryStore(3, () => now);
    for (const k of ['a', 'b', 'c']) expect(s.setIfAbsent(k, 100)).toBe(true);
    const err = (() => {
      try {
        s.setIfAbsent('d', 100);
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('unavailable');
    expect(s.setIfAbsent('a', 100)).toBe(false);
    now = 100;
    expect(s.setIfAbsent('d', 100)).toBe(true);
    expect(s.size).toBe(1);
  });
});
