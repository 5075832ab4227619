import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { readAuditFile, repoPath, startStack, type Stack } from '../helpers/index.js';
import { call, eventually, expectDenial, metricValue, token, type Reply } from './authz-support.js';

/**
 * One gateway process with two workers (`server.workers: 2`) behind the real Envoy: calls are
 * served by both workers, a rate limit on the in-memory store holds across them, the audit file
 * is one verifiable chain with every exchange in it, `/metrics` sums the workers, a bad reload
 * is refused by all of them, a killed worker is restarted while calls keep succeeding, and
 * SIGTERM drains everything and exits 0.
 */

type Json = Record<string, any>;

const BURST = 4;
const run = promisify(execFile);

let stack: Stack;
let bearer: string;

/**
 * Envoy keeps one HTTP/2 connection per worker thread to portcullis and retires it after
 * max_requests_per_connection streams (500 as shipped); the primary hands each new connection
 * to the next worker. Retiring after every stream makes consecutive streams (a Check, then its
 * ext_proc stream, then the next Check) land on alternating workers.
 */
function connectionPerStream(cfg: Record<string, unknown>): void {
  const clusters = (cfg.static_resources as { clusters: Json[] }).clusters;
  const portcullis = clusters.find((c) => c.name === 'portcullis');
  if (!portcullis) throw new Error('envoy.yaml has no portcullis cluster');
  portcullis.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'].common_http_protocol_options.max_requests_per_connection = 1;
}

beforeAll(async () => {
  stack = await startStack({
    editConfig: (cfg) => {
      (cfg.server as Json).workers = 2;
      const weather = (cfg.tools as Json[]).find((t) => t.name === 'weather');
      if (!weather) throw new Error('demo config lacks the weather tool');
      weather.rate_limits = [{ name: 'tenant-weather', per: ['tenant'], rps: 0.01, burst: BURST }];
      // Pins in memory only: no shared pin file carries an approval from one worker to the other.
      const docs = (cfg.tools as Json[]).find((t) => t.name === 'docs') as Json;
      delete (docs.mcp as Json).pins_file;
    },
    editEnvoy: connectionPerStream,
  });
  bearer = await token(stack, { user: 'alice', tenant: 'acme' });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

function weather(tenantBearer = bearer): Promise<Reply> {
  return call(`${stack.envoyUrl}/tools/weather/forecast?city=Rome`, { headers: { authorization: `Bearer ${tenantBearer}` } });
}

async function metrics(): Promise<string> {
  const r = await call(`${stack.adminUrl}/metrics`);
  expect(r.status).toBe(200);
  return r.text;
}

async function readyz(): Promise<Json> {
  const r = await call(`${stack.adminUrl}/readyz`);
  return { status: r.status, ...(JSON.parse(r.text) as Json) };
}

function workerPids(r: Json): number[] {
  return ((r.workers ?? []) as Json[]).map((w) => w.pid as number);
}

const calls = (text: string, worker: string): number => metricValue(text, 'portcullis_worker_grpc_calls_total', { worker });

async function cli(args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await run(process.execPath, [repoPath('dist', 'main.js'), ...args]);
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, out: (e.stdout ?? '') + (e.stderr ?? '') };
  }
}

