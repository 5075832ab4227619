import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';

/**
 * Child processes of the benchmark. Every process is registered here so that a failure, Ctrl-C
 * or SIGTERM ends all of them: nothing the benchmark started outlives it.
 */

const KILL_GRACE_MS = 3_000;
const POLL_MS = 100;

const children = new Set<ChildProcess>();
/** Children started as leaders of their own process group: signals go to the whole group. */
const groups = new WeakSet<ChildProcess>();

/** Sends `sig` to the child, or to its whole process group when it leads one. */
function signal(child: ChildProcess, sig: NodeJS.Signals): void {
  if (groups.has(child) && child.pid !== undefined) {
    try {
      process.kill(-child.pid, sig);
    } catch {
      // The group is already gone.
    }
  } else {
    child.kill(sig);
  }
}

/** How a child's output is kept. */
export interface LaunchOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** File that receives stdout and stderr (appended); default: discarded. */
  logFile?: string;
  /** Discard stdout even with a log file (e.g. Envoy's per-request access log). */
  discardStdout?: boolean;
}

/** Whether the process has exited. */
export function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Starts a registered child; its output goes to `logFile` (kernel-side, no pipe to drain). */
export function launch(cmd: string, args: readonly string[], opts: LaunchOptions = {}): ChildProcess {
  const fd = opts.logFile ? openSync(opts.logFile, 'a') : 'ignore';
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', opts.discardStdout ? 'ignore' : fd, fd] });
  if (typeof fd === 'number') closeSync(fd);
  children.add(child);
  child.once('exit', () => children.delete(child));
  // A spawn failure (missing binary) surfaces as an exit with a null code; keep the reason.
  child.once('error', (err) => {
    children.delete(child);
    (child as ChildProcess & { spawnError?: Error }).spawnError = err;
  });
  return child;
}

/** SIGTERM, then SIGKILL after a grace period; resolves when the process is gone. */
export async function terminate(child: ChildProcess | null | undefined): Promise<void> {
  if (!child || exited(child) || child.pid === undefined) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  signal(child, 'SIGTERM');
  const timer = setTimeout(() => {
    if (!exited(child)) signal(child, 'SIGKILL');
  }, KILL_GRACE_MS);
  await gone;
  clearTimeout(timer);
  // A group's other members (npm's script shell and compiler) must not outlive their leader.
  if (groups.has(child)) signal(child, 'SIGKILL');
}

/** Terminates every registered child still running. */
export async function terminateAll(): Promise<void> {
  await Promise.all([...children].map((c) => terminate(c)));
}

/** Synchronous last resort for `process.on('exit')`: SIGKILL whatever is still registered. */
export function killAllNow(): void {
  for (const c of children) {
    if (!exited(c)) signal(c, 'SIGKILL');
  }
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Last `bytes` of a log file, for error messages. */
export function tail(file: string, bytes = 4_000): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.slice(-bytes);
  } catch {
    return '';
  }
}

/**
 * Polls `probe` until it returns true. Fails early when `child` exits and on timeout; both
 * errors carry the tail of the child's log so a failed run says why.
 */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  child: ChildProcess,
  logFile: string | undefined,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited(child)) {
      throw new Error(`${what}: process exited (code ${child.exitCode}, signal ${child.signalCode})\n${logFile ? tail(logFile) : ''}`);
    }
    if (await probe()) return;
    await sleep(POLL_MS);
  }
  throw new Error(`${what}: not ready after ${timeoutMs} ms\n${logFile ? tail(logFile) : ''}`);
}

/** GET `url`; null when unreachable. */
export async function httpText(url: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string; headers: Headers } | null> {
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(2_000) });
    return { status: res.status, text: await res.text(), headers: res.headers };
  } catch {
    return null;
  }
}

/**
 * Runs a command to completion and returns its stdout (stderr is kept for the error). With
 * `group`, the command leads its own process group so that stopping it also stops what it
 * spawned (e.g. `npm run build` and the compiler under it, which would otherwise keep writing).
 */
export function run(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string; group?: boolean } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: opts.group ?? false });
    if (opts.group) groups.add(child);
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const timer = opts.timeoutMs ? setTimeout(() => signal(child, 'SIGKILL'), opts.timeoutMs) : null;
    child.once('error', (err) => {
      children.delete(child);
      if (timer) clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      children.delete(child);
      if (timer) clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
