import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoPath, startStack, toolPath, type Stack } from '../helpers/index.js';
import { call, eventually, token } from './authz-support.js';

/**
 * Through the real Envoy: the policy comes from an OPA-style bundle service (long polling), and
 * every Check's decision is logged in OPA's event shape to a file and to a decision log service,
 * with the agent's credentials erased.
 */

interface Event {
  decision_id: string;
  path: string;
  result?: unknown;
  bundles: Record<string, { revision: string }>;
  input?: { attributes?: { request?: { http?: { headers?: Record<string, string> } } } };
  erased?: string[];
}

let stack: Stack;
let bundles: Server;
let logs: Server;
const received: Event[] = [];
let served: Buffer = readFileSync(repoPath('policies', 'build', 'bundle.tar.gz'));
let etag = '"shipped"';
const held: (() => void)[] = [];
const work = mkdtempSync(join(tmpdir(), 'portcullis-bundles-e2e-'));

function listen(server: Server): Promise<string> {
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

/** Publishes a bundle; long polls held by the gateway are answered with it at once. */
function publish(bytes: Buffer, tag: string): void {
  served = bytes;
  etag = tag;
  for (const h of held.splice(0)) h();
}

function denyAllBundle(): Buffer {
  const dir = mkdtempSync(join(work, 'deny-'));
  writeFileSync(join(dir, 'authz.rego'), 'package envoy.authz\nimport rego.v1\ndefault allow := {"allowed": false, "reason": "frozen by the bundle service", "rule": "bundle.frozen"}\n');
  const out = join(dir, 'b.tar.gz');
  execFileSync(toolPath('opa'), ['build', '-t', 'wasm', '-e', 'envoy/authz/allow', '--revision', 'deny-all', '-o', out, 'authz.rego'], { cwd: dir, stdio: 'ignore' });
  return readFileSync(out);
}

function fileEvents(): Event[] {
  try {
    return readFileSync(join(stack.dir, 'decisions.log'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Event);
  } catch {
    return [];
  }
}

const requestIdOf = (e: Event): string | undefined => e.input?.attributes?.request?.http?.headers?.['x-request-id'];

beforeAll(async () => {
  bundles = createServer((req, res) => {
    const answer = (): void => {
      const type = { 'content-type': 'application/vnd.openpolicyagent.bundles', etag };
      if (req.headers['if-none-match'] === etag) res.writeHead(304, type).end();
      else res.writeHead(200, type).end(served);
    };
    const wait = /^wait=(\d+)$/.exec(String(req.headers.prefer ?? ''));
    if (wait && req.headers['if-none-match'] === etag) {
      const timer = setTimeout(answer, Number(wait[1]) * 1000);
      held.push(() => {
        clearTimeout(timer);
        answer();
      });
    } else answer();
  });
  logs = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/logs' && req.headers['content-encoding'] === 'gzip') received.push(...(JSON.parse(gunzipSync(Buffer.concat(chunks)).toString('utf8')) as Event[]));
      res.writeHead(204).end();
    });
  });
  const [bundleUrl, logUrl] = [await listen(bundles), await listen(logs)];
  stack = await startStack({
    editConfig: (cfg) => {
      const policy = cfg.policy as Record<string, unknown>;
      delete policy.bundle;
      policy.bundle_service = { url: `${bundleUrl}/bundles/authz.tar.gz`, polling: { min_delay_seconds: 3600, max_delay_seconds: 3600, long_polling_timeout_seconds: 20 } };
      cfg.decision_logs = { file: 'decisions.log', service: { url: logUrl, interval_s: 0.2 }, labels: { env: 'e2e' } };
    },
  });
}, 120_000);

