import { describe, expect, it } from 'vitest';
import { BUILTIN_RULES } from '../../../src/dlp/catalog/index.js';
import { applyDlp, compileCatalog, createStreamRedactor, type DlpResult, type Finding, type Scanner } from '../../../src/dlp/index.js';
import { NEGATIVES, rng, sampleFor } from './samples.js';

const scanner = compileCatalog();
const body64 = (n: number, seed: number): string => {
  const r = rng(seed);
  const a = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  let s = '';
  for (let i = 0; i < n; i++) s += (i + 1) % 64 === 0 ? '\n' : a[Math.floor(r() * 64)];
  return s;
};
const pem = (n: number, seed: number, end = true): string =>
  `-----BEGIN RSA PRIVATE KEY-----\n${body64(n, seed)}\n${end ? '-----END RSA PRIVATE KEY-----' : ''}`;

function corpus(): string[] {
  const r = rng(2024);
  const pieces = [
    ...BUILTIN_RULES.map((rule) => sampleFor(rule)),
    ...Object.values(NEGATIVES).flat(),
    'The quick brown fox jumps over the lazy dog. ',
    '{"id":17,"created_at":"2024-05-01T12:30:45Z","tags":["a","b"],"price":19.99}',
    'héllo wörld 😀 ünïcödé — «quotes» ',
    'time 12:30:45, v1.2.3, ratio 3/4, std::vector<int>, a@b, password: ${X}',
    pem(300, 1),
    pem(6000, 2),
    pem(20000, 3),
  ];
  const seps = ['', ' ', '\n', '","', ': ', '\t'];
  const texts: string[] = [];
  for (let t = 0; t < 40; t++) {
    let s = '';
    const n = 2 + Math.floor(r() * 12);
    for (let i = 0; i < n; i++) s += pieces[Math.floor(r() * pieces.length)]! + seps[Math.floor(r() * seps.length)]!;
    texts.push(s);
  }
  texts.push(`head ${pem(9000, 4, false)}`);
  texts.push(BUILTIN_RULES.map((rule) => sampleFor(rule, 99)).join(' | '));
  texts.push('');
  return texts;
}

function streamed(s: Scanner, text: string, sizes: () => number, holdback?: number): DlpResult {
  const red = createStreamRedactor(s, holdback === undefined ? {} : { maxHoldbackBytes: holdback });
  let out = '';
  const findings: Finding[] = [];
  let blocked = false;
  for (let i = 0; i < text.length; ) {
    const n = sizes();
    const res = red.push(text.slice(i, i + n));
    out += res.text;
    findings.push(...res.findings);
    blocked ||= res.blocked;
    i += n;
  }
  const last = red.end();
  return { text: out + last.text, findings: [...findings, ...last.findings], blocked: blocked || last.blocked };
}

