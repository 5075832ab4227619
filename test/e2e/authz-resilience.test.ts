import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../helpers/index.js';
import { repoPath, toolPath } from '../helpers/paths.js';
import { call, eventually, expectDenial, token, type Reply } from './authz-support.js';

/**
 * ext_authz under change and abuse, through the real Envoy: policy hot reload (data document and
 * bundle), a broken bundle, portcullis going away, and malformed requests. After each, normal
 * calls keep working.
 */

let stack: Stack;
let scratch: string;
let dataPath: string;
let alice: string;
let reporter: string;

const weather = (): string => `${stack.envoyUrl}/tools/weather/forecast?city=Oslo`;
const tickets = (): string => `${stack.envoyUrl}/tools/tickets/tenants/acme/tickets`;

/** The policy bundle path portcullis serves from (prepare copies it into the stack folder). */
function bundlePath(): string {
  const cfg = parseYaml(readFileSync(stack.configPath, 'utf8')) as { policy: { bundle: string } };
  return cfg.policy.bundle;
}

/** Replaces a file atomically, as a deployment would (a watcher never sees half a file). */
function replaceFile(path: string, content: string | Buffer): void {
  const tmp = `${path}.next`;
  writeFileSync(tmp, content);
  renameSync(tmp, path);
}

/** Builds the shipped Rego with a modified data document and revision; returns the bundle path. */
function buildBundle(revision: string, editData: (data: { portcullis: { agents: Record<string, { tools: string[] }> } }) => void): string {
  const dir = mkdtempSync(join(scratch, 'bundle-'));
  // Every module of the shipped policy (not its tests): the rules live in more than one file.
  const modules = readdirSync(repoPath('policies')).filter((f) => f.endsWith('.rego') && !f.endsWith('_test.rego'));
  for (const m of modules) copyFileSync(repoPath('policies', m), join(dir, m));
  const data = JSON.parse(readFileSync(repoPath('policies', 'data.json'), 'utf8')) as Parameters<typeof editData>[0];
  editData(data);
  writeFileSync(join(dir, 'data.json'), JSON.stringify(data));
  const out = join(dir, 'bundle.tar.gz');
  execFileSync(toolPath('opa'), ['build', '-t', 'wasm', '-e', 'envoy/authz/allow', '--revision', revision, '-o', out, ...modules, 'data.json'], { cwd: dir });
  return out;
}

async function readyz(): Promise<{ status: number; body: { ready: boolean; policy: { version: string | null; lastError: string | null } } }> {
  const r = await call(`${stack.adminUrl}/readyz`);
  return { status: r.status, body: JSON.parse(r.text) as never };
}

/** Waits (bounded) until `probe` sees the expected status. */
async function untilStatus(what: string, probe: () => Promise<Reply>, status: number, timeoutMs = 8_000): Promise<Reply> {
  let last: Reply | null = null;
  const ok = await eventually(async () => {
    last = await probe();
    return last.status === status;
  }, timeoutMs, 150);
  const seen = last as Reply | null;
  expect(ok, `${what}: still ${seen?.status} ${seen?.text.slice(0, 300)}`).toBe(true);
  return seen as Reply;
}

async function expectServing(): Promise<void> {
  const r = await call(weather(), { headers: { authorization: `Bearer ${alice}` } });
  expect(r.status, r.text).toBe(200);
}

/**
 * POSTs `prefix` followed by filler up to `total` bytes with node:http, honouring backpressure,
 * and stops sending once Envoy answers, so an early answer is read while the upload is going on.
 * `sentBytes` is what the socket accepted before the answer.
 */
