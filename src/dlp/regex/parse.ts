import * as cs from './charset.js';
import type { CharSet } from './charset.js';

/**
 * Parser for the safe pattern subset (JavaScript regex syntax, non-unicode mode). Everything
 * outside the subset is a {@link PatternError} with the offset where it was found, so a bad
 * custom rule fails at load with a message the user can act on.
 */

/** A pattern outside the safe subset, or malformed. */
export class PatternError extends Error {
  constructor(
    message: string,
    /** Offset into the pattern source, when known. */
    readonly offset: number,
  ) {
    super(offset >= 0 ? `${message} (at offset ${offset})` : message);
    this.name = 'PatternError';
  }
}

/** One code unit from a set. */
export interface CharNode {
  readonly t: 'char';
  readonly set: CharSet;
  readonly at: number;
}
/** Concatenation. */
export interface SeqNode {
  readonly t: 'seq';
  readonly items: readonly Node[];
}
/** Alternation, ordered (leftmost branch preferred). */
export interface AltNode {
  readonly t: 'alt';
  readonly alts: readonly Node[];
  readonly at: number;
}
/** Greedy bounded repetition `{min,max}`. */
export interface RepNode {
  readonly t: 'rep';
  readonly node: Node;
  readonly min: number;
  readonly max: number;
  readonly at: number;
}
/** Zero-width assertion: `^`, `$` (line-wise), `\b`, `\B`. */
export interface AssertNode {
  readonly t: 'assert';
  readonly kind: 'bol' | 'eol' | 'wb' | 'nwb';
  readonly at: number;
}
/** Lookaround testing exactly one code unit next to the current position. */
export interface LookNode {
  readonly t: 'look';
  readonly behind: boolean;
  readonly negate: boolean;
  readonly set: CharSet;
  readonly at: number;
}
/** The `(?<secret>...)` group: the part of a match that is the finding. */
export interface CapNode {
  readonly t: 'cap';
  readonly node: Node;
  readonly at: number;
}
/** Pattern syntax tree. */
export type Node = CharNode | SeqNode | AltNode | RepNode | AssertNode | LookNode | CapNode;

/** Parse result. */
export interface ParsedPattern {
  readonly root: Node;
  /** Set by a leading `(?i)`. */
  readonly ignoreCase: boolean;
}

const SECRET_GROUP = 'secret';

class Parser {
  private i = 0;
  constructor(private readonly src: string) {}

  fail(msg: string, at = this.i): never {
    throw new PatternError(msg, at);
  }

  peek(): string | undefined {
    return this.src[this.i];
  }

  eat(s: string): boolean {
    if (this.src.startsWith(s, this.i)) {
      this.i += s.length;
      return true;
    }
    return false;
  }

  parse(): ParsedPattern {
    const ignoreCase = this.eat('(?i)');
    const root = this.alt();
    if (this.i < this.src.length) this.fail(`unexpected '${this.peek()}'`);
    return { root, ignoreCase };
  }

  alt(): Node {
    const at = this.i;
    const alts = [this.seq()];
    while (this.eat('|')) alts.push(this.seq());
    return alts.length === 1 ? alts[0]! : { t: 'alt', alts, at };
  }

  seq(): Node {
    const items: Node[] = [];
    while (this.i < this.src.length && this.peek() !== '|' && this.peek() !== ')') items.push(this.quantified());
    return items.length === 1 ? items[0]! : { t: 'seq', items };
  }

  quantified(): Node {
    const at = this.i;
    const atom = this.atom();
    const q = this.quantifier();
    if (q === null) return atom;
    if (atom.t === 'assert' || atom.t === 'look') this.fail('a quantifier cannot apply to an assertion', at);
    if (this.peek() === '?') this.fail('lazy quantifiers are not supported; use a greedy bounded quantifier');
    if (this.quantifierAhead()) this.fail('nested quantifier; wrap the inner part in (?:...)');
    return { t: 'rep', node: atom, min: q[0], max: q[1], at };
  }

  quantifierAhead(): boolean {
    const c = this.peek();
    return c === '*' || c === '+' || c === '?' || (c === '{' && /^\{\d+(,\d*)?\}/.test(this.src.slice(this.i, this.i + 24)));
  }

