import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AnchorFile, readAnchors } from '../../../src/audit/anchors.js';
import { GENESIS_HEAD, sealLine, type ChainHead } from '../../../src/audit/chain.js';
import { CheckpointSigner, generateCheckpointKeys, keyIdOf, publicKeyFromPem } from '../../../src/audit/checkpoint.js';
import { buildForwardedRecord, type AuditRecord } from '../../../src/audit/record.js';
import { AuditLogger, HashChainFileSink, fromConfig, type FileSinkOptions } from '../../../src/audit/sinks.js';
import { verifyAuditFile } from '../../../src/audit/verify.js';
import { sampleRecord } from '../../helpers/audit.js';
import { GatewayError } from '../../../src/errors.js';

let dir: string;
let file: string;
let anchorsFile: string;
const keys = generateCheckpointKeys();
const signer = CheckpointSigner.fromPem(keys.privatePem);
const publicKey = publicKeyFromPem(keys.publicPem);

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-checkpoint-'));
  file = join(dir, 'audit.log');
  anchorsFile = join(dir, 'anchors.log');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const record = sampleRecord;

function forwarded(i: number): ReturnType<typeof buildForwardedRecord> {
  return buildForwardedRecord({
    requestId: `req-${i}`,
    tool: 'tickets',
    method: 'POST',
    path: '/tools/tickets/t',
    decision: { allowed: true, rule: 'allow', reason: null, policy_version: 'v1', dry_run: false },
  });
}

async function checkpointed(n: number, opts: FileSinkOptions = {}, withAnchor = false): Promise<void> {
  const anchor = withAnchor ? await AnchorFile.open(anchorsFile) : undefined;
  const sink = await HashChainFileSink.open(file, { checkpoint: { signer, everyRecords: 3, everyMs: 3_600_000, ...(anchor ? { anchor } : {}) }, ...opts });
  for (let i = 1; i <= n; i++) sink.write(record(i));
  await sink.close();
}

async function lines(path: string): Promise<string[]> {
  const text = await readFile(path, 'utf8');
  return text.slice(0, -1).split('\n');
}

function types(ls: string[]): string[] {
  return ls.map((l) => (JSON.parse(l) as { record_type: string }).record_type);
}

/** Re-seals every line from the genesis, as someone who can write the file could. */
function rechain(objs: Record<string, unknown>[], resign?: CheckpointSigner): string[] {
  let head: ChainHead = GENESIS_HEAD;
  return objs.map((o) => {
    let body: Record<string, unknown> = { ...o, seq: undefined, prev_hash: undefined, hash: undefined };
    if (o.record_type === 'checkpoint') {
      body = resign
        ? { ...resign.checkpoint(head.seq, head.linkHash) }
        : { ...body, checkpoint: { ...(o.checkpoint as object), seq: head.seq, head_hash: head.linkHash } };
    }
    const sealed = sealLine(body, head);
    head = sealed.head;
    return sealed.line;
  });
}

