import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, auditCommand } from '../../../src/audit/cli.js';
import { parseTimeBound } from '../../../src/audit/show.js';
import { fromConfig, type AuditLogger } from '../../../src/audit/sinks.js';
import type { AuditConfig } from '../../../src/config/types.js';

let dir: string;
let file: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-audit-cli-'));
  file = join(dir, 'audit.jsonl');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await auditCommand(argv, { out: { write: (s: string) => (out += s) }, err: { write: (s: string) => (err += s) }, isTTY: false });
  return { code, out, err };
}

const allow = { allowed: true, rule: 'allow', reason: null, policy_version: 'v1', dry_run: false };
const deny = { allowed: false, rule: 'policy.deny', reason: 'no', policy_version: 'v1', dry_run: false };

function who(tenant: string, user: string): { agent: string; agent_version: null; user: string; tenant: string; auth_methods: string[]; roles: string[] } {
  return { agent: 'helpdesk', agent_version: null, user, tenant, auth_methods: ['jwt'], roles: [] };
}

/** A small file: two tenants, an allowed MCP call, a denial, a block and a call never completed. */
async function sample(cfg: Partial<AuditConfig> = {}): Promise<void> {
  const logger: AuditLogger = await fromConfig({ stdout: false, file, payload: { mode: 'off', max_bytes: 0 }, fsync: false, ...cfg }, dir);
  const old = new Date(Date.now() - 3 * 3_600_000);
  logger.record({ time: old, requestId: 'r-old', identity: who('acme', 'ann'), tool: 'tickets', method: 'GET', path: '/tools/tickets/1', decision: allow, responseStatus: 200 });
  const mcp = { method: 'tools/call', tool: 'create_ticket' };
  await logger.forwarded({ requestId: 'r-mcp', identity: who('acme', 'bob'), tool: 'crm', method: 'POST', path: '/tools/crm/mcp', mcp, decision: allow });
  logger.record({ requestId: 'r-mcp', identity: who('acme', 'bob'), tool: 'crm', method: 'POST', path: '/tools/crm/mcp', mcp, decision: allow, responseStatus: 200 });
  logger.record({ requestId: 'r-deny', identity: who('globex', 'gus'), tool: 'crm', method: 'POST', path: '/tools/crm/mcp', mcp: { method: 'tools/call', tool: 'delete_all' }, decision: deny, responseStatus: 403, error: { code: 'forbidden', rule: 'policy.deny' } });
  logger.record({ requestId: 'r-block', identity: who('globex', 'gus'), tool: 'tickets', method: 'POST', path: '/tools/tickets', decision: allow, responseStatus: 422, error: { code: 'blocked_content', rule: 'dlp.request' } });
  await logger.forwarded({ requestId: 'r-lost', identity: who('acme', 'ann'), tool: 'tickets', method: 'DELETE', path: '/tools/tickets/9', decision: allow });
  await logger.close();
}

function ids(out: string): string[] {
  return out.trim() === '' ? [] : out.trim().split('\n').map((l) => (JSON.parse(l) as { request_id: string }).request_id);
}

