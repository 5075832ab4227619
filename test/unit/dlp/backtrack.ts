import * as cs from '../../../src/dlp/regex/charset.js';
import type { Node } from '../../../src/dlp/regex/parse.js';

/**
 * Reference backtracking matcher over the pattern syntax tree, with the semantics of a JS
 * regex (leftmost alternative first, greedy loops, one-character lookarounds) and a step
 * counter. Used to check the linear-time claim without timing anything.
 */

/** Thrown when a match attempt exceeds its step budget. */
export class BudgetExceeded extends Error {}

const LINE = (c: number): boolean => c === 10 || c === 13 || c === 0x2028 || c === 0x2029;
const WORD = (c: number): boolean => (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;

/** Counts the steps of one leftmost-first attempt at each start. */
export class Backtracker {
  steps = 0;
  private readonly sets = new Map<Node, cs.CharSet>();

  constructor(
    private readonly root: Node,
    private readonly ignoreCase: boolean,
    private readonly budget: number,
  ) {}

  private set(n: Node & { set: cs.CharSet }): cs.CharSet {
    let s = this.sets.get(n);
    if (!s) {
      s = this.ignoreCase ? cs.foldCase(n.set) : n.set;
      this.sets.set(n, s);
    }
    return s;
  }

  private m(n: Node, text: string, pos: number, k: (p: number) => boolean): boolean {
    if (++this.steps > this.budget) throw new BudgetExceeded();
    switch (n.t) {
      case 'char':
        return pos < text.length && cs.has(this.set(n), text.charCodeAt(pos)) && k(pos + 1);
      case 'seq': {
        const go = (i: number, p: number): boolean => (i === n.items.length ? k(p) : this.m(n.items[i]!, text, p, (q) => go(i + 1, q)));
        return go(0, pos);
      }
      case 'alt':
        for (const a of n.alts) if (this.m(a, text, pos, k)) return true;
        return false;
      case 'rep': {
        const rec = (i: number, p: number): boolean => {
          if (i < n.max && this.m(n.node, text, p, (q) => q !== p && rec(i + 1, q))) return true;
          return i >= n.min && k(p);
        };
        return rec(0, pos);
      }
      case 'cap':
        return this.m(n.node, text, pos, k);
      case 'assert': {
        const before = pos > 0 ? text.charCodeAt(pos - 1) : -1;
        const at = pos < text.length ? text.charCodeAt(pos) : -1;
        let ok: boolean;
        if (n.kind === 'bol') ok = pos === 0 || LINE(before);
        else if (n.kind === 'eol') ok = pos === text.length || LINE(at);
        else {
          const b = (before >= 0 && WORD(before)) !== (at >= 0 && WORD(at));
          ok = n.kind === 'wb' ? b : !b;
        }
        return ok && k(pos);
      }
      case 'look': {
        const i = n.behind ? pos - 1 : pos;
        const inSet = i >= 0 && i < text.length && cs.has(this.set(n), text.charCodeAt(i));
        return inSet !== n.negate && k(pos);
      }
    }
  }

  /** Match end of an attempt at `start` (longest-preferred as JS would), or -1. */
  attempt(text: string, start: number): number {
    let end = -1;
    this.m(this.root, text, start, (p) => {
      end = p;
      return true;
    });
    return end;
  }

  /** Leftmost-first scan of the whole text; returns the number of matches. */
  scanAll(text: string): { matches: number; maxStepsPerStart: number } {
    let matches = 0;
    let maxPer = 0;
    for (let s = 0; s < text.length; ) {
      const before = this.steps;
      const end = this.attempt(text, s);
      maxPer = Math.max(maxPer, this.steps - before);
      if (end > s) {
        matches++;
        s = end;
      } else s++;
    }
    return { matches, maxStepsPerStart: maxPer };
  }
}
