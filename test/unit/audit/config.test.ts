import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../../src/config/load.js';

const base = `
policy: { bundle: b.tar.gz }
tools:
  - { name: docs, upstream: tool_docs }
`;

describe('audit config section', () => {
  it('defaults: no fsync, no checkpoints', () => {
    const c = parseConfig(base, '/etc/portcullis/c.yaml');
    expect(c.audit.fsync).toBe(false);
    expect(c.audit.checkpoint).toBeUndefined();
  });

  it('checkpoints take a secret reference and default their intervals', () => {
    const c = parseConfig(`${base}audit: { file: a.jsonl, fsync: true, checkpoint: { key: { env: AUDIT_KEY }, anchor_file: anchors.jsonl } }\n`, '/etc/portcullis/c.yaml');
    expect(c.audit).toMatchObject({ fsync: true, checkpoint: { key: { env: 'AUDIT_KEY' }, every_records: 1000, every_seconds: 60, anchor_file: 'anchors.jsonl' } });
  });

  it('refuses a checkpoint without a key, a key that is not a secret reference, and bad intervals', () => {
    for (const bad of ['checkpoint: { every_records: 10 }', 'checkpoint: { key: "-----BEGIN PRIVATE KEY-----" }', 'checkpoint: { key: { file: k }, every_records: 0 }', 'checkpoint: { key: { file: k }, every_seconds: 0 }', 'fsync: "yes"']) {
      expect(() => parseConfig(`${base}audit: { file: a.jsonl, ${bad} }\n`, '/etc/portcullis/c.yaml'), bad).toThrow(ConfigError);
    }
  });
});
