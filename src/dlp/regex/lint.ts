import * as cs from './charset.js';
import { PatternError, type CharNode, type Node, type RepNode } from './parse.js';

/**
 * Load-time linter for the safe pattern subset. A pattern that passes runs in time linear in
 * the input on a backtracking engine; the argument is in `src/dlp/README.md`. In short:
 *
 * 1. every quantifier is bounded, so a match is at most {@link LintResult.maxLength} long;
 * 2. no quantified part can match empty, and an alternation has at most one branch that can,
 *    so there is one way through any stretch of zero-width constructs;
 * 3. the pattern is deterministic: wherever the matcher stands, at most one next position can
 *    consume the next input character (Glushkov determinism, counter-aware for `{n}`).
 *
 * With 3, every alternative a backtracking matcher tries besides the one live path fails at
 * its first character, so one start position costs O(maxLength × pattern size).
 */

/** Upper bound of any single quantifier. */
export const MAX_REPEAT = 8192;
/** Nesting depth limit for quantified groups (keeps the linter's own work small). */
export const MAX_NESTING = 6;

/** What the linter learned about an accepted pattern. */
export interface LintResult {
  /** Longest possible match in code units. */
  readonly maxLength: number;
  /** Shortest possible match (always >= 1). */
  readonly minLength: number;
  /** Number of consuming positions (pattern size term of the cost bound). */
  readonly positions: number;
  /** Whether the pattern has a `(?<secret>...)` group. */
  readonly hasCapture: boolean;
}

/** Shortest match length of a node. */
export function minLen(n: Node): number {
  switch (n.t) {
    case 'char':
      return 1;
    case 'seq':
      return n.items.reduce((a, x) => a + minLen(x), 0);
    case 'alt':
      return Math.min(...n.alts.map(minLen));
    case 'rep':
      return n.min * minLen(n.node);
    case 'cap':
      return minLen(n.node);
    default:
      return 0;
  }
}

/** Longest match length of a node. */
export function maxLen(n: Node): number {
  switch (n.t) {
    case 'char':
      return 1;
    case 'seq':
      return n.items.reduce((a, x) => a + maxLen(x), 0);
    case 'alt':
      return Math.max(...n.alts.map(maxLen));
    case 'rep':
      return n.max * maxLen(n.node);
    case 'cap':
      return maxLen(n.node);
    default:
      return 0;
  }
}

function structure(n: Node, depth: number, inRep: boolean, caps: { n: number }): void {
  switch (n.t) {
    case 'seq':
      for (const x of n.items) structure(x, depth, inRep, caps);
      return;
    case 'alt': {
      const nullable = n.alts.filter((a) => minLen(a) === 0).length;
      if (nullable > 1) throw new PatternError('ambiguous: more than one alternative can match the empty string (or two alternatives are identical)', n.at);
      for (const a of n.alts) structure(a, depth, inRep, caps);
      return;
    }
    case 'rep':
      if (n.max > MAX_REPEAT) throw new PatternError(`quantifier bound ${n.max} exceeds ${MAX_REPEAT}`, n.at);
      if (n.max === 0) throw new PatternError('quantifier {0} matches nothing; remove it', n.at);
      if (minLen(n.node) === 0) throw new PatternError('a quantified part must not match the empty string', n.at);
      if (n.node.t !== 'char' && depth + 1 > MAX_NESTING) throw new PatternError(`quantified groups nest deeper than ${MAX_NESTING}`, n.at);
      structure(n.node, n.node.t === 'char' ? depth : depth + 1, true, caps);
      return;
    case 'cap':
      caps.n++;
      if (caps.n > 1) throw new PatternError('only one (?<secret>...) group is allowed', n.at);
      if (inRep) throw new PatternError('the (?<secret>...) group must not be inside a quantifier', n.at);
      if (minLen(n.node) === 0) throw new PatternError('the (?<secret>...) group must not match the empty string', n.at);
      structure(n.node, depth, inRep, caps);
      return;
    default:
      return;
  }
}

