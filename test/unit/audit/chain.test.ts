import { mkdtemp, readFile, rm, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GENESIS_HASH, canonicalJson, sha256Hex } from '../../../src/audit/chain.js';
import { buildAuditRecord, type AuditRecord } from '../../../src/audit/record.js';
import { AuditLogger, HashChainFileSink, StdoutSink, fromConfig } from '../../../src/audit/sinks.js';
import { verifyAuditFile } from '../../../src/audit/verify.js';
import { sampleRecord } from '../../helpers/audit.js';
import { registry } from '../../../src/metrics.js';

let dir: string;
let file: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-audit-'));
  file = join(dir, 'audit.log');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const record = sampleRecord;

async function writeRecords(path: string, from: number, to: number): Promise<void> {
  const sink = await HashChainFileSink.open(path);
  for (let i = from; i <= to; i++) sink.write(record(i));
  await sink.close();
}

async function lines(path: string): Promise<string[]> {
  const text = await readFile(path, 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text.slice(0, -1).split('\n');
}

describe('canonicalJson', () => {
  it('sorts keys at every depth and omits undefined members', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, undefined, 'x'], c: null }, u: undefined })).toBe('{"a":{"c":null,"d":[1,null,"x"]},"b":1}');
  });
});

describe('HashChainFileSink', () => {
  it('writes one chained line per record, in order', async () => {
    await writeRecords(file, 1, 3);
    const ls = await lines(file);
    expect(ls).toHaveLength(3);
    const parsed = ls.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed.map((p) => p.seq)).toEqual([1, 2, 3]);
    expect(parsed.map((p) => p.request_id)).toEqual(['req-1', 'req-2', 'req-3']);
    expect(parsed[0]!.prev_hash).toBe(GENESIS_HASH);
    expect(parsed[1]!.prev_hash).toBe(parsed[0]!.hash);
    expect(parsed[2]!.prev_hash).toBe(parsed[1]!.hash);
    // The hash covers the exact bytes of the line without its own (last) member.
    const tail = `,"hash":"${String(parsed[1]!.hash)}"}`;
    expect(ls[1]!.endsWith(tail)).toBe(true);
    expect(parsed[1]!.hash).toBe(sha256Hex(`${ls[1]!.slice(0, -tail.length)}}`));
    // Builder key order, chain fields last: serialised once, never re-sorted.
    expect(Object.keys(parsed[1]!).slice(0, 3)).toEqual(['record_type', 'time', 'request_id']);
    expect(Object.keys(parsed[1]!).slice(-3)).toEqual(['seq', 'prev_hash', 'hash']);
  });

  it('continues the chain when the file is reopened by a second instance', async () => {
    await writeRecords(file, 1, 2);
    const second = await HashChainFileSink.open(file);
    expect(second.lastSeq).toBe(2);
    second.write(record(3));
    second.write(record(4));
    await second.close();
    const ls = await lines(file);
    expect(ls).toHaveLength(4);
    expect(JSON.parse(ls[2]!).seq).toBe(3);
    expect(JSON.parse(ls[2]!).prev_hash).toBe(JSON.parse(ls[1]!).hash);
    expect(await verifyAuditFile(file)).toMatchObject({ ok: true, records: 4 });
  });

  it('refuses to append after a corrupt or truncated tail, and says so', async () => {
    await writeRecords(file, 1, 2);
    const edited = await lines(file);
    await appendFile(file, '{"seq":3,"prev_ha');
    await expect(HashChainFileSink.open(file)).rejects.toThrow(/corrupt.*no trailing newline.*refusing to append/);

    edited[1] = edited[1]!.replace('req-2', 'req-X');
    await writeFile(file, `${edited.join('\n')}\n`);
    await expect(HashChainFileSink.open(file)).rejects.toThrow(/record edited/);
  });

  it('finds the chain head when the last line is longer than the first read window', async () => {
    const big = buildAuditRecord({
      requestId: 'big',
      tool: 't',
      method: 'POST',
      path: '/tools/t',
      decision: null,
      payload: { capture: { mode: 'truncated', max_bytes: 200_000 }, request: 'x'.repeat(150_000) },
    });
    const sink = await HashChainFileSink.open(file);
    sink.write(record(1));
    sink.write(big);
    await sink.close();
    const again = await HashChainFileSink.open(file);
    expect(again.lastSeq).toBe(2);
    again.write(record(3));
    await again.close();
    expect(await verifyAuditFile(file)).toMatchObject({ ok: true, records: 3 });
  });

  it('seals what is queued when closed and drops later writes', async () => {
    const sink = await HashChainFileSink.open(file);
    sink.write(record(1));
    await sink.close();
    sink.write(record(2));
    await sink.flush();
    expect(await lines(file)).toHaveLength(1);
  });

  it('cannot be talked into a forged position by record fields', async () => {
    const sink = await HashChainFileSink.open(file);
    sink.write({ ...record(1), seq: 99, prev_hash: 'f'.repeat(64) } as unknown as AuditRecord);
    await sink.close();
    const [line] = await lines(file);
    expect(JSON.parse(line!)).toMatchObject({ seq: 1, prev_hash: GENESIS_HASH });
    expect((await verifyAuditFile(file)).ok).toBe(true);
  });
});

