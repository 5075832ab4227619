import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createConnection } from 'node:net';
import { freePort } from './ports.js';

/** A redis-server of one test file: its own port, nothing persisted. */
export interface RedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:PORT`. */
  readonly url: string;
  /** Stops the server (SIGTERM, SIGKILL after a grace period); resolves once it is gone. */
  stop(): Promise<void>;
  /** Starts it again on the same port (empty: nothing was saved); resolves once it answers PING. */
  start(): Promise<void>;
  /** What it printed so far. */
  logs(): string;
}

const BINARY = 'redis-server';
const READY_TIMEOUT_MS = 10_000;

/** Fails loudly when the binary is missing (a test must fail, never skip, without it). */
function requireBinary(): void {
  const r = spawnSync(BINARY, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(`${BINARY} is not installed (${r.error?.message ?? `exit ${r.status}`}): run "bash scripts/install-tools.sh", which installs Debian's redis-server`);
  }
}

/** One PING over a raw socket: true on `+PONG`. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.once('error', () => done(false));
    s.once('connect', () => s.write('PING\r\n'));
    s.once('data', (d: Buffer) => done(d.toString('utf8').startsWith('+PONG')));
  });
}

/** Starts a redis-server on a free loopback port with persistence off (`--save '' --appendonly no`). */
export async function startRedis(): Promise<RedisServer> {
  requireBinary();
  const port = await freePort();
  let child: ChildProcess | null = null;
  let output = '';
  const running = (): boolean => child !== null && child.exitCode === null && child.signalCode === null;

  const start = async (): Promise<void> => {
    if (running()) throw new Error('redis-server is already running');
    const c = spawn(BINARY, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    c.stdout?.on('data', (d: Buffer) => (output = (output + d.toString('utf8')).slice(-64 * 1024)));
    c.stderr?.on('data', (d: Buffer) => (output = (output + d.toString('utf8')).slice(-64 * 1024)));
    child = c;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (!running()) throw new Error(`redis-server exited (code ${c.exitCode})\n${output}`);
      if (await ping(port)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server did not answer PING within ${READY_TIMEOUT_MS} ms\n${output}`);
  };

  const stop = async (): Promise<void> => {
    const c = child;
    if (!c || !running()) return;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 5_000);
    await gone;
    clearTimeout(timer);
  };

  await start();
  return { port, url: `redis://127.0.0.1:${port}`, stop, start, logs: () => output };
}
