import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoPath } from '../helpers/paths.js';

/**
 * Runs the official MCP conformance suite's server scenarios (the CLI of
 * `@modelcontextprotocol/conformance`, on the pinned Node 22 it needs) against a URL and reads
 * each scenario's checks back from the results folder the CLI writes.
 *
 * One CLI process runs every scenario (active and pending) in turn: a scenario takes tens of
 * milliseconds, while starting the CLI costs about a CPU second, so a process per scenario would
 * be slower on a small machine, not faster. Separate targets run concurrently.
 */

/** One check a scenario reports. */
export interface Check {
  id: string;
  status: 'SUCCESS' | 'FAILURE' | 'WARNING' | 'INFO' | 'SKIPPED';
  description?: string;
  errorMessage?: string;
}

/** Outcome of one scenario. */
export interface ScenarioResult {
  scenario: string;
  /** The suite's own verdict: checks were recorded and none failed. */
  passed: boolean;
  checks: Check[];
  /** Ids of the checks that succeeded (a scenario may pass on warnings alone). */
  succeeded: string[];
  /** Failed checks as `id: message`, or why there are no checks. */
  failures: string[];
}

/** How good a check's outcome is: a success over an observation over a warning over a failure. */
const RANK: Readonly<Record<Check['status'], number>> = { SUCCESS: 3, INFO: 2, WARNING: 1, SKIPPED: 1, FAILURE: 0 };

/**
 * Checks of `before` whose best outcome is worse in `after`, or that `after` does not have at
 * all, as `id (STATUS -> STATUS)`. A check id may repeat (one per SSE event seen): its best
 * outcome counts. This catches a scenario that still "passes" on warnings because it was
 * stopped early (a tool refused, a stream cut) and never got to the checks it made before.
 */
export function worsenedChecks(before: readonly Check[], after: readonly Check[]): string[] {
  const best = (checks: readonly Check[]): Map<string, Check['status']> => {
    const m = new Map<string, Check['status']>();
    for (const c of checks) {
      const prev = m.get(c.id);
      if (prev === undefined || RANK[c.status] > RANK[prev]) m.set(c.id, c.status);
    }
    return m;
  };
  const now = best(after);
  return [...best(before)].flatMap(([id, status]) => {
    const later = now.get(id);
    return later !== undefined && RANK[later] >= RANK[status] ? [] : [`${id} (${status} -> ${later ?? 'missing'})`];
  });
}

/** A whole run against one URL. */
export interface SuiteRun {
  url: string;
  results: ScenarioResult[];
  /** The CLI's exit code (non-zero when a scenario failed). */
  exitCode: number | null;
  durationMs: number;
  /** Tail of what the CLI printed, for diagnosis. */
  output: string;
}

const SUITE = repoPath('node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');
/** Ceiling of one run: a hung scenario fails the run instead of hanging it. */
const RUN_TIMEOUT_MS = 120_000;
const OUTPUT_TAIL = 8_000;

/** The Node.js scripts/install-tools.sh installs (the suite needs 22 or later); throws (never skips) when it or the suite is missing. */
export function pinnedNode(): string {
  const path = repoPath('.tools', 'node', 'bin', 'node');
  if (!existsSync(path)) throw new Error(`Node.js is not installed at ${path}: run "bash scripts/install-tools.sh" (npm test does it)`);
  if (!existsSync(SUITE)) throw new Error(`the conformance suite is missing at ${SUITE}: the devDependency @modelcontextprotocol/conformance is not installed`);
  return path;
}

/** Runs the CLI without blocking this process (targets in this process must keep answering). */
function cli(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(pinnedNode(), [SUITE, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    let output = '';
    const add = (c: Buffer): void => {
      output = (output + c.toString('utf8')).slice(-256 * 1024);
    };
    child.stdout.on('data', add);
    child.stderr.on('data', add);
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: signal ? null : code, output: signal ? `${output}\n(killed by ${signal} after ${RUN_TIMEOUT_MS} ms)` : output });
    });
  });
}

/** The names of every server scenario the suite has (active and pending), in its order. */
export async function listServerScenarios(): Promise<string[]> {
  const { code, output } = await cli(['list', '--server']);
  if (code !== 0) throw new Error(`conformance list --server failed (${String(code)}):\n${output}`);
  const names = [...output.matchAll(/^\s*-\s+([a-z0-9][a-z0-9_/-]*)\s+\[/gim)].map((m) => m[1] as string);
  if (names.length === 0) throw new Error(`conformance list --server printed no scenario:\n${output}`);
  return names;
}

/** checks.json of each scenario, by scenario name (folders are `server-<scenario>-<timestamp>`). */
function readChecks(dir: string): Map<string, Check[]> {
  const out = new Map<string, Check[]>();
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const m = /^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/.exec(entry.name);
    const file = join(dir, entry.name, 'checks.json');
    if (entry.isDirectory() && m && existsSync(file)) out.set(m[1] as string, JSON.parse(readFileSync(file, 'utf8')) as Check[]);
  }
  return out;
}

function result(scenario: string, checks: Check[] | undefined): ScenarioResult {
  if (!checks || checks.length === 0) return { scenario, passed: false, checks: [], succeeded: [], failures: ['the scenario recorded no checks (it did not run, or crashed)'] };
  const failures = checks.filter((c) => c.status === 'FAILURE').map((c) => `${c.id}: ${c.errorMessage ?? c.description ?? 'failed'}`);
  const succeeded = checks.filter((c) => c.status === 'SUCCESS').map((c) => c.id);
  return { scenario, passed: failures.length === 0, checks, succeeded, failures };
}

/** Runs every scenario in `scenarios` (all of the suite's server scenarios) against `url`. */
export async function runSuite(url: string, scenarios: readonly string[]): Promise<SuiteRun> {
  const out = mkdtempSync(join(tmpdir(), 'mcp-conformance-'));
  const started = Date.now();
  try {
    const { code, output } = await cli(['server', '--url', url, '--suite', 'all', '-o', out]);
    const checks = readChecks(out);
    return { url, results: scenarios.map((s) => result(s, checks.get(s))), exitCode: code, durationMs: Date.now() - started, output: output.slice(-OUTPUT_TAIL) };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}
