import { execFileSync } from 'node:child_process';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { applyMask, readMaskRule, rfc3339Nanos, type DecisionEvent } from '../../../src/policy/decisionLog.js';
import { DecisionLogger, openDecisionLogger, type DecisionLogConfig } from '../../../src/policy/decisionLogger.js';
import { HttpSink, type DecisionSink } from '../../../src/policy/decisionLogSinks.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { buildPolicyInput, type PolicyInput } from '../../../src/policy/input.js';
import { registry } from '../../../src/metrics.js';
import { stdout } from '../../../src/log.js';
import { spawn } from 'node:child_process';
import { freePort } from '../../helpers/ports.js';
import { ROOT, tempDir, writePolicy } from './helpers.js';

const OPA = join(ROOT, '.tools/bin/opa');

/** Keeps every event it is given (a sink like the others, in memory). */
class MemorySink implements DecisionSink {
  readonly events: DecisionEvent[] = [];
  write(event: DecisionEvent): void {
    this.events.push(event);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function config(over: Partial<DecisionLogConfig> = {}): DecisionLogConfig {
  return { console: false, mask: [], mask_defaults: true, labels: {}, ...over };
}

function bundle(files: Record<string, string>, entrypoints: string[], revision = 'rev-7'): string {
  const dir = writePolicy(files);
  const out = join(tempDir(), 'bundle.tar.gz');
  execFileSync(OPA, ['build', '-t', 'wasm', ...entrypoints.flatMap((e) => ['-e', e]), '--revision', revision, '-o', out, '.'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  return out;
}

const AUTHZ = 'package envoy.authz\nimport rego.v1\ndefault allow := false\nallow if input.attributes.request.http.method == "GET"\n';
const UNDEFINED = 'package envoy.authz\nimport rego.v1\nallow if input.attributes.request.http.method == "GET"\n';

function request(method: string, headers: Record<string, string>, body?: string): PolicyInput {
  return buildPolicyInput(
    {
      attributes: {
        source: { address: { socketAddress: { address: '10.0.0.7', portValue: 53122 } } },
        request: { http: { method, path: '/tools/docs/mcp', headers: { 'content-type': 'application/json', ...headers }, ...(body ? { body } : {}) } },
      },
    },
    { identity: null, tool: null, mcp: null, body: body ?? null },
  );
}

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const m = registry.getSingleMetric(name);
  if (!m) return 0;
  const { values } = await m.get();
  return values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value ?? 0;
}

const engines: PolicyEngine[] = [];
afterEach(() => {
  for (const e of engines.splice(0)) e.close();
});

async function engineWith(path: string, logger: DecisionLogger): Promise<PolicyEngine> {
  const engine = await PolicyEngine.open({ bundlePath: path, decision: 'envoy/authz/allow', watch: false });
  engine.setDecisionLog(logger);
  engines.push(engine);
  return engine;
}

describe('mask rules', () => {
  it('removes pointers that exist, lists them in erased, and ignores the ones that do not', () => {
    const event = { input: { a: { 'x/y': 1, keep: 2 }, list: [1, 2, 3] }, result: true } as unknown as DecisionEvent;
    applyMask(event, [
      { op: 'remove', path: '/input/a/x~1y' },
      { op: 'remove', path: '/input/nope/deeper' },
      { op: 'remove', path: '/input/list/1' },
    ]);
    expect(event.input).toEqual({ a: { keep: 2 }, list: [1, 3] });
    expect(event.erased).toEqual(['/input/a/x~1y', '/input/list/1']);
    expect(event.masked).toBeUndefined();
  });

  it('upserts values (creating missing objects) and lists them in masked; can erase the whole result', () => {
    const event = { input: { user: { name: 'bob' } }, result: { allowed: true } } as unknown as DecisionEvent;
    applyMask(event, [
      { op: 'upsert', path: '/input/user/password', value: '**REDACTED**' },
      { op: 'upsert', path: '/input/new/deep', value: 1 },
      { op: 'remove', path: '/result' },
    ]);
    expect(event.input).toEqual({ user: { name: 'bob', password: '**REDACTED**' }, new: { deep: 1 } });
    expect(event.masked).toEqual(['/input/user/password', '/input/new/deep']);
    expect(event.erased).toEqual(['/result']);
    expect('result' in event).toBe(false);
  });

  it('accepts only pointers under /input or /result, in both of OPA forms', () => {
    expect(readMaskRule('/input/x')).toEqual({ op: 'remove', path: '/input/x' });
    expect(readMaskRule({ op: 'upsert', path: '/result/x', value: null })).toEqual({ op: 'upsert', path: '/result/x', value: null });
    expect(readMaskRule('/labels/id')).toBeNull();
    expect(readMaskRule('input/x')).toBeNull();
    expect(readMaskRule({ op: 'upsert', path: '/input/x' })).toBeNull();
    expect(readMaskRule({ op: 'replace', path: '/input/x', value: 1 })).toBeNull();
    expect(() => new DecisionLogger(config({ mask: ['/labels/id'] }), '0', [])).toThrow(/decision_logs.mask\[0\]/);
  });

  it('writes RFC 3339 timestamps with nanoseconds', () => {
    expect(rfc3339Nanos(1_700_000_000_123_456_789n)).toBe('2023-11-14T22:13:20.123456789Z');
  });
});

describe('decision log events from the engine', () => {
  it('one OPA-shaped event per decision, credentials and body masked by default', async () => {
    const sink = new MemorySink();
    const engine = await engineWith(bundle({ 'authz.rego': AUTHZ }, ['envoy/authz/allow']), new DecisionLogger(config({ labels: { app: 'gw' } }), '9.9.9', [sink], ['x-custom-key']));
    const input = request('GET', { authorization: 'Bearer secret-token', cookie: 'sid=1', 'x-custom-key': 'k-123', 'x-trace': 't' }, '{"password":"hunter2"}');
    expect(engine.evaluate(input, 'dec-1').allowed).toBe(true);
    expect(engine.evaluate(request('POST', {}), 'dec-2').allowed).toBe(false);
    expect(sink.events).toHaveLength(2);
    const [first, second] = sink.events as [DecisionEvent, DecisionEvent];
    expect(first.decision_id).toBe('dec-1');
    expect(first.path).toBe('envoy/authz/allow');
    expect(first.result).toBe(true);
    expect(first.bundles).toEqual({ authz: { revision: 'rev-7' } });
    expect(first.labels).toMatchObject({ app: 'gw', version: '9.9.9' });
    expect(first.labels.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(second.labels.id).toBe(first.labels.id);
    expect(first.requested_by).toBe('10.0.0.7:53122');
    expect(first.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    expect(typeof first.metrics.timer_rego_query_eval_ns).toBe('number');
    expect(second.req_id).toBe(first.req_id + 1);
    const text = JSON.stringify(first);
    for (const secret of ['secret-token', 'sid=1', 'k-123', 'hunter2']) expect(text).not.toContain(secret);
    const headers = (first.input as { attributes: { request: { http: { headers: Record<string, string> } } } }).attributes.request.http.headers;
    expect(headers['x-trace']).toBe('t');
    expect(first.erased).toEqual(
      expect.arrayContaining([
        '/input/attributes/request/http/headers/authorization',
        '/input/attributes/request/http/headers/cookie',
        '/input/attributes/request/http/headers/x-custom-key',
        '/input/attributes/request/http/body',
        '/input/parsed_body',
      ]),
    );
    // Masking works on a copy: the input the policy saw is untouched.
    expect(input.attributes).toMatchObject({ request: { http: { headers: { authorization: 'Bearer secret-token' } } } });
    expect(second.result).toBe(false);
  });

  it('mask_defaults: false keeps the headers; configured pointers and upserts still apply', async () => {
    const sink = new MemorySink();
    const logger = new DecisionLogger(config({ mask_defaults: false, mask: ['/input/attributes/request/http/headers/x-trace', { op: 'upsert', path: '/input/attributes/request/http/headers/authorization', value: 'Bearer ***' }] }), '1', [sink]);
    const engine = await engineWith(bundle({ 'authz.rego': AUTHZ }, ['envoy/authz/allow']), logger);
    engine.evaluate(request('GET', { authorization: 'Bearer abc', cookie: 'c=1', 'x-trace': 't' }), 'd');
    const ev = sink.events[0] as DecisionEvent;
    const headers = (ev.input as { attributes: { request: { http: { headers: Record<string, string> } } } }).attributes.request.http.headers;
    expect(headers.cookie).toBe('c=1');
    expect(headers.authorization).toBe('Bearer ***');
    expect(headers['x-trace']).toBeUndefined();
    expect(ev.erased).toEqual(['/input/attributes/request/http/headers/x-trace']);
    expect(ev.masked).toEqual(['/input/attributes/request/http/headers/authorization']);
  });

  it("applies the bundle's own data.system.log.mask rule (pointers and upserts) when built as an entrypoint", async () => {
    const mask = [
      'package system.log',
      'import rego.v1',
      'mask contains "/input/attributes/request/http/headers/x-tenant-secret"',
      'mask contains {"op": "upsert", "path": "/input/attributes/request/http/path", "value": "/hidden"} if input.result == true',
    ].join('\n');
    const sink = new MemorySink();
    const engine = await engineWith(bundle({ 'authz.rego': AUTHZ, 'mask.rego': mask }, ['envoy/authz/allow', 'system/log/mask']), new DecisionLogger(config(), '1', [sink]));
    engine.evaluate(request('GET', { 'x-tenant-secret': 's3cr3t' }), 'd');
    const ev = sink.events[0] as DecisionEvent;
    expect(JSON.stringify(ev)).not.toContain('s3cr3t');
    expect(ev.erased).toContain('/input/attributes/request/http/headers/x-tenant-secret');
    expect(ev.masked).toEqual(['/input/attributes/request/http/path']);
    expect((ev.input as { attributes: { request: { http: { path: string } } } }).attributes.request.http.path).toBe('/hidden');
  });

  it('logs undefined decisions without a result, and evaluations without a decision id not at all', async () => {
    const sink = new MemorySink();
    const engine = await engineWith(bundle({ 'authz.rego': UNDEFINED }, ['envoy/authz/allow']), new DecisionLogger(config(), '1', [sink]));
    expect(() => engine.evaluate(request('POST', {}), 'undef')).toThrow(/undefined|denied|decision/i);
    engine.evaluate(request('GET', {}));
    expect(sink.events.map((e) => e.decision_id)).toEqual(['undef']);
    expect('result' in (sink.events[0] as DecisionEvent)).toBe(false);
  });

  it('drop-in decisions (evaluateAt) are logged at their own path', async () => {
    const sink = new MemorySink();
    const files = { 'authz.rego': AUTHZ, 'legacy.rego': 'package legacy.authz\nimport rego.v1\nallow := {"allowed": false, "body": "no"}\n' };
    const path = bundle(files, ['envoy/authz/allow', 'legacy/authz/allow']);
    const engine = await PolicyEngine.open({ bundlePath: path, decision: 'envoy/authz/allow', extraDecisions: ['legacy/authz/allow'], watch: false });
    engines.push(engine);
    engine.setDecisionLog(new DecisionLogger(config(), '1', [sink]));
    engine.evaluateAt({ attributes: { request: { http: { headers: { authorization: 'Bearer t0k' } } } } }, 'legacy/authz/allow', 'drop-1');
    const ev = sink.events[0] as DecisionEvent;
    expect(ev).toMatchObject({ decision_id: 'drop-1', path: 'legacy/authz/allow', result: { allowed: false, body: 'no' } });
    expect(JSON.stringify(ev)).not.toContain('t0k');
  });

  it('a sink that throws never changes the decision', async () => {
    const broken: DecisionSink = {
      write() {
        throw new Error('disk on fire');
      },
      close: () => Promise.resolve(),
    };
    const engine = await engineWith(bundle({ 'authz.rego': AUTHZ }, ['envoy/authz/allow']), new DecisionLogger(config(), '1', [broken]));
    expect(engine.evaluate(request('GET', {}), 'd').allowed).toBe(true);
  });
});

describe('sinks', () => {
  it('console: one JSON line per event on the shared stdout, not in the logger envelope', async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(stdout, 'write').mockImplementation((line: string) => void lines.push(line));
    try {
      const logger = openDecisionLogger(config({ console: true }), '/', '1');
      logger?.record({ decisionId: 'c1', path: 'p', input: {}, result: true, bundles: {}, evalNs: 1 }, null);
    } finally {
      spy.mockRestore();
    }
    expect(lines).toHaveLength(1);
    const ev = JSON.parse(lines[0] as string) as Record<string, unknown>;
    expect(ev.decision_id).toBe('c1');
    expect(ev).not.toHaveProperty('level');
    expect(ev).not.toHaveProperty('msg');
  });

  it('file: appends JSON lines', async () => {
    const dir = tempDir();
    const logger = openDecisionLogger(config({ file: 'decisions.log' }), dir, '1');
    logger?.record({ decisionId: 'f1', path: 'p', input: {}, result: true, bundles: {}, evalNs: 1 }, null);
    logger?.record({ decisionId: 'f2', path: 'p', input: {}, result: false, bundles: {}, evalNs: 1 }, null);
    await logger?.close();
    const lines = readFileSync(join(dir, 'decisions.log'), 'utf8').trim().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as { decision_id: string }).decision_id)).toEqual(['f1', 'f2']);
  });
});

interface Received {
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly events: DecisionEvent[];
}

/** A decision log service: answers each POST with the next status of `statuses` (then 200). */
async function logService(statuses: number[] = []): Promise<{ url: string; received: Received[]; server: Server; arrivals: () => Promise<void> }> {
  const received: Received[] = [];
  let wake: (() => void) | null = null;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const status = statuses.shift() ?? 200;
      if (status === 200) {
        const events = JSON.parse(gunzipSync(Buffer.concat(chunks)).toString('utf8')) as DecisionEvent[];
        received.push({ path: req.url ?? '', headers: req.headers, events });
      }
      res.writeHead(status).end();
      wake?.();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, received, server, arrivals: () => new Promise((r) => (wake = r)) };
}

