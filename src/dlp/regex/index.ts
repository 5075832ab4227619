import { toSource } from './charset.js';
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
  return { re, maxLength: info.maxLength, minLength: info.minLength, positions: info.positions, hasCapture: info.hasCapture, ignoreCase };
}