function killWorker(pid: number): void {
  process.kill(pid, 'SIGKILL');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const requestIds: string[] = [];
/** Calls made while a worker was being killed: one may have been in flight on it. */
const duringKill: string[] = [];

describe('server.workers: 2', () => {
  it('runs two worker processes besides the primary, each ready, and both serve calls', async () => {
    const r = await readyz();
    expect(r.status).toBe(200);
    const pids = workerPids(r);
    expect(pids).toHaveLength(2);
    expect(new Set(pids).size).toBe(2);
    expect(pids).not.toContain(stack.portcullisPid());
    for (const w of r.workers as Json[]) expect(w.ready).toBe(true);

    const before = await metrics();
    // Another tenant than the rate-limit test below: its own bucket.
    const globex = await token(stack, { user: 'gina', tenant: 'globex' });
    for (let i = 0; i < 3; i++) {
      const reply = await weather(globex);
      expect(reply.status, reply.text).toBe(200);
      requestIds.push(reply.headers.get('x-request-id') as string);
    }
    const after = await metrics();
    expect(calls(after, '0')).toBeGreaterThan(calls(before, '0'));
    expect(calls(after, '1')).toBeGreaterThan(calls(before, '1'));
  });

  it('a rate limit on the memory store holds across the workers: the burst, then 429', async () => {
    const before = await metrics();
    const replies: Reply[] = [];
    for (let i = 0; i < BURST + 2; i++) replies.push(await weather());
    expect(replies.map((r) => r.status), stack.logs().slice(-3000)).toEqual([...Array(BURST).fill(200), 429, 429]);
    expectDenial(replies[BURST] as Reply, 429, 'rate_limited', 'limits.tenant-weather');
    for (const r of replies) requestIds.push(r.headers.get('x-request-id') as string);
    // Both workers decided some of these calls: with a bucket per worker, 2 x burst would pass.
    const after = await metrics();
    expect(calls(after, '0')).toBeGreaterThan(calls(before, '0'));
    expect(calls(after, '1')).toBeGreaterThan(calls(before, '1'));
  });

  it('/metrics sums the workers: decisions counted once per call, whichever worker made them', async () => {
    const text0 = await metrics();
    const decided = (t: string): number => metricValue(t, 'portcullis_authz_decisions_total', { tool: 'weather' });
    const n = 6;
    const gina = await token(stack, { user: 'gina2', tenant: 'initech' });
    const before = { d: decided(text0), w0: calls(text0, '0'), w1: calls(text0, '1') };
    for (let i = 0; i < n; i++) {
      const r = await weather(gina);
      requestIds.push(r.headers.get('x-request-id') as string);
    }
    const text1 = await metrics();
    expect(decided(text1) - before.d).toBe(n);
    // Neither worker alone made all n decisions: the sum is over both.
    expect(calls(text1, '0') - before.w0).toBeLessThan(2 * n);
    expect(calls(text1, '0') - before.w0).toBeGreaterThan(0);
    expect(calls(text1, '1') - before.w1).toBeGreaterThan(0);
    expect(metricValue(text1, 'portcullis_workers', {}) || Number(/^portcullis_workers (\S+)$/m.exec(text1)?.[1])).toBe(2);
    // What is serving is not summed: one policy version, value 1, not one per worker.
    expect(Number(/^portcullis_policy_info\{[^}]*\} (\S+)$/m.exec(text1)?.[1])).toBe(1);
  });

  it('POST /reload with a bad config is refused (422) by every worker; the last good config keeps serving', async () => {
    const good = readFileSync(stack.configPath, 'utf8');
    try {
      writeFileSync(stack.configPath, `${good}\nserver_typo: true\n`);
      const r = await call(`${stack.adminUrl}/reload`, { method: 'POST' });
      expect(r.status, r.text).toBe(422);
      expect((JSON.parse(r.text) as Json).reason).toMatch(/server_typo/);
      const ready = await readyz();
      expect(ready.workers).toHaveLength(2);
      for (const w of ready.workers as Json[]) expect(w.config_reload_error).toMatch(/server_typo/);
      const ok = await weather(await token(stack, { user: 'u', tenant: 'reload-tenant' }));
      expect(ok.status).toBe(200);
      requestIds.push(ok.headers.get('x-request-id') as string);
    } finally {
      writeFileSync(stack.configPath, good);
    }
    const back = await call(`${stack.adminUrl}/reload`, { method: 'POST' });
    expect(back.status, back.text).toBe(200);
    for (const w of (await readyz()).workers as Json[]) expect(w.config_reload_error).toBeNull();
  });

  it('a SIGKILLed worker is restarted (counted) and calls keep succeeding meanwhile', async () => {
    const [victim, survivor] = workerPids(await readyz()) as [number, number];
    process.kill(victim, 'SIGKILL');
    const tenant = await token(stack, { user: 'k', tenant: 'kill-tenant' });
    // Calls during the restart: the surviving worker answers them (a stream on the killed
    // worker's connection fails closed, and Envoy's next connection goes to a live worker).
    const during: number[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await weather(tenant);
      during.push(r.status);
      duringKill.push(r.headers.get('x-request-id') ?? '');
    }
    expect(during.filter((s) => s === 200).length).toBeGreaterThanOrEqual(1);
    expect(await eventually(async () => {
      const r = await readyz();
      const pids = workerPids(r);
      return r.status === 200 && pids.length === 2 && !pids.includes(victim) && pids.includes(survivor);
    }, 20_000)).toBe(true);
    expect(Number(/^portcullis_worker_restarts_total (\S+)$/m.exec(await metrics())?.[1])).toBe(1);
    expect(stack.logs()).toContain('worker exited unexpectedly');
    // The limits live in the primary: the burst of this tenant is not handed out again by the new worker.
    expect((await weather(tenant)).status).toBe(during.filter((s) => s === 200).length < BURST ? 200 : 429);
    const fresh = await token(stack, { user: 'k', tenant: 'after-kill-tenant' });
    const after = await metrics();
    for (let i = 0; i < BURST; i++) {
      const r = await weather(fresh);
      expect(r.status, r.text).toBe(200);
      requestIds.push(r.headers.get('x-request-id') as string);
    }
    const later = await metrics();
    expect(calls(later, '0')).toBeGreaterThan(calls(after, '0'));
    expect(calls(later, '1')).toBeGreaterThan(calls(after, '1'));
  });

  it('a response in flight on a worker that dies fails closed: what the tool sends after it never reaches the agent', async () => {
    const AWS_KEY = 'AKIAIOSFODNN7EXAMPLF';
    let answer: () => void = () => undefined;
    const released = new Promise<void>((r) => (answer = r));
    stack.tool.handle('/weather/held-sse', (req, res) => {
      duringKill.push(String(req.headers['x-request-id']));
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: one\n\n');
      void released.then(() => {
        if (res.destroyed) return;
        res.write(`data: key ${AWS_KEY}\n\n`);
        res.end('data: last\n\n');
      });
    });
    const t = await token(stack, { user: 'h', tenant: 'held-tenant' });
    const streams = (text: string, worker: string): number => metricValue(text, 'portcullis_worker_grpc_calls_total', { worker, method: 'Process' });
    const before = await metrics();
    const reply = call(`${stack.envoyUrl}/tools/weather/held-sse`, { headers: { authorization: `Bearer ${t}` } }).catch((err: Error) => err);
    // The worker holding this response's ext_proc stream: the one whose Process count grew.
    let holders: string[] = [];
    expect(await eventually(async () => {
      const now = await metrics();
      holders = ['0', '1'].filter((w) => streams(now, w) > streams(before, w));
      return holders.length > 0;
    }, 10_000)).toBe(true);
    expect(holders).toHaveLength(1);
    const holder = ((await readyz()).workers as Json[]).find((w) => String(w.worker) === holders[0]) as Json;
    killWorker(holder.pid as number);
    answer();
    const r = await reply;
    // Either a reset (fetch fails) or an error status: never the rest of the tool's stream.
    if (!(r instanceof Error)) {
      expect(r.text).not.toContain('AKIA');
      expect(r.text).not.toContain('data: last');
    }
    expect(await eventually(async () => {
      const ready = await readyz();
      return ready.status === 200 && workerPids(ready).length === 2 && !workerPids(ready).includes(holder.pid as number);
    }, 20_000)).toBe(true);
  });

  it('an MCP pin approved on the admin port is recorded by every worker', async () => {
    const hash = 'ab'.repeat(32);
    const approvals = (): number => stack.logs().split('MCP tool definition approved').length - 1;
    const before = approvals();
    const r = await call(`${stack.adminUrl}/mcp/pins/approve`, { method: 'POST', body: JSON.stringify({ tool: 'docs', name: 'search_docs', hash }) });
    expect(r.status, r.text).toBe(200);
    expect(await eventually(async () => approvals() - before === 2, 5_000)).toBe(true);
    const pins = JSON.parse((await call(`${stack.adminUrl}/mcp/pins`)).text) as { pins: Json[] };
    expect(pins.pins).toContainEqual(expect.objectContaining({ tool: 'docs', name: 'search_docs', pinned: expect.objectContaining({ hash }) }));
    const bad = await call(`${stack.adminUrl}/mcp/pins/approve`, { method: 'POST', body: JSON.stringify({ tool: 'weather', name: 'x', hash }) });
    expect(bad.status).toBe(422);
  });

  it('SIGTERM drains every worker and exits 0; the audit file is one chain with every exchange', async () => {
    const pids = workerPids(await readyz());
    await stack.stopPortcullis();
    expect(stack.portcullisExit()).toEqual({ code: 0, signal: null });
    for (const pid of pids) expect(alive(pid)).toBe(false);

    const file = join(dirname(stack.configPath), 'audit.log');
    const verify = await cli(['audit', 'verify', file]);
    expect(verify.out).toContain('chain intact');
    // The only finding allowed: an exchange cut by the SIGKILL (forwarded, never completed).
    const incomplete = /forwarded but never completed: (.*)$/m.exec(verify.out)?.[1]?.split(/[ ,]+/).filter(Boolean) ?? [];
    expect(verify.code, verify.out).toBe(incomplete.length > 0 ? 3 : 0);
    for (const id of incomplete) expect(duringKill).toContain(id);
    const seen = new Set(readAuditFile(file).map((r) => r.request_id));
    const missing = requestIds.filter((id) => !seen.has(id));
    expect(missing).toEqual([]);
    expect(requestIds.length).toBeGreaterThan(15);
  });
});

