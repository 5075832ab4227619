import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { readAuditFile, startStack, type Stack } from '../helpers/index.js';
import { repoPath } from '../helpers/paths.js';
import { mintToken } from '../../src/identity/mint.js';

/**
 * The audit trail through the real Envoy: exactly one record per exchange (allowed, blocked by
 * inspection, denied by ext_authz), every contract field filled from the real exchange, no
 * secret anywhere in the file, and tampering detected by `audit verify`.
 */

const run = promisify(execFile);
const AWS_KEY = 'AKIAIOSFODNN7EXAMPLF';
const CARD = '4111 1111 1111 1111';

let stack: Stack;
let token: string;
let auditFile: string;

interface Sent {
  status: number;
  requestId: string;
  traceId: string;
  body: string;
}

let traceCounter = 0;

/** A call with a fresh W3C traceparent, so each record's trace_id is known. */
async function call(path: string, opts: { method?: string; body?: string; token?: string | null; headers?: Record<string, string> } = {}): Promise<Sent> {
  traceCounter += 1;
  const traceId = `4bf92f3577b34da6a3ce929d0e0e${String(4700 + traceCounter).padStart(4, '0')}`;
  const headers: Record<string, string> = { traceparent: `00-${traceId}-00f067aa0ba902b7-01`, ...opts.headers };
  const bearer = opts.token === undefined ? token : opts.token;
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(new URL(path, stack.envoyUrl), { method: opts.method ?? (opts.body === undefined ? 'GET' : 'POST'), headers, body: opts.body });
  const requestId = res.headers.get('x-request-id');
  expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
  return { status: res.status, requestId: requestId!, traceId, body: await res.text() };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Completion records (one per exchange); forwarded records are checked on their own. */
function readRecords(): Record<string, unknown>[] {
  return readAuditFile(auditFile);
}

/** Forwarded records: written before a request reaches its tool. */
function readForwarded(): Record<string, unknown>[] {
  return readAuditFile(auditFile, { all: true }).filter((r) => r.record_type === 'forwarded');
}

/** Waits for the file sink (asynchronous) to hold `n` records in total. */
async function waitForRecords(n: number): Promise<Record<string, unknown>[]> {
  let records = readRecords();
  for (let i = 0; i < 60 && records.length < n; i++) {
    await sleep(50);
    records = readRecords();
  }
  return records;
}

function only(records: Record<string, unknown>[], requestId: string): Record<string, unknown> {
  const found = records.filter((r) => r.request_id === requestId);
  expect(found, `records for ${requestId}`).toHaveLength(1);
  return found[0]!;
}

beforeAll(async () => {
  stack = await startStack();
  auditFile = join(dirname(stack.configPath), 'audit.log');
  token = await mintToken({ issuer: 'https://issuer.demo.portcullis', audience: 'portcullis', agent: 'helpdesk', user: 'alice', tenant: 'acme', roles: ['support'], ttlS: 300, privateJwkPath: stack.prepared.privateJwkPath });
  stack.tool.handle('/weather/leak', (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ aws: AWS_KEY, card: CARD })));
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

describe('one complete record per exchange', () => {
  const sent: Sent[] = [];

  it('writes one record per exchange, allowed or denied, and nothing else', async () => {
    const before = readRecords().length;
    sent.push(await call('/tools/weather/leak?city=Paris&api_key=hunter2'));
    sent.push(await call('/tools/tickets/tenants/acme/tickets', { body: JSON.stringify({ title: 'x', priority: 'nope' }) }));
    sent.push(await call('/tools/weather/forecast?city=Oslo', { token: null }));
    sent.push(await call('/tools/tickets/tenants/globex/tickets'));
    sent.push(await call('/tools/nowhere/x'));
    expect(sent.map((s) => s.status)).toEqual([200, 400, 401, 403, 404]);
    const records = await waitForRecords(before + sent.length);
    // Give a duplicate (if any) time to arrive before counting.
    await sleep(200);
    expect(readRecords()).toHaveLength(before + sent.length);
    for (const s of sent) only(records, s.requestId);
    // Only the call that reached its tool has a forwarded record; denials never do.
    const forwarded = readForwarded().map((r) => r.request_id);
    expect(sent.filter((s) => forwarded.includes(s.requestId)).map((s) => s.status)).toEqual([200]);
  });

  it('fills every field of an allowed exchange from the real call', async () => {
    const s = sent[0]!;
    const r = only(readRecords(), s.requestId);
    expect(r).toMatchObject({
      request_id: s.requestId,
      trace_id: s.traceId,
      agent_id: 'helpdesk',
      user_id: 'alice',
      tenant_id: 'acme',
      auth_methods: ['jwt'],
      tool: 'weather',
      method: 'GET',
      path: '/tools/weather/leak?city=[redacted]&api_key=[redacted]',
      decision: { allowed: true, rule: 'allow.role', dry_run: false },
      inspection: { request: { size: 0, schema: 'skipped', injection: [] } },
      dlp: { request: { action: 'none', rules: [], count: 0 }, response: { action: 'redacted', rules: ['aws.access_key_id', 'pii.credit_card'], count: 2 } },
      upstream_status: 200,
      response_status: 200,
      error: null,
    });
    expect(typeof r.time).toBe('string');
    expect(Math.abs(Date.parse(String(r.time)) - Date.now())).toBeLessThan(60_000);
    expect((r.decision as { policy_version: string }).policy_version).toMatch(/^sha256:[0-9a-f]{12}/);
    const lat = r.latency_ms as Record<string, number>;
    for (const k of ['authz', 'request_inspect', 'response_inspect', 'total']) expect(lat[k], k).toBeGreaterThanOrEqual(0);
    expect(lat.total).toBeGreaterThanOrEqual(lat.authz!);
    expect(r).toHaveProperty('seq');
    expect(r).toHaveProperty('prev_hash');
    expect(r).toHaveProperty('hash');
  });

  it('records an inspection denial with its schema errors and no upstream status', async () => {
    const r = only(readRecords(), sent[1]!.requestId);
    expect(r).toMatchObject({
      trace_id: sent[1]!.traceId,
      tool: 'tickets',
      method: 'POST',
      decision: { allowed: true },
      inspection: { request: { schema: 'invalid', errors: ['$.priority: must be equal to one of the allowed values'] } },
      upstream_status: null,
      response_status: 400,
      error: { type: 'invalid_request', rule: 'inspect.schema' },
    });
  });

  it('records ext_authz denials (401, 403, 404) with their rule and no identity it did not verify', async () => {
    const records = readRecords();
    const unauth = only(records, sent[2]!.requestId);
    expect(unauth).toMatchObject({
      trace_id: sent[2]!.traceId,
      agent_id: null,
      user_id: null,
      auth_methods: [],
      tool: 'weather',
      method: 'GET',
      path: '/tools/weather/forecast?city=[redacted]',
      decision: { allowed: false },
      upstream_status: null,
      response_status: 401,
      error: { type: 'unauthenticated' },
    });
    const forbidden = only(records, sent[3]!.requestId);
    expect(forbidden).toMatchObject({ user_id: 'alice', tenant_id: 'acme', tool: 'tickets', decision: { allowed: false, rule: 'tenant.mismatch' }, response_status: 403, error: { type: 'forbidden', rule: 'tenant.mismatch' } });
    const unknown = only(records, sent[4]!.requestId);
    expect(unknown).toMatchObject({ tool: null, decision: { allowed: false }, response_status: 404, error: { type: 'unknown_tool' } });
  });

  it('never writes a secret: not the leaked values, not the caller token, not the injected credential', async () => {
    const text = readFileSync(auditFile, 'utf8');
    const secrets = [AWS_KEY, CARD, 'hunter2', token, ...Object.values(stack.prepared.secrets)];
    for (const secret of secrets) expect(text.includes(secret), `audit file contains ${secret.slice(0, 12)}...`).toBe(false);
  });
});

describe('tamper evidence', () => {
  it('verifies the untouched file, then names the record that was edited', async () => {
    const main = repoPath('dist', 'main.js');
    const ok = await run(process.execPath, [main, 'audit', 'verify', auditFile]);
    expect(ok.stdout).toMatch(/ok|verified/i);

    const lines = readFileSync(auditFile, 'utf8').split('\n');
    const records = lines.filter(Boolean);
    expect(records.length).toBeGreaterThanOrEqual(3);
    const target = JSON.parse(records[1]!) as Record<string, unknown>;
    // A plausible forgery: the decision flipped in place, everything else kept.
    lines[1] = records[1]!.replace('"response_status":', '"response_status":2').replace(/"user_id":"[^"]*"/, '"user_id":"mallory"');
    expect(lines[1]).not.toBe(records[1]);
    const tampered = join(dirname(auditFile), 'audit-tampered.log');
    writeFileSync(tampered, lines.join('\n'));
    const bad = await run(process.execPath, [main, 'audit', 'verify', tampered]).then(
      () => null,
      (err: { code: number; stdout: string; stderr: string }) => err,
    );
    expect(bad, 'audit verify accepted an edited file').not.toBeNull();
    expect(bad!.code).not.toBe(0);
    const said = `${bad!.stdout}\n${bad!.stderr}`;
    expect(said).toContain('line 2');
    expect(said).toContain(`seq ${String(target.seq)}`);
    expect(said).toMatch(/edited/);
  });
});
