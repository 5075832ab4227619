import { describe, expect, it } from 'vitest';
import { compileCatalog, scanBytes } from '../../../src/dlp/index.js';

const scanner = compileCatalog();
const AKIA = 'AKIA' + '2OGYBAH6TQWERTYU';
const MARK = '[REDACTED:aws.access_key_id]';
const bin = (...parts: (string | number[])[]): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));
const utf16be = (s: string): Buffer => Buffer.from(s, 'utf16le').swap16();

describe('scanBytes', () => {
  it('UTF-8 text: redacted and re-encoded, byte offsets past multi-byte characters', () => {
    const input = Buffer.from(`€ ünïcode key ${AKIA} end`, 'utf8');
    const r = scanBytes(scanner, input, { charset: 'UTF-8' });
    expect(r.view).toBe('utf-8');
    expect(r.bytes.toString('utf8')).toBe(`€ ünïcode key ${MARK} end`);
    expect(input.subarray(r.findings[0]!.start, r.findings[0]!.end).toString()).toBe(AKIA);
  });

  it('UTF-16LE and UTF-16BE, declared, by BOM, or guessed', () => {
    const text = `deploy key ${AKIA} done`;
    const cases: [Buffer, string | undefined, string][] = [
      [Buffer.from(text, 'utf16le'), 'utf-16le', 'utf-16le'],
      [utf16be(text), 'utf-16be', 'utf-16be'],
      [Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]), undefined, 'utf-16le'],
      [Buffer.concat([Buffer.from([0xfe, 0xff]), utf16be(text)]), 'utf-16', 'utf-16be'],
      [Buffer.from(text, 'utf16le'), 'utf-16', 'utf-16le'],
    ];
    for (const [input, charset, view] of cases) {
      const r = scanBytes(scanner, input, charset ? { charset } : {});
      expect(r.view, `${charset}/${view}`).toBe(view);
      const bom = input.length - Buffer.byteLength(text, 'utf16le');
      expect(r.bytes.subarray(0, bom)).toEqual(input.subarray(0, bom));
      const body = r.bytes.subarray(bom);
      const decoded = view === 'utf-16le' ? body.toString('utf16le') : Buffer.from(body).swap16().toString('utf16le');
      expect(decoded).toBe(`deploy key ${MARK} done`);
      const f = r.findings[0]!;
      expect([f.start, f.end]).toEqual([bom + 22, bom + 22 + 40]);
    }
  });

  it('takes the charset parameter of a whole Content-Type value', () => {
    const r = scanBytes(scanner, Buffer.from(`k ${AKIA}`, 'utf16le'), { charset: 'text/plain; charset="UTF-16LE"' });
    expect(r.view).toBe('utf-16le');
    expect(r.bytes.toString('utf16le')).toBe(`k ${MARK}`);
  });

  it('latin1 bodies keep their encoding', () => {
    const input = Buffer.from(`café clé ${AKIA}`, 'latin1');
    const r = scanBytes(scanner, input, { charset: 'ISO-8859-1' });
    expect(r.view).toBe('latin1');
    expect(r.bytes.toString('latin1')).toBe(`café clé ${MARK}`);
  });

  it('octet-stream: a key between binary bytes is masked in place, same length', () => {
    const input = bin([0x00, 0x01, 0xff, 0xfe, 0x10], `deploy key ${AKIA}`, [0x00, 0x9c, 0x02], 'tail');
    const r = scanBytes(scanner, input, {});
    expect(r.view).toBe('strings');
    expect(r.bytes.length).toBe(input.length);
    const f = r.findings[0]!;
    expect(f.rule).toBe('aws.access_key_id');
    expect(input.subarray(f.start, f.end).toString()).toBe(AKIA);
    expect(r.bytes.subarray(f.start, f.end).toString()).toBe('X'.repeat(20));
    // Everything else is untouched.
    expect(Buffer.concat([r.bytes.subarray(0, f.start), r.bytes.subarray(f.end)])).toEqual(Buffer.concat([input.subarray(0, f.start), input.subarray(f.end)]));
  });

  it('a PEM private key inside binary is found, blocked and masked', () => {
    const pem = '-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx\n-----END RSA PRIVATE KEY-----\n';
    const input = bin([0x89, 0x50, 0x4e, 0x47, 0x00, 0x00], pem, [0x00, 0x00, 0xff]);
    const r = scanBytes(scanner, input, { charset: 'application/octet-stream' });
    expect(r.view).toBe('strings');
    expect(r.blocked).toBe(true);
    expect(r.findings.map((f) => f.rule)).toEqual(['private_key.rsa']);
    expect(r.bytes.toString('latin1')).not.toContain('MIIE');
    expect(r.bytes.length).toBe(input.length);
  });

  it('invalid UTF-8 declared as UTF-8 falls back to the strings view; a key split by a binary byte is not expected', () => {
    const input = bin('{"k":"', [0xc3, 0x28], `" , "x": "${AKIA}"}`, [0xff], 'AKIA2OGY', [0x00], 'BAH6TQWERTYU');
    const r = scanBytes(scanner, input, { charset: 'utf-8' });
    expect(r.view).toBe('strings');
    expect(r.findings.map((f) => f.rule)).toEqual(['aws.access_key_id']);
    expect(r.bytes.toString('latin1')).toContain('"x": "XXXXXXXXXXXXXXXXXXXX"');
  });

  it('decoded views apply to the runs of the strings view', () => {
    const b64 = Buffer.from(`key ${AKIA}`).toString('base64');
    const r = scanBytes(scanner, bin([0x00], b64, [0x00]), {});
    expect(r.view).toBe('strings');
    expect(r.findings.map((f) => [f.rule, f.encoding])).toEqual([['aws.access_key_id', 'base64']]);
    expect(r.bytes.subarray(1, 1 + b64.length).toString()).toBe('X'.repeat(b64.length));
  });

  it('clean text comes back as the same bytes', () => {
    const input = Buffer.from('just a normal sentence.\n');
    const r = scanBytes(scanner, input, {});
    expect(r).toEqual({ bytes: input, findings: [], blocked: false, view: 'utf-8' });
  });
});
