/**
 * A map holding at most `capacity` entries, evicting the least recently used. A Map iterates in
 * insertion order, so re-inserting on every hit keeps the oldest entry first.
 */
export class LruMap<K, V> {
  private readonly entries = new Map<K, V>();

  /** `capacity` 0 keeps nothing. */
  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 0) throw new RangeError(`capacity must be a non-negative integer, got ${capacity}`);
  }

  /** Number of entries held. */
  get size(): number {
    return this.entries.size;
  }

  /** The value for `key`, marking it most recently used. */
  get(key: K): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  /** Stores `value`, evicting the least recently used entry when full. */
  set(key: K, value: V): void {
    if (this.capacity === 0) return;
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
  }

  /** Removes `key`. */
  delete(key: K): void {
    this.entries.delete(key);
  }

  /** Removes everything. */
  clear(): void {
    this.entries.clear();
  }
}
