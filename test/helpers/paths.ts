import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

/** Repository root (this file lives in test/helpers/). */
export const REPO_ROOT: string = fileURLToPath(new URL('../..', import.meta.url));

/** Repository-relative path made absolute. */
export function repoPath(...parts: string[]): string {
  return join(REPO_ROOT, ...parts);
}

/**
 * Absolute path of a pinned tool installed by scripts/install-tools.sh. Throws when it is missing:
 * end-to-end tests must fail, never skip, on a machine without the tools.
 */
export function toolPath(name: 'envoy' | 'opa'): string {
  const path = repoPath('.tools', 'bin', name);
  if (!existsSync(path)) {
    throw new Error(`${name} is not installed at ${path}: run "bash scripts/install-tools.sh" (npm test does it)`);
  }
  return path;
}