describe('audit show', () => {
  it('finds everywhere one tenant was touched, the incomplete exchange included', async () => {
    await sample();
    const r = await run('show', file, '--tenant', 'acme');
    expect(r.code).toBe(EXIT.ok);
    expect(ids(r.out)).toEqual(['r-old', 'r-mcp', 'r-lost']);
    // Said apart from any chain problem: the chain is intact.
    expect(r.err).toBe(`${file}: 1 exchange(s) forwarded but never completed (--decision incomplete lists them)\n`);
  });

  it('filters by outcome, MCP tool, user, agent, tool and time', async () => {
    await sample();
    expect(ids((await run('show', file, '--decision', 'incomplete')).out)).toEqual(['r-lost']);
    expect(ids((await run('show', file, '--decision', 'denied')).out)).toEqual(['r-deny']);
    expect(ids((await run('show', file, '--decision', 'blocked')).out)).toEqual(['r-block']);
    expect(ids((await run('show', file, '--mcp-tool', 'create_ticket')).out)).toEqual(['r-mcp']);
    expect(ids((await run('show', file, '--user', 'gus', '--tool', 'tickets')).out)).toEqual(['r-block']);
    expect(ids((await run('show', file, '--agent', 'nobody')).out)).toEqual([]);
    expect(ids((await run('show', file, '--since', '1h', '--tenant', 'acme')).out)).toEqual(['r-mcp', 'r-lost']);
    expect(ids((await run('show', file, '--until', '2h')).out)).toEqual(['r-old']);
  });

  it('prints a table with plain columns', async () => {
    await sample();
    const r = await run('show', file, '--format', 'table', '--decision', 'denied');
    const [header, row, more] = r.out.split('\n');
    expect(header).toMatch(/^TIME\s+OUTCOME\s+TENANT\s+USER\s+AGENT\s+TOOL\s+MCP_TOOL\s+METHOD\s+STATUS\s+REQUEST_ID\s+PATH$/);
    expect(row).toMatch(/denied\s+globex\s+gus\s+helpdesk\s+crm\s+delete_all\s+POST\s+403\s+r-deny\s+\/tools\/crm\/mcp$/);
    expect(more).toBe('');
  });

  it('says when the chain did not verify; --verify makes it an error', async () => {
    await sample();
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.replace('"user_id":"gus"', '"user_id":"eve"'));
    const r = await run('show', file, '--user', 'eve');
    expect(r.code).toBe(EXIT.ok);
    expect(ids(r.out)).toEqual(['r-deny']);
    expect(r.err).toMatch(/hash chain did not verify \(line 4: hash does not match/);
    expect((await run('show', file, '--verify')).code).toBe(EXIT.broken);
  });

  it('refuses bad arguments', async () => {
    await sample();
    expect((await run('show', file, '--decision', 'maybe')).code).toBe(EXIT.usage);
    expect((await run('show', file, '--since', 'yesterday-ish')).code).toBe(EXIT.usage);
    expect((await run('show')).code).toBe(EXIT.usage);
    expect((await run('show', join(dir, 'missing.jsonl'))).code).toBe(EXIT.usage);
  });

  it('reads relative and ISO times', () => {
    const now = new Date('2025-06-01T12:00:00Z');
    expect(parseTimeBound('90m', now).toISOString()).toBe('2025-06-01T10:30:00.000Z');
    expect(parseTimeBound('2d', now).toISOString()).toBe('2025-05-30T12:00:00.000Z');
    expect(parseTimeBound('2025-01-02T03:04:05Z', now).toISOString()).toBe('2025-01-02T03:04:05.000Z');
  });
});

