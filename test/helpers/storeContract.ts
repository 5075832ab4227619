import { expect, it } from 'vitest';
import type { Store } from '../../src/limits/store.js';

/**
 * The value operations every {@link Store} implementation must agree on (memory and Redis run
 * the same cases), registered as `it` blocks in the caller's describe.
 */
export function valueOperationsContract(make: () => Store): void {
  it('increment by an amount, in one window', async () => {
    const s = make();
    expect(await s.increment('usage', 60_000, 120)).toMatchObject({ count: 120 });
    expect(await s.increment('usage', 60_000, 30)).toMatchObject({ count: 150 });
    expect(await s.increment('usage', 60_000)).toMatchObject({ count: 151 });
  });

  it('getMany answers every key in order, null for absent ones', async () => {
    const s = make();
    await s.set('a', 'x', 60_000);
    await s.setIfAbsent('c', 60_000, 'z');
    expect(await s.getMany(['a', 'b', 'c'])).toEqual(['x', null, 'z']);
    expect(await s.getMany([])).toEqual([]);
  });

  it('set replaces a value; swap changes it only from the expected value', async () => {
    const s = make();
    expect(await s.setIfAbsent('m', 60_000, 'pending:1')).toBe(true);
    await s.set('m', 'pending:2', 60_000);
    expect(await s.get('m')).toBe('pending:2');
    // A stale owner cannot finish or release a newer owner's marker.
    expect(await s.swap('m', 'pending:1', 'done', 60_000)).toBe(false);
    expect(await s.swap('m', 'pending:1', null, 60_000)).toBe(false);
    expect(await s.get('m')).toBe('pending:2');
    expect(await s.swap('m', 'pending:2', 'done', 60_000)).toBe(true);
    expect(await s.get('m')).toBe('done');
    expect(await s.swap('m', 'done', null, 60_000)).toBe(true);
    expect(await s.get('m')).toBeNull();
    expect(await s.swap('absent', 'x', 'y', 60_000)).toBe(false);
    expect(await s.get('absent')).toBeNull();
    // Released: the next claim wins again.
    expect(await s.setIfAbsent('m', 60_000, 'pending:3')).toBe(true);
  });
}
