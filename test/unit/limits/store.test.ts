import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../../src/errors.js';
import { MemoryStore } from '../../../src/limits/store.js';
import { valueOperationsContract } from '../../helpers/storeContract.js';

describe('MemoryStore value operations', () => {
  valueOperationsContract(() => new MemoryStore());

  it('values expire with their TTL', async () => {
    let now = 0;
    const s = new MemoryStore(100, () => now);
    await s.set('k', 'v', 100);
    now = 99;
    expect(await s.getMany(['k'])).toEqual(['v']);
    expect(await s.swap('k', 'v', 'w', 100)).toBe(true);
    now = 150;
    expect(await s.get('k')).toBe('w');
    now = 300;
    expect(await s.getMany(['k'])).toEqual([null]);
    expect(await s.swap('k', 'w', null, 100)).toBe(false);
  });
});

describe('MemoryStore.setIfAbsent', () => {
  it('records a key once until it expires', async () => {
    let now = 1_000;
    const s = new MemoryStore(100, () => now);
    expect(await s.setIfAbsent('a', 500)).toBe(true);
    expect(await s.setIfAbsent('a', 500)).toBe(false);
    now = 1_499;
    expect(await s.setIfAbsent('a', 500)).toBe(false);
    now = 1_500;
    expect(await s.setIfAbsent('a', 500)).toBe(true);
    expect(await s.setIfAbsent('b', 0)).toBe(true);
    expect(await s.setIfAbsent('b', 10)).toBe(true);
  });

  it('sweeps expired keys and refuses new ones when full of live keys, never forgetting a live one', async () => {
    let now = 0;
    const s = new MemoryStore(3, () => now);
    for (const k of ['a', 'b', 'c']) expect(await s.setIfAbsent(k, 100)).toBe(true);
    const err = await s.setIfAbsent('d', 100).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('unavailable');
    expect(await s.setIfAbsent('a', 100)).toBe(false);
    now = 100;
    expect(await s.setIfAbsent('d', 100)).toBe(true);
    expect(s.size).toBe(1);
  });

  it('get returns the value until it expires', async () => {
    let now = 0;
    const s = new MemoryStore(10, () => now);
    expect(await s.get('k')).toBeNull();
    await s.setIfAbsent('k', 50, 'v');
    expect(await s.get('k')).toBe('v');
    now = 50;
    expect(await s.get('k')).toBeNull();
  });
});

describe('MemoryStore.increment', () => {
  it('counts within a fixed window that starts at the first hit, then starts over', async () => {
    let now = 0;
    const s = new MemoryStore(10, () => now);
    expect(await s.increment('c', 1_000)).toEqual({ count: 1, ttlMs: 1_000 });
    now = 400;
    expect(await s.increment('c', 1_000)).toEqual({ count: 2, ttlMs: 600 });
    now = 1_000;
    expect(await s.increment('c', 1_000)).toEqual({ count: 1, ttlMs: 1_000 });
  });
});

describe('MemoryStore.take (token bucket)', () => {
  it('allows the burst, denies with the wait for the missing tokens, refills at the rate', async () => {
    let now = 0;
    const s = new MemoryStore(10, () => now);
    const spec = { capacity: 3, ratePerS: 2 };
    for (let i = 2; i >= 0; i--) expect(await s.take('b', spec, 1)).toMatchObject({ allowed: true, remaining: i });
    const denied = await s.take('b', spec, 1);
    expect(denied).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 500, resetMs: 1_500 });
    now = 500;
    expect((await s.take('b', spec, 1)).allowed).toBe(true);
    expect((await s.take('b', spec, 1)).allowed).toBe(false);
    // Other keys have their own bucket.
    expect((await s.take('other', spec, 3)).allowed).toBe(true);
  });

  it('takes a cost at once or not at all', async () => {
    const s = new MemoryStore(10, () => 0);
    const spec = { capacity: 3, ratePerS: 1 };
    expect(await s.take('b', spec, 4)).toMatchObject({ allowed: false, remaining: 3, retryAfterMs: 1_000 });
    expect(await s.take('b', spec, 2)).toMatchObject({ allowed: true, remaining: 1 });
  });

  it('takeAll takes from every bucket or from none', async () => {
    const s = new MemoryStore(10, () => 0);
    const a = { key: 'a', bucket: { capacity: 3, ratePerS: 1 }, cost: 1 };
    const b = { key: 'b', bucket: { capacity: 1, ratePerS: 1 }, cost: 1 };
    expect((await s.takeAll([a, b])).map((r) => r.allowed)).toEqual([true, true]);
    expect((await s.takeAll([a, b])).map((r) => r.allowed)).toEqual([true, false]);
    expect(await s.take('a', a.bucket, 2)).toMatchObject({ allowed: true, remaining: 0 });
    await expect(s.takeAll([a, a])).rejects.toThrow(/twice/);
  });

  it('never refills beyond the capacity however long it sat idle', async () => {
    let now = 0;
    const s = new MemoryStore(10, () => now);
    const spec = { capacity: 2, ratePerS: 10 };
    await s.take('b', spec, 2);
    now = 3_600_000;
    expect(await s.take('b', spec, 1)).toMatchObject({ allowed: true, remaining: 1 });
    expect((await s.take('b', spec, 2)).allowed).toBe(false);
  });

  it('holds at most maxBuckets buckets, dropping the least recently used', async () => {
    const s = new MemoryStore(10, () => 0, 2);
    const spec = { capacity: 1, ratePerS: 1 };
    await s.take('a', spec, 1);
    await s.take('b', spec, 1);
    await s.take('a', spec, 1); // a is now the most recent
    await s.take('c', spec, 1); // drops b
    expect(s.bucketCount).toBe(2);
    expect((await s.take('a', spec, 1)).allowed).toBe(false);
  });
});