afterAll(async () => {
  for (const h of held.splice(0)) h();
  await stack?.stop();
  bundles?.closeAllConnections();
  bundles?.close();
  logs?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('policy from a bundle service, decisions logged as OPA does', () => {
  it('logs every Check once, to the file and the service, with the agent token erased', async () => {
    const bearer = await token(stack);
    const ok = await call(`${stack.envoyUrl}/tools/weather/forecast?city=Paris`, { headers: { authorization: `Bearer ${bearer}` } });
    expect(ok.status).toBe(200);
    const bad = await call(`${stack.envoyUrl}/tools/tickets/tenants/acme/tickets`, { method: 'DELETE', headers: { authorization: `Bearer ${await token(stack, { roles: ['viewer'] })}` } });
    expect(bad.status).toBe(403);
    const ids = [ok.headers.get('x-request-id'), bad.headers.get('x-request-id')];
    expect(await eventually(async () => ids.every((id) => fileEvents().some((e) => requestIdOf(e) === id)), 10_000)).toBe(true);
    expect(await eventually(async () => ids.every((id) => received.some((e) => requestIdOf(e) === id)), 10_000)).toBe(true);
    // One event per decision: a single call is one decision, whichever worker took it.
    for (const id of ids) expect(fileEvents().filter((e) => requestIdOf(e) === id)).toHaveLength(1);
    const allowed = fileEvents().find((e) => requestIdOf(e) === ids[0]) as Event;
    const denied = fileEvents().find((e) => requestIdOf(e) === ids[1]) as Event;
    expect(allowed.path).toBe('envoy/authz/allow');
    expect(allowed.decision_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(denied.decision_id).not.toBe(allowed.decision_id);
    expect(received.find((e) => requestIdOf(e) === ids[0])?.decision_id).toBe(allowed.decision_id);
    expect(allowed.erased).toContain('/input/attributes/request/http/headers/authorization');
    const everything = readFileSync(join(stack.dir, 'decisions.log'), 'utf8') + JSON.stringify(received);
    expect(everything).not.toContain(bearer);
    expect(JSON.stringify(denied.result)).toMatch(/false/);
  });

  it('gives each call of a JSON-RPC batch its own event and decision id', async () => {
    const bearer = await token(stack, { agent: 'reporter', user: 'vera', roles: ['viewer'] });
    const batch = [
      { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} },
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'vpn', tenant: 'acme' } } },
    ];
    const r = await call(`${stack.envoyUrl}/tools/docs/`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' },
      body: JSON.stringify(batch),
    });
    const id = r.headers.get('x-request-id');
    expect(id).toBeTruthy();
    expect(await eventually(async () => fileEvents().filter((e) => requestIdOf(e) === id).length >= 2, 10_000)).toBe(true);
    const mine = fileEvents().filter((e) => requestIdOf(e) === id);
    expect(mine).toHaveLength(2);
    expect(new Set(mine.map((e) => e.decision_id)).size).toBe(2);
  });

  it('a bundle published on the service is in force at the next call (long polling), and the log names its revision', async () => {
    publish(denyAllBundle(), '"deny-all"');
    const bearer = await token(stack);
    let last = 0;
    expect(
      await eventually(async () => {
        last = (await call(`${stack.envoyUrl}/tools/weather/forecast?city=Paris`, { headers: { authorization: `Bearer ${bearer}` } })).status;
        return last === 403;
      }, 10_000),
    ).toBe(true);
    const r = await call(`${stack.envoyUrl}/tools/weather/forecast?city=Oslo`, { headers: { authorization: `Bearer ${bearer}` } });
    expect(r.status).toBe(403);
    expect(r.text).toContain('frozen by the bundle service');
    const id = r.headers.get('x-request-id');
    expect(await eventually(async () => fileEvents().some((e) => requestIdOf(e) === id), 10_000)).toBe(true);
    expect(fileEvents().find((e) => requestIdOf(e) === id)?.bundles).toEqual({ authz: { revision: 'deny-all' } });
  });

  it('a garbage bundle on the service changes nothing: the last good one stays in force', async () => {
    publish(Buffer.from('not a bundle at all'), '"garbage"');
    const bearer = await token(stack);
    // The gateway fetched it (the held long poll was answered) and refused it.
    expect(await eventually(async () => (await call(`${stack.adminUrl}/metrics`)).text.includes('portcullis_policy_bundle_fetches_total{result="invalid"}'), 10_000)).toBe(true);
    const r = await call(`${stack.envoyUrl}/tools/weather/forecast?city=Rome`, { headers: { authorization: `Bearer ${bearer}` } });
    expect(r.status).toBe(403);
    expect(r.text).toContain('frozen by the bundle service');
    expect((await call(`${stack.adminUrl}/readyz`)).status).toBe(200);
  });
});