/** A follower of a position: where the matcher may go next, and through which loop edges. */
interface Entry {
  /** Consuming position, or null for "match ends here". */
  readonly pos: CharNode | null;
  /** Loop edges taken: `+id` repeat of a fixed-count loop, `-id` exit of it. */
  readonly tags: readonly number[];
}

class Determinism {
  private readonly follow = new Map<CharNode, readonly Entry[]>();
  private readonly repIds = new Map<RepNode, number>();
  private readonly sets = new Map<CharNode, cs.CharSet>();
  positions = 0;

  constructor(private readonly ignoreCase: boolean) {}

  private id(r: RepNode): number {
    let id = this.repIds.get(r);
    if (id === undefined) {
      id = this.repIds.size + 1;
      this.repIds.set(r, id);
    }
    return id;
  }

  /** Records followers of positions inside `n`, given what follows `n`; returns n's entry set. */
  visit(n: Node, after: readonly Entry[]): readonly Entry[] {
    switch (n.t) {
      case 'char':
        if (!this.follow.has(n)) this.positions++;
        this.follow.set(n, after);
        return [{ pos: n, tags: [] }];
      case 'seq': {
        let cur = after;
        for (let i = n.items.length - 1; i >= 0; i--) cur = this.visit(n.items[i]!, cur);
        return cur;
      }
      case 'alt':
        return n.alts.flatMap((a) => this.visit(a, after));
      case 'cap':
        return this.visit(n.node, after);
      case 'rep': {
        // The body cannot match empty, so its entry set does not depend on what follows it.
        const first = this.visit(n.node, []);
        const fixed = n.min === n.max;
        const id = this.id(n);
        const tag = (e: Entry, t: number): Entry => (fixed ? { pos: e.pos, tags: [...e.tags, t] } : e);
        const inner: Entry[] = [];
        if (n.max >= 2) for (const e of first) inner.push(tag(e, id));
        for (const e of after) inner.push(tag(e, -id));
        this.visit(n.node, inner);
        return n.min === 0 ? [...first, ...after] : first;
      }
      default:
        return after;
    }
  }

  private set(p: CharNode): cs.CharSet {
    let s = this.sets.get(p);
    if (!s) {
      s = this.ignoreCase ? cs.foldCase(p.set) : p.set;
      this.sets.set(p, s);
    }
    return s;
  }

  /** Throws when two entries of one follower list can consume the same character. */
  check(list: readonly Entry[], where: string): void {
    for (let i = 0; i < list.length; i++) {
      const a = list[i]!;
      if (!a.pos) continue;
      for (let j = i + 1; j < list.length; j++) {
        const b = list[j]!;
        if (!b.pos) continue;
        if (a.tags.some((t) => b.tags.includes(-t))) continue; // exclusive: one fixed-count loop repeats, the other exits
        if (cs.intersects(this.set(a.pos), this.set(b.pos))) {
          throw new PatternError(
            `ambiguous: ${where} both ${cs.describe(a.pos.set)} (offset ${a.pos.at}) and ${cs.describe(b.pos.set)} (offset ${b.pos.at}) can match the next character; ` +
              'make the choices disjoint (e.g. exclude the following character from a repeated class)',
            b.pos.at,
          );
        }
      }
    }
  }

  run(root: Node): void {
    const start = this.visit(root, [{ pos: null, tags: [] }]);
    this.check(start, 'at the start of a match');
    for (const [p, list] of this.follow) this.check(list, `after ${cs.describe(p.set)} (offset ${p.at})`);
  }
}

/** Checks a parsed pattern against the safe subset; throws {@link PatternError}. */
export function lint(root: Node, ignoreCase: boolean, maxMatch: number): LintResult {
  const caps = { n: 0 };
  structure(root, 0, false, caps);
  const minLength = minLen(root);
  if (minLength === 0) throw new PatternError('the pattern can match the empty string', -1);
  const maxLength = maxLen(root);
  if (maxLength > maxMatch) {
    throw new PatternError(`the longest possible match (${maxLength}) exceeds the limit of ${maxMatch}; tighten the quantifier bounds`, -1);
  }
  const d = new Determinism(ignoreCase);
  d.run(root);
  return { maxLength, minLength, positions: d.positions, hasCapture: caps.n === 1 };
}
