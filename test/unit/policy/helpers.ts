import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';

/** Repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const POLICIES = join(ROOT, 'policies');

const created: string[] = [];
// Registered while the importing test file is collected: runs after all of its tests.
afterAll(() => {
  for (const dir of created.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temporary directory, removed after the importing test file has run. */
export function tempDir(prefix = 'portcullis-policy-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  created.push(dir);
  return dir;
}

/** Copies the shipped policy sources (Rego and data, no build output) into a new directory. */
export function copyShippedPolicy(): string {
  const dir = tempDir();
  for (const f of readdirSync(POLICIES)) {
    if (f.endsWith('.rego') || f === 'data.json') copyFileSync(join(POLICIES, f), join(dir, f));
  }
  return dir;
}

/** Writes a policy directory from file contents. */
export function writePolicy(files: Record<string, string>): string {
  const dir = tempDir();
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

/**
 * Builds `<dir>/build/bundle.tar.gz` with the project's build script (and thus the project's
 * opa binary: a missing binary fails the calling test). Returns the bundle path and script output.
 */
export function buildBundle(dir: string, opts: { revision?: string; entrypoint?: string } = {}): { path: string; output: string } {
  const env: NodeJS.ProcessEnv = { ...process.env, POLICY_DIR: dir };
  delete env.POLICY_REVISION;
  delete env.POLICY_ENTRYPOINT;
  delete env.OPA;
  if (opts.revision) env.POLICY_REVISION = opts.revision;
  if (opts.entrypoint) env.POLICY_ENTRYPOINT = opts.entrypoint;
  const output = execFileSync('bash', [join(ROOT, 'scripts/build-policy.sh')], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return { path: join(dir, 'build', 'bundle.tar.gz'), output };
}
