import { describe, expect, it } from 'vitest';
import { BUILTIN_RULES } from '../../../src/dlp/catalog/index.js';
import { compileCatalog, createStreamRedactor, redact, type DlpConfig, type Finding } from '../../../src/dlp/index.js';
import { DlpScanner } from '../../../src/dlp/scanner.js';
import { cardIssuer, creditCard, luhn } from '../../../src/dlp/validators.js';
import { referenceScan } from './reference.js';
import { NEGATIVES, generate, rng, sampleFor } from './samples.js';

/**
 * The optimised engine (keyword automaton, trigger and keyword windows, grouped always-run
 * rules, incremental streaming) must find exactly what the naive reference finds: every rule
 * run on its own over the whole text.
 */

function compile(cfg?: DlpConfig): DlpScanner {
  const s = compileCatalog(cfg);
  if (!(s instanceof DlpScanner)) throw new Error('unexpected scanner type');
  return s;
}

/** Fragments that start, almost complete or nearly miss many rules. */
const NEAR = [
  '4111 1111 1111 111', '4111-1111-1111-1111', '378282246310005', '5555555555554444', '(415) 555-267', '415-555-2671', '+1 415.555.2671',
  '+44 20 7946 095', '536-22-871', 'DE89 3704 0044 0532 0130 0', 'GB82WEST12345698765432', 'AB 12 34 56 C', 'AB123456D', '192.168.1.', '10.0.0.1.2',
  '1.2.3.4', '2001:db8::1', 'fe80::1:2:3', '00:1a:2b:3c:4d', 'ab-cd-ef-01-23-45', 'x@y', 'a.b@c.d.e', '@example.com', 'AKIA', 'AKIAIOSFODNN7EXAMPL',
  'ghp_', 'eyJ', 'eyJhbGciOiJIUzI1NiJ9.eyJ', '-----BEGIN ', '-----BEGIN RSA PRIVATE KEY-----', '-----END RSA PRIVATE KEY-----', 'password=',
  'password: "', 'token=', 'secret:', 'aws ', 'routing ', 'passport ', 'dob: 1990-01-0', 'sk_live_', 'xoxb-', '/home/', 'C:\\Users\\',
  '.internal', 'db.corp', 'Bearer ', 'Basic ', 'AccountKey=', 'sig=', 'sv=2020', 'https://u:p@h', 'postgres://a:b@', '123456789', '021000021',
];
const NOISE = ['"id":17,', '{"a":[1,2,3]}', ' ', '\n', '\t', '","', ': ', 'héllo ', '😀', '—', 'abc', 'XYZ', '0', '9', '-', ':', '.', '/', '='];

function corpus(seed: number, count: number): string[] {
  const r = rng(seed);
  const pieces = [
    ...BUILTIN_RULES.map((rule) => sampleFor(rule, 1 + Math.floor(r() * 50))),
    ...BUILTIN_RULES.filter((rule) => rule.trigger).map((rule) => generate(rule.trigger!, 3)),
    ...Object.values(NEGATIVES).flat(),
    ...NEAR,
  ];
  const texts: string[] = [];
  for (let t = 0; t < count; t++) {
    let s = '';
    const n = 1 + Math.floor(r() * 40);
    for (let i = 0; i < n; i++) {
      const p = r() < 0.5 ? pieces[Math.floor(r() * pieces.length)]! : NOISE[Math.floor(r() * NOISE.length)]!;
      // Sometimes cut a piece, so that matches end or start mid-token.
      s += r() < 0.2 ? p.slice(Math.floor(r() * p.length)) : p;
    }
    texts.push(s);
  }
  return texts;
}

/** Random soup over an alphabet dense in separators, digits and hex letters. */
function soup(seed: number, count: number, size: number, alphabet = '0123456789 -.:@+/_=abcdefABCDEF\nxyzQ~"'): string[] {
  const r = rng(seed);
  const out: string[] = [];
  for (let t = 0; t < count; t++) {
    let s = '';
    for (let i = 0; i < size; i++) s += alphabet[Math.floor(r() * alphabet.length)];
    out.push(s);
  }
  return out;
}

function streamed(scanner: DlpScanner, text: string, sizes: () => number): { text: string; findings: Finding[] } {
  const red = createStreamRedactor(scanner);
  let out = '';
  const findings: Finding[] = [];
  for (let i = 0; i < text.length; ) {
    const n = sizes();
    const res = red.push(text.slice(i, i + n));
    out += res.text;
    findings.push(...res.findings);
    i += n;
  }
  const last = red.end();
  return { text: out + last.text, findings: [...findings, ...last.findings] };
}

