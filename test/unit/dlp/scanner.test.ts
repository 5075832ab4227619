import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../../src/errors.js';
import { applyDlp, checkDlpConfig, compileCatalog, dlpConfigSchema, redact, type DlpConfig, type Finding } from '../../../src/dlp/index.js';
import { Ajv } from 'ajv';

const scanner = compileCatalog();
const awsKeyId = ['AK', 'IA', 'Q3EGOX7KZ2MP4WTB'].join('');
const awsSecret = ['wJalrXUtnFEMI/K7MDENG/', 'bPxRfiCYEXAMPLEKEY'].join('');
const pem = ['-----BEGIN RSA PRIVATE KEY-----', 'MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu', 'KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==', '-----END RSA PRIVATE KEY-----'].join('\n');

function sortedNonOverlapping(f: readonly Finding[]): boolean {
  return f.every((x, i) => x.end > x.start && (i === 0 || x.start >= f[i - 1]!.end));
}

describe('scan and redact', () => {
  it('redacts an AWS key, a PEM private key and a Luhn-valid card in a JSON body, which stays valid JSON', () => {
    const body = JSON.stringify({ aws_access_key_id: awsKeyId, aws_secret_access_key: awsSecret, key: pem, card: '4111 1111 1111 1111', note: 'hi' });
    const r = applyDlp(scanner, body);
    expect(r.findings.map((f) => f.rule)).toEqual(['aws.access_key_id', 'aws.secret_access_key', 'private_key.rsa', 'pii.credit_card']);
    expect(r.blocked).toBe(true);
    const parsed = JSON.parse(r.text) as Record<string, string>;
    expect(parsed).toEqual({
      aws_access_key_id: '[REDACTED:aws.access_key_id]',
      aws_secret_access_key: '[REDACTED:aws.secret_access_key]',
      key: '[REDACTED:private_key.rsa]',
      card: '[REDACTED:pii.credit_card]',
      note: 'hi',
    });
    for (const secret of [awsKeyId, awsSecret, 'MIIBOgIBAAJBAKj34', '4111 1111']) expect(r.text).not.toContain(secret);
  });

  it('leaves the same numbers alone when their checksums fail', () => {
    const body = JSON.stringify({ card: '4111 1111 1111 1112', iban: 'DE89 3704 0044 0532 0130 01', ssn: '666-12-3456', n: 1234567812345678 });
    const r = applyDlp(scanner, body);
    expect(r.findings).toEqual([]);
    expect(r.text).toBe(body);
    expect(r.blocked).toBe(false);
  });

  it('reports flags without changing the text, redacts e-mail by default, UTF-16 offsets', () => {
    const text = 'héllo 😀 mail bob@example.com from 10.0.0.1';
    const f = scanner.scan(text);
    expect(f.map((x) => [x.rule, x.action, text.slice(x.start, x.end)])).toEqual([
      ['pii.email', 'redact', 'bob@example.com'],
      ['pii.ipv4', 'flag', '10.0.0.1'],
    ]);
    expect(applyDlp(scanner, text).text).toBe('héllo 😀 mail [REDACTED:pii.email] from 10.0.0.1');
  });

  it('returns sorted, non-overlapping findings on dense mixed text', () => {
    const text = [
      `postgres://svc:${'Pw9x'}Qz7Lm@db.internal:5432/x`,
      `Authorization: Bearer ${'eyJhbGciOiJIUzI1NiJ9'}.${'eyJzdWIiOiIxIn0'}.abcDEF123`,
      'api_key="Zx8Qw2Lm9Vb4Nc7Kd1Pf" email ops@corp.example.com 4111111111111111',
      `password=${'ghp_'}${'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8'}`,
    ].join('\n');
    const f = scanner.scan(text);
    expect(sortedNonOverlapping(f)).toBe(true);
    const r = applyDlp(scanner, text);
    expect(r.text).not.toContain('Pw9xQz7Lm');
    expect(r.text).not.toContain('a1B2c3D4e5F6');
    expect(r.text).not.toContain('Zx8Qw2Lm9Vb4');
  });

  it('only the (?<secret>) part of a key=value rule is redacted', () => {
    expect(applyDlp(scanner, 'DB_PASSWORD=Xk8#pQ2vLm9z').text).toBe('DB_PASSWORD=[REDACTED:generic.password]');
  });

  it('redact() skips flags and tolerates overlapping input', () => {
    const f: Finding[] = [
      { rule: 'a', category: 'secret', action: 'redact', start: 0, end: 3 },
      { rule: 'b', category: 'pii', action: 'flag', start: 4, end: 5 },
      { rule: 'c', category: 'secret', action: 'block', start: 2, end: 6 },
    ];
    expect(redact('abcdefgh', f)).toBe('[REDACTED:a][REDACTED:c]gh');
    expect(redact('abc', [])).toBe('abc');
  });
});

