import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { startSampleTool, type SampleTool } from '../../src/demo/sampleTool.js';
import { prepareDemo, type PreparedDemo } from '../../src/demo/prepare.js';
import { renderEnvoyConfig, type PortcullisChannel } from './envoyConfig.js';
import { freePort } from './ports.js';
import { generateTlsMaterial, type TlsMaterial } from './tls.js';
import { repoPath, toolPath } from './paths.js';

/** A running Envoy + portcullis + sample tool, all on 127.0.0.1 free ports. */
export interface Stack {
  /** Base URL of the Envoy listener agents call, e.g. `http://127.0.0.1:PORT` (`https://` with `tls`). */
  envoyUrl: string;
  envoyAdminUrl: string;
  /** portcullis' admin HTTP port (metrics, healthz, readyz). */
  adminUrl: string;
  /** portcullis' gRPC TCP port (0 on a unix socket). */
  grpcPort: number;
  /** With `replica: true`: the second portcullis' admin URL (its config is `portcullis-2.yaml`). */
  replicaAdminUrl?: string;
  /** How Envoy reaches portcullis: mTLS files and SAN, or the unix socket path. */
  channel: PortcullisChannel;
  /** Temporary folder with the config, keys, secrets, policy bundle and audit log. */
  dir: string;
  tool: SampleTool;
  configPath: string;
  /** Generated key, JWKS and secret values (to mint tokens, sign webhooks, compare injections). */
  prepared: PreparedDemo;
  /**
   * With `tls: true`: the CA, server and client certificates the listener was set up with (the
   * listener trusts `ca`; `clients.foreign` is signed by `foreignCa`, which it does not trust).
   */
  tls?: TlsMaterial;
  stopPortcullis(): Promise<void>;
  /** How the last portcullis exited (null while it runs or before it ever stopped). */
  portcullisExit(): { code: number | null; signal: string | null } | null;
  /** SIGKILLs portcullis (no graceful drain, in-flight streams are cut); resolves once it is gone. */
  killPortcullis(): Promise<void>;
  /** Starts portcullis again with the same config; resolves once Envoy sees it healthy. */
  startPortcullis(): Promise<void>;
  /** Process id of the running portcullis, or null when it is not running. */
  portcullisPid(): number | null;
  /** Everything the child processes printed so far (tail), labelled per process. */
  logs(): string;
  stop(): Promise<void>;
}

/** Options for {@link startStack}. */
export interface StackOptions {
  /** Edits the gateway config (plain object) before it is written. */
  editConfig?: (cfg: Record<string, unknown>) => void;
  /** Edits the rendered Envoy config (plain object) before it is written. */
  editEnvoy?: (cfg: Record<string, unknown>) => void;
  /** Extra environment for portcullis. */
  env?: Record<string, string>;
  /** Extra node options for portcullis (e.g. `--cpu-prof`). */
  nodeArgs?: string[];
  /**
   * Terminate TLS on the agents listener and require client certificates (mTLS agents); the
   * material is generated into the stack folder and exposed as {@link Stack.tls}.
   */
  tls?: boolean;
  /**
   * How Envoy reaches portcullis: `mtls` (default; the demo PKI is generated into the folder)
   * or `unix` (a socket in the folder, Envoy's `pipe` address).
   */
  channel?: 'mtls' | 'unix';
  /**
   * Also start a second portcullis from the same prepared config on its own gRPC and admin ports
   * (and audit file), as a second endpoint of Envoy's `portcullis` cluster (round robin): two
   * replicas behind one Envoy. mTLS channel only.
   */
  replica?: boolean;
}

const READY_TIMEOUT_MS = 30_000;
const POLL_MS = 100;
const KILL_GRACE_MS = 5_000;
/** Captured output kept per process (tail), so long runs do not grow memory. */
const LOG_LIMIT = 512 * 1024;

let baseIdCounter = 0;

/** Output of one child, capped to its tail. */
class LogTail {
  private text = '';
  constructor(private readonly label: string) {}
  add(chunk: Buffer): void {
    this.text += chunk.toString('utf8');
    if (this.text.length > LOG_LIMIT) this.text = this.text.slice(-LOG_LIMIT);
  }
  toString(): string {
    return this.text ? `----- ${this.label} -----\n${this.text}` : '';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function launch(cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }, tail: LogTail): ChildProcess {
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (c: Buffer) => tail.add(c));
  child.stderr?.on('data', (c: Buffer) => tail.add(c));
  child.on('error', (err) => tail.add(Buffer.from(`spawn error: ${err.message}\n`)));
  return child;
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** SIGTERM, then SIGKILL after a grace period; resolves when the process is gone. */
async function terminate(child: ChildProcess | null): Promise<void> {
  if (!child || exited(child)) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (!exited(child)) child.kill('SIGKILL');
  }, KILL_GRACE_MS);
  await gone;
  clearTimeout(timer);
}

