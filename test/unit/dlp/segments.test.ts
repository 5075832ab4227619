import { describe, expect, it } from 'vitest';
import { applyDlp, compileCatalog, createSegmentRedactor, type SegmentResult, type Scanner } from '../../../src/dlp/index.js';
import { BUILTIN_RULES } from '../../../src/dlp/catalog/index.js';
import { rng, sampleFor } from './samples.js';

const scanner = compileCatalog();
const AKIA = 'AKIA' + '2OGYBAH6TQWERTYU';
const MARK = '[REDACTED:aws.access_key_id]';

/** Pushes all segments, checks the release invariants, returns the released texts by index. */
function run(s: Scanner, segments: readonly string[]): { texts: string[]; results: SegmentResult[] } {
  const r = createSegmentRedactor(s);
  const results = segments.map((seg) => r.push(seg));
  results.push(r.end());
  const order = results.flatMap((x) => x.released.map((y) => y.index));
  expect(order).toEqual(segments.map((_, i) => i));
  const texts: string[] = [];
  for (const x of results) for (const y of x.released) texts[y.index] = y.text;
  const whole = applyDlp(s, segments.join(''), { decode: false });
  expect(texts.join('')).toBe(whole.text);
  expect(results.flatMap((x) => x.findings)).toEqual(whole.findings);
  return { texts, results };
}

describe('segment redactor', () => {
  it('a key split at every point over two segments: marker in the first, the rest removed', () => {
    for (let i = 1; i < AKIA.length; i++) {
      const { texts } = run(scanner, ['key: ' + AKIA.slice(0, i), AKIA.slice(i) + ' done']);
      expect(texts, String(i)).toEqual([`key: ${MARK}`, ' done']);
    }
  });

  it('a key split at every pair of points over three segments', () => {
    for (let i = 1; i < AKIA.length; i++) {
      for (let j = i; j < AKIA.length; j++) {
        const { texts } = run(scanner, ['{' + AKIA.slice(0, i), AKIA.slice(i, j), AKIA.slice(j) + '}']);
        expect(texts, `${i},${j}`).toEqual(['{' + MARK, '', '}']);
      }
    }
  });

  it('a key starting exactly at a segment boundary goes to the segment it starts in', () => {
    const { texts } = run(scanner, ['id ', AKIA, ' ok']);
    expect(texts).toEqual(['id ', MARK, ' ok']);
  });

  it('empty segments are released too, in order, as ""', () => {
    const { texts } = run(scanner, ['', 'a ', '', AKIA.slice(0, 9), '', AKIA.slice(9), '', '.']);
    expect(texts).toEqual(['', 'a ', '', MARK, '', '', '', '.']);
  });

  it('a clean segment that no match can continue is released by its own push', () => {
    const r = createSegmentRedactor(compileCatalog({ overrides: { 'pii.email': { action: 'redact' } } }));
    // Ends in a character no rule's match can contain after these words: nothing pending.
    expect(r.push('Hello, how can I help you today?\n').released).toEqual([{ index: 0, text: 'Hello, how can I help you today?\n' }]);
    expect(r.push('Sure.\n').released).toEqual([{ index: 1, text: 'Sure.\n' }]);
    // A trailing word could still become an e-mail address or hostname: held until it cannot.
    expect(r.push('Write to ops').released).toEqual([]);
    expect(r.push('@corp.example.com.\n').released.map((x) => x.text)).toEqual(['Write to [REDACTED:pii.email]', '.\n']);
  });

  it('every rule sample, cut into segments of 0 to 3 characters, gives the whole-text result', () => {
    const rand = rng(5);
    const text = BUILTIN_RULES.map((rule, i) => sampleFor(rule, i + 1)).join(' \n');
    const segs: string[] = [];
    for (let i = 0; i < text.length; ) {
      const n = Math.floor(rand() * 4);
      segs.push(text.slice(i, i + n));
      i += n;
    }
    run(scanner, segs);
  });

  it('never holds more than the hold-back: a segment is released once that much text follows it', () => {
    const r = createSegmentRedactor(scanner);
    const rand = rng(3);
    const words = ['alpha', 'beta', 'AKIA', ' ', '\n', 'x@', 'gamma.', '415', '-', 'ghp_', 'eyJ', 'delta '];
    let total = 0;
    const ends: number[] = [];
    let released = 0;
    for (let i = 0; i < 3000; i++) {
      const seg = words[Math.floor(rand() * words.length)]!;
      total += seg.length;
      ends.push(total);
      const res = r.push(seg);
      released += res.released.length;
      // Every segment that ended more than minHoldback characters ago has been released.
      const due = ends.filter((e) => total - e > (scanner as unknown as { minHoldback: number }).minHoldback).length;
      expect(released).toBeGreaterThanOrEqual(due);
    }
    expect(released + r.end().released.length).toBe(3000);
  });

  it('many small segments (token by token) give the whole-text result', () => {
    const rand = rng(11);
    const text = `Sure! Your key is ${AKIA} and the card 4111 1111 1111 1111; mail ops@db01.corp.internal or call +44 20 7946 0958.\n`.repeat(20);
    const segs: string[] = [];
    for (let i = 0; i < text.length; ) {
      const n = Math.floor(rand() * 6);
      segs.push(text.slice(i, i + n));
      i += n;
    }
    const { texts } = run(scanner, segs);
    expect(texts.join('')).not.toContain(AKIA);
  });

  it('a block rule sets blocked where its marker is released and swallows the body', () => {
    const pem = ['-----BEGIN RSA PRI', 'VATE KEY-----\nMIIE', 'owIBAAKCAQEA\n', '-----END RSA PRIVATE KEY-----', ' after'];
    const { texts, results } = run(scanner, ['intro ', ...pem]);
    expect(texts).toEqual(['intro ', '[REDACTED:private_key.rsa]', '', '', '', ' after']);
    const firstBlocked = results.findIndex((x) => x.blocked);
    // Blocked from the push that released the marker (the BEGIN line is complete there) on.
    expect(firstBlocked).toBe(results.findIndex((x) => x.released.some((y) => y.text.includes('[REDACTED:private_key.rsa]'))));
    expect(results.slice(firstBlocked).every((x) => x.blocked)).toBe(true);
  });

  it('refuses a hold-back budget below the scanner minimum, and use after end()', () => {
    expect(() => createSegmentRedactor(scanner, { maxHoldbackBytes: 10 })).toThrow(/at least/);
    const r = createSegmentRedactor(scanner);
    r.end();
    expect(() => r.push('x')).toThrow(/after end/);
  });

  it('works with a scanner not made by compileCatalog (held until end)', () => {
    const custom: Scanner = { ruleCount: 1, scan: (t) => scanner.scan(t) };
    const r = createSegmentRedactor(custom);
    expect(r.push('a ' + AKIA.slice(0, 5)).released).toEqual([]);
    expect(r.push(AKIA.slice(5)).released).toEqual([]);
    expect(r.end().released).toEqual([{ index: 0, text: 'a ' + MARK }, { index: 1, text: '' }]);
  });
});