function bigPost(url: string, headers: Record<string, string | number>, prefix: string, total: number): Promise<Reply & { sentBytes: number }> {
  return new Promise((resolve, reject) => {
    let sentBytes = 0;
    let answered = false;
    const req = request(url, { method: 'POST', headers }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v);
        resolve({ status: res.statusCode ?? 0, headers: h, text: Buffer.concat(chunks).toString('utf8'), sentBytes });
        req.destroy();
      });
    });
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    req.setTimeout(20_000, () => req.destroy(new Error('no answer within 20 s')));
    const filler = Buffer.alloc(64 * 1024, 'a');
    const pump = async (): Promise<void> => {
      let chunk: Buffer = Buffer.from(prefix);
      while (sentBytes < total && !answered && !req.destroyed) {
        sentBytes += chunk.length;
        if (!req.write(chunk)) await new Promise<void>((r) => req.once('drain', r).once('close', r));
        chunk = filler.subarray(0, Math.min(filler.length, total - sentBytes));
      }
      if (!answered && !req.destroyed) req.end();
    };
    void pump();
  });
}

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'portcullis-authz-'));
  dataPath = join(scratch, 'policy-data.json');
  writeFileSync(dataPath, '{}\n');
  stack = await startStack({
    editConfig: (cfg) => {
      (cfg.policy as Record<string, unknown>).data = dataPath;
    },
  });
  alice = await token(stack);
  reporter = await token(stack, { agent: 'reporter', user: 'rita', roles: ['support'] });
});

