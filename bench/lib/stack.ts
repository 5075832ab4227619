import type { ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startSampleTool, type SampleTool } from '../../src/demo/sampleTool.js';
import { prepareDemo, type PreparedDemo } from '../../src/demo/prepare.js';
import { mintToken } from '../../src/identity/mint.js';
import { freePort } from '../../test/helpers/ports.js';
import { REPO_ROOT, repoPath } from '../../test/helpers/paths.js';
import { renderVariant, type EnvoyRenderer, type EnvoyVariant } from './envoy.js';
import type { PortcullisChannel } from '../../test/helpers/envoyConfig.js';
import { checkOnce, weatherCheckRequest } from './checkRequest.js';
import { exited, httpText, launch, sleep, tail, terminate, waitFor } from './procs.js';
import { parse, stringify } from 'yaml';
import { pointCluster, renderEnvoyConfig } from '../../test/helpers/envoyConfig.js';

/**
 * The benchmark's processes: the sample tool (in this process, with an SSE route added),
 * portcullis (`node dist/main.js serve`), one Envoy per filter variant, and optionally the
 * do-nothing Check server and OPA-Envoy for the direct gRPC scenarios. Everything binds
 * 127.0.0.1 on ports the OS picked.
 */

/** JWT issuer and audience of the demo configuration. */
export const ISSUER = 'https://issuer.demo.portcullis';
export const AUDIENCE = 'portcullis';

/** Path of the streamed (SSE) response the sample tool serves for the benchmark. */
export const SSE_PATH = '/weather/sse';
/** Events per SSE response and their combined size (about 4 KB, like the JSON scenario). */
export const SSE_EVENTS = 8;

const SSE_EVENT = `data: ${JSON.stringify({
  type: 'delta',
  text:
    'Forecast update for Paris: light rain in the morning clearing by noon, highs of 17 C, ' +
    'winds from the south-west at 15 km/h, humidity around 70 percent. Tomorrow brings sunny ' +
    'spells with scattered clouds over the afternoon and a low chance of showers in the evening; ' +
    'the weekend stays mild. Air quality is good and the pollen count is moderate for grasses. ',
})}\n\n`;

/**
 * Query parameter of {@link SSE_PATH}: milliseconds between the first event and the others. Without
 * it every event follows the previous one at once (the throughput scenario); with it the first
 * event can only reach the client early if the path streams it instead of buffering the response.
 */
export const SSE_GAP_PARAM = 'gap_ms';

/**
 * Streams {@link SSE_EVENTS} events, yielding to the event loop between them like a real stream,
 * with an optional pause after the first one ({@link SSE_GAP_PARAM}).
 */
function sseHandler(req: IncomingMessage, res: ServerResponse): void {
  const gap = Number(new URL(req.url ?? '/', 'http://tool.local').searchParams.get(SSE_GAP_PARAM) ?? 0);
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  let sent = 0;
  const next = (): void => {
    if (res.destroyed) return;
    res.write(SSE_EVENT);
    if (++sent >= SSE_EVENTS) res.end();
    else if (sent === 1 && gap > 0) setTimeout(next, gap);
    else setImmediate(next);
  };
  next();
}

/** One running Envoy. */
export interface EnvoyInstance {
  variant: EnvoyVariant;
  url: string;
  adminUrl: string;
  child: ChildProcess;
}

/** An upstream of its own for one tool (the MCP scenarios' server): its cluster, port and tool config. */
export interface McpUpstream {
  /** Envoy cluster pointed at `port` (every other tool cluster keeps the sample tool). */
  cluster: string;
  port: number;
  /** Edits the gateway config for that tool. */
  configure(cfg: Record<string, unknown>): void;
}

/** A renderer that also points one cluster at its own upstream. */
function withCluster(render: EnvoyRenderer, upstream: McpUpstream): EnvoyRenderer {
  return (ports, o) => {
    const cfg = parse(render(ports, o)) as Record<string, unknown>;
    pointCluster(cfg, upstream.cluster, upstream.port);
    return stringify(cfg, { aliasDuplicateObjects: false, lineWidth: 0 });
  };
}

