import { describe, expect, it } from 'vitest';
import { LruMap } from '../../../src/identity/lru.js';

describe('LruMap', () => {
  it('evicts the least recently used entry beyond its capacity', () => {
    const m = new LruMap<string, number>(2);
    m.set('a', 1);
    m.set('b', 2);
    expect(m.get('a')).toBe(1); // a is now more recent than b
    m.set('c', 3);
    expect(m.size).toBe(2);
    expect(m.get('b')).toBeUndefined();
    expect(m.get('a')).toBe(1);
    expect(m.get('c')).toBe(3);
  });

  it('updates in place without growing, and deletes and clears', () => {
    const m = new LruMap<string, number>(2);
    m.set('a', 1);
    m.set('a', 2);
    expect(m.size).toBe(1);
    expect(m.get('a')).toBe(2);
    m.delete('a');
    expect(m.get('a')).toBeUndefined();
    m.set('x', 1);
    m.clear();
    expect(m.size).toBe(0);
  });

  it('keeps nothing at capacity 0 and refuses a bad capacity', () => {
    const m = new LruMap<string, number>(0);
    m.set('a', 1);
    expect(m.size).toBe(0);
    expect(() => new LruMap(-1)).toThrow(RangeError);
    expect(() => new LruMap(1.5)).toThrow(RangeError);
  });

  it('stays bounded under a flood of distinct keys', () => {
    const m = new LruMap<number, number>(100);
    for (let i = 0; i < 10_000; i++) m.set(i, i);
    expect(m.size).toBe(100);
    expect(m.get(9_999)).toBe(9_999);
    expect(m.get(9_899)).toBeUndefined();
  });
});
