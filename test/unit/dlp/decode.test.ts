import { describe, expect, it } from 'vitest';
import { applyDlp, compileCatalog } from '../../../src/dlp/index.js';
import { rng } from './samples.js';

const scanner = compileCatalog();
// Assembled at run time so the source holds no literal credential.
const AKIA = 'AKIA' + '2OGYBAH6TQWERTYU';
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const jsonU = (s: string): string => [...s].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');

describe('decoded views in whole-text DLP', () => {
  it('finds a key behind one JSON \\u escape and redacts the whole escaped run', () => {
    const text = `{"key":"\\u0041${AKIA.slice(1)}","n":1}`;
    expect(applyDlp(scanner, text, { decode: false }).findings).toEqual([]);
    const r = applyDlp(scanner, text);
    expect(r.findings).toHaveLength(1);
    const f = r.findings[0]!;
    expect(f).toMatchObject({ rule: 'aws.access_key_id', encoding: 'json_escape' });
    expect(text.slice(f.start, f.end)).toBe(`\\u0041${AKIA.slice(1)}`);
    expect(r.text).toBe('{"key":"[REDACTED:aws.access_key_id]","n":1}');
  });

  it('decodes every character escaped, surrogate pairs and short escapes', () => {
    const text = `{"a":"\\ud83d\\ude00 ${jsonU(AKIA)}\\n","b":"ghp_\\/x"}`;
    const r = applyDlp(scanner, text);
    const f = r.findings.find((x) => x.rule === 'aws.access_key_id')!;
    expect(f.encoding).toBe('json_escape');
    expect(text.slice(f.start, f.end)).toBe(jsonU(AKIA));
    expect(r.text).toBe('{"a":"\\ud83d\\ude00 [REDACTED:aws.access_key_id]\\n","b":"ghp_\\/x"}');
  });

  it('sees a password in a doubly encoded JSON body', () => {
    const text = String.raw`{"body":"{\"password\":\"Xk8#pQ2vLm9z\"}"}`;
    const r = applyDlp(scanner, text);
    const f = r.findings.find((x) => x.rule === 'generic.password')!;
    expect(f.encoding).toBe('json_escape');
    expect(r.text).not.toContain('Xk8#pQ2vLm9z');
  });

  it('percent-encoding: maps a finding onto the %XX run and its tail', () => {
    const text = `GET /cb?k=%41%4B${AKIA.slice(2)}&page=2`;
    const r = applyDlp(scanner, text);
    expect(r.findings).toHaveLength(1);
    expect(r.findings[0]!.encoding).toBe('percent');
    expect(text.slice(r.findings[0]!.start, r.findings[0]!.end)).toBe(`%41%4B${AKIA.slice(2)}`);
    expect(r.text).toBe('GET /cb?k=[REDACTED:aws.access_key_id]&page=2');
  });

  it('HTML numeric entities, decimal and hex', () => {
    const text = `<td>&#65;&#x4b;${AKIA.slice(2)}</td>`;
    const r = applyDlp(scanner, text);
    expect(r.findings.map((f) => [f.rule, f.encoding])).toEqual([['aws.access_key_id', 'html_entity']]);
    expect(r.text).toBe('<td>[REDACTED:aws.access_key_id]</td>');
  });

  it('base64 of a key, of a keyed secret and of a PEM key: the whole run is redacted', () => {
    const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCY' + 'Zq3Lk9Xw2v';
    for (const [plain, rule] of [
      [`deploy key ${AKIA}`, 'aws.access_key_id'],
      [`aws_secret_access_key=${secret}\n`, 'aws.secret_access_key'],
      ['-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n', 'private_key.rsa'],
    ] as const) {
      const run = b64(plain);
      const text = `{"attachment":"${run}"}`;
      const r = applyDlp(scanner, text);
      expect(r.findings, rule).toHaveLength(1);
      const f = r.findings[0]!;
      expect(f.rule).toBe(rule);
      expect(f.encoding).toBe('base64');
      expect([f.start, f.end]).toEqual([15, 15 + run.length]);
      expect(r.text).toBe(`{"attachment":"[REDACTED:${rule}]"}`);
      expect(r.blocked).toBe(rule === 'private_key.rsa');
    }
  });

  it('finds a base64 run wherever it starts and whatever touches it', () => {
    const run = b64(`token ${AKIA} ok`);
    for (let off = 0; off < 45; off++) {
      for (const before of [' ', '"', 'Zm9v==', '=']) {
        const head = 'x'.repeat(off) + before;
        const text = `${head}${run} tail`;
        const r = applyDlp(scanner, text);
        const f = r.findings.find((x) => x.encoding === 'base64');
        // Padding ends the run before it, so the run is found exactly in every case.
        expect([f?.start, f?.end], `${off} ${before}`).toEqual([head.length, head.length + run.length]);
      }
    }
  });

  it('base64url runs decode too', () => {
    const run = Buffer.from(`?? token ${AKIA} ??>`, 'utf8').toString('base64url');
    expect(run).toMatch(/[-_]/);
    const r = applyDlp(scanner, `t=${run}`);
    expect(r.findings.map((f) => f.encoding)).toEqual(['base64']);
    expect(r.text).toBe('t=[REDACTED:aws.access_key_id]');
  });

  it('does not report twice what the raw view finds, and keeps raw offsets', () => {
    const text = `{"a":"${AKIA}","b":"\\u0041${AKIA.slice(1)}","c":"${b64(AKIA + ' x')}"}`;
    const r = applyDlp(scanner, text);
    expect(r.findings.map((f) => f.encoding ?? 'raw')).toEqual(['raw', 'json_escape', 'base64']);
    expect(r.findings[0]).toEqual({ rule: 'aws.access_key_id', category: 'secret', action: 'redact', start: 6, end: 26 });
    const starts = r.findings.map((f) => f.start);
    expect([...starts].sort((x, y) => x - y)).toEqual(starts);
    for (let i = 1; i < r.findings.length; i++) expect(r.findings[i]!.start).toBeGreaterThanOrEqual(r.findings[i - 1]!.end);
  });

  it('mixed content: raw, escaped and encoded secrets with ordinary text between them', () => {
    const text = `log: user ok\nq=%41${AKIA.slice(1)} then "\\u0067hp_${'a1B2'.repeat(9)}" and ${b64(`${AKIA} again`)} end`;
    const r = applyDlp(scanner, text);
    expect(r.findings.map((f) => `${f.rule}/${f.encoding}`)).toEqual(['aws.access_key_id/percent', 'github.pat/json_escape', 'aws.access_key_id/base64']);
    expect(r.text).toBe('log: user ok\nq=[REDACTED:aws.access_key_id] then "[REDACTED:github.pat]" and [REDACTED:aws.access_key_id] end');
  });

  it('false-positive guard: random base64 blobs, hex hashes and plain JSON with \\n escapes add nothing', () => {
    const rand = rng(7);
    const blob = Buffer.from(Array.from({ length: 3000 }, () => Math.floor(rand() * 256))).toString('base64');
    const doc = JSON.stringify({
      title: 'Quarterly report',
      body: 'Line one\nLine two\n\tindented "quoted" text\nsha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
      image: `data:image/png;base64,${blob}`,
      ids: ['internationalization', 'ThisIsALongCamelCaseIdentifier', 'd41d8cd98f00b204e9800998ecf8427e'],
      url: 'https://example.org/search?q=hello%20world%21&lang=en',
    });
    expect(applyDlp(scanner, doc)).toEqual(applyDlp(scanner, doc, { decode: false }));
  });

  it('decode: a list limits the views, false turns them off', () => {
    const text = `k=%41${AKIA.slice(1)} j="\\u0041${AKIA.slice(1)}"`;
    expect(applyDlp(scanner, text, { decode: ['percent'] }).findings.map((f) => f.encoding)).toEqual(['percent']);
    expect(applyDlp(scanner, text, { decode: false }).findings).toEqual([]);
    expect(applyDlp(scanner, text).findings.map((f) => f.encoding)).toEqual(['percent', 'json_escape']);
  });

  it('base64 whose slashes a JSON encoder escaped as \\/ is still decoded, and the whole run redacted', () => {
    const run = b64(`key ${AKIA} ???`);
    expect(run).toContain('/');
    // Unescaped, a run with '/' is one standard-alphabet run.
    const plain = applyDlp(scanner, `x ${run} y`);
    expect(plain.findings.map((f) => [f.start, f.end, f.encoding])).toEqual([[2, 2 + run.length, 'base64']]);
    const escaped = run.replace(/\//g, '\\/');
    const text = `{"blob":"${escaped}"}`;
    const r = applyDlp(scanner, text);
    expect(r.findings.map((f) => [f.rule, f.encoding])).toEqual([['aws.access_key_id', 'base64']]);
    expect(text.slice(r.findings[0]!.start, r.findings[0]!.end)).toBe(escaped);
    expect(r.text).toBe('{"blob":"[REDACTED:aws.access_key_id]"}');
  });

  it('decodes only one level: base64 of a JSON-escaped key is not unescaped again', () => {
    const inner = `{"k":"\\u0041${AKIA.slice(1)}"}`;
    expect(applyDlp(scanner, `x ${b64(inner)} y`).findings).toEqual([]);
  });
});
