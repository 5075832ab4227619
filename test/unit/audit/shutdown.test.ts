import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, makeGenericClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { afterAll, expect, it } from 'vitest';
import { prepareDemo } from '../../../src/demo/prepare.js';
import { authorizationService } from '../../../src/server/protos.js';
import { verifyAuditFile } from '../../../src/audit/verify.js';
import { freePort } from '../../helpers/ports.js';
import { repoPath } from '../../helpers/paths.js';

/**
 * The audit sinks buffer (stdout and file append in batches): a record written just before
 * SIGTERM must still reach both once the graceful shutdown completes. Runs the built service
 * (`npm run build`, `bash scripts/build-policy.sh`), like the end-to-end suites.
 */

const dir = mkdtempSync(join(tmpdir(), 'portcullis-shutdown-'));
let child: ChildProcess | null = null;

afterAll(() => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

it('a record written just before SIGTERM is in the audit file and on stdout after exit', async () => {
  const mainJs = repoPath('dist', 'main.js');
  const bundle = repoPath('policies', 'build', 'bundle.tar.gz');
  if (!existsSync(mainJs) || !existsSync(bundle)) throw new Error('run "npm run build" and "bash scripts/build-policy.sh" first');
  const [grpcPort, adminPort] = [await freePort(), await freePort()];
  const prepared = await prepareDemo({
    dir,
    sourceConfig: repoPath('scripts', 'demo', 'portcullis.yaml'),
    policyBundle: bundle,
    server: { grpcPort, adminPort, address: '127.0.0.1', channel: 'plaintext' },
  });
  let out = '';
  const proc = spawn(process.execPath, [mainJs, 'serve', '--config', prepared.configPath], { cwd: dir, env: { ...process.env, ...prepared.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child = proc;
  proc.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  proc.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const exited = new Promise<number | null>((done) => proc.on('exit', (code) => done(code)));

  for (let i = 0; ; i++) {
    const ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.ok, () => false);
    if (ready) break;
    if (i > 200 || proc.exitCode !== null) throw new Error(`portcullis did not become ready:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  // A Check without credentials is denied; the denial's audit record is written as it answers.
  const requestId = `shutdown-${process.pid}-${Date.now()}`;
  const Client = makeGenericClientConstructor(authorizationService(), 'Authorization');
  const client = new Client(`127.0.0.1:${grpcPort}`, credentials.createInsecure());
  const check = (client as unknown as Record<string, (req: unknown, cb: (err: ServiceError | null, res: unknown) => void) => void>).Check!.bind(client);
  await new Promise<void>((done, fail) =>
    check({ attributes: { request: { http: { id: requestId, method: 'GET', path: '/tools/weather/forecast', headers: { 'x-request-id': requestId } } } } }, (err) => (err ? fail(err) : done())),
  );
  proc.kill('SIGTERM');
  client.close();
  expect(await exited).toBe(0);

  const file = join(dir, 'audit.log');
  const records = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { request_id: string });
  expect(records.filter((r) => r.request_id === requestId)).toHaveLength(1);
  expect((await verifyAuditFile(file)).ok).toBe(true);
  const stdoutRecords = out.split('\n').filter((l) => l.includes('"msg":"audit"') && l.includes(requestId));
  expect(stdoutRecords).toHaveLength(1);
}, 60_000);
