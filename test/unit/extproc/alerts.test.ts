import { describe, expect, it } from 'vitest';
import { DlpAlerter } from '../../../src/extproc/alerts.js';
import { MemoryStore, type Store } from '../../../src/limits/store.js';
import { registry } from '../../../src/metrics.js';

async function alertsFor(tool: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'portcullis_dlp_alerts_total');
  return (m?.values ?? []).filter((v) => v.labels.tool === tool).reduce((a, v) => a + v.value, 0);
}

describe('DLP alert window on the shared store', () => {
  it('counts one principal across replicas: one alert when their events together cross the threshold', async () => {
    const store = new MemoryStore();
    const [a, b] = [new DlpAlerter(5, 60, store), new DlpAlerter(5, 60, store)];
    const before = await alertsFor('t-shared');
    const now = Date.now();
    // 3 + 2 events: at the threshold, no alert yet (each replica alone would never get there).
    expect(await a.note('mallory', 't-shared', 3, now)).toBe(false);
    expect(await b.note('mallory', 't-shared', 2, now)).toBe(false);
    // The event that crosses it raises the alert, once; later ones in the window do not.
    expect(await a.note('mallory', 't-shared', 1, now)).toBe(true);
    expect(await b.note('mallory', 't-shared', 4, now)).toBe(false);
    // Another principal has its own window.
    expect(await b.note('trent', 't-shared', 5, now)).toBe(false);
    expect(await alertsFor('t-shared')).toBe(before + 1);
  });

  it('a jump past the threshold in one call raises it once', async () => {
    const alerter = new DlpAlerter(2, 60, new MemoryStore());
    expect(await alerter.note('eve', 't-jump', 10, Date.now())).toBe(true);
    expect(await alerter.note('eve', 't-jump', 10, Date.now())).toBe(false);
  });

  it('counts in this process when the store cannot answer, and never rejects', async () => {
    const broken = { increment: () => Promise.reject(new Error('redis away')) } as unknown as Store;
    const alerter = new DlpAlerter(2, 60, broken);
    const now = Date.now();
    expect(await alerter.note('oscar', 't-local', 2, now)).toBe(false);
    expect(await alerter.note('oscar', 't-local', 1, now)).toBe(true);
    expect(await alerter.note('oscar', 't-local', 1, now)).toBe(false);
    // Past the window the local count starts over.
    expect(await alerter.note('oscar', 't-local', 3, now + 61_000)).toBe(true);
  });
});