describe('forwarded records', () => {
  it('resolve once the line is in the file, without waiting for the batch timer', async () => {
    const sink = await HashChainFileSink.open(file, { flushIntervalMs: 3_600_000 });
    sink.write(record(1));
    await sink.durable(forwarded(2));
    // The batched exchange record went out in the same append, before it.
    expect(types(await lines(file))).toEqual(['exchange', 'forwarded']);
    await sink.close();
  });

  it('share appends when concurrent (group commit)', async () => {
    const sink = await HashChainFileSink.open(file, { flushIntervalMs: 3_600_000 });
    const fh = (sink as unknown as { fh: FileHandle }).fh;
    const realWrite = fh.write.bind(fh) as (...a: unknown[]) => Promise<{ bytesWritten: number }>;
    let appends = 0;
    (fh as unknown as { write: (...a: unknown[]) => Promise<{ bytesWritten: number }> }).write = (...a) => {
      appends += 1;
      return realWrite(...a);
    };
    await Promise.all(Array.from({ length: 50 }, (_, i) => sink.durable(forwarded(i + 1))));
    expect(await lines(file)).toHaveLength(50);
    // The first starts an append at once; the 49 that arrive meanwhile share the next one.
    expect(appends).toBeLessThanOrEqual(2);
    await sink.close();
    expect((await verifyAuditFile(file)).ok).toBe(true);
  });

  it('reject when the file cannot be written, and after close', async () => {
    const sink = await HashChainFileSink.open(file, { fsync: true });
    await sink.durable(forwarded(1));
    await (sink as unknown as { fh: FileHandle }).fh.close();
    await expect(sink.durable(forwarded(2))).rejects.toBeInstanceOf(GatewayError);
    await expect(sink.durable(forwarded(3))).rejects.toMatchObject({ code: 'unavailable', rule: 'audit.unavailable' });
    const closed = await HashChainFileSink.open(join(dir, 'other.log'));
    await closed.close();
    await expect(closed.durable(forwarded(4))).rejects.toMatchObject({ code: 'unavailable' });
  });

  it('are joined by request id: verify lists the exchanges forwarded but never completed', async () => {
    const logger = await fromConfig({ stdout: false, file, payload: { mode: 'off', max_bytes: 0 }, fsync: false }, dir);
    const base = { tool: 'tickets', method: 'POST', path: '/tools/tickets/t', decision: { allowed: true, rule: 'allow', reason: null, policy_version: 'v1', dry_run: false } };
    await logger.forwarded({ ...base, requestId: 'done', mcp: { method: 'tools/call', tool: 'create_ticket' }, identity: { agent: 'a', agent_version: null, user: 'u', tenant: 'acme', auth_methods: ['jwt'], roles: ['support', 'admin'] } });
    await logger.forwarded({ ...base, requestId: 'lost' });
    logger.record({ ...base, requestId: 'done', responseStatus: 201 });
    await logger.close();
    const [fwd] = (await lines(file)).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(fwd).toMatchObject({ record_type: 'forwarded', request_id: 'done', tenant_id: 'acme', roles: ['admin', 'support'], mcp: { method: 'tools/call', tool: 'create_ticket' } });
    const r = await verifyAuditFile(file);
    expect(r.ok).toBe(true);
    expect(r.incomplete).toEqual(['lost']);
  });
});