/** A renderer that adds the replicas as further endpoints of the `portcullis` cluster. */
function withReplicas(render: EnvoyRenderer, replicas: readonly BenchReplica[]): EnvoyRenderer {
  return (ports, o) => {
    const cfg = parse(render(ports, o)) as { static_resources: { clusters: { name: string; load_assignment: { endpoints: { lb_endpoints: unknown[] }[] } }[] } };
    const group = cfg.static_resources.clusters.find((c) => c.name === 'portcullis')?.load_assignment.endpoints[0];
    if (!group) throw new Error('envoy.yaml: no portcullis endpoints to add replicas to');
    for (const r of replicas) group.lb_endpoints.push({ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: r.grpcPort } } } });
    return stringify(cfg, { aliasDuplicateObjects: false, lineWidth: 0 });
  };
}

/** Starts replica `n` from the prepared config on ports of its own (its own audit file too). */
async function startReplica(n: number, dir: string, prepared: PreparedDemo, mainJs: string, nodeArgs: readonly string[]): Promise<BenchReplica> {
  const [grpcPort, adminPort] = [await freePort(), await freePort()];
  const cfg = parse(readFileSync(prepared.configPath, 'utf8')) as { server: Record<string, unknown>; audit?: Record<string, unknown> };
  cfg.server.grpc_port = grpcPort;
  cfg.server.admin_port = adminPort;
  if (cfg.audit?.file) cfg.audit.file = `audit-${n}.log`;
  const configPath = join(dirname(prepared.configPath), `portcullis-${n}.yaml`);
  writeFileSync(configPath, stringify(cfg));
  const logFile = join(dir, `portcullis-${n}.log`);
  const child = launch(process.execPath, [...nodeArgs, mainJs, 'serve', '--config', configPath], { cwd: join(dir, 'gateway'), env: { ...process.env, ...prepared.env }, logFile });
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  await waitFor(`portcullis replica ${n} /readyz`, async () => (await httpText(`${adminUrl}/readyz`))?.status === 200, child, logFile);
  return { child, grpcPort, adminUrl, logFile };
}

/** What {@link startBenchStack} needs. */
export interface BenchStackOptions {
  /** Working folder (config, keys, logs); the caller removes it. */
  dir: string;
  /** Envoy variants to start, one process each. */
  variants: readonly EnvoyVariant[];
  /**
   * Checkout whose build, demo config (`scripts/demo/portcullis.yaml`) and policy bundle are used;
   * default: this repository. A baseline worktree is measured this way with a config it accepts.
   */
  repoRoot?: string;
  /** portcullis entry point; default `<repoRoot>/dist/main.js` (another build can be compared this way). */
  portcullisMain?: string;
  /** Policy bundle; default `<repoRoot>/policies/build/bundle.tar.gz`. */
  policyBundle?: string;
  /** Renders envoy/envoy.yaml; default this repository's (see {@link EnvoyRenderer}). */
  renderEnvoy?: EnvoyRenderer;
  /** A running sample tool to reuse (so two stacks share one upstream); the stack then does not close it. */
  tool?: SampleTool;
  /** Node flags for portcullis, e.g. `--cpu-prof`. */
  portcullisNodeArgs?: readonly string[];
  /** Sets identity.token_cache_size (verified-JWT cache; 0 verifies every request); unset: the config default. */
  tokenCacheSize?: number;
  /** Envoy runtime values added to every variant (e.g. a feature flag under evaluation). */
  envoyRuntime?: Readonly<Record<string, string | number | boolean>>;
  /** Start the do-nothing Check server. */
  nullServer?: boolean;
  /** OPA-Envoy binary to start, or null to skip it. */
  opaEnvoyBin?: string | null;
  /**
   * Channel between Envoy and portcullis: `plaintext` on loopback (default; the direct gRPC
   * scenario E needs it, h2load has no client certificate) or `mtls` as shipped (E cannot run).
   */
  grpcChannel?: 'plaintext' | 'mtls';
  /** One tool served by an upstream of its own (the MCP scenarios). */
  mcp?: McpUpstream;
  /**
   * `server.workers` of portcullis (1: one process, as every scenario but E-w2 measures);
   * unset: the key is not written (a baseline build may not know it).
   */
  workers?: number;
  /**
   * portcullis processes behind each Envoy (default 1): the others run the same prepared config
   * on their own ports, as further endpoints of the `portcullis` cluster (round robin).
   */
  replicas?: number;
  /** Shared state on this Redis (`store: {kind: redis}`) instead of each process' memory. */
  redisUrl?: string;
}

