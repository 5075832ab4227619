/** A small seeded PRNG (mulberry32) and the choices the fuzz generators make with it. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** Random bytes. */
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }

  /** A string from a hostile alphabet: NUL, control characters, separators, non-ASCII, lone surrogates. */
  text(maxLen: number): string {
    const alphabet = ['a', 'Z', '0', '/', '.', '..', '%2F', '?', '&', '=', '\u0000', '\r\n', ':', ' ', '"', '\\', 'é', '\u202e', '\ud800', '😀', '$&', '{secret}', '\t'];
    let s = '';
    const n = this.int(maxLen + 1);
    for (let i = 0; i < n; i++) s += this.pick(alphabet);
    return s;
  }
}