describe('server.workers: 2 on a unix socket', () => {
  let unix: Stack;
  beforeAll(async () => {
    unix = await startStack({
      channel: 'unix',
      editEnvoy: connectionPerStream,
      editConfig: (cfg) => {
        const server = cfg.server as Json;
        server.workers = 2;
        // No configured hand-off key: the workers must still share one, since a Check and the
        // ext_proc stream of its request are served by different workers here.
        delete server.handoff_key;
      },
    });
  }, 120_000);
  afterAll(async () => {
    await unix?.stop();
  });

  it('the primary binds the socket with the configured mode; both workers serve on it with one hand-off key; a clean stop removes it', async () => {
    if (unix.channel.kind !== 'unix') throw new Error('not a unix channel');
    const path = unix.channel.path;
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const r = await call(`${unix.adminUrl}/readyz`);
    expect(workerPids(JSON.parse(r.text) as Json)).toHaveLength(2);
    const t = await token(unix, { user: 'u', tenant: 'unix-tenant' });
    const before = (await call(`${unix.adminUrl}/metrics`)).text;
    for (let i = 0; i < 4; i++) {
      const reply = await call(`${unix.envoyUrl}/tools/weather/forecast?city=Rome`, { headers: { authorization: `Bearer ${t}` } });
      expect(reply.status, reply.text).toBe(200);
    }
    const after = (await call(`${unix.adminUrl}/metrics`)).text;
    const served = (worker: string, method: string): number =>
      metricValue(after, 'portcullis_worker_grpc_calls_total', { worker, method }) - metricValue(before, 'portcullis_worker_grpc_calls_total', { worker, method });
    // Some request had its Check on one worker and its ext_proc stream on the other (and its
    // hand-off verified there, or the call would have been denied).
    expect((served('0', 'Check') > 0 && served('1', 'Process') > 0) || (served('1', 'Check') > 0 && served('0', 'Process') > 0)).toBe(true);
    expect(unix.logs()).toContain('the workers share a random key');
    await unix.stopPortcullis();
    expect(unix.portcullisExit()).toEqual({ code: 0, signal: null });
    expect(existsSync(path)).toBe(false);
  });
});

describe('server.workers: 1', () => {
  let single: Stack;
  beforeAll(async () => {
    single = await startStack({ editConfig: (cfg) => void ((cfg.server as Json).workers = 1) });
  }, 120_000);
  afterAll(async () => {
    await single?.stop();
  });

  it('is one process: no primary, no worker children, readiness of that process alone', async () => {
    const pid = single.portcullisPid() as number;
    const children = readdirSync('/proc')
      .filter((e) => /^\d+$/.test(e))
      .filter((e) => {
        try {
          const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
          return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
        } catch {
          return false;
        }
      });
    expect(children).toEqual([]);
    const r = JSON.parse((await call(`${single.adminUrl}/readyz`)).text) as Json;
    expect(r.ready).toBe(true);
    expect(r.workers).toBeUndefined();
    const t = await token(single, { user: 'u', tenant: 'single-tenant' });
    expect((await call(`${single.envoyUrl}/tools/weather/forecast?city=Rome`, { headers: { authorization: `Bearer ${t}` } })).status).toBe(200);
    expect((await call(`${single.adminUrl}/metrics`)).text).not.toContain('portcullis_worker');
  });
});