afterAll(async () => {
  await stack?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('malformed input is refused and the service keeps serving', () => {
  it('garbage JSON with content-type application/json', async () => {
    const before = stack.tool.received.length;
    const r = await call(tickets(), { method: 'POST', body: '{"title": "x", priority: high', headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' } });
    const body = expectDenial(r, 400, 'invalid_request', 'inspect.json');
    expect(body.error.message).toMatch(/not valid JSON/);
    expect(stack.tool.received.length).toBe(before);
    await expectServing();
  });

  it('invalid UTF-8 body', async () => {
    const before = stack.tool.received.length;
    const bad = Buffer.concat([Buffer.from('{"title":"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from('","priority":"low"}')]);
    const r = await call(tickets(), { method: 'POST', body: bad, headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' } });
    const body = expectDenial(r, 400, 'invalid_request', 'inspect.encoding');
    expect(body.error.message).toMatch(/UTF-8/);
    expect(stack.tool.received.length).toBe(before);
    await expectServing();
  });

  it('a 64 KiB header', async () => {
    const before = stack.tool.received.length;
    const r = await call(weather(), { headers: { authorization: `Bearer ${alice}`, 'x-padding': 'a'.repeat(64 * 1024) } });
    expect([400, 431], r.text).toContain(r.status);
    // Envoy refuses these headers before it parses the request, so there may be no request id.
    expectDenial(r, r.status, 'invalid_request', undefined, { requestIdOptional: true });
    expect(stack.tool.received.length).toBe(before);
    await expectServing();
  });

  it('a 10 MB body with content-length is refused up front, without buffering it', async () => {
    const before = stack.tool.received.length;
    const total = 10 * 1024 * 1024;
    const started = Date.now();
    const r = await bigPost(tickets(), { authorization: `Bearer ${alice}`, 'content-type': 'application/json', 'content-length': total }, '{"title":"', total);
    const body = expectDenial(r, 413, 'payload_too_large', 'inspect.body_size');
    expect(body.error.message).toMatch(/10485760 bytes/);
    expect(stack.tool.received.length).toBe(before);
    // Answered while the upload was still going on: nothing waited for (or held) all 10 MB.
    expect(r.sentBytes).toBeLessThan(total);
    expect(Date.now() - started).toBeLessThan(10_000);
    await expectServing();
  });

  it('a 10 MB chunked JSON body (no content-length) is refused as too large, not as bad JSON', async () => {
    const before = stack.tool.received.length;
    const total = 10 * 1024 * 1024;
    const r = await bigPost(tickets(), { authorization: `Bearer ${alice}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, '{"title":"', total);
    expectDenial(r, 413, 'payload_too_large');
    expect(stack.tool.received.length).toBe(before);
    expect(r.sentBytes).toBeLessThan(total);
    await expectServing();
  });

  it('a chunked body over a small tool limit is refused at the check', async () => {
    const r = await bigPost(weather(), { authorization: `Bearer ${alice}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, '{"q":"', 200 * 1024);
    const body = expectDenial(r, 413, 'payload_too_large', 'inspect.body_size');
    expect(body.error.message).toMatch(/4096-byte limit of tool "weather"/);
  });
});

describe('policy changes apply to the next request', () => {
  it('editing the data document flips the decision, and back', async () => {
    const probe = (): Promise<Reply> => call(tickets(), { headers: { authorization: `Bearer ${reporter}` } });
    expectDenial(await probe(), 403, 'forbidden', 'agent.not_bound');
    replaceFile(dataPath, JSON.stringify({ portcullis: { agents: { reporter: { tools: ['weather', 'docs', 'tickets'] } } } }));
    await untilStatus('reporter bound to tickets by the data document', probe, 200);
    replaceFile(dataPath, '{}\n');
    expectDenial(await untilStatus('binding removed again', probe, 403), 403, 'forbidden', 'agent.not_bound');
  });

  it('a rebuilt bundle flips the decision and reports its revision', async () => {
    const probe = (): Promise<Reply> => call(weather(), { headers: { authorization: `Bearer ${alice}` } });
    expect((await probe()).status).toBe(200);
    const next = buildBundle('e2e-unbind-weather', (d) => {
      d.portcullis.agents.helpdesk = { tools: ['tickets', 'docs'] };
    });
    replaceFile(bundlePath(), readFileSync(next));
    const denied = await untilStatus('helpdesk unbound from weather by the new bundle', probe, 403);
    expectDenial(denied, 403, 'forbidden', 'agent.not_bound');
    const ready = await readyz();
    expect(ready.status).toBe(200);
    expect(ready.body.policy.version).toBe('e2e-unbind-weather');
    expect(ready.body.policy.lastError).toBeNull();
  });

  it('a broken bundle keeps the last good policy and says why', async () => {
    replaceFile(bundlePath(), Buffer.from('this is not a gzip tarball \x00\x01\x02\xff'.repeat(50), 'binary'));
    const failed = await eventually(async () => (await readyz()).body.policy.lastError !== null, 8_000, 150);
    expect(failed, 'readyz never reported the broken bundle').toBe(true);
    const ready = await readyz();
    // Still ready and serving the last good revision; the reason names the bundle file.
    expect(ready.status).toBe(200);
    expect(ready.body.ready).toBe(true);
    expect(ready.body.policy.version).toBe('e2e-unbind-weather');
    expect(ready.body.policy.lastError).toContain(bundlePath());
    // Logs are written asynchronously in small batches: wait (bounded) for the line.
    expect(await eventually(async () => /policy reload failed; keeping the last good policy/.test(stack.logs()), 5_000), stack.logs()).toBe(true);
    // Decisions are the last good policy's: weather still denied for helpdesk, tickets allowed.
    expectDenial(await call(weather(), { headers: { authorization: `Bearer ${alice}` } }), 403, 'forbidden', 'agent.not_bound');
    const ok = await call(tickets(), { headers: { authorization: `Bearer ${alice}` } });
    expect(ok.status, ok.text).toBe(200);
    // Repair: the shipped bundle again.
    replaceFile(bundlePath(), readFileSync(repoPath('policies', 'build', 'bundle.tar.gz')));
    await untilStatus('shipped bundle restored', () => call(weather(), { headers: { authorization: `Bearer ${alice}` } }), 200);
    expect((await readyz()).body.policy.lastError).toBeNull();
  });
});

describe('portcullis unavailable', () => {
  it('Envoy fails closed with the unavailable error body, and recovers after a restart', async () => {
    await stack.stopPortcullis();
    const before = stack.tool.received.length;
    for (const url of [weather(), tickets()]) {
      const r = await call(url, { headers: { authorization: `Bearer ${alice}` } });
      const body = expectDenial(r, 503, 'unavailable');
      expect(body.error.retryable).toBe(true);
      // ext_authz fails first; on routes that inspect from the response on, ext_proc fails on that
      // reply too, so either part of the gateway may be the one named.
      expect(body.error.message).toMatch(/(authorization|inspection) service is unavailable/);
    }
    // Unauthenticated calls are not let through either.
    expectDenial(await call(weather()), 503, 'unavailable');
    expect(stack.tool.received.length).toBe(before);

    await stack.startPortcullis();
    await expectServing();
    expect(stack.tool.received.length).toBe(before + 1);
    expectDenial(await call(weather()), 401, 'unauthenticated', 'identity.required');
  });
});
