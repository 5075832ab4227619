import { describe, expect, it } from 'vitest';
import { BUILTIN_RULES } from '../../../src/dlp/catalog/index.js';
import { compileCatalog } from '../../../src/dlp/index.js';
import { compileSafePattern } from '../../../src/dlp/regex/index.js';
import { factor, parsePattern } from '../../../src/dlp/regex/parse.js';
import { Backtracker, BudgetExceeded } from './backtrack.js';
import { generate, sampleFor } from './samples.js';

/** Per-start step bound of the README argument: c * (L + 1) * P. */
const C = 6;

function tree(pattern: string, ignoreCase = false): { root: ReturnType<typeof factor>; ic: boolean } {
  const p = parsePattern(pattern);
  const ic = p.ignoreCase || ignoreCase;
  return { root: factor(p.root, ic), ic };
}

function positions(n: ReturnType<typeof factor>): number {
  switch (n.t) {
    case 'char':
      return 1;
    case 'seq':
      return n.items.reduce((a, x) => a + positions(x), 0);
    case 'alt':
      return n.alts.reduce((a, x) => a + positions(x), 0);
    case 'rep':
    case 'cap':
      return positions(n.node);
    default:
      return 0;
  }
}

/** Inputs built to make a naive matcher work hard on this rule: long runs of near-misses. */
function adversarial(pattern: string, sample: string): string[] {
  const g = generate(pattern, 3);
  const cut = (s: string): string => s.slice(0, Math.max(1, s.length - 1));
  const mutate = (s: string): string => s.slice(0, -1) + (s.endsWith('#') ? '%' : '#');
  const fill = (unit: string, size = 900): string => unit.repeat(Math.ceil(size / Math.max(1, unit.length))).slice(0, size);
  return [
    fill('a'),
    fill('0'),
    fill('A1'),
    fill(`${cut(g)} `),
    fill(cut(g)),
    fill(mutate(g)),
    fill(g.slice(0, Math.ceil(g.length / 2))),
    fill(cut(sample.trim())),
  ];
}

describe('linear time: step-counting backtracking interpreter', () => {
  it('every built-in rule stays within c·(L+1)·P steps per start on adversarial inputs', () => {
    const worst: string[] = [];
    for (const rule of BUILTIN_RULES) {
      const patterns = rule.span ? [rule.pattern, rule.span.end] : [rule.pattern];
      if (rule.trigger) patterns.push(rule.trigger);
      for (const pattern of patterns) {
        const info = compileSafePattern(pattern, { ignoreCase: rule.ignoreCase === true });
        const bound = C * (Math.min(info.maxLength, 900) + 1) * info.positions + 16;
        const { root, ic } = tree(pattern, rule.ignoreCase === true);
        for (const input of adversarial(pattern, sampleFor(rule))) {
          const bt = new Backtracker(root, ic, Number.MAX_SAFE_INTEGER);
          const { maxStepsPerStart } = bt.scanAll(input);
          if (maxStepsPerStart > bound) worst.push(`${rule.id}: ${maxStepsPerStart} > ${bound}`);
          expect(bt.steps).toBeLessThanOrEqual(input.length * bound);
        }
      }
    }
    expect(worst).toEqual([]);
  });

  it('the interpreter does blow up on patterns the linter rejects (the check can fail)', () => {
    for (const pattern of ['(?:a{1,10}){1,10}b', '(?:a|a){1,24}b', '[a-z0-9]{1,40}[a-z]{1,40}@']) {
      expect(() => compileSafePattern(pattern)).toThrow();
      const { root, ic } = tree(pattern);
      const bt = new Backtracker(root, ic, 2_000_000);
      const input = 'a'.repeat(60);
      const bound = C * 61 * positions(root);
      let exceeded = false;
      try {
        const { maxStepsPerStart } = bt.scanAll(input);
        exceeded = maxStepsPerStart > bound;
      } catch (err) {
        exceeded = err instanceof BudgetExceeded;
      }
      expect(exceeded, pattern).toBe(true);
    }
  });
});

describe('linear time: the real scanner on 1 MB adversarial inputs', () => {
  const scanner = compileCatalog();
  const MB = 1 << 20;
  const fill = (unit: string): string => unit.repeat(Math.ceil(MB / unit.length)).slice(0, MB);
  const cases: [string, string][] = [
    ['a', fill('a')],
    ['digits', fill('4')],
    ['digits and spaces', fill('4111 ')],
    ['AWS prefix near-misses', fill('AKIAABCDEFGHIJKLMNO ')],
    ['GitHub prefix near-misses', fill('ghp_abcdefghij ')],
    ['unterminated PEM headers', fill('-----BEGIN RSA PRIVATE KEY-----\nMIIE')],
    ['e-mail local parts without domains', fill('abcdefghij.klmnop+qrstuv@')],
    ['dotted quads', fill('1.2.3.')],
    ['hex colons', fill('ab:cd:')],
    ['password keys without values', fill('password=')],
    ['JWT prefixes', fill('eyJhbGciOi.eyJ')],
    ['base64 run', fill('QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3')],
  ];
  for (const [name, text] of cases) {
    it(`completes on 1 MB of ${name}`, () => {
      const findings = scanner.scan(text);
      for (let i = 1; i < findings.length; i++) expect(findings[i]!.start).toBeGreaterThanOrEqual(findings[i - 1]!.end);
      expect(findings.every((f) => f.end <= text.length)).toBe(true);
    });
  }
});

describe('linear time: throughput does not fall with input size', () => {
  const scanner = compileCatalog();
  const fill = (unit: string, size: number): string => unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
  /** Best of three runs, in ms (the best run is the one least disturbed by the machine). */
  const time = (text: string): number => {
    let best = Infinity;
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      scanner.scan(text);
      best = Math.min(best, performance.now() - t0);
    }
    return best;
  };
  // Inputs that keep every part of the engine busy: a keyword at every position (twitter
  // prefix), run starts of the grouped PII rules (digit groups), trigger hits at every step
  // (dotted quads, hex colons), open blocks, e-mail local parts, base64 runs.
  const units = ['a', '4111 ', '1.2.3.', 'ab:cd:', '-----BEGIN ', '-----BEGIN RSA PRIVATE KEY-----\n', 'abcdefghij.klmnop@', 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3+/', 'password=a', 'AKIAABCDEFGHIJKLMNO ', 'ghp_abcdefghij '];
  for (const unit of units) {
    it(`4x the input costs under 12x the time: ${JSON.stringify(unit)}`, () => {
      const small = time(fill(unit, 1 << 16));
      const large = time(fill(unit, 1 << 18));
      // Linear is 4x; the bound leaves room for a noisy machine, not for a quadratic engine.
      expect(large / Math.max(small, 0.05)).toBeLessThan(12);
    });
  }
});

