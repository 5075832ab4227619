import { describe, expect, it } from 'vitest';
import { compileSafePattern, PatternError } from '../../../src/dlp/regex/index.js';
import { foldCase, fromRanges, intersects, negate, toSource } from '../../../src/dlp/regex/charset.js';
import { rng } from './samples.js';

describe('safe pattern subset', () => {
  it.each([
    ['a+', /unbounded quantifier '\+'/],
    ['a*', /unbounded quantifier '\*'/],
    ['a{2,}', /unbounded quantifier '\{2,\}'/],
    ['a{1,3}?', /lazy quantifiers/],
    ['(a)\\1', /backreferences/],
    ['(?<n>a)\\k<n>', /named backreferences/],
    ['(?=ab)c', /single character/],
    ['(?<!ab)c', /single character/],
    ['[a-z]{1,10}[a-z]{1,10}', /ambiguous/],
    ['(?:a|ab)(?:c|bc)', /ambiguous/],
    ['(?:a{1,3}){1,3}', /ambiguous/],
    ['(?:x?|y?)z', /more than one alternative can match the empty string/],
    ['(?:a?){1,3}', /must not match the empty string/],
    ['a?', /can match the empty string/],
    ['a{99999}', /exceeds 8192/],
    ['[a-z]{8192}[a-z]{8192}x', /longest possible match/],
    ['(?<secret>a)(?<secret>b)', /only one/],
    ['(?:(?<secret>a)b){2}', /inside a quantifier/],
    ['(?i)[a-z]{1,4}[A-Z]', /ambiguous/],
    ['[z-a]', /out of order/],
    ['\\p{L}', /unsupported escape/],
    ['(?s)a', /unsupported group syntax/],
    ['a{', /must be escaped/],
    ['(a', /missing '\)'/],
    ['', /empty pattern/],
  ])('rejects %s', (pattern, message) => {
    expect(() => compileSafePattern(pattern)).toThrow(PatternError);
    expect(() => compileSafePattern(pattern)).toThrow(message);
  });

  it.each([
    'AKIA[A-Z0-9]{16}',
    '(?:sk_live|sk_test|rk_live)_[A-Za-z0-9]{24}',
    '[a-z0-9]{1,10}@[a-z]{1,10}',
    '[0-9]{3}-?[0-9]{4}',
    '(?:a{2}){1,3}',
    '(?<![a-z])x[0-9]{2}(?![0-9])',
    '^abc$',
    '\\bword\\b',
    '(?i)(?:pass|pwd)[a-z0-9_]{0,10}=',
    'key=(?<secret>[a-f0-9]{32})',
  ])('accepts %s', (pattern) => {
    expect(() => compileSafePattern(pattern)).not.toThrow();
  });

  it('reports lengths and capture groups', () => {
    const p = compileSafePattern('ab[0-9]{2,5}(?<secret>x{3})');
    expect(p.maxLength).toBe(10);
    expect(p.minLength).toBe(7);
    expect(p.hasCapture).toBe(true);
    expect(p.re.flags).toContain('d');
    expect(p.re.flags).toContain('g');
  });

  it('left-factoring keeps the language and the chosen match', () => {
    const sources = ['(?:sk_live|sk_test|ab|abc|a)x?', '(?:foo|fob|fab|f)x?', '(?:pass|pwd|password)=?'];
    const rand = rng(5);
    const alphabet = 'abcdfklopstwx_=e';
    for (const src of sources) {
      const safe = compileSafePattern(src).re;
      const native = new RegExp(src, 'g');
      for (let i = 0; i < 300; i++) {
        let s = '';
        const n = 1 + Math.floor(rand() * 12);
        for (let j = 0; j < n; j++) s += alphabet[Math.floor(rand() * alphabet.length)];
        const a = [...s.matchAll(safe)].map((m) => `${m.index}:${m[0]}`);
        const b = [...s.matchAll(native)].map((m) => `${m.index}:${m[0]}`);
        expect(a, `${src} on ${s}`).toEqual(b);
      }
    }
  });

  it('rejects a keyword list where one word is a prefix of another followed by its suffix', () => {
    expect(() => compileSafePattern('(?:foo|food)d?')).toThrow(/ambiguous/);
  });

  it('case-insensitive patterns fold classes when checking ambiguity', () => {
    expect(() => compileSafePattern('[a-z]{1,4}[A-Z]')).not.toThrow();
    expect(() => compileSafePattern('[a-z]{1,4}[A-Z]', { ignoreCase: true })).toThrow(/ambiguous/);
    expect(compileSafePattern('abc', { ignoreCase: true }).re.test('xABCx')).toBe(true);
  });

  it('charset operations', () => {
    const az = fromRanges([0x61, 0x7a]);
    expect(intersects(az, negate(az))).toBe(false);
    expect(intersects(foldCase(az), fromRanges([0x41, 0x41]))).toBe(true);
    expect(intersects(foldCase(fromRanges([0xe9, 0xe9])), fromRanges([0xc9, 0xc9]))).toBe(true);
    expect(intersects(foldCase(fromRanges([0x17f, 0x17f])), fromRanges([0x73, 0x73]))).toBe(false);
    expect(new RegExp(toSource(fromRanges([0x2d, 0x2d, 0x5d, 0x5d, 0x5c, 0x5c]))).test(']')).toBe(true);
  });
});