/** SIGKILL; resolves when the process is gone. */
async function kill(child: ChildProcess | null): Promise<void> {
  if (!child || exited(child)) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await gone;
}

async function httpText(url: string): Promise<{ status: number; text: string } | null> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    return { status: res.status, text: await res.text() };
  } catch {
    return null;
  }
}

/**
 * Polls `probe` until it returns true. Fails early if `child` exits, and on timeout; both errors
 * carry the captured logs so a failing test shows why.
 */
async function waitFor(what: string, probe: () => Promise<boolean>, child: ChildProcess, logs: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited(child)) throw new Error(`${what}: process exited (code ${child.exitCode}, signal ${child.signalCode})\n${logs()}`);
    if (await probe()) return;
    await sleep(POLL_MS);
  }
  throw new Error(`${what}: not ready after ${READY_TIMEOUT_MS} ms\n${logs()}`);
}

/** The Envoy side of the channel a prepared config asks for. */
function stackChannel(prepared: PreparedDemo): PortcullisChannel {
  const c = prepared.channel;
  if (c?.kind === 'mtls') return { kind: 'mtls', ca: c.ca, cert: c.clientCert, key: c.clientKey, serverSan: c.serverSan };
  if (c?.kind === 'unix') return { kind: 'unix', path: c.socketPath };
  throw new Error(`the prepared config has no authenticated gRPC channel (${c?.kind ?? 'none'})`);
}

/**
 * Starts the full chain used by end-to-end tests: the sample tool (in-process), portcullis
 * (`node dist/main.js serve`) on a prepared copy of the demo config, and Envoy on a rendered copy
 * of envoy/envoy.yaml. Needs `npm run build`, `scripts/build-policy.sh` and
 * `scripts/install-tools.sh` to have run; says which one is missing otherwise.
 */
