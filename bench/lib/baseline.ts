import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT, repoPath } from '../../test/helpers/paths.js';
import type { EnvoyRenderer } from './envoy.js';
import { run } from './procs.js';

/**
 * A second build of this repository at another git ref, for before/after figures from one run:
 * a detached worktree in a temporary folder, built with its own `npm run build`, sharing this
 * checkout's node_modules (a baseline with other dependencies needs its own install and is not
 * supported). The worktree is removed by {@link BaselineCheckout.remove}, which is synchronous so
 * that it can also run from a process `exit` handler.
 */

/** The checked-out baseline; exists from the moment the worktree is added. */
export interface BaselineCheckout {
  /** The ref as given (`HEAD~1`, a branch, a tag, a commit). */
  readonly ref: string;
  /** The commit it resolved to. */
  readonly commit: string;
  /** First line of that commit's message. */
  readonly subject: string;
  /** Root of the worktree. */
  readonly root: string;
  /** Removes the worktree and its folder; idempotent. */
  remove(): void;
}

/** The built baseline: what the benchmark stack needs to run it. */
export interface BaselineBuild extends BaselineCheckout {
  /** portcullis entry point of the baseline build. */
  readonly main: string;
  /** Policy bundle the baseline loads. */
  readonly bundle: string;
  /**
   * `reused`: policies/ and scripts/build-policy.sh are identical at the ref, so this checkout's
   * bundle is byte-for-byte what the baseline would build; `built`: built from the baseline's sources.
   */
  readonly bundleSource: 'reused' | 'built';
  /** Renders the baseline's own envoy/envoy.yaml. */
  readonly renderEnvoy: EnvoyRenderer;
  /**
   * `current`: envoy/ and its renderer are identical at the ref, this checkout's renderer is used;
   * `baseline`: the baseline checkout's test/helpers/envoyConfig.ts renders its envoy.yaml.
   */
  readonly envoySource: 'current' | 'baseline';
}

function git(args: readonly string[]): string {
  return execFileSync('git', ['-C', REPO_ROOT, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** Whether `paths` are the same at `commit` as in this checkout's working tree. */
function unchangedSince(commit: string, paths: readonly string[]): boolean {
  try {
    execFileSync('git', ['-C', REPO_ROOT, 'diff', '--quiet', commit, '--', ...paths], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Resolves `ref` and adds a detached worktree for it in a new temporary folder. */
export function checkoutBaseline(ref: string): BaselineCheckout {
  let commit: string;
  try {
    commit = git(['rev-parse', '--verify', '--quiet', `${ref}^{commit}`]);
  } catch {
    throw new Error(`--baseline: "${ref}" is not a commit of this repository`);
  }
  const subject = git(['log', '-1', '--format=%s', commit]);
  const parent = mkdtempSync(join(tmpdir(), 'portcullis-baseline-'));
  const root = join(parent, 'tree');
  let removed = false;
  const remove = (): void => {
    if (removed) return;
    removed = true;
    try {
      execFileSync('git', ['-C', REPO_ROOT, 'worktree', 'remove', '--force', root], { stdio: 'ignore' });
    } catch {
      // Not added (or already gone): the folder below and a prune are all that is left to do.
    }
    rmSync(parent, { recursive: true, force: true });
    try {
      execFileSync('git', ['-C', REPO_ROOT, 'worktree', 'prune'], { stdio: 'ignore' });
    } catch {
      // Nothing to prune.
    }
  };
  try {
    git(['worktree', 'add', '--detach', root, commit]);
  } catch (err) {
    remove();
    throw new Error(`--baseline: git worktree add failed: ${(err as Error).message.split('\n')[0]}`);
  }
  return { ref, commit, subject, root, remove };
}

/** The `renderEnvoyConfig` export of a module, checked at run time (it comes from another checkout). */
function rendererOf(mod: unknown, file: string): EnvoyRenderer {
  const fn = typeof mod === 'object' && mod !== null ? (mod as Record<string, unknown>).renderEnvoyConfig : undefined;
  if (typeof fn !== 'function') throw new Error(`${file} does not export renderEnvoyConfig`);
  return fn as EnvoyRenderer;
}

/**
 * Builds the checkout: `npm run build` (the baseline's own build script) with this checkout's
 * node_modules, the policy bundle (reused when its sources did not change, see
 * {@link BaselineBuild.bundleSource}), and the Envoy renderer of that checkout.
 */
export async function buildBaseline(checkout: BaselineCheckout, log: (line: string) => void): Promise<BaselineBuild> {
  const { root, commit } = checkout;
  symlinkSync(repoPath('node_modules'), join(root, 'node_modules'), 'dir');
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts?: Record<string, string> };
  const buildScript = pkg.scripts?.build;
  if (!buildScript) throw new Error(`--baseline: ${checkout.ref} has no "build" script in package.json`);
  log(`bench: building baseline ${checkout.ref} (${commit.slice(0, 12)} ${checkout.subject}): ${buildScript}`);
  const built = await run('npm', ['run', '--silent', 'build'], { cwd: root, timeoutMs: 600_000, group: true });
  if (built.code !== 0) throw new Error(`--baseline: npm run build failed in the ${checkout.ref} checkout\n${built.stdout}\n${built.stderr}`.trim());
  const main = join(root, 'dist', 'main.js');
  if (!existsSync(main)) throw new Error(`--baseline: the build of ${checkout.ref} wrote no dist/main.js`);

  let bundle = repoPath('policies', 'build', 'bundle.tar.gz');
  let bundleSource: BaselineBuild['bundleSource'] = 'reused';
  if (!unchangedSince(commit, ['policies', 'scripts/build-policy.sh'])) {
    log(`bench: policies differ at ${checkout.ref}; building its policy bundle`);
    const res = await run('bash', [join(root, 'scripts', 'build-policy.sh')], {
      cwd: root,
      env: { ...process.env, OPA: repoPath('.tools', 'bin', 'opa') },
      timeoutMs: 300_000,
      group: true,
    });
    if (res.code !== 0) throw new Error(`--baseline: build-policy.sh failed in the ${checkout.ref} checkout\n${res.stdout}\n${res.stderr}`.trim());
    bundle = join(root, 'policies', 'build', 'bundle.tar.gz');
    bundleSource = 'built';
  }

  let renderEnvoy: EnvoyRenderer;
  let envoySource: BaselineBuild['envoySource'] = 'current';
  if (unchangedSince(commit, ['envoy', 'test/helpers/envoyConfig.ts', 'test/helpers/paths.ts'])) {
    renderEnvoy = (await import('../../test/helpers/envoyConfig.js')).renderEnvoyConfig;
  } else {
    // The baseline's renderer reads the baseline's envoy.yaml (its paths module points at its root).
    const file = join(root, 'test', 'helpers', 'envoyConfig.ts');
    if (!existsSync(file)) throw new Error(`--baseline: ${checkout.ref} has no test/helpers/envoyConfig.ts to render its envoy.yaml`);
    renderEnvoy = rendererOf(await import(pathToFileURL(file).href), file);
    envoySource = 'baseline';
    log(`bench: envoy config differs at ${checkout.ref}; the baseline's Envoy uses its own envoy.yaml`);
  }
  return { ...checkout, main, bundle, bundleSource, renderEnvoy, envoySource };
}
