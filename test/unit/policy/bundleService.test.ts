import { execFile, execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { BundleService, LONG_POLL_CONTENT_TYPE, type BundleServiceOptions } from '../../../src/policy/bundleService.js';
import { PolicyEngine, type PolicyStatus } from '../../../src/policy/engine.js';
import { buildPolicyInput } from '../../../src/policy/input.js';
import { registry } from '../../../src/metrics.js';
import { compileVerifier } from '../../../src/policy/signatures.js';
import { openPolicyEngine } from '../../../src/policy/setup.js';
import { parseConfig } from '../../../src/config/load.js';
import { buildBundle, ROOT, tempDir, writePolicy } from './helpers.js';

const DECISION = 'envoy/authz/allow';

function bundleBytes(revision: string, allowGet = true): Buffer {
  const rule = allowGet ? 'allow if input.attributes.request.http.method == "GET"' : 'allow if false';
  const dir = writePolicy({ 'authz.rego': `package envoy.authz\nimport rego.v1\ndefault allow := false\n${rule}\n` });
  return readFileSync(buildBundle(dir, { revision }).path);
}

/**
 * An OPA-style bundle server: ETags, 304 on If-None-Match, long polling on `Prefer: wait=N`
 * (held until a new bundle is published or the wait ends), and scripted failures.
 */
class BundleServer {
  readonly requests: IncomingHttpHeaders[] = [];
  private body: Buffer | null = null;
  private etag = '';
  private version = 0;
  private held: (() => void)[] = [];
  /** Statuses answered before anything else (one per request). */
  failures: number[] = [];
  longPoll = true;
  /** Hold long polls (false: a service that claims long polling but answers at once). */
  hold = true;
  private server: Server | null = null;
  url = '';

  publish(body: Buffer): void {
    this.body = body;
    this.version += 1;
    this.etag = `"v${this.version}"`;
    for (const h of this.held.splice(0)) h();
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.requests.push(req.headers);
      const fail = this.failures.shift();
      if (fail !== undefined) return void res.writeHead(fail).end('no');
      this.answer(req.headers, res);
    });
    await new Promise<void>((r) => this.server?.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server?.address() as AddressInfo).port}/bundles/authz.tar.gz`;
  }

  private answer(headers: IncomingHttpHeaders, res: ServerResponse): void {
    const type = this.longPoll ? LONG_POLL_CONTENT_TYPE : 'application/gzip';
    const send = (): void => {
      if (!this.body) return void res.writeHead(404).end();
      if (headers['if-none-match'] === this.etag) return void res.writeHead(304, { etag: this.etag, 'content-type': type }).end();
      res.writeHead(200, { etag: this.etag, 'content-type': type }).end(this.body);
    };
    const wait = /^wait=(\d+)$/.exec(String(headers.prefer ?? ''));
    if (this.longPoll && this.hold && wait && headers['if-none-match'] === this.etag) {
      const timer = setTimeout(send, Number(wait[1]) * 1000);
      this.held.push(() => {
        clearTimeout(timer);
        send();
      });
      return;
    }
    send();
  }

  async close(): Promise<void> {
    for (const h of this.held.splice(0)) h();
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function server(): Promise<BundleServer> {
  const s = new BundleServer();
  await s.start();
  cleanup.push(() => s.close());
  return s;
}

function service(url: string, over: Partial<BundleServiceOptions> = {}): BundleService {
  return new BundleService({ url, headers: { authorization: 'Bearer bundle-token' }, timeoutMs: 2000, minDelayMs: 3_600_000, maxDelayMs: 3_600_000, longPollS: null, verifier: null, ...over });
}

async function open(remote: BundleService): Promise<PolicyEngine> {
  const engine = await PolicyEngine.open({ decision: DECISION, watch: true, remote });
  cleanup.push(() => engine.close());
  return engine;
}

function loaded(engine: PolicyEngine, version: string): Promise<PolicyStatus> {
  return new Promise((resolve) => {
    if (engine.status().version === version) return resolve(engine.status());
    engine.onReload((s) => {
      if (s.version === version) resolve(s);
    });
  });
}

async function fetchCount(result: string): Promise<number> {
  const m = registry.getSingleMetric('portcullis_policy_bundle_fetches_total');
  const values = (await m?.get())?.values ?? [];
  return values.find((v) => v.labels.result === result)?.value ?? 0;
}

const GET = buildPolicyInput({ attributes: { request: { http: { method: 'GET', path: '/', headers: {} } } } }, { identity: null, tool: null, mcp: null, body: null });

describe('bundle service client', () => {
  it('sends If-None-Match with the last ETag and takes 304 as unchanged; a new ETag brings the new bundle', async () => {
    const srv = await server();
    srv.longPoll = false;
    srv.publish(bundleBytes('one'));
    const svc = service(srv.url);
    cleanup.push(() => svc.close());
    const notModified = await fetchCount('not_modified');
    expect((await svc.poll()).result).toBe('updated');
    expect(srv.requests[0]?.['if-none-match']).toBeUndefined();
    expect(srv.requests[0]?.authorization).toBe('Bearer bundle-token');
    expect((await svc.poll()).result).toBe('not_modified');
    expect(srv.requests[1]?.['if-none-match']).toBe('"v1"');
    expect(await fetchCount('not_modified')).toBe(notModified + 1);
    const two = bundleBytes('two');
    srv.publish(two);
    expect((await svc.poll()).result).toBe('updated');
    expect(svc.latest()?.equals(two)).toBe(true);
  });

  it('is not ready, and denies, until the first bundle arrives; retries with backoff after failures', async () => {
    const srv = await server();
    srv.failures = [500, 503];
    srv.publish(bundleBytes('first'));
    const svc = service(srv.url);
    const engine = await open(svc);
    // Polling is an hour apart: only the retry backoff can bring the bundle.
    expect(engine.status().ready).toBe(false);
    expect(() => engine.evaluate(GET)).toThrow(/no policy is loaded/);
    await loaded(engine, 'first');
    expect(engine.evaluate(GET).allowed).toBe(true);
    expect(srv.requests.length).toBe(3);
  });

  it('keeps the last good bundle when the service serves garbage or fails', async () => {
    const srv = await server();
    srv.longPoll = false;
    srv.publish(bundleBytes('good'));
    const svc = service(srv.url);
    const engine = await open(svc);
    await loaded(engine, 'good');
    srv.publish(Buffer.from('this is not a bundle'));
    const invalid = await fetchCount('invalid');
    expect((await svc.poll()).result).toBe('invalid');
    expect(await fetchCount('invalid')).toBe(invalid + 1);
    srv.failures = [502];
    expect((await svc.poll()).result).toBe('error');
    expect(svc.error()).toMatch(/HTTP 502/);
    expect((await engine.reload()).version).toBe('good');
    expect(engine.evaluate(GET).allowed).toBe(true);
  });

  it('long polling: a bundle published while a poll is held arrives at once, without waiting for the polling delay', async () => {
    const srv = await server();
    srv.publish(bundleBytes('lp-1'));
    const svc = service(srv.url, { longPollS: 30 });
    const engine = await open(svc);
    await loaded(engine, 'lp-1');
    // The client asks again at once (the service said it long-polls) and the server holds it.
    while (srv.requests.length < 2) await new Promise((r) => setImmediate(r));
    expect(srv.requests[1]?.prefer).toBe('wait=30');
    expect(srv.requests[1]?.['if-none-match']).toBe('"v1"');
    srv.publish(bundleBytes('lp-2', false));
    await loaded(engine, 'lp-2');
    expect(engine.evaluate(GET).allowed).toBe(false);
  });

  it('does not long-poll a service that does not answer with the bundle content type', async () => {
    const srv = await server();
    srv.longPoll = false;
    srv.publish(bundleBytes('plain'));
    const svc = service(srv.url, { longPollS: 30 });
    const outcome = await svc.poll();
    expect(outcome).toEqual({ result: 'updated', longPoll: false });
  });

  it('with signing keys, an unsigned or foreign-signed bundle from the service is refused and the signed one stays', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyDir = tempDir();
    const sign = (revision: string, key: typeof privateKey): Buffer => {
      const pem = join(keyDir, `${revision}.pem`);
      writeFileSync(pem, key.export({ type: 'pkcs8', format: 'pem' }));
      const dir = writePolicy({ 'authz.rego': 'package envoy.authz\nimport rego.v1\nallow := true\n' });
      const out = join(tempDir(), 'b.tar.gz');
      execFileSync(join(ROOT, '.tools/bin/opa'), ['build', '-b', '-t', 'wasm', '-e', DECISION, '--revision', revision, '--signing-key', pem, '--signing-alg', 'RS256', '-o', out, '.'], { cwd: dir, stdio: 'ignore' });
      return readFileSync(out);
    };
    const verifier = compileVerifier({ keys: { default: { algorithm: 'RS256', key: publicKey.export({ type: 'spki', format: 'pem' }).toString() } } }, '/');
    const srv = await server();
    srv.longPoll = false;
    srv.publish(sign('signed', privateKey));
    const svc = service(srv.url, { verifier });
    const engine = await PolicyEngine.open({ decision: DECISION, watch: true, remote: svc, verifier });
    cleanup.push(() => engine.close());
    await loaded(engine, 'signed');
    srv.publish(bundleBytes('unsigned'));
    expect((await svc.poll()).result).toBe('invalid');
    expect(svc.error()).toMatch(/not signed/);
    srv.publish(sign('foreign', other.privateKey));
    expect((await svc.poll()).result).toBe('invalid');
    expect(svc.error()).toMatch(/does not verify/);
    expect((await engine.reload()).version).toBe('signed');
  });

  it('opening from a configured service waits for the first bundle, so a reload swaps in a serving engine', async () => {
    const srv = await server();
    srv.longPoll = false;
    srv.failures = [503];
    srv.publish(bundleBytes('from-config'));
    const cfg = parseConfig(`policy: { bundle_service: { url: "${srv.url}", timeout_s: 30 } }\ntools:\n  - { name: weather, upstream: tool_weather }\n`, '/etc/p/c.yaml');
    const engine = await openPolicyEngine(cfg, true);
    cleanup.push(() => engine.close());
    expect(engine.status()).toMatchObject({ ready: true, version: 'from-config' });
    expect(engine.evaluate(GET).allowed).toBe(true);
  });

  it('a service that claims long polling but answers 304 at once is not asked again in a tight loop', async () => {
    const srv = await server();
    srv.hold = false;
    srv.publish(bundleBytes('eager'));
    const svc = service(srv.url, { longPollS: 30 });
    cleanup.push(() => svc.close());
    expect(await svc.poll()).toEqual({ result: 'updated', longPoll: true });
    expect(await svc.poll()).toEqual({ result: 'not_modified', longPoll: false });
  });

  it('`portcullis check` fetches once and says why a service gives no loadable bundle', async () => {
    const srv = await server();
    srv.longPoll = false;
    srv.publish(Buffer.from('garbage'));
    const dir = tempDir();
    const config = join(dir, 'portcullis.yaml');
    writeFileSync(config, `server: { grpc_plaintext: true, grpc_address: 127.0.0.1 }\nidentity: { required: false }\npolicy: { bundle_service: { url: "${srv.url}" } }\ntools: [{ name: docs, upstream: tool_docs }]\n`);
    // Asynchronously: the bundle server runs in this process.
    const run = (): Promise<string> =>
      new Promise((done) =>
        execFile(process.execPath, [join(ROOT, 'dist/main.js'), 'check', '--config', config], { encoding: 'utf8' }, (err, stdout, stderr) =>
          done(`${err ? 'FAILED ' : ''}${stdout}${stderr}`),
        ),
      );
    expect(await run()).toMatch(/FAILED[\s\S]*\$\.policy: no policy bundle received yet from http:\/\/127\.0\.0\.1:\d+\/bundles\/authz\.tar\.gz \(policy bundle .* not a readable gzip archive/);
    srv.publish(bundleBytes('checked'));
    expect(await run()).not.toMatch(/FAILED/);
  });
});
