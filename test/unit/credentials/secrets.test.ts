import { describe, expect, it } from 'vitest';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SecretStore } from '../../../src/credentials/secrets.js';

describe('SecretStore file rotation', () => {
  it('notices a file rotated right after it was read, before the watcher first polled', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-secret-'));
    writeFileSync(join(dir, 'key'), 'old-value\n');
    const store = new SecretStore(dir);
    try {
      expect(store.prepare({ file: 'key' })).toBeNull();
      expect(store.get({ file: 'key' })).toBe('old-value');
      // Same tick: the watcher has not taken its first look at the file yet.
      writeFileSync(join(dir, 'key.next'), 'new-value\n');
      renameSync(join(dir, 'key.next'), join(dir, 'key'));
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && store.get({ file: 'key' }) !== 'new-value') await new Promise((r) => setTimeout(r, 50));
      expect(store.get({ file: 'key' })).toBe('new-value');
    } finally {
      store.close();
    }
  });
});
