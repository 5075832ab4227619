import { afterAll, beforeAll, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { dirname, join } from 'node:path';
import { readAuditFile, repoPath, send, startStack, type Stack } from '../helpers/index.js';
import { token as demoToken } from './authz-support.js';

/**
 * The audit trail survives a crash: a write that reached its tool is on record even when
 * portcullis is SIGKILLed before the response, and `audit verify` / `audit show` report the
 * exchange as never completed.
 */

const run = promisify(execFile);
const main = repoPath('dist', 'main.js');

let stack: Stack;
let token: string;
let auditFile: string;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Runs the CLI and returns its exit code and output (a non-zero exit is not an error here). */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [main, ...args]);
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

beforeAll(async () => {
  stack = await startStack();
  auditFile = join(dirname(stack.configPath), 'audit.log');
  token = await demoToken(stack);
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

it('keeps the record of a ticket POST that reached the tool when portcullis is killed before the response', async () => {
  let reached: (rid: string) => void = () => undefined;
  const atTool = new Promise<string>((r) => (reached = r));
  stack.tool.handle('/tickets/tenants/acme/tickets', (req, res) => {
    reached(String(req.headers['x-request-id']));
    // The tool executes the write and answers late: portcullis is gone by then.
    setTimeout(() => !res.destroyed && res.writeHead(201, { 'content-type': 'application/json' }).end('{"id":"T-1"}'), 1500);
  });
  const reply = send(stack, '/tools/tickets/tenants/acme/tickets', { bearer: token, body: JSON.stringify({ title: 'printer on fire', priority: 'high' }) }).catch((err: Error) => err);
  const requestId = await atTool;
  await stack.killPortcullis();
  await reply;

  const records = readAuditFile(auditFile, { all: true }).filter((r) => r.request_id === requestId);
  expect(records.map((r) => r.record_type)).toEqual(['forwarded']);
  expect(records[0]).toMatchObject({ tool: 'tickets', method: 'POST', user_id: 'alice', tenant_id: 'acme', decision: { allowed: true }, inspection: { request: { schema: 'valid' } } });

  await stack.startPortcullis();
  const verify = await cli(['audit', 'verify', auditFile]);
  // Intact chain, with a finding: an exchange forwarded and never completed.
  expect(verify.code, verify.stdout + verify.stderr).toBe(3);
  expect(verify.stdout + verify.stderr).toContain(requestId);
  const show = await cli(['audit', 'show', auditFile, '--decision', 'incomplete', '--format', 'json']);
  expect(show.code).toBe(0);
  const shown = show.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(shown.map((r) => r.request_id)).toContain(requestId);
}, 60_000);

it('keeps the record of a read on a route without a request phase (written by the Check) across a kill', async () => {
  let reached: (rid: string) => void = () => undefined;
  const atTool = new Promise<string>((r) => (reached = r));
  stack.tool.handle('/weather/slow-read', (req, res) => {
    reached(String(req.headers['x-request-id']));
    setTimeout(() => !res.destroyed && res.writeHead(200, { 'content-type': 'application/json' }).end('{}'), 1500);
  });
  const reply = send(stack, '/tools/weather/slow-read', { bearer: token }).catch((err: Error) => err);
  const requestId = await atTool;
  await stack.killPortcullis();
  await reply;
  const records = readAuditFile(auditFile, { all: true }).filter((r) => r.request_id === requestId);
  expect(records.map((r) => r.record_type)).toEqual(['forwarded']);
  expect(records[0]).toMatchObject({ tool: 'weather', method: 'GET', user_id: 'alice' });
  await stack.startPortcullis();
}, 60_000);

it('joins the forwarded and completion records of a normal exchange by request id', async () => {
  const r = await send(stack, '/tools/tickets/tenants/acme/tickets', { bearer: token, body: JSON.stringify({ title: 'all good', priority: 'low' }) });
  expect(r.status).toBeLessThan(300);
  const rid = String(r.headers['x-request-id']);
  let types: unknown[] = [];
  for (let i = 0; i < 40 && types.length < 2; i++) {
    types = readAuditFile(auditFile, { all: true }).filter((x) => x.request_id === rid).map((x) => x.record_type);
    if (types.length < 2) await sleep(50);
  }
  expect(types).toEqual(['forwarded', 'exchange']);
});

it('names the MCP method and tool of a denied tools/call, and the caller of a denial made before any tool was found', async () => {
  const viewer = await demoToken(stack, { agent: 'reporter', user: 'bob', roles: ['viewer'] });
  const del = await send(stack, '/tools/docs/', { bearer: viewer, body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'delete_doc', arguments: { doc_id: 'd-1', tenant: 'acme' } } }) });
  const unknown = await send(stack, '/tools/nowhere/x', { bearer: token });
  expect(unknown.status).toBe(404);
  const find = async (rid: string): Promise<Record<string, unknown>> => {
    for (let i = 0; i < 40; i++) {
      const r = readAuditFile(auditFile).find((x) => x.request_id === rid);
      if (r) return r;
      await sleep(50);
    }
    throw new Error(`no record for ${rid}`);
  };
  const delRec = await find(String(del.headers['x-request-id']));
  expect(delRec).toMatchObject({ tool: 'docs', user_id: 'bob', roles: ['viewer'], mcp: { method: 'tools/call', tool: 'delete_doc' }, decision: { allowed: false } });
  expect(JSON.stringify(delRec)).toContain('delete_doc');
  const unknownRec = await find(String(unknown.headers['x-request-id']));
  expect(unknownRec).toMatchObject({ tool: null, user_id: 'alice', tenant_id: 'acme', auth_methods: ['jwt'], response_status: 404 });
});
