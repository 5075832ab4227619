import { afterAll, beforeAll, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { readAuditFile, repoPath, send, startStack, type Stack } from '../helpers/index.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { token as demoToken } from './authz-support.js';

/**
 * Two replicas on one Redis behind one Envoy (the shipped cluster settings: health checks,
 * outlier detection on connection failures, one Check retry on another host). One replica is
 * SIGKILLed under steady load: Envoy routes to the other within a few calls, no request reaches
 * a tool without an allow on record, and every exchange is accounted for in the audit trail
 * (completed, or reported as never completed by `audit verify`).
 */

const run = promisify(execFile);
const main = repoPath('dist', 'main.js');

/** Concurrent callers, each sending one call after the other. */
const CALLERS = 4;
/** Load before the kill, and after it. */
const BEFORE_MS = 2_500;
const AFTER_MS = 5_000;

type Json = Record<string, unknown>;

interface Outcome {
  readonly startedMs: number;
  readonly kind: 'read' | 'write';
  readonly status: number | null;
  readonly error: string | null;
  readonly body?: string;
}

let redis: RedisServer;
let stack: Stack;

beforeAll(async () => {
  redis = await startRedis();
  stack = await startStack({
    replica: true,
    editConfig: (cfg) => {
      cfg.store = { kind: 'redis', redis: { url: redis.url, key_prefix: 'replicas:', timeout_ms: 300 } };
      // The load must never meet a rate limit: only the kill may fail a call.
      const weather = (cfg.tools as { name: string; rate_limit?: unknown }[]).find((t) => t.name === 'weather');
      if (!weather) throw new Error('demo config lacks the weather tool');
      weather.rate_limit = { rps: 10_000, burst: 10_000, key: 'agent' };
    },
  });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await redis?.stop();
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function cli(args: string[]): Promise<{ code: number; stdout: string }> {
  // `audit verify` exits non-zero with findings: the exit code is part of the answer.
  try {
    const r = await run(process.execPath, [main, ...args]);
    return { code: 0, stdout: r.stdout };
  } catch (err) {
    const e = err as { code?: number; stdout?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '' };
  }
}

it('one replica killed under load: the other serves, nothing reaches a tool unrecorded, every exchange is accounted for', async () => {
  const bearer = await demoToken(stack);
  const t0 = Date.now();
  let killedAt = Number.POSITIVE_INFINITY;
  const outcomes: Outcome[] = [];

  const caller = async (n: number): Promise<void> => {
    for (let i = 0; Date.now() - t0 < BEFORE_MS + AFTER_MS; i++) {
      const write = (i + n) % 3 === 0;
      const startedMs = Date.now();
      try {
        const r = write
          ? await send(stack, '/tools/tickets/tenants/acme/tickets', { bearer, body: JSON.stringify({ title: `load ${n}-${i}`, priority: 'low' }) })
          : await send(stack, '/tools/weather/forecast?city=Rome', { bearer, method: 'GET' });
        outcomes.push({ startedMs, kind: write ? 'write' : 'read', status: r.status, error: null, ...(r.status >= 300 ? { body: r.text.slice(0, 200) } : {}) });
      } catch (err) {
        outcomes.push({ startedMs, kind: write ? 'write' : 'read', status: null, error: (err as Error).message });
      }
    }
  };
  const load = Promise.all(Array.from({ length: CALLERS }, (_, n) => caller(n)));
  await sleep(BEFORE_MS);
  killedAt = Date.now();
  await stack.killPortcullis();
  await load;
  // The survivor writes its last completion records in batches, after the agent has its answer.
  await sleep(1_000);

  const before = outcomes.filter((o) => o.startedMs < killedAt);
  const after = outcomes.filter((o) => o.startedMs >= killedAt);
  const failed = outcomes.filter((o) => o.status === null || o.status >= 300);
  const summary = JSON.stringify({ before: before.length, after: after.length, failed: failed.map((f) => [f.startedMs - killedAt, f.kind, f.status, f.error, f.body]) });
  expect(before.length, summary).toBeGreaterThan(20);
  expect(after.length, summary).toBeGreaterThan(40);
  // Failures are the calls in flight on the killed replica and the few connection attempts
  // before it is ejected: fail closed (5xx or a cut connection), never anything else.
  for (const f of failed) expect(f.status === null || [500, 502, 503, 504].includes(f.status), summary).toBe(true);
  expect(failed.length, summary).toBeLessThanOrEqual(3 * CALLERS);
  // Once Envoy has noticed (a few calls, well before two failed health checks), every call succeeds.
  const settled = after.filter((o) => o.startedMs - killedAt > 1_500);
  expect(settled.length, summary).toBeGreaterThan(20);
  expect(settled.filter((o) => o.status === null || o.status >= 300), summary).toEqual([]);

  // Nothing reached the tool without an allowed decision on record, on one replica or the other.
  const files = [join(stack.dir, 'audit.log'), join(stack.dir, 'audit-2.log')];
  const records = files.flatMap((f) => readAuditFile(f, { all: true }));
  const forwarded = new Map<string, Json>();
  for (const r of records) if (r.record_type === 'forwarded') forwarded.set(String(r.request_id), r);
  const completed = new Set(records.filter((r) => r.record_type === 'exchange').map((r) => String(r.request_id)));
  const reached = stack.tool.received.filter((r) => r.path.startsWith('/tickets/') || r.path.startsWith('/weather/')).map((r) => String(r.headers['x-request-id']));
  expect(reached.length).toBeGreaterThanOrEqual(outcomes.length - failed.length);
  const unrecorded = reached.filter((rid) => (forwarded.get(rid)?.decision as Json | undefined)?.allowed !== true);
  expect(unrecorded, summary).toEqual([]);

  // Every exchange that reached a tool completed on record (its forwarded and exchange records
  // may be in different replicas' files), or `audit verify` of both files names it as never
  // completed: the killed replica's last answers were cut, or their records were still in its
  // write batch.
  const incomplete = reached.filter((rid) => !completed.has(rid));
  expect(incomplete.length, summary).toBeLessThanOrEqual(3 * CALLERS);
  const verify = await cli(['audit', 'verify', ...files]);
  // Intact chains (exit 3 when some exchange is reported incomplete), never broken.
  expect([0, 3], verify.stdout).toContain(verify.code);
  // One line per file: each lists what that file forwarded and no file completed.
  const listed = new Set([...verify.stdout.matchAll(/\d+ exchange\(s\) forwarded but never completed: (.*)/g)].flatMap((m) => (m[1] as string).split(', ')));
  const detail = JSON.stringify(incomplete.map((rid) => [rid, records.filter((r) => r.request_id === rid), stack.tool.received.filter((r) => r.headers['x-request-id'] === rid).map((r) => r.path)]));
  expect(listed.size, `${verify.stdout}\n${detail}`).toBe(incomplete.length);
  for (const rid of incomplete) expect(listed.has(rid), `${rid} not listed as incomplete: ${verify.stdout}`).toBe(true);
}, 60_000);