describe('checkpoints', () => {
  it('follow every N records and close the file cleanly', async () => {
    await checkpointed(7);
    expect(types(await lines(file))).toEqual(['exchange', 'exchange', 'exchange', 'checkpoint', 'exchange', 'exchange', 'exchange', 'checkpoint', 'exchange', 'checkpoint']);
    const r = await verifyAuditFile(file, { publicKeys: [publicKey] });
    expect(r).toMatchObject({ ok: true, records: 10, unanchored: 0, checkpoints: { count: 3, lastSeq: 10, pinned: true, problems: [] } });
  });

  it('are written on a timer when records were written since the last one', async () => {
    const sink = await HashChainFileSink.open(file, { checkpoint: { signer, everyRecords: 1000, everyMs: 30 } });
    sink.write(record(1));
    await new Promise((r) => setTimeout(r, 120));
    await sink.flush();
    // One checkpoint for the one record: the timer does not checkpoint an unchanged chain.
    expect(types(await lines(file))).toEqual(['exchange', 'checkpoint']);
    await sink.close();
    expect(types(await lines(file))).toEqual(['exchange', 'checkpoint']);
  });

  it('continue after reopening a file that did not end with one', async () => {
    await HashChainFileSink.open(file).then(async (s) => {
      s.write(record(1));
      await s.close();
    });
    // Opening and closing without writing appends nothing (another process may be the writer).
    const idle = await HashChainFileSink.open(file, { checkpoint: { signer, everyRecords: 1000, everyMs: 3_600_000 } });
    await idle.close();
    expect(types(await lines(file))).toEqual(['exchange']);
    const s = await HashChainFileSink.open(file, { checkpoint: { signer, everyRecords: 1000, everyMs: 3_600_000 } });
    s.write(record(2));
    await s.close();
    expect(types(await lines(file))).toEqual(['exchange', 'exchange', 'checkpoint']);
    expect(await verifyAuditFile(file, { keyIds: [signer.keyId] })).toMatchObject({ ok: true, unanchored: 0 });
  });

  it('report the records after the last checkpoint when the end was cut', async () => {
    await checkpointed(7);
    const ls = await lines(file);
    await writeFile(file, `${ls.slice(0, 9).join('\n')}\n`); // the final checkpoint is gone
    const r = await verifyAuditFile(file, { publicKeys: [publicKey] });
    expect(r.ok).toBe(true);
    expect(r.unanchored).toBe(1);
  });

  it('with anchors, detect a cut across a checkpoint', async () => {
    await checkpointed(7, {}, true);
    const { anchors } = await readAnchors(anchorsFile);
    expect(anchors.map((a) => a.checkpoint.seq)).toEqual([3, 7, 9]);
    const ls = await lines(file);
    // Cut right after the first checkpoint: the file alone looks cleanly closed.
    await writeFile(file, `${ls.slice(0, 4).join('\n')}\n`);
    const alone = await verifyAuditFile(file, { publicKeys: [publicKey] });
    expect(alone).toMatchObject({ ok: true, unanchored: 0 });
    const r = await verifyAuditFile(file, { publicKeys: [publicKey], anchors });
    expect(r.ok).toBe(false);
    expect(r.anchors.problems.map((p) => p.reason)).toEqual([expect.stringMatching(/seq 7 is beyond the end.*truncated/), expect.stringMatching(/seq 9 is beyond the end/)]);
  });

  it('detect a rewrite with a recomputed chain: the signatures no longer verify', async () => {
    await checkpointed(7);
    const objs = (await lines(file)).map((l) => JSON.parse(l) as Record<string, unknown>);
    objs[1] = { ...objs[1], user_id: 'mallory' };
    await writeFile(file, `${rechain(objs).join('\n')}\n`);
    const r = await verifyAuditFile(file, { publicKeys: [publicKey] });
    expect(r.firstBad).toBeUndefined(); // the chain itself is consistent again
    expect(r.ok).toBe(false);
    expect(r.checkpoints.problems[0]?.reason).toMatch(/signature does not verify/);
  });

  it('detect a rewrite re-signed with another key, and a wrong key given', async () => {
    await checkpointed(4);
    const objs = (await lines(file)).map((l) => JSON.parse(l) as Record<string, unknown>);
    const mallory = CheckpointSigner.fromPem(generateCheckpointKeys().privatePem);
    await writeFile(file, `${rechain(objs.slice(0, 2).concat(objs.slice(3)), mallory).join('\n')}\n`);
    // Self-consistent: without a pinned key nothing is wrong...
    expect((await verifyAuditFile(file)).ok).toBe(true);
    // ...but the key is not the operator's.
    const r = await verifyAuditFile(file, { publicKeys: [publicKey] });
    expect(r.ok).toBe(false);
    expect(r.checkpoints.problems[0]?.reason).toMatch(/not a trusted key/);
    const other = generateKeyPairSync('ed25519').publicKey;
    await checkpointed(0);
    expect((await verifyAuditFile(file, { keyIds: [keyIdOf(other)] })).ok).toBe(false);
  });

  it('detect an anchor whose head hash differs from the file', async () => {
    await checkpointed(3, {}, true);
    const { anchors } = await readAnchors(anchorsFile);
    const objs = (await lines(file)).map((l) => JSON.parse(l) as Record<string, unknown>);
    objs[2] = { ...objs[2], response_status: 500 };
    const mallory = CheckpointSigner.fromPem(generateCheckpointKeys().privatePem);
    await writeFile(file, `${rechain(objs, mallory).join('\n')}\n`);
    const r = await verifyAuditFile(file, { anchors });
    expect(r.ok).toBe(false);
    expect(r.anchors.problems[0]?.reason).toMatch(/differs from the anchor at seq 3/);
  });

  it('come from a key named by a secret reference in the config', async () => {
    const keyFile = join(dir, 'checkpoint.key');
    await writeFile(keyFile, keys.privatePem);
    const cfg = { stdout: false, file: 'audit.log', payload: { mode: 'off' as const, max_bytes: 0 }, fsync: true, checkpoint: { key: { file: 'checkpoint.key' }, every_records: 2, every_seconds: 60, anchor_file: 'anchors.log' } };
    const logger = await AuditLogger.fromConfig(cfg, dir);
    for (let i = 1; i <= 3; i++) logger.record({ requestId: `r${i}`, tool: 't', method: 'GET', path: '/', decision: null });
    await logger.close();
    expect(types(await lines(file))).toEqual(['exchange', 'exchange', 'checkpoint', 'exchange', 'checkpoint']);
    expect((await readAnchors(anchorsFile)).anchors).toHaveLength(2);
    await expect(AuditLogger.fromConfig({ ...cfg, checkpoint: { ...cfg.checkpoint, key: { file: 'missing.key' } } }, dir)).rejects.toThrow(/audit\.checkpoint\.key \(file missing\.key\): ENOENT/);
    await writeFile(join(dir, 'rsa.key'), generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await expect(AuditLogger.fromConfig({ ...cfg, checkpoint: { ...cfg.checkpoint, key: { file: 'rsa.key' } } }, dir)).rejects.toThrow(/Ed25519/);
    const { file: _file, ...noFile } = cfg;
    await expect(AuditLogger.fromConfig(noFile, dir)).rejects.toThrow(/needs audit\.file/);
  });
});
