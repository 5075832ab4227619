import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { verifyAuditFile } from '../../../src/audit/verify.js';
import { readAuditFile } from '../../helpers/audit.js';
import { repoPath } from '../../helpers/paths.js';

/**
 * A forwarded record survives SIGKILL once `forwarded()` resolved: the child writes one, says so,
 * and is killed before it could record the exchange's end or close anything. Runs the built
 * modules (`npm run build`), like the shutdown test.
 */

const dir = mkdtempSync(join(tmpdir(), 'portcullis-crash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('a forwarded record is in the file after SIGKILL, and verify reports the exchange incomplete', async () => {
  const sinks = repoPath('dist', 'audit', 'sinks.js');
  if (!existsSync(sinks)) throw new Error('run "npm run build" first');
  const file = join(dir, 'audit.jsonl');
  const script = `
    const { fromConfig } = await import(${JSON.stringify(pathToFileURL(sinks).href)});
    // Killed right after this, well within the 20 ms batch timer: only the durable path writes in time.
    const logger = await fromConfig({ stdout: false, file: ${JSON.stringify(file)}, payload: { mode: 'off', max_bytes: 0 }, fsync: false }, '/');
    logger.record({ requestId: 'batched', tool: 't', method: 'GET', path: '/', decision: null });
    await logger.forwarded({ requestId: 'write-1', tool: 'tickets', method: 'POST', path: '/tools/tickets', decision: { allowed: true, rule: 'allow', reason: null, policy_version: 'v1', dry_run: false } });
    process.stdout.write('forwarded\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('forwarded')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`child exited early (${code})`)));
  });
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const records = readAuditFile(file, { all: true });
  expect(records.map((r) => [r.record_type, r.request_id])).toEqual([
    ['exchange', 'batched'],
    ['forwarded', 'write-1'],
  ]);
  expect(await verifyAuditFile(file)).toMatchObject({ ok: true, incomplete: ['write-1'] });
});