describe('audit verify and keygen', () => {
  it('keygen makes a key that signs checkpoints verify --public-key accepts, with distinct exit codes', async () => {
    const k = await run('keygen', '--out', join(dir, 'cp'));
    expect(k.code).toBe(EXIT.ok);
    const keyId = k.out.split('\n')[0]!;
    expect(keyId).toMatch(/^ed25519:[0-9a-f]{32}$/);
    expect((await stat(join(dir, 'cp.key'))).mode & 0o777).toBe(0o600);
    expect((await run('keygen', '--out', join(dir, 'cp'))).code).toBe(EXIT.usage); // never overwrites

    const checkpoint = { key: { file: 'cp.key' }, every_records: 2, every_seconds: 60, anchor_file: 'anchors.jsonl' };
    await sample({ checkpoint });
    const pub = join(dir, 'cp.pub');
    // r-lost was forwarded and never completed: intact, with a finding.
    let r = await run('verify', file, '--public-key', pub, '--anchors', join(dir, 'anchors.jsonl'));
    expect(r.code).toBe(EXIT.findings);
    expect(r.out).toMatch(/ok, \d+ records, chain intact/);
    expect(r.out).toMatch(/checkpoints: (\d+) of \1 verified against the given key/);
    expect(r.out).toMatch(/anchors: \d+ checked, all match/);
    expect(r.out).toMatch(/1 exchange\(s\) forwarded but never completed: r-lost/);
    expect((await run('verify', file, '--key-id', keyId)).code).toBe(EXIT.findings);

    // Cut the last record and checkpoint: the report says how far the file runs past the last one.
    const ls = (await readFile(file, 'utf8')).trimEnd().split('\n');
    await writeFile(file, `${ls.slice(0, -2).join('\n')}\n`);
    r = await run('verify', file, '--public-key', pub);
    expect(r.code).toBe(EXIT.findings);
    expect(r.out).toMatch(/the file ends 1 record after its last checkpoint — truncated, or the writer did not shut down cleanly/);
    r = await run('verify', file, '--public-key', pub, '--anchors', join(dir, 'anchors.jsonl'));
    expect(r.code).toBe(EXIT.broken);
    expect(r.out).toMatch(/BROKEN anchor .*beyond the end of the file.*truncated/);

    const other = await run('keygen', '--out', join(dir, 'other'));
    expect(other.code).toBe(EXIT.ok);
    r = await run('verify', file, '--public-key', join(dir, 'other.pub'));
    expect(r.code).toBe(EXIT.broken);
    expect(r.out).toMatch(/BROKEN checkpoint .*not a trusted key/);
  });

  it('exits 0 on a clean file and 1 on an edited one', async () => {
    const logger = await fromConfig({ stdout: false, file, payload: { mode: 'off', max_bytes: 0 }, fsync: false }, dir);
    logger.record({ requestId: 'a', tool: 't', method: 'GET', path: '/', decision: allow });
    logger.record({ requestId: 'b', tool: 't', method: 'GET', path: '/', decision: allow });
    await logger.close();
    expect(await run('verify', file)).toMatchObject({ code: EXIT.ok, out: `${file}: ok, 2 records, chain intact\n` });
    await writeFile(file, (await readFile(file, 'utf8')).replace('"request_id":"a"', '"request_id":"z"'));
    const r = await run('verify', file);
    expect(r.code).toBe(EXIT.broken);
    expect(r.out).toMatch(/BROKEN at line 1 \(seq 1\): hash does not match/);
  });
});

describe('audit verify of several replicas’ files', () => {
  it('an exchange forwarded by one replica and completed by another is complete; one completed nowhere is still named', async () => {
    const a = join(dir, 'a.jsonl');
    const b = join(dir, 'b.jsonl');
    const base = { stdout: false, payload: { mode: 'off' as const, max_bytes: 0 }, fsync: false };
    const la = await fromConfig({ ...base, file: a }, dir);
    const lb = await fromConfig({ ...base, file: b }, dir);
    const call = { identity: who('acme', 'ann'), tool: 'weather', method: 'GET', path: '/tools/weather/x', decision: allow };
    // Decided (and forwarded) on replica a, inspected to the end on replica b.
    await la.forwarded({ ...call, requestId: 'r-split' });
    lb.record({ ...call, requestId: 'r-split', responseStatus: 200 });
    // Forwarded on a, the replica then died: completed nowhere.
    await la.forwarded({ ...call, requestId: 'r-gone' });
    await la.close();
    await lb.close();

    // Alone, a's file cannot tell the two apart.
    let r = await run('verify', a);
    expect(r.code).toBe(EXIT.findings);
    expect(r.out).toMatch(/2 exchange\(s\) forwarded but never completed: r-split, r-gone/);
    // Together, only the one completed nowhere is reported; both chains are checked.
    r = await run('verify', a, b);
    expect(r.code).toBe(EXIT.findings);
    expect(r.out).toContain(`${a}: ok, 2 records, chain intact`);
    expect(r.out).toContain(`${b}: ok, 1 records, chain intact`);
    expect(r.out).toMatch(/1 exchange\(s\) forwarded but never completed: r-gone\n/);
    // A broken file among them is still reported broken.
    await writeFile(b, (await readFile(b, 'utf8')).replace('"r-split"', '"r-other"'));
    expect((await run('verify', a, b)).code).toBe(EXIT.broken);
    // Anchors belong to one file.
    expect((await run('verify', a, b, '--anchors', join(dir, 'x.jsonl'))).code).toBe(EXIT.usage);
    expect((await run('verify')).code).toBe(EXIT.usage);
  });
});