  quantifier(): [number, number] | null {
    const c = this.peek();
    if (c === '*' || c === '+') {
      this.fail(`unbounded quantifier '${c}'; use a bounded one such as {0,64} or {1,64}`);
    }
    if (c === '?') {
      this.i++;
      return [0, 1];
    }
    if (c !== '{') return null;
    const m = /^\{(\d+)(?:(,)(\d*))?\}/.exec(this.src.slice(this.i, this.i + 24));
    if (!m) this.fail("'{' must be escaped as \\{ when it is not a quantifier");
    const min = Number(m[1]);
    if (m[2] !== undefined && m[3] === '') this.fail(`unbounded quantifier '{${min},}'; give an upper bound`);
    const max = m[3] === undefined ? min : Number(m[3]);
    if (max < min) this.fail(`quantifier {${min},${max}} has max < min`);
    this.i += m[0].length;
    return [min, max];
  }

  atom(): Node {
    const at = this.i;
    const c = this.src[this.i++];
    switch (c) {
      case '(':
        return this.group(at);
      case '[':
        return { t: 'char', set: this.cls(), at };
      case '.':
        return { t: 'char', set: cs.DOT, at };
      case '^':
        return { t: 'assert', kind: 'bol', at };
      case '$':
        return { t: 'assert', kind: 'eol', at };
      case '\\':
        return this.escape(at);
      case '*':
      case '+':
      case '?':
        return this.fail('nothing to repeat', at);
      case '{':
        return this.fail("'{' must be escaped as \\{", at);
      case ')':
        return this.fail("unbalanced ')'", at);
      case undefined:
        return this.fail('unexpected end of pattern', at);
      default:
        return { t: 'char', set: cs.single(c.charCodeAt(0)), at };
    }
  }

  group(at: number): Node {
    if (this.eat('?')) {
      if (this.eat(':')) return this.closeGroup(this.alt(), at);
      for (const [tok, behind, negate] of [
        ['=', false, false],
        ['!', false, true],
        ['<=', true, false],
        ['<!', true, true],
      ] as const) {
        if (this.eat(tok)) {
          const inner = this.closeGroup(this.alt(), at);
          if (inner.t !== 'char') this.fail('a lookaround may only test a single character or class, e.g. (?![a-z0-9])', at);
          return { t: 'look', behind, negate, set: inner.set, at };
        }
      }
      if (this.eat('<')) {
        const m = /^([A-Za-z_][A-Za-z0-9_]*)>/.exec(this.src.slice(this.i, this.i + 64));
        if (!m) this.fail('malformed group name', at);
        this.i += m[0].length;
        const inner = this.closeGroup(this.alt(), at);
        return m[1] === SECRET_GROUP ? { t: 'cap', node: inner, at } : inner;
      }
      this.fail('unsupported group syntax (only (?:...), (?<name>...), one-character lookarounds and a leading (?i))', at);
    }
    return this.closeGroup(this.alt(), at);
  }

  closeGroup(inner: Node, at: number): Node {
    if (!this.eat(')')) this.fail("missing ')'", at);
    return inner;
  }

  /** Escape outside a class. */
  escape(at: number): Node {
    const c = this.src[this.i];
    if (c === 'b' || c === 'B') {
      this.i++;
      return { t: 'assert', kind: c === 'b' ? 'wb' : 'nwb', at };
    }
    if (c !== undefined && c >= '1' && c <= '9') this.fail('backreferences are not supported', at);
    if (c === 'k') this.fail('named backreferences are not supported', at);
    return { t: 'char', set: this.escapeSet(false), at };
  }

