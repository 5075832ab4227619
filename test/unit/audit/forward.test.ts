import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { forwardFileRecords, openFileSink, type AuditSink } from '../../../src/audit/sinks.js';
import type { AuditLine } from '../../../src/audit/record.js';
import { verifyAuditFile } from '../../../src/audit/verify.js';
import { GatewayError } from '../../../src/errors.js';
import { auditForwarder } from '../../../src/server/auditIpc.js';
import { forkPrimary, type ChildPrimary } from '../server/ipcChild.js';

/**
 * Audit file records of a worker process go to the primary, the file's one writer, in a real
 * forked process: a durable record is in the file when its promise resolves, records keep the
 * order they were sent in one hash chain, and a primary that is gone refuses durable records.
 */

const CONFIG = { stdout: false, payload: { mode: 'off' as const, max_bytes: 0 }, fsync: false };

let dir = '';
let primary: ChildPrimary | null = null;

afterEach(async () => {
  forwardFileRecords(null);
  await primary?.kill();
  primary = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function line(i: number, type: 'exchange' | 'forwarded' = 'exchange'): AuditLine {
  return { record_type: type, time: new Date().toISOString(), request_id: `req-${i}`, tool: 'weather' } as unknown as AuditLine;
}

function ids(file: string): string[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { request_id?: string }).request_id ?? '');
}

async function workerSink(file: string): Promise<AuditSink> {
  primary = await forkPrimary({ auditFile: file });
  forwardFileRecords(auditForwarder(primary.peer, 2_000));
  const sink = await openFileSink({ ...CONFIG, file }, dir);
  if (!sink) throw new Error('no file sink');
  return sink;
}

describe('forwarded audit file records', () => {
  it('a durable record is in the file once it resolves; the worker never opens the file itself', async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-fwd-'));
    const file = join(dir, 'audit.log');
    const sink = await workerSink(file);
    expect(sink.durable).toBeDefined();
    await sink.durable?.(line(1, 'forwarded'));
    // Read straight after the acknowledgement: no flush, no close.
    expect(ids(file)).toEqual(['req-1']);
  });

  it('records keep their order in one verifiable chain; close waits until they are appended', async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-fwd-'));
    const file = join(dir, 'audit.log');
    const sink = await workerSink(file);
    const sent: string[] = [];
    const durable: Promise<void>[] = [];
    for (let i = 0; i < 50; i++) {
      if (i % 10 === 0) durable.push(sink.durable?.(line(i, 'forwarded')) as Promise<void>);
      else sink.write(line(i));
      sent.push(`req-${i}`);
    }
    await Promise.all(durable);
    await sink.close();
    expect(ids(file)).toEqual(sent);
    const verified = await verifyAuditFile(file);
    expect(verified.ok, JSON.stringify(verified.firstBad)).toBe(true);
    expect(verified.records).toBe(50);
  });

  it('a primary that is gone refuses durable records (the caller must not forward)', async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-fwd-'));
    const file = join(dir, 'audit.log');
    const sink = await workerSink(file);
    await (primary as ChildPrimary).kill();
    const err = await (sink.durable?.(line(2, 'forwarded')) as Promise<void>).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).rule).toBe('audit.unavailable');
    expect((err as GatewayError).code).toBe('unavailable');
  });
});