const CONFIGS: [string, DlpConfig | undefined][] = [
  ['built-in catalog', undefined],
  [
    'custom always-run rules (two groups, overlapping matches) and changed actions',
    {
      rules: [
        { id: 'acme.digits', pattern: '(?<![0-9])[0-9]{3}-[0-9]{2}', action: 'redact' },
        { id: 'acme.hexish', pattern: '[a-f]{2}[0-9]{2,6}', action: 'flag' },
        { id: 'acme.tag', pattern: '(?i)x(?:yz|q~)[0-9a-f]{1,8}', action: 'redact' },
        { id: 'acme.dots', pattern: '(?i)[a-f]\\.[a-f]', action: 'flag' },
      ],
      overrides: { 'pii.email': { action: 'redact' }, 'pii.ipv4': { action: 'block' }, 'private_key.rsa': { action: 'flag' } },
    },
  ],
];

describe('optimised scanner equals the naive reference', () => {
  for (const [name, cfg] of CONFIGS) {
    const scanner = compile(cfg);
    it(`scan: ${name}, corpus and random soup`, () => {
      const texts = [...corpus(101, 120), ...soup(7, 30, 2000), ''];
      let total = 0;
      for (const text of texts) {
        const want = referenceScan(scanner, text);
        total += want.length;
        expect(scanner.scan(text), text.slice(0, 120)).toEqual(want);
      }
      // The inputs do exercise the rules.
      expect(total).toBeGreaterThan(200);
    });

    it(`stream: ${name}, random chunkings`, () => {
      const r = rng(5);
      const chunkers = [() => 1, () => 1 + Math.floor(r() * 8), () => 1 + Math.floor(r() * 300), () => 1 + Math.floor(r() * 5000)];
      // Digit runs next to hex letters and separators: matches of every length end at chunk edges.
      const dense = soup(13, 6, 1500, '0123456789012345678901234567890123456789 -.ab(');
      for (const text of [...corpus(202, 40), ...soup(9, 8, 3000), ...dense]) {
        const want = referenceScan(scanner, text);
        for (const sizes of chunkers) {
          const got = streamed(scanner, text, sizes);
          expect(got.findings, text.slice(0, 120)).toEqual(want);
          expect(got.text).toBe(redact(text, want));
        }
      }
    });
  }

  it('the grouped always-run rules are exercised (the alternation finds their starts)', () => {
    const scanner = compile(CONFIGS[1]![1]);
    expect(scanner.compiled.groups.length).toBe(2);
    const text = 'ab123-45 xyz12 ab12 c.d 4111 1111 1111 1111';
    const got = scanner.scan(text).map((f) => f.rule);
    expect(got).toEqual(['acme.hexish', 'acme.digits', 'acme.tag', 'acme.hexish', 'acme.dots', 'pii.credit_card']);
    expect(scanner.scan(text)).toEqual(referenceScan(scanner, text));
  });
});

describe('card check', () => {
  /** The string-building formulation the card check must agree with. */
  function slowCard(s: string): boolean {
    let pan = '';
    let sep = -1;
    for (const ch of s) {
      if (ch >= '0' && ch <= '9') pan += ch;
      else if (sep === -1) sep = ch.charCodeAt(0);
      else if (sep !== ch.charCodeAt(0)) return false;
    }
    if (pan.length < 12 || pan.length > 19 || cardIssuer(pan) === null || !luhn(pan)) return false;
    return [...pan].some((d) => d !== pan[0]);
  }

  it('agrees with the issuer table and Luhn on random digit runs', () => {
    const r = rng(31);
    const prefixes = ['4', '51', '55', '2221', '2720', '34', '37', '6011', '65', '644', '622126', '3528', '300', '36', '62', '50', '56', '63', '67', '1', '9'];
    let accepted = 0;
    for (let i = 0; i < 20000; i++) {
      let s = prefixes[Math.floor(r() * prefixes.length)]!;
      const len = 10 + Math.floor(r() * 12);
      while (s.length < len) s += String(Math.floor(r() * 10));
      if (r() < 0.5) s = s.slice(0, -1) + String((10 - (Number(s.slice(-1)) % 10)) % 10);
      if (r() < 0.3) s = s.replace(/(\d{4})(?=\d)/g, r() < 0.5 ? '$1 ' : '$1-');
      if (r() < 0.05) s = s.replace(' ', '-');
      const want = slowCard(s);
      if (want) accepted++;
      expect(creditCard(s, 0, s.length), s).toBe(want);
    }
    expect(accepted).toBeGreaterThan(100);
  });
});
