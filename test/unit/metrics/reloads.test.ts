import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PinStore } from '../../../src/mcp/pins.js';
import { registry } from '../../../src/metrics.js';

/** Watched-file reloads are counted with the same result labels as config and policy reloads. */

const dir = mkdtempSync(join(tmpdir(), 'reloads-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function count(file: string, result: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((f) => f.name === 'portcullis_file_reloads_total');
  return (m?.values ?? []).filter((v) => v.labels.file === file && v.labels.result === result).reduce((a, v) => a + v.value, 0);
}

describe('portcullis_file_reloads_total', () => {
  it('counts a pin file re-read as success, and an unreadable one as failure (the last good pins stay)', async () => {
    const path = join(dir, 'pins.json');
    writeFileSync(path, JSON.stringify({ version: 1, pins: {} }));
    const store = new PinStore(path);
    try {
      const [ok0, bad0] = [await count('pins', 'success'), await count('pins', 'failure')];
      store.reload();
      // At least: the file watch may re-read it too.
      expect(await count('pins', 'success')).toBeGreaterThanOrEqual(ok0 + 1);
      writeFileSync(path, '{ not json');
      store.reload();
      expect(await count('pins', 'failure')).toBeGreaterThanOrEqual(bad0 + 1);
      expect(store.all()).toEqual({ version: 1, pins: {} });
      // Only the two result values, the ones config and policy reloads use.
      const m = (await registry.getMetricsAsJSON()).find((f) => f.name === 'portcullis_file_reloads_total');
      for (const v of m?.values ?? []) expect(['success', 'failure']).toContain(v.labels.result);
    } finally {
      store.close();
    }
  });
});