describe('verifyAuditFile', () => {
  beforeEach(async () => {
    await writeRecords(file, 1, 5);
  });

  it('accepts an intact file', async () => {
    expect(await verifyAuditFile(file)).toMatchObject({ ok: true, records: 5 });
  });

  it('accepts an empty file', async () => {
    await writeFile(file, '');
    expect(await verifyAuditFile(file)).toMatchObject({ ok: true, records: 0 });
  });

  it('fails at the line whose field was edited', async () => {
    const ls = await lines(file);
    ls[2] = ls[2]!.replace('"response_status":200', '"response_status":500');
    await writeFile(file, `${ls.join('\n')}\n`);
    const r = await verifyAuditFile(file);
    expect(r.ok).toBe(false);
    expect(r.records).toBe(2);
    expect(r.firstBad).toMatchObject({ line: 3, seq: 3 });
    expect(r.firstBad?.reason).toMatch(/hash does not match/);
  });

  it('fails at the next line when an edited record also got a recomputed hash', async () => {
    const ls = await lines(file);
    const obj = JSON.parse(ls[1]!) as Record<string, unknown>;
    obj.user_id = 'mallory';
    const body = JSON.stringify({ ...obj, hash: undefined });
    ls[1] = `${body.slice(0, -1)},"hash":"${sha256Hex(body)}"}`;
    await writeFile(file, `${ls.join('\n')}\n`);
    const r = await verifyAuditFile(file);
    expect(r.firstBad).toMatchObject({ line: 3, seq: 3 });
    expect(r.firstBad?.reason).toMatch(/prev_hash/);
  });

  it('fails at the line after a deleted one', async () => {
    const ls = await lines(file);
    ls.splice(1, 1);
    await writeFile(file, `${ls.join('\n')}\n`);
    const r = await verifyAuditFile(file);
    expect(r.ok).toBe(false);
    expect(r.firstBad).toMatchObject({ line: 2, seq: 3 });
    expect(r.firstBad?.reason).toMatch(/seq gap.*removed/);
  });

  it('fails when the first records were removed', async () => {
    const ls = await lines(file);
    await writeFile(file, `${ls.slice(1).join('\n')}\n`);
    const r = await verifyAuditFile(file);
    expect(r.firstBad).toMatchObject({ line: 1, seq: 2 });
  });

  it('fails on reordered lines', async () => {
    const ls = await lines(file);
    [ls[2], ls[3]] = [ls[3]!, ls[2]!];
    await writeFile(file, `${ls.join('\n')}\n`);
    const r = await verifyAuditFile(file);
    expect(r.firstBad).toMatchObject({ line: 3, seq: 4 });
  });

  it('fails on a truncated last line', async () => {
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.slice(0, text.length - 20));
    const r = await verifyAuditFile(file);
    expect(r.ok).toBe(false);
    expect(r.records).toBe(4);
    expect(r.firstBad?.line).toBe(5);
    expect(r.firstBad?.reason).toMatch(/incomplete|not valid JSON/);
  });

  it('fails on a last line that lost only its newline', async () => {
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.slice(0, -1));
    const r = await verifyAuditFile(file);
    expect(r.firstBad).toMatchObject({ line: 5, seq: 5 });
    expect(r.firstBad?.reason).toMatch(/no trailing newline/);
  });

  it('fails on a garbled line in the middle', async () => {
    const ls = await lines(file);
    ls[1] = 'not json at all';
    await writeFile(file, `${ls.join('\n')}\n`);
    const r = await verifyAuditFile(file);
    expect(r.firstBad).toMatchObject({ line: 2 });
    expect(r.firstBad?.seq).toBeUndefined();
  });
});