describe('configuration', () => {
  it('overrides actions, disables rules and categories', () => {
    const s = compileCatalog({ overrides: { 'pii.email': { action: 'redact' }, 'pii.ipv4': { enabled: false } } });
    expect(s.ruleCount).toBe(scanner.ruleCount - 1);
    expect(applyDlp(s, 'a bob@example.com 10.0.0.1').text).toBe('a [REDACTED:pii.email] 10.0.0.1');
    const noPii = compileCatalog({ disabled_categories: ['pii'], overrides: { 'pii.email': { enabled: true } } });
    expect(noPii.scan('bob@example.com 4111 1111 1111 1111').map((f) => f.rule)).toEqual(['pii.email']);
    const block = compileCatalog({ overrides: { 'github.pat': { action: 'block' } } });
    expect(applyDlp(block, `x ${'ghp_'}${'a'.repeat(36)}`).blocked).toBe(true);
  });

  it('adds custom rules, with keywords, a secret group, a validator and context', () => {
    const cfg: DlpConfig = {
      rules: [
        { id: 'acme.token', pattern: 'acme_[a-z0-9]{32}', keywords: ['acme_'], action: 'block', description: 'ACME token' },
        { id: 'acme.employee_id', pattern: '(?<![0-9])E-(?<secret>[0-9]{6})(?![0-9])', action: 'redact', category: 'pii' },
        { id: 'acme.member', pattern: '(?<![0-9])[0-9]{12}(?![0-9])', action: 'redact', validator: 'luhn', context: { words: ['member'], before: 20 } },
      ],
    };
    const s = compileCatalog(cfg);
    const tok = `acme_${'k'.repeat(32)}`;
    const r = applyDlp(s, `t=${tok} emp E-123456 member no 123456789015 other 123456789015`);
    expect(r.text).toBe('t=[REDACTED:acme.token] emp E-[REDACTED:acme.employee_id] member no [REDACTED:acme.member] other 123456789015');
    expect(r.blocked).toBe(true);
    expect(r.findings.find((f) => f.rule === 'acme.employee_id')!.category).toBe('pii');
  });

  it('rejects bad custom patterns with an error naming the rule', () => {
    const bad: [string, RegExp][] = [
      ['x_[a-z]+', /unbounded quantifier/],
      ['(a)\\1', /backreferences/],
      ['[a-z]{1,9}[a-z0-9]{1,9}', /ambiguous/],
      ['(?=abc)x', /single character/],
      ['(unclosed', /missing '\)'/],
    ];
    for (const [pattern, why] of bad) {
      let err: unknown;
      try {
        compileCatalog({ rules: [{ id: 'my.rule', pattern, action: 'redact' }] });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(GatewayError);
      expect((err as GatewayError).message).toMatch(/rule "my\.rule"/);
      expect((err as GatewayError).message).toMatch(why);
      expect((err as GatewayError).message).toContain('$.rules[0].pattern');
    }
  });

  it('reports every problem at once: schema, unknown override, duplicate id', () => {
    expect(checkDlpConfig({ rules: [{ id: 'X', pattern: 'a', action: 'nuke' }] } as unknown as DlpConfig).problems.length).toBeGreaterThan(0);
    const r = checkDlpConfig({
      rules: [
        { id: 'github.pat', pattern: 'abc', action: 'redact' },
        { id: 'ok.one', pattern: 'a+', action: 'redact' },
      ],
      overrides: { 'no.such.rule': { enabled: false } },
    });
    expect(r.scanner).toBeNull();
    expect(r.problems.map((p) => p.path).sort()).toEqual(['$.overrides.no.such.rule', '$.rules[0].id', '$.rules[1].pattern']);
  });

  it('requires a hold-back that covers the longest match', () => {
    expect(() => compileCatalog({ max_holdback_bytes: 1024 })).toThrow(/max_holdback_bytes.*at least/);
    expect(() => compileCatalog({ max_holdback_bytes: 1024, overrides: { jwt: { enabled: false }, 'kubernetes.client_key_data': { enabled: false }, 'auth.bearer_token': { enabled: false } } })).toThrow(
      /at least/,
    );
    const big = compileCatalog({ max_holdback_bytes: 8192 });
    expect(big.ruleCount).toBe(scanner.ruleCount);
  });

  it('exports an ajv-compatible schema', () => {
    const validate = new Ajv({ strict: true }).compile(dlpConfigSchema);
    expect(validate({ overrides: { 'pii.email': { action: 'redact' } }, max_holdback_bytes: 4096 })).toBe(true);
    expect(validate({ overrides: { 'pii.email': {} } })).toBe(false);
    expect(validate({ rules: [{ id: 'a', pattern: 'x', action: 'redact', extra: 1 }] })).toBe(false);
  });
});
