import { foldCase, toSource, union, type CharSet } from './charset.js';
import { lint, type LintResult } from './lint.js';
import { factor, parsePattern, PatternError, type Node } from './parse.js';

export { PatternError } from './parse.js';
export { MAX_REPEAT } from './lint.js';

/**
 * Compiles patterns of the safe subset into native JS regexes. The source users write is
 * parsed, factored and linted here; the emitted regex is regenerated from the checked tree,
 * so nothing unchecked reaches the engine.
 */

/** A compiled, linted pattern. */
export interface SafePattern {
  /** Global, multiline (`^`/`$` are line-wise, so they depend on one neighbouring character only). */
  readonly re: RegExp;
  readonly maxLength: number;
  readonly minLength: number;
  /** Pattern size term of the linear cost bound. */
  readonly positions: number;
  /** Whether match index 1 is the `(?<secret>...)` group (the regex then has the `d` flag). */
  readonly hasCapture: boolean;
  readonly ignoreCase: boolean;
  /** Every code unit a match can contain (case-folded for `(?i)`); lookarounds read but do not consume. */
  readonly alphabet: CharSet;
  /** Every code unit a match can start with (case-folded for `(?i)`). */
  readonly first: CharSet;
}

/** First code units of `n`'s matches, and whether `n` can match the empty string. */
function firsts(n: Node, out: CharSet[]): boolean {
  switch (n.t) {
    case 'char':
      out.push(n.set);
      return false;
    case 'seq':
      for (const x of n.items) if (!firsts(x, out)) return false;
      return true;
    case 'alt': {
      let nullable = false;
      for (const x of n.alts) nullable = firsts(x, out) || nullable;
      return nullable;
    }
    case 'rep':
      return firsts(n.node, out) || n.min === 0;
    case 'cap':
      return firsts(n.node, out);
    default:
      return true;
  }
}

function consumed(n: Node, out: CharSet[]): void {
  switch (n.t) {
    case 'char':
      out.push(n.set);
      return;
    case 'seq':
      for (const x of n.items) consumed(x, out);
      return;
    case 'alt':
      for (const x of n.alts) consumed(x, out);
      return;
    case 'rep':
    case 'cap':
      consumed(n.node, out);
      return;
    default:
      return;
  }
}

/** Options for {@link compileSafePattern}. */
export interface SafePatternOptions {
  readonly ignoreCase?: boolean;
  /** Longest match the pattern may be able to produce. */
  readonly maxMatch?: number;
}

function emit(n: Node, wrap: boolean): string {
  switch (n.t) {
    case 'char':
      return toSource(n.set);
    case 'seq': {
      const s = n.items.map((x) => emit(x, true)).join('');
      return wrap && n.items.length !== 1 ? `(?:${s})` : s;
    }
    case 'alt': {
      const s = n.alts.map((a) => emit(a, false)).join('|');
      return wrap ? `(?:${s})` : s;
    }
    case 'rep': {
      const body = n.node.t === 'char' ? emit(n.node, true) : `(?:${emit(n.node, false)})`;
      const q = n.min === 0 && n.max === 1 ? '?' : n.min === n.max ? `{${n.min}}` : `{${n.min},${n.max}}`;
      return body + q;
    }
    case 'assert':
      return n.kind === 'bol' ? '^' : n.kind === 'eol' ? '$' : n.kind === 'wb' ? '\\b' : '\\B';
    case 'look':
      return `(?${n.behind ? '<' : ''}${n.negate ? '!' : '='}${toSource(n.set)})`;
    case 'cap':
      return `(${emit(n.node, false)})`;
  }
}

/** Parses, lints and compiles one pattern; throws {@link PatternError} when outside the subset. */
export function compileSafePattern(source: string, opts: SafePatternOptions = {}): SafePattern {
  if (source.length === 0) throw new PatternError('empty pattern', -1);
  if (source.length > 4096) throw new PatternError('pattern longer than 4096 characters', -1);
  const parsed = parsePattern(source);
  const ignoreCase = parsed.ignoreCase || opts.ignoreCase === true;
  const root = factor(parsed.root, ignoreCase);
  const info: LintResult = lint(root, ignoreCase, opts.maxMatch ?? 8192);
  const flags = `gm${ignoreCase ? 'i' : ''}${info.hasCapture ? 'd' : ''}`;
  let re: RegExp;
  try {
    re = new RegExp(emit(root, false), flags);
  } catch (err) {
    throw new PatternError(`the engine rejected the pattern: ${(err as Error).message}`, -1);
  }
  const sets: CharSet[] = [];
  consumed(root, sets);
  const alphabet = ignoreCase ? foldCase(union(...sets)) : union(...sets);
  const starts: CharSet[] = [];
  firsts(root, starts);
  const first = ignoreCase ? foldCase(union(...starts)) : union(...starts);
  return { re, maxLength: info.maxLength, minLength: info.minLength, positions: info.positions, hasCapture: info.hasCapture, ignoreCase, alphabet, first };
}
