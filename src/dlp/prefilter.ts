/**
 * Keyword prefilter: one Aho-Corasick pass (ASCII, case-insensitive) over the text tells which
 * rules can match and where. Built once per catalog; the scan loop is a table lookup per byte.
 */

/** Occurrences found by one {@link KeywordAutomaton.run}: keyword ids and end offsets (exclusive). */
export interface Hits {
  count: number;
  kw: Int32Array;
  end: Float64Array;
}

let scratch = Buffer.allocUnsafe(1 << 16);

/**
 * Bytes of `text[from, text.length)`, one per UTF-16 unit (latin1 truncation: a non-ASCII
 * unit maps to some byte, which can only add hits), in a buffer reused between calls.
 */
function bytesOf(text: string, from: number): Buffer {
  const len = text.length - from;
  if (scratch.length < len) scratch = Buffer.allocUnsafe(Math.max(len, scratch.length * 2));
  scratch.write(from === 0 ? text : text.slice(from), 0, 'latin1');
  return scratch;
}

/** Compiled multi-keyword matcher. */
export class KeywordAutomaton {
  /** Lower-cased keywords by id. */
  readonly keywords: readonly string[];
  private readonly width: number;
  private readonly cls = new Uint8Array(256);
  /** Row offsets of the next state; negative when the target state reports keywords. */
  private readonly delta: Int32Array;
  private readonly outStart: Int32Array;
  private readonly outList: Int32Array;
  private readonly hits: Hits = { count: 0, kw: new Int32Array(256), end: new Float64Array(256) };
  /** Per state (by row offset / width): length of the keyword prefix it stands for. */
  private readonly depths: Int32Array;

  constructor(keywords: readonly string[]) {
    this.keywords = keywords;
    const alphabet = new Map<number, number>();
    for (const k of keywords) {
      for (let i = 0; i < k.length; i++) {
        const c = k.charCodeAt(i);
        if (c > 0x7f) throw new Error(`keyword "${k}" is not ASCII`);
        if (!alphabet.has(c)) alphabet.set(c, alphabet.size + 1);
      }
    }
    const width = alphabet.size + 1;
    this.width = width;
    for (let b = 0; b < 256; b++) {
      const lower = b >= 0x41 && b <= 0x5a ? b + 32 : b;
      this.cls[b] = alphabet.get(lower) ?? 0;
    }
    // Trie.
    const next: number[][] = [new Array<number>(width).fill(-1)];
    const own: number[][] = [[]];
    const depth: number[] = [0];
    keywords.forEach((k, id) => {
      let s = 0;
      for (let i = 0; i < k.length; i++) {
        const c = this.cls[k.charCodeAt(i)]!;
        if (next[s]![c] === -1) {
          next[s]![c] = next.length;
          next.push(new Array<number>(width).fill(-1));
          own.push([]);
          depth.push(i + 1);
        }
        s = next[s]![c]!;
      }
      own[s]!.push(id);
    });
    // Failure links by BFS, turning the trie into a complete DFA.
    const n = next.length;
    const fail = new Int32Array(n);
    const outs: number[][] = own.map((o) => [...o]);
    const queue: number[] = [];
    for (let c = 0; c < width; c++) {
      const t = next[0]![c]!;
      if (t === -1) next[0]![c] = 0;
      else {
        fail[t] = 0;
        queue.push(t);
      }
    }
    for (let qi = 0; qi < queue.length; qi++) {
      const s = queue[qi]!;
      outs[s]!.push(...outs[fail[s]!]!.filter((x) => !outs[s]!.includes(x)));
      for (let c = 0; c < width; c++) {
        const t = next[s]![c]!;
        if (t === -1) next[s]![c] = next[fail[s]!]![c]!;
        else {
          fail[t] = next[fail[s]!]![c]!;
          queue.push(t);
        }
      }
    }
    this.delta = new Int32Array(n * width);
    this.outStart = new Int32Array(n + 1);
    const flat: number[] = [];
    for (let s = 0; s < n; s++) {
      this.outStart[s] = flat.length;
      flat.push(...outs[s]!);
      for (let c = 0; c < width; c++) {
        const t = next[s]![c]!;
        this.delta[s * width + c] = outs[t]!.length > 0 ? -(t * width) : t * width;
      }
    }
    this.outStart[n] = flat.length;
    this.outList = Int32Array.from(flat);
    this.depths = Int32Array.from(depth);
  }

  /**
   * Length of the longest suffix of the text consumed so far that is a prefix of a keyword,
   * given the `state` returned by {@link run}: a keyword occurrence not complete yet starts
   * no earlier than that many characters before the end.
   */
  pendingDepth(state: number): number {
    return this.keywords.length === 0 ? 0 : this.depths[state / this.width]!;
  }

  /**
   * Scans `text[from, text.length)` continuing from automaton `state` (0 at the start of a
   * stream). Offsets in the returned hits are `base + index`. Returns the hits (reused
   * between calls, ordered by end) and the state to continue from.
   */
  run(text: string, from: number, base: number, state: number): { hits: Hits; state: number } {
    const hits = this.hits;
    hits.count = 0;
    const n = text.length;
    if (this.keywords.length === 0 || from >= n) return { hits, state };
    const bytes = bytesOf(text, from);
    const delta = this.delta;
    const cls = this.cls;
    const len = n - from;
    const off = base + from + 1;
    let s = state;
    for (let i = 0; i < len; i++) {
      s = delta[s + cls[bytes[i]!]!]!;
      if (s < 0) {
        s = -s;
        this.record(hits, s / this.width, off + i);
      }
    }
    return { hits, state: s };
  }

  private record(h: Hits, state: number, end: number): void {
    for (let j = this.outStart[state]!; j < this.outStart[state + 1]!; j++) this.push(h, this.outList[j]!, end);
  }

  private push(h: Hits, kw: number, end: number): void {
    if (h.count === h.kw.length) {
      const k2 = new Int32Array(h.count * 2);
      k2.set(h.kw);
      const e2 = new Float64Array(h.count * 2);
      e2.set(h.end);
      h.kw = k2;
      h.end = e2;
    }
    h.kw[h.count] = kw;
    h.end[h.count] = end;
    h.count++;
  }
}