describe('stream redactor', () => {
  it('equals applyDlp on the whole text for any chunking (property test)', () => {
    const r = rng(77);
    const texts = corpus();
    const chunkers: [string, () => number][] = [
      ['1 char', () => 1],
      ['random 1-16', () => 1 + Math.floor(r() * 16)],
      ['random 1-700', () => 1 + Math.floor(r() * 700)],
      ['random 1-9000', () => 1 + Math.floor(r() * 9000)],
    ];
    for (const text of texts) {
      const whole = applyDlp(scanner, text, { decode: false });
      for (const [name, sizes] of chunkers) {
        if (name === '1 char' && text.length > 3000) continue;
        const got = streamed(scanner, text, sizes);
        expect(got.text, `${name}: ${text.slice(0, 80)}`).toBe(whole.text);
        expect(got.findings, name).toEqual(whole.findings);
        expect(got.blocked, name).toBe(whole.blocked);
      }
    }
  });

  it('equals applyDlp also when a block rule only flags and PII rules redact or block', () => {
    const alt = compileCatalog({
      overrides: { 'private_key.rsa': { action: 'flag' }, 'pii.email': { action: 'redact' }, 'pii.ipv4': { action: 'block' }, 'pii.internal_hostname': { action: 'redact' } },
    });
    const r = rng(11);
    for (const text of corpus().slice(0, 25)) {
      const whole = applyDlp(alt, text, { decode: false });
      for (const sizes of [() => 1 + Math.floor(r() * 16), () => 1 + Math.floor(r() * 3000)]) {
        const got = streamed(alt, text, sizes);
        expect(got.text).toBe(whole.text);
        expect(got.findings).toEqual(whole.findings);
        expect(got.blocked).toBe(whole.blocked);
      }
    }
  });

  it('never emits part of a secret split across chunks', () => {
    const tok = ['gh', 'p_', 'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8'].join('');
    const text = `before ${tok} after`;
    for (let cut = 1; cut < text.length; cut++) {
      const red = createStreamRedactor(scanner);
      const first = red.push(text.slice(0, cut)).text;
      const second = red.push(text.slice(cut)).text;
      const rest = red.end().text;
      for (let k = 4; k <= tok.length; k++) expect(first.includes(tok.slice(0, k))).toBe(false);
      expect(first + second + rest).toBe('before [REDACTED:github.pat] after');
    }
  });

  it('holds back a bounded tail on plain text', () => {
    const red = createStreamRedactor(scanner);
    const line = 'status ok, all systems nominal; next check in 5 minutes.\n';
    let pushed = 0;
    let emitted = 0;
    let maxHeld = 0;
    for (let i = 0; i < 500; i++) {
      pushed += line.length;
      emitted += red.push(line).text.length;
      maxHeld = Math.max(maxHeld, pushed - emitted);
    }
    emitted += red.end().text.length;
    expect(emitted).toBe(pushed);
    expect(maxHeld).toBeLessThanOrEqual(4096);
    expect(maxHeld).toBeLessThan(1500);
  });

  it('holds nothing of text that no match can grow into, and only the word that could', () => {
    const red = createStreamRedactor(scanner);
    // Every line ends in a newline after a full stop: no rule's match can run on past it.
    const line = 'status ok, all systems nominal; next check in 5 minutes.\n';
    for (let i = 0; i < 50; i++) expect(red.push(line).text).toBe(line);
    // "ops" could still become an e-mail address or a hostname: only a short tail waits (a
    // rule's alphabet is a set, not a position, so a few characters before the word may too).
    const head = red.push('contact ops').text;
    expect('contact '.startsWith(head)).toBe(true);
    expect('contact ops'.length - head.length).toBeLessThanOrEqual(8);
    const rest = red.push('@corp.example.com now').text + red.end().text;
    expect(head + rest).toBe('contact [REDACTED:pii.email] now');
  });

  it('redacts a PEM block longer than the hold-back without holding its body', () => {
    const key = pem(12000, 9);
    const bodyStart = key.indexOf('\n') + 1;
    const red = createStreamRedactor(scanner);
    let out = '';
    let sawMarkerBeforeEnd = false;
    let blockedBeforeEnd = false;
    const text = `{"k":"${key}","after":1}`;
    for (let i = 0; i < text.length; i += 100) {
      const res = red.push(text.slice(i, i + 100));
      out += res.text;
      if (i + 100 < text.indexOf('-----END')) {
        sawMarkerBeforeEnd ||= out.includes('[REDACTED:private_key.rsa]');
        blockedBeforeEnd ||= res.blocked;
      }
    }
    out += red.end().text;
    expect(sawMarkerBeforeEnd).toBe(true);
    expect(blockedBeforeEnd).toBe(true);
    expect(out).toBe('{"k":"[REDACTED:private_key.rsa]","after":1}');
    expect(out).not.toContain(key.slice(bodyStart, bodyStart + 20));
  });

  it('reports blocked from the first block finding on', () => {
    const red = createStreamRedactor(scanner);
    expect(red.push('hello ').blocked).toBe(false);
    red.push(pem(200, 5));
    expect(red.push(' more text '.repeat(500)).blocked).toBe(true);
    expect(red.end().blocked).toBe(true);
  });

  it('works with a custom hold-back and rejects one below the longest match', () => {
    const small = compileCatalog({ max_holdback_bytes: 4096, overrides: { jwt: { enabled: false } } });
    expect(() => createStreamRedactor(scanner, { maxHoldbackBytes: 512 })).toThrow(/at least/);
    const text = `x ${sampleFor(BUILTIN_RULES.find((r) => r.id === 'github.pat')!)} y`;
    const r = rng(3);
    expect(streamed(small, text, () => 1 + Math.floor(r() * 5), 8192).text).toBe(applyDlp(small, text, { decode: false }).text);
  });

  it('falls back to buffering for scanners it did not build', () => {
    const fake: Scanner = { ruleCount: 1, scan: (t) => (t.includes('x') ? [{ rule: 'fake', category: 'secret', action: 'redact', start: t.indexOf('x'), end: t.indexOf('x') + 1 }] : []) };
    const red = createStreamRedactor(fake);
    expect(red.push('abx').text).toBe('');
    expect(red.end().text).toBe('ab[REDACTED:fake]');
  });
});