describe('StdoutSink', () => {
  it('emits one JSON line per record with msg "audit" and the record under "audit"', async () => {
    const out: string[] = [];
    const dest = new Writable({
      write(chunk: Buffer, _enc, done) {
        out.push(chunk.toString('utf8'));
        done();
      },
    });
    const sink = new StdoutSink(dest);
    sink.write(record(1));
    sink.write(record(2));
    await sink.close();
    const ls = out.join('').trim().split('\n');
    expect(ls).toHaveLength(2);
    const first = JSON.parse(ls[0]!) as { msg: string; audit: AuditRecord };
    expect(first.msg).toBe('audit');
    expect(first.audit.request_id).toBe('req-1');
  });
});

describe('AuditLogger', () => {
  it('opens the configured file relative to baseDir, applies payload capture, counts by outcome', async () => {
    const before = await registry.getSingleMetricAsString('portcullis_audit_records_total');
    const logger = await fromConfig({ stdout: false, file: 'sub/audit.log', payload: { mode: 'truncated', max_bytes: 4 }, fsync: false }, dir);
    const r = logger.record({
      requestId: 'r1',
      tool: 't',
      method: 'POST',
      path: '/tools/t',
      decision: null,
      payload: { request: 'abcdefgh' },
    });
    expect(r.payload).toEqual({ request: 'abcd', truncated: ['request'] });
    await logger.close();
    const ls = await lines(join(dir, 'sub', 'audit.log'));
    expect(ls).toHaveLength(1);
    expect(JSON.parse(ls[0]!).request_id).toBe('r1');
    const after = await registry.getSingleMetricAsString('portcullis_audit_records_total');
    const count = (s: string): number => Number(/outcome="denied"} (\d+)/.exec(s)?.[1] ?? 0);
    expect(count(after)).toBe(count(before) + 1);
  });

  it('shares one writer per file across loggers, so a reload does not fork the chain', async () => {
    const cfg = { stdout: false, file, payload: { mode: 'off' as const, max_bytes: 0 }, fsync: false };
    const a = await AuditLogger.fromConfig(cfg, dir);
    a.write(record(1));
    const b = await AuditLogger.fromConfig(cfg, dir);
    b.write(record(2));
    await a.close();
    b.write(record(3));
    await b.close();
    expect(await verifyAuditFile(file)).toMatchObject({ ok: true, records: 3 });
  });

  it('rejects a file whose tail is corrupt', async () => {
    await writeFile(file, 'garbage\n');
    await expect(fromConfig({ stdout: false, file, payload: { mode: 'off', max_bytes: 0 }, fsync: false }, dir)).rejects.toThrow(/corrupt/);
  });
});

