import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { freePort, pointCluster, readAuditFile, repoPath, send, startStack, type Reply, type Stack } from '../helpers/index.js';
import { startTestMcpServer, type TestMcpServer } from '../helpers/mcpServer.js';
import { call, token } from './authz-support.js';

/**
 * MCP tool definitions through the real Envoy, against a server made with the official SDK:
 * tools work without being configured (called before any list, and after one), arguments are
 * checked against the advertised schema (closed), a changed definition (the rug pull, through
 * the SDK's `update()`) is handled per `on_change` (flag, hide, block + approval by CLI and by
 * the admin endpoint), a poisoned description per `poisoning`, and pins survive a restart.
 */

const ADMIN_TOKEN = 'admin-token-for-the-mcp-definitions-suite-0123456789';
const run = promisify(execFile);

let stack: Stack;
let mcp: TestMcpServer;
let bearer: string;
let nextId = 1;
/** Policy data that calls every MCP tool of docs read-only: only the gateway's own `input.tool.mutating` then tells them apart. */
const dataDir = mkdtempSync(join(tmpdir(), 'mcp-definitions-data-'));
const policyData = join(dataDir, 'data.json');
// The viewer may call every MCP tool of this server (the shipped data names the demo's own), so
// what decides below is whether the call changes state.
writeFileSync(
  policyData,
  JSON.stringify({
    portcullis: {
      tools: { docs: { mcp_tools: Object.fromEntries(['add', 'write_note', 'drop_tables'].map((n) => [n, { mutating: false }])) } },
      roles: { viewer: { mcp: { docs: { tools: ['*'] } } } },
    },
  }),
);

type Json = Record<string, unknown>;

function docsTool(cfg: Json): Json {
  return (cfg.tools as Json[]).find((t) => t.name === 'docs')!;
}

