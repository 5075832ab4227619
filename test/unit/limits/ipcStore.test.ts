import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayError } from '../../../src/errors.js';
import { IpcStore } from '../../../src/limits/ipcStore.js';
import { valueOperationsContract } from '../../helpers/storeContract.js';
import { forkPrimary, type ChildPrimary } from '../server/ipcChild.js';

/**
 * The store of a worker process: every operation answered by the primary's MemoryStore, in a
 * real forked process over the real IPC channel. A primary that is gone or mute fails closed
 * (`unavailable`, rule `store.unavailable`); the store's own refusals keep their meaning.
 */

async function refusal(p: Promise<unknown>): Promise<GatewayError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GatewayError);
  return err as GatewayError;
}

describe('IpcStore against a primary process', () => {
  let primary: ChildPrimary;
  let store: IpcStore;

  beforeAll(async () => {
    primary = await forkPrimary();
    store = new IpcStore(primary.peer, 2_000);
  });
  afterAll(async () => {
    await primary?.kill();
  });

  // A note travels ahead of the next request on the same channel: each case starts on a fresh store.
  valueOperationsContract(() => {
    primary.peer.notify('reset', null);
    return store;
  });

  it('token buckets live in the primary: the burst, then refused with the time to retry', async () => {
    const spec = { capacity: 3, ratePerS: 0.01 };
    const takes = [];
    for (let i = 0; i < 4; i++) takes.push(await store.take('tenant:acme', spec, 1));
    expect(takes.map((t) => t.allowed)).toEqual([true, true, true, false]);
    expect(takes[3]?.retryAfterMs).toBeGreaterThan(1000);
    // A second client of the same primary (another worker) sees the same bucket.
    const other = new IpcStore(primary.peer, 2_000);
    expect((await other.take('tenant:acme', spec, 1)).allowed).toBe(false);
    // takeAll is all or nothing across the channel too.
    const all = await store.takeAll([
      { key: 'a', bucket: spec, cost: 1 },
      { key: 'tenant:acme', bucket: spec, cost: 1 },
    ]);
    expect(all.map((t) => t.allowed)).toEqual([true, false]);
    expect((await store.take('a', spec, 3)).allowed).toBe(true);
  });

  it('one-time values: the second claim of a key loses, from any client', async () => {
    expect(await store.setIfAbsent('sig:1', 60_000)).toBe(true);
    expect(await new IpcStore(primary.peer).setIfAbsent('sig:1', 60_000)).toBe(false);
  });

  it('a store error raised in the primary arrives as the same GatewayError', async () => {
    const full = await forkPrimary({ env: { PRIMARY_MAX_KEYS: '1' } });
    try {
      const s = new IpcStore(full.peer);
      expect(await s.setIfAbsent('k1', 60_000)).toBe(true);
      const err = await refusal(s.setIfAbsent('k2', 60_000));
      expect(err.code).toBe('unavailable');
      expect(err.rule).toBe('store.full');
    } finally {
      await full.kill();
    }
  });
});

describe('IpcStore fails closed', () => {
  it('when the primary does not answer: unavailable after the timeout', async () => {
    const mute = await forkPrimary({ env: { PRIMARY_MUTE: '1' } });
    try {
      const s = new IpcStore(mute.peer, 200);
      const err = await refusal(s.take('k', { capacity: 1, ratePerS: 1 }, 1));
      expect(err.code).toBe('unavailable');
      expect(err.rule).toBe('store.unavailable');
      expect(s.status().errors).toBe(1);
    } finally {
      await mute.kill();
    }
  });

  it('when the primary is gone: every operation, pending or new, is refused', async () => {
    const p = await forkPrimary();
    const s = new IpcStore(p.peer, 5_000);
    expect(await s.setIfAbsent('x', 60_000)).toBe(true);
    expect(s.status()).toMatchObject({ kind: 'memory', available: true });
    await p.kill();
    for (const op of [s.setIfAbsent('y', 60_000), s.increment('c', 1000), s.get('x'), s.takeAll([{ key: 'b', bucket: { capacity: 1, ratePerS: 1 }, cost: 1 }])]) {
      const err = await refusal(op);
      expect(err.rule).toBe('store.unavailable');
    }
    expect(s.status()).toMatchObject({ available: false, state: 'primary_gone' });
  });
});