  /** Escape body after a backslash, shared by atoms and classes. */
  escapeSet(inClass: boolean): CharSet {
    const at = this.i - 1;
    const c = this.src[this.i++];
    switch (c) {
      case 'd':
        return cs.DIGIT;
      case 'D':
        return cs.negate(cs.DIGIT);
      case 'w':
        return cs.WORD;
      case 'W':
        return cs.negate(cs.WORD);
      case 's':
        return cs.SPACE;
      case 'S':
        return cs.negate(cs.SPACE);
      case 't':
        return cs.single(9);
      case 'n':
        return cs.single(10);
      case 'v':
        return cs.single(11);
      case 'f':
        return cs.single(12);
      case 'r':
        return cs.single(13);
      case 'b':
        if (inClass) return cs.single(8);
        break;
      case '0':
        if (!/[0-9]/.test(this.src[this.i] ?? '')) return cs.single(0);
        break;
      case 'x': {
        const m = /^[0-9a-fA-F]{2}/.exec(this.src.slice(this.i, this.i + 2));
        if (!m) this.fail('\\x needs two hex digits', at);
        this.i += 2;
        return cs.single(parseInt(m[0], 16));
      }
      case 'u': {
        const m = /^[0-9a-fA-F]{4}/.exec(this.src.slice(this.i, this.i + 4));
        if (!m) this.fail('\\u needs four hex digits', at);
        this.i += 4;
        return cs.single(parseInt(m[0], 16));
      }
      case 'c': {
        const l = this.src[this.i];
        if (!l || !/[A-Za-z]/.test(l)) this.fail('\\c needs a letter', at);
        this.i++;
        return cs.single(l.charCodeAt(0) % 32);
      }
      case undefined:
        this.fail('pattern ends with a backslash', at);
      default:
        if (/[\^$\\.*+?()[\]{}|/\-,:;=!<>#&~%@'"`\s]/.test(c)) return cs.single(c.charCodeAt(0));
    }
    return this.fail(`unsupported escape '\\${c}'`, at);
  }

  cls(): CharSet {
    const at = this.i - 1;
    const negated = this.eat('^');
    if (this.peek() === ']') this.fail('empty character class', at);
    const parts: number[] = [];
    while (true) {
      const c = this.src[this.i];
      if (c === undefined) this.fail("missing ']'", at);
      if (c === ']') {
        this.i++;
        break;
      }
      const lo = this.classAtom();
      if (this.peek() === '-' && this.src[this.i + 1] !== ']' && this.src[this.i + 1] !== undefined) {
        const dashAt = this.i;
        this.i++;
        const hi = this.classAtom();
        const a = cs.only(lo);
        const b = cs.only(hi);
        if (a < 0 || b < 0) this.fail('a class range needs single characters at both ends', dashAt);
        if (a > b) this.fail('class range out of order', dashAt);
        parts.push(a, b);
      } else {
        parts.push(...lo);
      }
    }
    const set = cs.fromRanges(parts);
    return negated ? cs.negate(set) : set;
  }

  classAtom(): CharSet {
    const c = this.src[this.i++]!;
    if (c === '\\') return this.escapeSet(true);
    if (c === '[' && this.peek() === ':') this.fail('POSIX classes like [:alpha:] are not supported', this.i - 1);
    return cs.single(c.charCodeAt(0));
  }
}

/** Parses a pattern of the safe subset; throws {@link PatternError}. */
export function parsePattern(src: string): ParsedPattern {
  return new Parser(src).parse();
}

function items(n: Node): readonly Node[] {
  return n.t === 'seq' ? n.items : [n];
}

function mkSeq(list: readonly Node[]): Node {
  return list.length === 1 ? list[0]! : { t: 'seq', items: list };
}

/**
 * Left-factors alternations whose branches start with the same single character or class:
 * `(?:sk_live|sk_test)` becomes `sk_(?:live|test)`. Same language and the same leftmost-first
 * preference among branches that can start at one position, but deterministic, so literal
 * keyword lists pass the linter. Only identical leading sets are merged (case-folded when the
 * pattern is case-insensitive).
 */
export function factor(n: Node, ignoreCase: boolean): Node {
  switch (n.t) {
    case 'seq':
      return mkSeq(n.items.map((x) => factor(x, ignoreCase)));
    case 'rep':
      return { ...n, node: factor(n.node, ignoreCase) };
    case 'cap':
      return { ...n, node: factor(n.node, ignoreCase) };
    case 'alt':
      return factorAlt(n.alts.map((a) => factor(a, ignoreCase)), n.at, ignoreCase);
    default:
      return n;
  }
}

function factorAlt(branches: readonly Node[], at: number, ignoreCase: boolean): Node {
  const groups = new Map<string, Node[][]>();
  const order: string[] = [];
  let unique = 0;
  for (const b of branches) {
    const list = items(b);
    const head = list[0];
    const k = head !== undefined && head.t === 'char' ? cs.key(ignoreCase ? cs.foldCase(head.set) : head.set) : `#${unique++}`;
    let g = groups.get(k);
    if (!g) {
      g = [];
      groups.set(k, g);
      order.push(k);
    }
    g.push([...list]);
  }
  const out: Node[] = [];
  for (const k of order) {
    const g = groups.get(k)!;
    if (g.length === 1 || k.startsWith('#')) {
      for (const list of g) out.push(mkSeq(list));
      continue;
    }
    const head = g[0]![0]!;
    const tails = g.map((list) => mkSeq(list.slice(1)));
    const rest = factorAlt(tails, at, ignoreCase);
    out.push(mkSeq([head, ...items(rest)].filter((x) => !(x.t === 'seq' && x.items.length === 0))));
  }
  return out.length === 1 ? out[0]! : { t: 'alt', alts: out, at };
}
