import { describe, expect, it } from 'vitest';
import type { AuthzMetadata } from '../../../src/authz/check.js';
import type { IdempotencyConfig } from '../../../src/config/types.js';
import { IdempotencyClaim, isReplay } from '../../../src/extproc/idempotency.js';
import { parseEntry, pendingMarker } from '../../../src/limits/idempotency.js';
import { MemoryStore } from '../../../src/limits/store.js';
import { setHeader } from '../../../src/extproc/proto.js';

const CFG: IdempotencyConfig = { header: 'idempotency-key', ttl_s: 60, in_flight_ttl_s: 5, max_stored_bytes: 64, required: false };
const KEY = 'idem:k';
const FP = 'a'.repeat(64);

function meta(claim: string | null, key: string | null = KEY): AuthzMetadata {
  return { tool: 'tickets', idempotency_key: key, idempotency_claim: claim } as unknown as AuthzMetadata;
}

async function claimed(): Promise<{ store: MemoryStore; claim: string; c: IdempotencyClaim }> {
  const store = new MemoryStore();
  const claim = pendingMarker(FP, 1);
  expect(await store.setIfAbsent(KEY, 5_000, claim)).toBe(true);
  const c = IdempotencyClaim.of(store, meta(claim), CFG);
  if (!c) throw new Error('no claim');
  return { store, claim, c };
}

/** Lets background releases reach the store. */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('ext_proc idempotency claims', () => {
  it('reads a claim or a replay from the hand-off, nothing else', () => {
    expect(IdempotencyClaim.of(new MemoryStore(), meta(null, null), CFG)).toBeNull();
    expect(IdempotencyClaim.of(new MemoryStore(), meta(null), CFG)).toBeNull();
    expect(IdempotencyClaim.of(new MemoryStore(), null, CFG)).toBeNull();
    expect(isReplay(meta(null))).toBe(true);
    expect(isReplay(meta('x'))).toBe(false);
    expect(isReplay(meta(null, null))).toBe(false);
  });

  it('stores the delivered answer: status, replayable headers after the gateway mutation, the body', async () => {
    const { store, c } = await claimed();
    expect(c.needsBody).toBe(true);
    await c.noteHeaders(201, { ':status': '201', 'content-type': 'text/plain', 'set-cookie': 'sid=1', location: '/t/1', connection: 'close' }, { setHeaders: [setHeader('content-type', 'application/json')], removeHeaders: ['location'] });
    await c.complete(Buffer.from('{"card":"[REDACTED]"}'));
    const entry = parseEntry((await store.get(KEY)) as string);
    expect(entry).toMatchObject({ state: 'done', status: 201, body_sha256: FP, headers: [['content-type', 'application/json']] });
    expect(Buffer.from((entry as { body: string }).body, 'base64').toString()).toBe('{"card":"[REDACTED]"}');
    expect(c.needsBody).toBe(false);
    // Settled once: a later release does not drop the stored answer.
    await c.release('late');
    await settle();
    expect(await store.get(KEY)).not.toBeNull();
  });

  it('releases on 5xx, an oversized or non-text body, and at the end of an exchange that stored nothing', async () => {
    const cases: ((c: IdempotencyClaim) => Promise<void>)[] = [
      async (c) => await c.noteHeaders(503, {}, {}),
      async (c) => await c.noteHeaders(299, {}, {}),
      async (c) => {
        await c.noteHeaders(200, { 'content-type': 'application/json' }, {});
        await c.complete(Buffer.alloc(65, 'x'));
      },
      async (c) => {
        await c.noteHeaders(200, {}, {});
        await c.complete(Buffer.from([0xff, 0xfe, 0x00]));
      },
      async (c) => c.release('exchange failed'),
    ];
    for (const run of cases) {
      const { store, c } = await claimed();
      await run(c);
      await settle();
      expect(await store.get(KEY)).toBeNull();
      expect(await store.setIfAbsent(KEY, 1000, 'next')).toBe(true);
    }
  });

  it('never touches a key another call holds now (its claim expired and was taken again)', async () => {
    const { store, c } = await claimed();
    await store.set(KEY, 'someone else', 5_000);
    await c.noteHeaders(200, {}, {});
    await c.complete(Buffer.from('{}'));
    expect(await store.get(KEY)).toBe('someone else');
    const other = await claimed();
    await other.store.set(KEY, 'newer', 5_000);
    await other.c.release('failed');
    await settle();
    expect(await other.store.get(KEY)).toBe('newer');
  });

  it('a store failure never becomes an error for the delivered answer', async () => {
    const store = new MemoryStore();
    const claim = pendingMarker(FP, 1);
    store.swap = () => Promise.reject(new Error('redis down'));
    const c = IdempotencyClaim.of(store, meta(claim), CFG)!;
    await c.noteHeaders(200, {}, {});
    await expect(c.complete(Buffer.from('{}'))).resolves.toBeUndefined();
    const r = IdempotencyClaim.of(store, meta(claim), CFG)!;
    await expect(r.release('x')).resolves.toBeUndefined();
    await settle();
  });
});