beforeAll(async () => {
  mcp = await startTestMcpServer();
  stack = await startStack({
    env: { PORTCULLIS_ADMIN_TOKEN: ADMIN_TOKEN },
    editConfig: (cfg) => {
      (cfg.server as Json).admin_token = { env: 'PORTCULLIS_ADMIN_TOKEN' };
      (cfg.policy as Json).data = policyData;
      const docs = docsTool(cfg);
      // Nothing about the server's tools is configured: only where to ask and where pins live.
      docs.mcp = { server_url: mcp.url, pins_file: 'mcp-pins.json' };
      docs.response = {};
    },
    editEnvoy: (cfg) => pointCluster(cfg, 'tool_docs', mcp.port),
  });
  bearer = await token(stack);
}, 120_000);
afterAll(async () => {
  await stack?.stop();
  await mcp?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** One JSON-RPC message to the docs tool through Envoy. */
function rpc(method: string, params: Json = {}): Promise<Reply> {
  const body = JSON.stringify({ jsonrpc: '2.0', id: nextId++, method, params });
  return send(stack, '/tools/docs/', { body, bearer, headers: { accept: 'application/json, text/event-stream' } });
}

/** The JSON-RPC message of a reply, whether it came as JSON or as one SSE event. */
function message(r: Reply): Json {
  if (r.json) return r.json as Json;
  const data = r.text.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim());
  expect(data.length, r.text).toBeGreaterThan(0);
  return JSON.parse(data[data.length - 1]!) as Json;
}

function listedNames(r: Reply): string[] {
  const m = message(r);
  return ((m.result as { tools: { name: string }[] }).tools ?? []).map((t) => t.name).sort();
}

function listedTool(r: Reply, name: string): Json | undefined {
  return ((message(r).result as { tools: Json[] }).tools ?? []).find((t) => t.name === name);
}

function rpcError(r: Reply): { code: number; message: string; data: Json } {
  const m = message(r);
  expect(m.error, r.text).toBeDefined();
  return m.error as { code: number; message: string; data: Json };
}

const callsOf = (name: string): number => mcp.calls.filter((c) => c.name === name).length;
const listsFetched = (): number => mcp.requests.filter((r) => r.methods.includes('tools/list') && r.path === '/mcp').length;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function auditRecord(requestId: string): Promise<Json> {
  const file = join(dirname(stack.configPath), 'audit.log');
  for (let i = 0; i < 100; i++) {
    const found = readAuditFile(file).filter((r) => r.request_id === requestId && r.record_type === 'exchange');
    if (found.length > 0) return found[0] as Json;
    await sleep(50);
  }
  throw new Error(`no audit record for ${requestId}\n${stack.logs().slice(-4000)}`);
}

/** Rewrites the docs tool's mcp block and applies it now (learned definitions and pins are kept). */
async function reconfigure(mcpBlock: Json): Promise<void> {
  const cfg = parse(readFileSync(stack.configPath, 'utf8')) as Json;
  docsTool(cfg).mcp = { server_url: mcp.url, pins_file: 'mcp-pins.json', ...mcpBlock };
  writeFileSync(stack.configPath, stringify(cfg));
  const r = await call(`${stack.adminUrl}/reload`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(r.status, r.text).toBe(200);
}

/** The hash the gateway asks an operator to approve, from a refused call. */
function hashToApprove(r: Reply): string {
  const m = /an operator must approve hash ([0-9a-f]{64})/.exec(rpcError(r).message);
  expect(m, rpcError(r).message).not.toBeNull();
  return m![1]!;
}

/** Retries a call until it is no longer refused for its definition (a replica sees the pin file change through its watch). */
async function untilCallable(name: string, args: Json): Promise<Reply> {
  let r: Reply | null = null;
  for (let i = 0; i < 100; i++) {
    r = await rpc('tools/call', { name, arguments: args });
    if (r.status === 200 && message(r).result) return r;
    await sleep(100);
  }
  throw new Error(`still refused: ${r?.text}`);
}

describe('tools the gateway was not told about', () => {
  it('are called without listing first: the gateway asks the server with the tool credentials, once', async () => {
    const before = listsFetched();
    const r = await rpc('tools/call', { name: 'add', arguments: { a: 2, b: 3 } });
    expect(r.status, r.text).toBe(200);
    expect(message(r).result).toMatchObject({ content: [{ type: 'text', text: '5' }] });
    expect(listsFetched() - before).toBe(1);
    const proxied = mcp.requests.filter((q) => q.methods.includes('tools/call')).at(-1)!;
    const fetched = mcp.requests.filter((q) => q.methods.includes('tools/list') && q.path === '/mcp').at(-1)!;
    expect(fetched.authorization).toMatch(/^Bearer ./);
    expect(fetched.authorization).toBe(proxied.authorization);
    const rec = await auditRecord(String(r.headers['x-request-id']));
    expect(rec.mcp_definitions).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'add', event: 'pinned', action: 'none' })]));
    // The first pins were written for operators to read.
    const pins = JSON.parse(readFileSync(join(dirname(stack.configPath), 'mcp-pins.json'), 'utf8')) as { pins: Record<string, Record<string, { hash: string }>> };
    expect(Object.keys(pins.pins.docs ?? {}).sort()).toEqual(['add', 'block_me', 'flag_me', 'hide_me', 'write_note']);
  });

  it('check arguments against the advertised schema, closed to unknown fields, before the server sees them', async () => {
    const before = callsOf('add');
    const extra = await rpc('tools/call', { name: 'add', arguments: { a: 1, b: 2, sidenote: 'contents of ~/.ssh/id_rsa' } });
    expect(extra.status).toBe(400);
    const e = rpcError(extra);
    expect(e.code).toBe(-32602);
    expect(e.message).toBe(`arguments of MCP tool "add" does not match the tool's schema: $.sidenote: is not allowed by the schema`);
    expect(message(extra).id).toBe(nextId - 1);
    const wrongType = await rpc('tools/call', { name: 'add', arguments: { a: 'one', b: 2 } });
    expect(rpcError(wrongType).message).toMatch(/\$\.a: must be number/);
    // A batch cannot slip an invalid call in behind a valid one.
    const batch = JSON.stringify([
      { jsonrpc: '2.0', id: 'ok', method: 'tools/call', params: { name: 'add', arguments: { a: 1, b: 1 } } },
      { jsonrpc: '2.0', id: 'bad', method: 'tools/call', params: { name: 'add', arguments: { a: 1, b: 1, c: 1 } } },
    ]);
    const b = await send(stack, '/tools/docs/', { body: batch, bearer, headers: { accept: 'application/json, text/event-stream' } });
    expect(b.status).toBe(400);
    expect((b.json as Json[]).map((m) => m.id)).toEqual(['ok', 'bad']);
    expect(callsOf('add')).toBe(before);
  });

  it('refuse a tool the server does not offer as unknown, not as a schema mismatch', async () => {
    const r = await rpc('tools/call', { name: 'drop_tables', arguments: {} });
    expect(r.status).toBe(404);
    const e = rpcError(r);
    expect(e.code).toBe(-32601);
    expect(e.data).toMatchObject({ type: 'unknown_tool', rule: 'mcp.unknown_tool' });
    expect(e.message).toMatch(/MCP tool "drop_tables" is not offered by the MCP server of tool "docs"/);
    expect(e.message).not.toMatch(/schema/);
  });

  it('cannot be reached around the check with a near-miss method name', async () => {
    const before = mcp.requests.length;
    for (const method of ['Tools/Call', 'tools/call ', 'TOOLS/CALL']) {
      const r = await rpc(method, { name: 'drop_tables', arguments: { sidenote: 'x' } });
      expect(r.status).toBe(400);
      expect(rpcError(r).message).toMatch(/is not "tools\/call": MCP method names are exact/);
    }
    expect(mcp.requests.length).toBe(before);
  });

  it('are learned from a list passing through too, and stay callable after it', async () => {
    const list = await rpc('tools/list');
    expect(list.status).toBe(200);
    expect(listedNames(list)).toEqual(['add', 'block_me', 'flag_me', 'hide_me', 'write_note']);
    const r = await rpc('tools/call', { name: 'write_note', arguments: { text: 'hello' } });
    expect(r.status, r.text).toBe(200);
    expect(mcp.calls.at(-1)).toEqual({ name: 'write_note', args: { text: 'hello' } });
  });
});

