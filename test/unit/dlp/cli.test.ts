import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runDlpScan, type DlpConfig } from '../../../src/dlp/index.js';

async function run(input: string | Buffer[], json: boolean, config?: DlpConfig): Promise<{ code: number; out: string }> {
  const src = typeof input === 'string' ? Readable.from([Buffer.from(input, 'utf8')]) : Readable.from(input);
  const sink = new PassThrough();
  const chunks: Buffer[] = [];
  sink.on('data', (c: Buffer) => chunks.push(c));
  const code = await runDlpScan(src, sink, { json, ...(config ? { config } : {}) });
  return { code, out: Buffer.concat(chunks).toString('utf8') };
}

const tok = ['gh', 'p_', 'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8'].join('');

describe('dlp scan command', () => {
  it('copies clean input unchanged with exit code 0', async () => {
    expect(await run('nothing to see here\n', false)).toEqual({ code: 0, out: 'nothing to see here\n' });
  });

  it('writes redacted text and exits 1 when something was found', async () => {
    const r = await run(`token ${tok} mail bob@example.com\n`, false);
    expect(r.out).toBe('token [REDACTED:github.pat] mail [REDACTED:pii.email]\n');
    expect(r.code).toBe(1);
  });

  it('exits 2 when a block rule fired', async () => {
    const pem = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n';
    const r = await run(`key:\n${pem}`, false);
    expect(r.code).toBe(2);
    expect(r.out).toBe('key:\n[REDACTED:private_key.openssh]\n');
  });

  it('--json prints findings with offsets but never the matched text', async () => {
    const text = `héllo ${tok} and 4111 1111 1111 1111`;
    const r = await run(text, true);
    expect(r.code).toBe(1);
    expect(r.out).not.toContain(tok);
    expect(r.out).not.toContain('4111');
    const doc = JSON.parse(r.out) as { findings: { rule: string; start: number; end: number }[]; blocked: boolean };
    expect(doc.blocked).toBe(false);
    expect(doc.findings.map((f) => f.rule)).toEqual(['github.pat', 'pii.credit_card']);
    expect(text.slice(doc.findings[0]!.start, doc.findings[0]!.end)).toBe(tok);
  });

  it('decodes UTF-8 split across input chunks and applies config', async () => {
    const bytes = Buffer.from(`😀 acme_${'k'.repeat(32)} é`, 'utf8');
    const parts = [bytes.subarray(0, 2), bytes.subarray(2, 9), bytes.subarray(9)];
    const r = await run(parts, false, { rules: [{ id: 'acme.token', pattern: 'acme_[a-z]{32}', keywords: ['acme_'], action: 'redact' }] });
    expect(r.out).toBe('😀 [REDACTED:acme.token] é');
  });
});