function sink(url: string, over: Partial<ConstructorParameters<typeof HttpSink>[0]> = {}): HttpSink {
  return new HttpSink({ url, resource: '/logs', headers: { authorization: 'Bearer log-token' }, timeoutMs: 2000, maxBatchBytes: 32768, maxBufferBytes: 1 << 20, intervalMs: 60_000, ...over });
}

function event(id: string, pad = 0): DecisionEvent {
  return { labels: {}, decision_id: id, bundles: {}, path: 'p', input: { pad: 'x'.repeat(pad) }, result: true, requested_by: '', timestamp: '', metrics: {}, req_id: 1 };
}

describe('HTTP decision log service', () => {
  it('POSTs gzipped JSON arrays to <url>/logs with the configured headers, in batches', async () => {
    const svc = await logService();
    const s = sink(svc.url, { maxBatchBytes: 2048 });
    try {
      for (let i = 0; i < 6; i++) s.write(event(`e${i}`, 600));
      while (s.pending() > 0) await s.flush();
      await s.flush();
      expect(svc.received.length).toBeGreaterThan(1);
      expect(svc.received.flatMap((r) => r.events.map((e) => e.decision_id))).toEqual(['e0', 'e1', 'e2', 'e3', 'e4', 'e5']);
      for (const r of svc.received) {
        expect(r.path).toBe('/logs');
        expect(r.headers['content-encoding']).toBe('gzip');
        expect(r.headers['content-type']).toBe('application/json');
        expect(r.headers.authorization).toBe('Bearer log-token');
      }
    } finally {
      await s.close();
      svc.server.close();
    }
  });

  it('a failing service keeps the events for the next upload; nothing is lost across a short outage', async () => {
    const svc = await logService([503, 500]);
    const s = sink(svc.url);
    try {
      s.write(event('a'));
      s.write(event('b'));
      await s.flush();
      await s.flush();
      expect(svc.received).toHaveLength(0);
      expect(s.pending()).toBe(2);
      await s.flush();
      expect(svc.received.flatMap((r) => r.events.map((e) => e.decision_id))).toEqual(['a', 'b']);
    } finally {
      await s.close();
      svc.server.close();
    }
  });

  it('a full buffer drops new events and counts them; write never waits for the service', async () => {
    // A service that never answers: uploads time out, the buffer stays full.
    const hang = createServer(() => undefined);
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(hang.address() as AddressInfo).port}`;
    const s = sink(url, { maxBufferBytes: 4096, timeoutMs: 200 });
    const before = await metric('portcullis_decision_logs_total', { sink: 'service', result: 'dropped' });
    try {
      for (let i = 0; i < 20; i++) s.write(event(`e${i}`, 500));
      expect(s.pending()).toBeLessThan(20);
      expect(await metric('portcullis_decision_logs_total', { sink: 'service', result: 'dropped' })).toBeGreaterThan(before);
      await s.flush();
    } finally {
      await s.close();
      hang.closeAllConnections();
      hang.close();
    }
  });

  it('an unreachable service never fails a decision', async () => {
    const logger = openDecisionLogger(config({ service: { url: 'http://127.0.0.1:1', resource: '/logs', headers: {}, timeout_s: 1, max_batch_bytes: 32768, max_buffer_bytes: 1 << 20, interval_s: 60 } }), '/', '1');
    const engine = await engineWith(bundle({ 'authz.rego': AUTHZ }, ['envoy/authz/allow']), logger as DecisionLogger);
    expect(engine.evaluate(request('GET', {}), 'x').allowed).toBe(true);
    await logger?.close();
  });
});

describe('the same event as OPA itself writes', () => {
  it('path, input, result, erased, masked, labels and metrics match a real OPA decision log for the same policy and mask', async () => {
    const files = {
      'authz.rego': 'package envoy.authz\nimport rego.v1\ndefault allow := false\nallow if input.m == "GET"\n',
      'mask.rego': 'package system.log\nimport rego.v1\nmask contains "/input/secret"\nmask contains "/input/absent"\nmask contains {"op": "upsert", "path": "/input/m", "value": "X"}\n',
    };
    const input = { m: 'GET', secret: 's', keep: [1, { a: 'b' }] };
    const dir = writePolicy(files);
    const port = await freePort();
    const opa = spawn(OPA, ['run', '--server', '--addr', `127.0.0.1:${port}`, '--set', 'decision_logs.console=true', '--set', 'labels.app=x', join(dir, 'authz.rego'), join(dir, 'mask.rego')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const line = new Promise<Record<string, unknown>>((resolve) => {
      const onData = (c: Buffer): void => {
        out += c.toString();
        const hit = out.split('\n').find((l) => l.includes('"decision_id"') && l.includes('Decision Log'));
        if (hit) resolve(JSON.parse(hit) as Record<string, unknown>);
      };
      opa.stdout.on('data', onData);
      opa.stderr.on('data', onData);
    });
    try {
      let answered = false;
      for (let i = 0; i < 100 && !answered; i++) {
        answered = await fetch(`http://127.0.0.1:${port}/v1/data/envoy/authz/allow`, { method: 'POST', body: JSON.stringify({ input }) }).then(
          (r) => r.ok,
          () => false,
        );
        if (!answered) await new Promise((r) => setTimeout(r, 100));
      }
      const theirs = await line;
      const sink = new MemorySink();
      const engine = await engineWith(bundle(files, ['envoy/authz/allow', 'system/log/mask']), new DecisionLogger(config({ labels: { app: 'x' } }), '1', [sink]));
      engine.evaluate(input as unknown as PolicyInput, 'mine');
      const ours = sink.events[0] as DecisionEvent;
      for (const key of ['path', 'input', 'result', 'erased', 'masked']) expect(ours[key as keyof DecisionEvent], key).toEqual(theirs[key]);
      // Every field OPA writes is there (OPA's console adds its logger's level/msg/time/type).
      const opaFields = Object.keys(theirs).filter((k) => !['level', 'msg', 'time', 'type'].includes(k));
      expect(Object.keys(ours)).toEqual(expect.arrayContaining(opaFields));
      expect(Object.keys(ours.labels).sort()).toEqual(Object.keys(theirs.labels as object).sort());
      expect(ours.metrics).toHaveProperty('timer_rego_query_eval_ns');
      expect(theirs.metrics).toHaveProperty('timer_rego_query_eval_ns');
    } finally {
      opa.kill();
    }
  });
});