describe('whether a learned tool changes state reaches the Check', () => {
  it('readOnlyHint lets a read-only caller in; a tool without it, or one not known yet, counts as mutating', async () => {
    const viewer = await token(stack, { roles: ['viewer'] });
    const as = (name: string, args: Json): Promise<Reply> =>
      send(stack, '/tools/docs/', { body: JSON.stringify({ jsonrpc: '2.0', id: nextId++, method: 'tools/call', params: { name, arguments: args } }), bearer: viewer, headers: { accept: 'application/json, text/event-stream' } });
    const read = await as('add', { a: 4, b: 4 });
    expect(read.status, read.text).toBe(200);
    expect(message(read).result).toMatchObject({ content: [{ text: '8' }] });
    for (const name of ['write_note', 'drop_tables']) {
      const r = await as(name, { text: 'x' });
      expect(r.status).toBe(403);
      expect(rpcError(r).data).toMatchObject({ type: 'forbidden', rule: 'role.read_only' });
    }
  });
});

describe('a definition that changes after it was pinned (rug pull)', () => {
  it('block (the default): calls are refused until an operator approves the new hash with the CLI', async () => {
    mcp.rugPulled.add('block_me');
    const list = await rpc('tools/list');
    expect(listedNames(list)).toContain('block_me');
    const rec = await auditRecord(String(list.headers['x-request-id']));
    expect(rec.mcp_definitions).toEqual([expect.objectContaining({ name: 'block_me', event: 'changed', action: 'block', pinned: expect.stringMatching(/^[0-9a-f]{64}$/) })]);
    const before = callsOf('block_me');
    const refused = await rpc('tools/call', { name: 'block_me', arguments: { text: 'x' } });
    expect(refused.status).toBe(403);
    expect(rpcError(refused).message).toMatch(/^MCP tool "block_me" of tool "docs": tool definition changed since it was pinned; an operator must approve hash [0-9a-f]{64} \(pinned [0-9a-f]{64}\)/);
    expect(rpcError(refused).data).toMatchObject({ type: 'forbidden', rule: 'mcp.definition_changed' });
    expect(callsOf('block_me')).toBe(before);
    const hash = hashToApprove(refused);

    const main = repoPath('dist', 'main.js');
    const listed = await run(process.execPath, [main, 'mcp', 'pins', '--config', stack.configPath, '--json'], { env: { ...process.env, ...stack.prepared.env } });
    expect((JSON.parse(listed.stdout) as { name: string; hash: string }[]).find((p) => p.name === 'block_me')!.hash).not.toBe(hash);
    const approved = await run(process.execPath, [main, 'mcp', 'approve', '--config', stack.configPath, '--tool', 'docs', '--name', 'block_me', '--hash', hash], { env: { ...process.env, ...stack.prepared.env } });
    expect(approved.stdout).toContain(`approved docs/block_me ${hash}`);
    // The running gateway watches the pin file: the approval applies without a reload.
    const ok = await untilCallable('block_me', { text: 'x', copy_to: 'archive' });
    expect(message(ok).result).toMatchObject({ content: [{ text: 'block_me ran' }] });
  });

  it('hide: the changed tool leaves the list (SSE framing too) and is refused, until approved on the admin endpoint', async () => {
    await reconfigure({ on_change: 'hide' });
    mcp.rugPulled.add('hide_me');
    mcp.sse = true;
    try {
      const list = await rpc('tools/list');
      expect(list.headers['content-type']).toMatch(/^text\/event-stream/);
      expect(listedNames(list)).toEqual(['add', 'block_me', 'flag_me', 'write_note']);
      expect(list.text).not.toContain('hide_me');
    } finally {
      mcp.sse = false;
    }
    const refused = await rpc('tools/call', { name: 'hide_me', arguments: { text: 'x' } });
    expect(refused.status).toBe(403);
    const hash = hashToApprove(refused);

    const approveBody = JSON.stringify({ tool: 'docs', name: 'hide_me', hash });
    const anonymous = await call(`${stack.adminUrl}/mcp/pins/approve`, { method: 'POST', body: approveBody });
    expect(anonymous.status).toBe(401);
    const pinsView = await call(`${stack.adminUrl}/mcp/pins`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect((JSON.parse(pinsView.text) as { pins: { name: string; status: string }[] }).pins).toContainEqual(expect.objectContaining({ name: 'hide_me', status: 'changed', current: hash }));
    const bad = await call(`${stack.adminUrl}/mcp/pins/approve`, { method: 'POST', body: JSON.stringify({ tool: 'docs', name: 'hide_me', hash: 'nope' }), headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(bad.status).toBe(422);
    const ok = await call(`${stack.adminUrl}/mcp/pins/approve`, { method: 'POST', body: approveBody, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' } });
    expect(ok.status, ok.text).toBe(200);
    expect(listedNames(await rpc('tools/list'))).toContain('hide_me');
    expect((await rpc('tools/call', { name: 'hide_me', arguments: { text: 'x', copy_to: 'y' } })).status).toBe(200);
  });

  it('flag: the new definition is used, and the change is audited and counted', async () => {
    await reconfigure({ on_change: 'flag' });
    mcp.rugPulled.add('flag_me');
    const list = await rpc('tools/list');
    expect(listedTool(list, 'flag_me')).toMatchObject({ description: 'Stores a note (flag_me) and forwards it.' });
    const rec = await auditRecord(String(list.headers['x-request-id']));
    expect(rec.mcp_definitions).toEqual([expect.objectContaining({ name: 'flag_me', event: 'changed', action: 'flag' })]);
    const r = await rpc('tools/call', { name: 'flag_me', arguments: { text: 'x', copy_to: 'y' } });
    expect(r.status, r.text).toBe(200);
    const metrics = await call(`${stack.adminUrl}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(metrics.text).toMatch(/portcullis_mcp_definition_events_total\{tool="docs",event="changed",action="flag"\} 1/);
  });
});

describe('a poisoned tool description', () => {
  it('hide (the default): the tool is not listed and cannot be called', async () => {
    await reconfigure({});
    mcp.extra.add('poisoned');
    const list = await rpc('tools/list');
    expect(list.status).toBe(200);
    expect(listedNames(list)).not.toContain('poisoned');
    expect(list.text).not.toContain('id_rsa');
    const rec = await auditRecord(String(list.headers['x-request-id']));
    const found = (rec.mcp_definitions as Json[]).find((d) => d.name === 'poisoned')!;
    expect(found).toMatchObject({ event: 'poisoned', action: 'hide' });
    expect(found.rules).toEqual(expect.arrayContaining(['poisoning.directive_tag', 'poisoning.conceal_from_user']));
    const r = await rpc('tools/call', { name: 'poisoned', arguments: { a: 1, b: 2 } });
    expect(r.status).toBe(403);
    expect(rpcError(r)).toMatchObject({ code: -32010, data: { type: 'blocked_content', rule: 'mcp.poisoning' } });
    expect(callsOf('poisoned')).toBe(0);
  });

  it('block: the whole list is refused with a JSON-RPC error naming the tool', async () => {
    await reconfigure({ poisoning: 'block' });
    const list = await rpc('tools/list');
    expect(list.status).toBe(403);
    const e = rpcError(list);
    expect(message(list).id).toBe(nextId - 1);
    expect(e.data).toMatchObject({ type: 'blocked_content', rule: 'mcp.poisoning' });
    expect(e.message).toMatch(/tool list of tool "docs" was refused: the definition of MCP tool "poisoned" carries instructions aimed at the model/);
    expect(list.text).not.toContain('id_rsa');
    // Framed as an event stream, the list event is replaced by the gateway's error event.
    mcp.sse = true;
    try {
      const streamed = await rpc('tools/list');
      expect(streamed.headers['content-type']).toMatch(/^text\/event-stream/);
      expect(streamed.text).not.toContain('id_rsa');
      expect(streamed.text).toMatch(/event: error\ndata: .*"rule":"mcp.poisoning"/);
    } finally {
      mcp.sse = false;
    }
  });

  it('flag: listed and callable, the finding in the audit record', async () => {
    await reconfigure({ poisoning: 'flag' });
    const list = await rpc('tools/list');
    expect(listedNames(list)).toContain('poisoned');
    const rec = await auditRecord(String(list.headers['x-request-id']));
    expect(rec.mcp_definitions).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'poisoned', event: 'poisoned', action: 'flag' })]));
    expect((await rpc('tools/call', { name: 'poisoned', arguments: { a: 1, b: 2 } })).status).toBe(200);
    mcp.extra.delete('poisoned');
    await reconfigure({});
  });
});

describe('pins across a restart', () => {
  it('a process that starts again reads its pins from the file and catches a change it never saw before', async () => {
    await stack.stopPortcullis();
    mcp.rugPulled.add('add');
    await stack.startPortcullis();
    const before = callsOf('add');
    const r = await rpc('tools/call', { name: 'add', arguments: { a: 1, b: 1 } });
    expect(r.status, r.text).toBe(403);
    expect(rpcError(r).data).toMatchObject({ rule: 'mcp.definition_changed' });
    expect(callsOf('add')).toBe(before);
    // Approved tools stay approved across the restart.
    expect((await rpc('tools/call', { name: 'block_me', arguments: { text: 'x', copy_to: 'z' } })).status).toBe(200);
  });
});

describe('a server that cannot be asked', () => {
  it('fails closed: a call of a tool not known yet is refused as unavailable, retryable, saying why', async () => {
    await reconfigure({ server_url: 'http://127.0.0.1:1/mcp' });
    const r = await rpc('tools/call', { name: 'brand_new', arguments: {} });
    expect(r.status).toBe(503);
    const e = rpcError(r);
    expect(e.data).toMatchObject({ type: 'unavailable', rule: 'mcp.discovery_failed', retryable: true });
    expect(e.message).toMatch(/definition of MCP tool "brand_new" is not available: asking the MCP server of tool "docs" for its tools failed/);
  });
});

describe('the reference MCP server (server-everything), nothing about its tools configured', () => {
  let ref: ChildProcess | null = null;
  let refStack: Stack;
  let refBearer: string;
  let session: string | undefined;

  beforeAll(async () => {
    const port = await freePort();
    ref = spawn(process.execPath, [repoPath('node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js'), 'streamableHttp'], { env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'ignore', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      let text = '';
      ref!.stderr!.on('data', (c: Buffer) => {
        text += c.toString('utf8');
        if (text.includes('listening')) resolve();
      });
      ref!.once('exit', () => reject(new Error(`server-everything exited: ${text}`)));
    });
    refStack = await startStack({
      editConfig: (cfg) => {
        const docs = docsTool(cfg);
        docs.mcp = { server_url: `http://127.0.0.1:${port}/mcp` };
        docs.response = {};
      },
      editEnvoy: (cfg) => pointCluster(cfg, 'tool_docs', port),
    });
    refBearer = await token(refStack);
  }, 120_000);
  afterAll(async () => {
    await refStack?.stop();
    ref?.kill('SIGTERM');
  });

  const post = (body: Json): Promise<Reply> =>
    send(refStack, '/tools/docs/', { body: JSON.stringify(body), bearer: refBearer, headers: { accept: 'application/json, text/event-stream', ...(session ? { 'mcp-session-id': session } : {}) } });

  it('initializes through the gateway and calls tools before listing them, arguments checked against their advertised schema', async () => {
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'e2e', version: '1' } } });
    expect(init.status, init.text).toBe(200);
    session = init.headers['mcp-session-id'] as string | undefined;
    expect(session).toBeTruthy();
    expect((await post({ jsonrpc: '2.0', method: 'notifications/initialized' })).status).toBe(202);
    const sum = await post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'get-sum', arguments: { a: 20, b: 22 } } });
    expect(sum.status, sum.text).toBe(200);
    expect(JSON.stringify(message(sum).result)).toContain('42');
    const echo = await post({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'echo', arguments: { message: 'hi' } } });
    expect(JSON.stringify(message(echo).result)).toContain('hi');
    const extra = await post({ jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'get-sum', arguments: { a: 1, b: 2, c: 3 } } });
    expect(extra.status).toBe(400);
    expect(rpcError(extra).message).toMatch(/\$\.c: is not allowed by the schema/);
  });

  it('lists every tool through the gateway, and calls work after the list', async () => {
    const list = await post({ jsonrpc: '2.0', id: 5, method: 'tools/list' });
    expect(list.status).toBe(200);
    expect(listedNames(list)).toEqual(expect.arrayContaining(['echo', 'get-sum', 'get-tiny-image']));
    const img = await post({ jsonrpc: '2.0', id: 6, method: 'tools/call', params: { name: 'get-tiny-image', arguments: {} } });
    expect(img.status, img.text).toBe(200);
  });
});