describe('exact-bytes hashing', () => {
  it('detects an edit that only changes formatting, at the edited line', async () => {
    await writeRecords(file, 1, 3);
    const ls = await lines(file);
    ls[1] = ls[1]!.replace('"tool":"weather"', '"tool": "weather"');
    await writeFile(file, `${ls.join('\n')}\n`);
    const r = await verifyAuditFile(file);
    expect(r.firstBad).toMatchObject({ line: 2, seq: 2 });
    expect(r.firstBad?.reason).toMatch(/record edited/);
  });

  it('continues and verifies a chain begun in the older canonical format', async () => {
    // Older format: keys sorted, hash over the canonical JSON, prev_hash = SHA-256 of the previous line.
    const legacy: string[] = [];
    let prev = GENESIS_HASH;
    for (let i = 1; i <= 2; i++) {
      const body = { ...record(i), seq: i, prev_hash: prev };
      const line = canonicalJson({ ...body, hash: sha256Hex(canonicalJson(body)) });
      legacy.push(line);
      prev = sha256Hex(line);
    }
    await writeFile(file, `${legacy.join('\n')}\n`);
    await writeRecords(file, 3, 4);
    const ls = await lines(file);
    expect(JSON.parse(ls[2]!).prev_hash).toBe(sha256Hex(ls[1]!));
    expect(await verifyAuditFile(file)).toMatchObject({ ok: true, records: 4 });

    ls[0] = ls[0]!.replace('req-1', 'req-X');
    await writeFile(file, `${ls.join('\n')}\n`);
    expect((await verifyAuditFile(file)).firstBad).toMatchObject({ line: 1, reason: expect.stringMatching(/record edited/) });
  });
});

describe('HashChainFileSink batching', () => {
  it('holds sealed lines until the interval or a flush, then appends them in order', async () => {
    const sink = await HashChainFileSink.open(file, { flushIntervalMs: 60_000 });
    for (let i = 1; i <= 3; i++) sink.write(record(i));
    await new Promise((r) => setTimeout(r, 50));
    expect(await readFile(file, 'utf8')).toBe('');
    await sink.flush();
    expect((await lines(file)).map((l) => JSON.parse(l).seq)).toEqual([1, 2, 3]);
    await sink.close();
  });

  it('appends on its own once the interval passes', async () => {
    const sink = await HashChainFileSink.open(file, { flushIntervalMs: 10 });
    sink.write(record(1));
    for (let i = 0; i < 100 && (await readFile(file, 'utf8')) === ''; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await lines(file)).toHaveLength(1);
    await sink.close();
  });

  it('keeps the chain in order when records arrive while an append is in flight', async () => {
    const sink = await HashChainFileSink.open(file, { batchSize: 1, flushIntervalMs: 1 });
    for (let i = 1; i <= 200; i++) {
      sink.write(record(i));
      if (i % 7 === 0) await new Promise((r) => setImmediate(r));
    }
    await sink.close();
    expect(await verifyAuditFile(file)).toMatchObject({ ok: true, records: 200 });
  });

  it('refuses records beyond its bound before sealing them, so the chain stays intact', async () => {
    const failures = async (): Promise<number> => Number(/sink="file"} (\d+)/.exec(await registry.getSingleMetricAsString('portcullis_audit_sink_failures_total'))?.[1] ?? 0);
    const before = await failures();
    const sink = await HashChainFileSink.open(file, { maxPending: 0, flushIntervalMs: 60_000 });
    sink.write(record(1));
    sink.write(record(2)); // refused: record 1 is still pending
    await sink.flush();
    sink.write(record(3));
    await sink.close();
    expect(await failures()).toBe(before + 1);
    const ls = await lines(file);
    expect(ls.map((l) => JSON.parse(l).request_id)).toEqual(['req-1', 'req-3']);
    expect(await verifyAuditFile(file)).toMatchObject({ ok: true, records: 2 });
  });

  it('appends what is pending when the process exits without closing the sink', async () => {
    const script = join(dir, 'exit.ts');
    const sinks = new URL('../../../src/audit/sinks.ts', import.meta.url).pathname;
    await writeFile(
      script,
      `import { HashChainFileSink } from ${JSON.stringify(sinks)};
const sink = await HashChainFileSink.open(${JSON.stringify(file)}, { flushIntervalMs: 60_000 });
sink.write({ request_id: 'a' } as never);
sink.write({ request_id: 'b' } as never);
process.exit(0);
`,
    );
    const { execFile } = await import('node:child_process');
    await new Promise<void>((done, fail) =>
      execFile(new URL('../../../node_modules/.bin/vite-node', import.meta.url).pathname, [script], (err) => (err ? fail(err) : done())),
    );
    expect((await lines(file)).map((l) => JSON.parse(l).request_id)).toEqual(['a', 'b']);
    expect(await verifyAuditFile(file)).toMatchObject({ ok: true, records: 2 });
  });
});
