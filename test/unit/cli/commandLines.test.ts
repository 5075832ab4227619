import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareDemo, type PreparedDemo } from '../../../src/demo/prepare.js';
import { fromConfig } from '../../../src/audit/sinks.js';
import { repoPath } from '../../helpers/paths.js';
import { cli, jsonLogLines } from './run.js';

/**
 * The command lines README.md, scripts/ and the deployment files document, run as written
 * against the built CLI.
 */

const dirs: string[] = [];
let root: string;
let demo: PreparedDemo;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'portcullis-cli-lines-'));
  dirs.push(root);
  // `npm run demo` prepares .demo/ from the shipped config.
  demo = await prepareDemo({ dir: join(root, '.demo'), sourceConfig: repoPath('scripts', 'demo', 'portcullis.yaml') });
});

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function claims(jwt: string): Record<string, unknown> {
  const parts = jwt.trim().split('.');
  expect(parts).toHaveLength(3);
  return JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}

describe('documented command lines', () => {
  it('README: token --config .demo/portcullis.yaml --agent helpdesk --user alice --tenant acme --roles support', async () => {
    const r = await cli(['token', '--config', '.demo/portcullis.yaml', '--agent', 'helpdesk', '--user', 'alice', '--tenant', 'acme', '--roles', 'support'], { cwd: root });
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(r.out).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const c = claims(r.out);
    expect(c).toMatchObject({ iss: 'https://issuer.demo.portcullis', aud: 'portcullis', sub: 'alice', tenant: 'acme', roles: ['support'], azp: 'helpdesk' });
    expect(Number(c.exp) - Number(c.iat)).toBe(3600);
  });

  it('scripts/demo.sh: token --config "$PORTCULLIS_CONFIG" --key "$PORTCULLIS_KEY" ...; README: --ttl, --audience', async () => {
    const r = await cli(['token', '--config', demo.configPath, '--key', demo.privateJwkPath, '--agent', 'reporter', '--user', 'bob', '--tenant', 'acme', '--roles', 'viewer', '--ttl', '60']);
    expect(r.code).toBe(0);
    const c = claims(r.out);
    expect(c).toMatchObject({ sub: 'bob', azp: 'reporter', roles: ['viewer'] });
    expect(Number(c.exp) - Number(c.iat)).toBe(60);
    const aud = await cli(['token', '--config', '.demo/portcullis.yaml', '--audience', 'http://127.0.0.1:10000/tools/docs/'], { cwd: root });
    expect(claims(aud.out)).toMatchObject({ aud: 'http://127.0.0.1:10000/tools/docs/', azp: 'helpdesk' });
  });

  it('README: dlp scan [--json] < file', async () => {
    const text = 'call me: card 4111 1111 1111 1111 thanks\n';
    const plain = await cli(['dlp', 'scan'], { input: text });
    expect(plain.code).toBe(1);
    expect(plain.out).toMatch(/^call me: card \[REDACTED:[a-z_.-]+\] thanks\n$/);
    const json = await cli(['dlp', 'scan', '--json'], { input: 'nothing here\n' });
    expect(json).toEqual({ code: 0, out: '{"findings":[],"blocked":false}\n', err: '' });
    const withConfig = await cli(['dlp', 'scan', '--json', '--config', demo.configPath], { input: text });
    expect(withConfig.code).toBe(1);
  });

  it('README: audit keygen --out PREFIX, audit verify FILE [--public-key] , audit show FILE --tenant / --since --decision --format table', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-cli-audit-'));
    dirs.push(dir);
    const keygen = await cli(['audit', 'keygen', '--out', 'audit-checkpoint'], { cwd: dir });
    expect(keygen.code).toBe(0);
    expect(keygen.out).toMatch(/^ed25519:[0-9a-f]{32}\n/);
    expect(statSync(join(dir, 'audit-checkpoint.key')).mode & 0o777).toBe(0o600);
    const file = join(dir, 'audit.jsonl');
    const logger = await fromConfig(
      { stdout: false, file, payload: { mode: 'off', max_bytes: 0 }, fsync: false, checkpoint: { key: { file: 'audit-checkpoint.key' }, every_records: 1, every_seconds: 60, anchor_file: 'audit-anchors.jsonl' } },
      dir,
    );
    const decision = { allowed: false, rule: 'tenant.mismatch', reason: 'no', policy_version: 'v1', dry_run: false };
    const identity = { agent: 'helpdesk', agent_version: null, user: 'alice', tenant: 'acme', auth_methods: ['jwt'], roles: [] };
    logger.record({ requestId: 'r-1', identity, tool: 'tickets', method: 'GET', path: '/tools/tickets/x', decision, responseStatus: 403, error: { code: 'forbidden', rule: 'tenant.mismatch' } });
    await logger.close();
    const verify = await cli(['audit', 'verify', 'audit.jsonl', '--public-key', 'audit-checkpoint.pub'], { cwd: dir });
    expect(verify.code).toBe(0);
    expect(verify.out).toMatch(/^audit\.jsonl: ok, \d+ records, chain intact\n {2}checkpoints: (\d+) of \1 verified against the given key/);
    const anchored = await cli(['audit', 'verify', 'audit.jsonl', '--public-key', 'audit-checkpoint.pub', '--anchors', 'audit-anchors.jsonl'], { cwd: dir });
    expect(anchored.code).toBe(0);
    expect(anchored.out).toMatch(/anchors: \d+ checked, all match/);
    const show = await cli(['audit', 'show', 'audit.jsonl', '--tenant', 'acme'], { cwd: dir });
    expect(show.code).toBe(0);
    expect(show.out.trim().split('\n').map((l) => (JSON.parse(l) as { request_id: string }).request_id)).toEqual(['r-1']);
    const table = await cli(['audit', 'show', 'audit.jsonl', '--since', '1h', '--decision', 'denied', '--format', 'table'], { cwd: dir });
    expect(table.code).toBe(0);
    expect(table.out).toMatch(/^TIME\s+OUTCOME/);
    expect(table.out).toContain('r-1');
    const none = await cli(['audit', 'show', 'audit.jsonl', '--user', 'alice', '--mcp-tool', 'delete_ticket', '--until', '2025-06-01T00:00:00Z'], { cwd: dir });
    expect(none).toEqual({ code: 0, out: '', err: '' });
    writeFileSync(join(dir, 'tampered.jsonl'), readFileSync(file, 'utf8').replace('alice', 'mallory'));
    expect((await cli(['audit', 'verify', 'tampered.jsonl'], { cwd: dir })).code).toBe(1);
    expect((await cli(['audit', 'verify', 'missing.jsonl'], { cwd: dir })).code).toBe(2);
  });

  it('README: mcp pins --config FILE, mcp approve --config FILE --tool docs --name search_docs --hash SHA256', async () => {
    const hash = 'a'.repeat(64);
    const approve = await cli(['mcp', 'approve', '--config', demo.configPath, '--tool', 'docs', '--name', 'search_docs', '--hash', hash]);
    expect(approve.code).toBe(0);
    expect(approve.out).toMatch(new RegExp(`^approved docs/search_docs ${hash} in .*mcp-pins\\.json\\n$`));
    const pins = await cli(['mcp', 'pins', '--config', demo.configPath]);
    expect(pins.code).toBe(0);
    expect(pins.out).toMatch(new RegExp(`^docs\\tsearch_docs\\t${hash}\\tcli\\t\\S+\\n$`));
    const json = await cli(['mcp', 'pins', '--config', demo.configPath, '--json']);
    expect(JSON.parse(json.out)).toEqual([expect.objectContaining({ tool: 'docs', name: 'search_docs', hash, by: 'cli' })]);
    const wrong = await cli(['mcp', 'approve', '--config', demo.configPath, '--tool', 'weather', '--name', 'x', '--hash', hash]);
    expect(wrong.code).toBe(1);
    expect(wrong.err).toMatch(/^portcullis: tool "weather" is not an MCP tool/);
  });

  it('Dockerfile / Helm: serve --config FILE (an unusable file is refused with its problems, exit 1, no stack trace)', async () => {
    const missing = await cli(['serve', '--config', join(root, 'nope.yaml')]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^portcullis: \S+nope\.yaml: 1 problem\(s\)\n {2}\$: cannot read file \(ENOENT\)\n$/);
    expect(jsonLogLines(missing.out)).toEqual([]);
  });

  it('README: check --config FILE', async () => {
    const r = await cli(['check', '--config', '.demo/portcullis.yaml'], { cwd: root, env: demo.env });
    expect(r).toEqual({ code: 0, out: expect.stringMatching(/^\.demo\/portcullis\.yaml: ok /), err: '' });
    expect(existsSync(join(root, '.demo', 'audit.log'))).toBe(false);
  });
});