/** One more portcullis process of a stack with {@link BenchStackOptions.replicas} > 1. */
export interface BenchReplica {
  child: ChildProcess;
  grpcPort: number;
  adminUrl: string;
  logFile: string;
}

/** The running processes and how to reach them. */
export interface BenchStack {
  dir: string;
  tool: SampleTool;
  prepared: PreparedDemo;
  /** A valid bearer token for agent helpdesk / user alice / tenant acme / role support. */
  token: string;
  portcullis: { child: ChildProcess; grpcPort: number; adminUrl: string; logFile: string };
  /** The other portcullis processes behind the same Envoys (none unless `replicas` > 1). */
  replicas: BenchReplica[];
  envoys: Map<EnvoyVariant, EnvoyInstance>;
  nullServer: { child: ChildProcess; port: number } | null;
  opaEnvoy: { child: ChildProcess; port: number } | null;
  /** Stops every process (portcullis last but one, the sample tool last). */
  stop(): Promise<void>;
}

let baseIdCounter = 0;

/** Polls a Check server until it answers OK for the benchmark's request. */
async function waitForCheckOk(what: string, port: number, token: string, child: ChildProcess, logFile: string): Promise<void> {
  let last = '';
  await waitFor(
    what,
    async () => {
      try {
        const answer = await checkOnce(port, weatherCheckRequest(token), 2_000);
        if (answer.code === 0) return true;
        last = `answered code ${answer.code} (http ${answer.deniedStatus ?? '-'})`;
        return false;
      } catch (err) {
        last = (err as Error).message;
        return false;
      }
    },
    child,
    logFile,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\nlast Check attempt: ${last}`);
  });
}

/**
 * Starts the stack. Needs `npm run build` and the policy bundle; fails with the command to run
 * when something is missing. On failure everything already started is stopped.
 */
export async function startBenchStack(opts: BenchStackOptions): Promise<BenchStack> {
  const root = opts.repoRoot ?? REPO_ROOT;
  const mainJs = opts.portcullisMain ?? join(root, 'dist', 'main.js');
  if (!existsSync(mainJs)) throw new Error(`${mainJs} is missing: run "npm run build"`);
  const bundle = opts.policyBundle ?? join(root, 'policies', 'build', 'bundle.tar.gz');
  if (!existsSync(bundle)) throw new Error(`${bundle} is missing: run "bash scripts/build-policy.sh"`);
  const envoyBin = repoPath('.tools', 'bin', 'envoy');
  if (!existsSync(envoyBin)) throw new Error(`${envoyBin} is missing: run "bash scripts/install-tools.sh"`);
  const viteNode = repoPath('node_modules', '.bin', 'vite-node');
  if (opts.nullServer && !existsSync(viteNode)) throw new Error(`${viteNode} is missing: run "npm ci"`);

  const { dir } = opts;
  mkdirSync(dir, { recursive: true });
  let tool: SampleTool | null = null;
  let portcullis: ChildProcess | null = null;
  const replicas: BenchReplica[] = [];
  const envoys = new Map<EnvoyVariant, EnvoyInstance>();
  let nullChild: ChildProcess | null = null;
  let opaChild: ChildProcess | null = null;

  const stop = async (): Promise<void> => {
    await Promise.all([...[...envoys.values()].map((e) => terminate(e.child)), terminate(nullChild), terminate(opaChild)]);
    await Promise.all([terminate(portcullis), ...replicas.map((r) => terminate(r.child))]);
    if (!opts.tool) await tool?.close();
  };

  try {
    tool = opts.tool ?? (await startSampleTool({ port: 0 }));
    if (!opts.tool) tool.handle(SSE_PATH, sseHandler);

    const grpcPort = await freePort();
    const adminPort = await freePort();
    const prepared = await prepareDemo({
      dir: join(dir, 'gateway'),
      sourceConfig: join(root, 'scripts', 'demo', 'portcullis.yaml'),
      policyBundle: bundle,
      // Loopback plaintext unless asked for mTLS: the direct gRPC scenario (h2load) cannot present a client certificate.
      server: { grpcPort, adminPort, address: '127.0.0.1', channel: opts.grpcChannel ?? 'plaintext' },
      edit: (cfg) => {
        // The demo limits the weather tool to 50 rps per agent; a load test from one agent would
        // measure 429s. The limiter stays in the path with a limit the load never reaches.
        const tools = cfg.tools as Array<Record<string, unknown>>;
        const weather = tools.find((t) => t.name === 'weather');
        if (!weather) throw new Error('demo config has no weather tool');
        weather.rate_limit = { rps: 1_000_000_000, burst: 1_000_000_000, key: 'agent' };
        if (opts.tokenCacheSize !== undefined) (cfg.identity as Record<string, unknown>).token_cache_size = opts.tokenCacheSize;
        if (opts.redisUrl) cfg.store = { kind: 'redis', redis: { url: opts.redisUrl, key_prefix: 'bench:' } };
        if (opts.workers !== undefined) (cfg.server as Record<string, unknown>).workers = opts.workers;
        opts.mcp?.configure(cfg);
      },
    });
    const token = await mintToken({
      issuer: ISSUER,
      audience: AUDIENCE,
      agent: 'helpdesk',
      user: 'alice',
      tenant: 'acme',
      roles: ['support'],
      ttlS: 3_600,
      privateJwkPath: prepared.privateJwkPath,
    });

    const adminUrl = `http://127.0.0.1:${adminPort}`;
    const portcullisLog = join(dir, 'portcullis.log');
    portcullis = launch(process.execPath, [...(opts.portcullisNodeArgs ?? []), mainJs, 'serve', '--config', prepared.configPath], {
      cwd: join(dir, 'gateway'),
      env: { ...process.env, ...prepared.env },
      logFile: portcullisLog,
    });
    const portcullisChild = portcullis;
    await waitFor('portcullis /readyz', async () => (await httpText(`${adminUrl}/readyz`))?.status === 200, portcullisChild, portcullisLog);
    const channel: PortcullisChannel =
      prepared.channel?.kind === 'mtls'
        ? { kind: 'mtls', ca: prepared.channel.ca, cert: prepared.channel.clientCert, key: prepared.channel.clientKey, serverSan: prepared.channel.serverSan }
        : { kind: 'plaintext' };
    // Over mTLS the Envoy variants' health checks below prove the channel instead.
    if (channel.kind === 'plaintext') await waitForCheckOk('portcullis allows the benchmark Check', grpcPort, token, portcullisChild, portcullisLog);
    for (let i = 2; i <= (opts.replicas ?? 1); i++) replicas.push(await startReplica(i, dir, prepared, mainJs, opts.portcullisNodeArgs ?? []));

    let nullServer: BenchStack['nullServer'] = null;
    if (opts.nullServer) {
      const port = await freePort();
      const log = join(dir, 'null-check.log');
      nullChild = launch(viteNode, [repoPath('bench', 'nullCheckServer.ts'), '--port', String(port)], { cwd: repoPath(), logFile: log });
      await waitForCheckOk('null Check server', port, token, nullChild, log);
      nullServer = { child: nullChild, port };
    }

    let opaEnvoy: BenchStack['opaEnvoy'] = null;
    if (opts.opaEnvoyBin) {
      const opaDir = join(dir, 'opa-envoy');
      mkdirSync(opaDir, { recursive: true });
      copyFileSync(repoPath('bench', 'opa-envoy', 'policy.rego'), join(opaDir, 'policy.rego'));
      copyFileSync(repoPath('policies', 'data.json'), join(opaDir, 'data.json'));
      const weatherKey = prepared.secrets['secrets/weather-api-key'];
      if (weatherKey === undefined) throw new Error('prepared demo has no secrets/weather-api-key');
      writeFileSync(
        join(opaDir, 'bench.json'),
        JSON.stringify({ bench: { jwks: readFileSync(prepared.jwksPath, 'utf8'), issuer: ISSUER, audience: AUDIENCE, weather_api_key: weatherKey } }),
      );
      const port = await freePort();
      const httpPort = await freePort();
      const log = join(dir, 'opa-envoy.log');
      opaChild = launch(
        opts.opaEnvoyBin,
        [
          'run', '--server',
          '--addr', `127.0.0.1:${httpPort}`,
          '--log-level', 'error',
          '--set', `plugins.envoy_ext_authz_grpc.addr=127.0.0.1:${port}`,
          '--set', 'plugins.envoy_ext_authz_grpc.path=envoy/authz/allow',
          '--set', 'decision_logs.console=false',
          'policy.rego', 'data.json', 'bench.json',
        ],
        { cwd: opaDir, logFile: log },
      );
      await waitForCheckOk('OPA-Envoy allows the benchmark Check', port, token, opaChild, log);
      opaEnvoy = { child: opaChild, port };
    }

    const rendered = opts.mcp ? withCluster(opts.renderEnvoy ?? renderEnvoyConfig, opts.mcp) : opts.renderEnvoy;
    const render = replicas.length > 0 ? withReplicas(rendered ?? renderEnvoyConfig, replicas) : rendered;
    for (const variant of opts.variants) {
      const [listener, admin] = [await freePort(), await freePort()];
      const cfgPath = join(dir, `envoy-${variant}.yaml`);
      writeFileSync(cfgPath, renderVariant(variant, { listener, admin, portcullis: grpcPort, upstream: tool.port }, opts.envoyRuntime, channel, render));
      const log = join(dir, `envoy-${variant}.log`);
      const baseId = (process.pid % 10_000) * 100 + (baseIdCounter++ % 100);
      // Envoy's stdout is its per-request access log: discarded, so the disk is not part of the
      // measurement; warnings and errors (stderr) are kept.
      const child = launch(
        envoyBin,
        ['-c', cfgPath, '--base-id', String(baseId), '-l', 'warning', '--concurrency', '1', '--disable-hot-restart'],
        { cwd: dir, logFile: log, discardStdout: true },
      );
      const adminUrl = `http://127.0.0.1:${admin}`;
      envoys.set(variant, { variant, url: `http://127.0.0.1:${listener}`, adminUrl, child });
      await waitFor(
        `envoy (${variant}) ready`,
        async () => {
          if ((await httpText(`${adminUrl}/ready`))?.text.trim() !== 'LIVE') return false;
          if (variant === 'floor') return true;
          const clusters = await httpText(`${adminUrl}/clusters`);
          return [grpcPort, ...replicas.map((r) => r.grpcPort)].every((p) => clusters?.text.includes(`portcullis::127.0.0.1:${p}::health_flags::healthy`) ?? false);
        },
        child,
        log,
      );
    }

    return {
      dir,
      tool,
      prepared,
      token,
      portcullis: { child: portcullisChild, grpcPort, adminUrl, logFile: portcullisLog },
      replicas,
      envoys,
      nullServer,
      opaEnvoy,
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}

/** Stops portcullis with SIGTERM and waits for it (lets `--cpu-prof` write its profile). */
export async function stopPortcullisGracefully(stack: BenchStack, timeoutMs = 15_000): Promise<void> {
  const child = stack.portcullis.child;
  if (exited(child)) return;
  child.kill('SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (!exited(child) && Date.now() < deadline) await sleep(100);
  if (!exited(child)) throw new Error(`portcullis did not exit within ${timeoutMs} ms of SIGTERM\n${tail(stack.portcullis.logFile)}`);
}