export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const mainJs = repoPath('dist', 'main.js');
  if (!existsSync(mainJs)) throw new Error(`${mainJs} is missing: run "npm run build"`);
  const bundle = repoPath('policies', 'build', 'bundle.tar.gz');
  if (!existsSync(bundle)) throw new Error(`${bundle} is missing: run "bash scripts/build-policy.sh"`);
  const envoyBin = toolPath('envoy');

  const dir = mkdtempSync(join(tmpdir(), 'portcullis-e2e-'));
  const portcullisLog = new LogTail('portcullis');
  const envoyLog = new LogTail('envoy');
  const logs = (): string => [portcullisLog.toString(), envoyLog.toString()].filter(Boolean).join('\n');

  let tool: SampleTool | null = null;
  let portcullis: ChildProcess | null = null;
  let replica: ChildProcess | null = null;
  let envoy: ChildProcess | null = null;

  const stop = async (): Promise<void> => {
    await Promise.all([terminate(envoy), terminate(portcullis), terminate(replica)]);
    await tool?.close();
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    tool = await startSampleTool({ port: 0 });
    const [grpcPort, adminPort, listenerPort, envoyAdminPort] = [await freePort(), await freePort(), await freePort(), await freePort()];

    const prepared = await prepareDemo({
      dir,
      sourceConfig: repoPath('scripts', 'demo', 'portcullis.yaml'),
      policyBundle: bundle,
      server: { grpcPort, adminPort, address: '127.0.0.1', channel: opts.channel ?? 'mtls' },
      edit: opts.editConfig,
    });
    const channel = stackChannel(prepared);
    const adminUrl = `http://127.0.0.1:${adminPort}`;
    const tls = opts.tls ? await generateTlsMaterial(dir) : undefined;
    const envoyUrl = `${tls ? 'https' : 'http'}://127.0.0.1:${listenerPort}`;
    const envoyAdminUrl = `http://127.0.0.1:${envoyAdminPort}`;

    const env: NodeJS.ProcessEnv = { ...process.env, ...prepared.env, ...opts.env };
    const startPortcullis = async (): Promise<void> => {
      if (portcullis && !exited(portcullis)) throw new Error('portcullis is already running');
      const child = launch(process.execPath, [...(opts.nodeArgs ?? []), mainJs, 'serve', '--config', prepared.configPath], { cwd: dir, env }, portcullisLog);
      portcullis = child;
      await waitFor('portcullis /readyz', async () => (await httpText(`${adminUrl}/readyz`))?.status === 200, child, logs);
    };
    const host = channel.kind === 'unix' ? channel.path : `127.0.0.1:${grpcPort}`;
    const envoySeesPortcullis = async (): Promise<boolean> => {
      const clusters = await httpText(`${envoyAdminUrl}/clusters`);
      return clusters?.text.includes(`portcullis::${host}::health_flags::healthy`) ?? false;
    };

    await startPortcullis();

    // The second replica: the same prepared config on other ports, started the same way.
    let replicaTarget: { port: number; adminUrl: string } | null = null;
    if (opts.replica) {
      if (channel.kind !== 'mtls') throw new Error('replica: needs the mtls channel');
      const [port, admin] = [await freePort(), await freePort()];
      const doc = parseDocument(readFileSync(prepared.configPath, 'utf8'));
      doc.setIn(['server', 'grpc_port'], port);
      doc.setIn(['server', 'admin_port'], admin);
      if (doc.hasIn(['audit', 'file'])) doc.setIn(['audit', 'file'], 'audit-2.log');
      const replicaConfig = join(dir, 'portcullis-2.yaml');
      writeFileSync(replicaConfig, doc.toString());
      const replicaLog = new LogTail('portcullis replica');
      const child = launch(process.execPath, [...(opts.nodeArgs ?? []), mainJs, 'serve', '--config', replicaConfig], { cwd: dir, env }, replicaLog);
      replica = child;
      const target = { port, adminUrl: `http://127.0.0.1:${admin}` };
      replicaTarget = target;
      await waitFor('portcullis replica /readyz', async () => (await httpText(`${target.adminUrl}/readyz`))?.status === 200, child, () => [logs(), replicaLog.toString()].join('\n'));
    }
    const addReplica = (cfg: Record<string, unknown>): void => {
      if (!replicaTarget) return;
      const { clusters } = cfg.static_resources as { clusters: { name: string; load_assignment: { endpoints: { lb_endpoints: unknown[] }[] } }[] };
      const group = clusters.find((c) => c.name === 'portcullis')?.load_assignment.endpoints[0];
      if (!group) throw new Error('envoy.yaml: no portcullis endpoints to add the replica to');
      group.lb_endpoints.push({ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: replicaTarget.port } } } });
    };
    const envoySeesReplica = async (): Promise<boolean> =>
      !replicaTarget || ((await httpText(`${envoyAdminUrl}/clusters`))?.text.includes(`portcullis::127.0.0.1:${replicaTarget.port}::health_flags::healthy`) ?? false);

    const envoyConfig = join(dir, 'envoy.yaml');
    writeFileSync(
      envoyConfig,
      renderEnvoyConfig(
        { listener: listenerPort, admin: envoyAdminPort, portcullis: grpcPort, upstream: tool.port },
        {
          channel,
          ...(tls ? { tls: { certChain: tls.server.cert, privateKey: tls.server.key, trustedCa: tls.ca } } : {}),
          ...(opts.editEnvoy || opts.replica
            ? {
                edit: (cfg: Record<string, unknown>) => {
                  addReplica(cfg);
                  opts.editEnvoy?.(cfg);
                },
              }
            : {}),
        },
      ),
    );
    const baseId = (process.pid % 10_000) * 100 + (baseIdCounter++ % 100);
    const envoyChild = launch(
      envoyBin,
      ['-c', envoyConfig, '--base-id', String(baseId), '-l', 'warning', '--concurrency', '1', '--disable-hot-restart'],
      { cwd: dir, env: process.env },
      envoyLog,
    );
    envoy = envoyChild;
    await waitFor(
      'envoy ready with a healthy portcullis',
      async () => (await httpText(`${envoyAdminUrl}/ready`))?.text.trim() === 'LIVE' && (await envoySeesPortcullis()) && (await envoySeesReplica()),
      envoyChild,
      logs,
    );

    return {
      envoyUrl,
      envoyAdminUrl,
      adminUrl,
      grpcPort: channel.kind === 'unix' ? 0 : grpcPort,
      ...(replicaTarget ? { replicaAdminUrl: replicaTarget.adminUrl } : {}),
      channel,
      dir,
      tool,
      configPath: prepared.configPath,
      prepared,
      ...(tls ? { tls } : {}),
      stopPortcullis: async () => {
        await terminate(portcullis);
      },
      portcullisExit: () => {
        const p = portcullis as ChildProcess | null;
        return p && exited(p) ? { code: p.exitCode, signal: p.signalCode } : null;
      },
      killPortcullis: async () => {
        await kill(portcullis);
      },
      startPortcullis: async () => {
        await startPortcullis();
        await waitFor('envoy marks portcullis healthy', envoySeesPortcullis, envoyChild, logs);
      },
      portcullisPid: () => {
        const p = portcullis as ChildProcess | null;
        return p && !exited(p) ? (p.pid ?? null) : null;
      },
      logs,
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}
