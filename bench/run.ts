/**
 * `npm run bench`: portcullis measured through a real Envoy and side by side with its floors and
 * with OPA-Envoy, every scenario interleaved in the same run so that the ratios hold on a noisy
 * machine.
 *
 *   A      Envoy -> sample tool, no portcullis filters (the floor), 4 KB JSON response
 *   A-sse  the same floor for the streamed (SSE) response of D
 *   B      + ext_authz (JWT, wasm policy, rate limiter, credential injection)
 *   C      + ext_proc: full envoy.yaml, response DLP on the 4 KB JSON body
 *   D      full envoy.yaml, SSE response streamed through DLP
 *   E      direct gRPC Check load on portcullis
 *   E0     the same load on a do-nothing grpc-js Check server (the Node floor)
 *   F      the same load on OPA-Envoy running an equivalent Rego policy
 *   M0, M  MCP tools/call through Envoy alone and through Envoy + portcullis (bench/mcp.ts)
 *   M0-list, M-list  the same for tools/list
 *
 * Each round runs every scenario at saturation, then every scenario at one fixed moderate rate
 * (half the saturation of the slowest scenario of its kind in round 1, so none is overloaded)
 * for p50/p99. Ratios and added latencies are computed within a round, then the median over
 * rounds is reported. Results go to bench/results/<timestamp>.json.
 *
 *   npx vite-node bench/run.ts [--rounds 3] [--duration 5] [--warmup 1] [--only A,C,E]
 *                              [--skip-opa-envoy REASON] [--keep (the working folder, for its logs)]
 *                              [--envoy-runtime key=value,... (Envoy runtime flags to try)]
 *                              [--grpc-channel mtls (Envoy -> portcullis over mTLS as shipped; E is
 *                               skipped: h2load cannot present a client certificate)]
 *                              [--baseline GIT-REF (C and D, or those of B/C/D given with --only,
 *                               also measured on a build of that ref, interleaved in the same rounds)]
 *
 * With D selected, each round also times the first SSE event of D, of its floor A-sse and (with
 * --baseline) of the baseline's D: sequential requests whose first event the tool sends at once
 * and the others after a pause, so a buffering path shows up as a late first event.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { repoPath } from '../test/helpers/paths.js';
import { startRedis, type RedisServer } from '../test/helpers/redis.js';
import { checksServed, redisCommandCounts } from './lib/redisOps.js';
import { encodeCheckRequest, grpcFrame, weatherCheckRequest } from './lib/checkRequest.js';
import { buildBaseline, checkoutBaseline, type BaselineBuild, type BaselineCheckout } from './lib/baseline.js';
import { h2load, type LoadResult, type LoadSpec } from './lib/h2load.js';
import { cpuMicros, cpuMicrosTree, rssBytes, RssSampler } from './lib/procstat.js';
import { killAllNow, run, terminateAll } from './lib/procs.js';
import { firstEventProbe, type FirstEventResult } from './lib/sseProbe.js';
import { SSE_EVENTS, SSE_GAP_PARAM, SSE_PATH, startBenchStack, type BenchStack } from './lib/stack.js';
import type { EnvoyVariant } from './lib/envoy.js';
import { mcpFloorOf, mcpSanityCheck, startMcpBench, type McpBench, type McpScenario, type McpScenarioId } from './mcp.js';

type ScenarioId = 'A' | 'A-sse' | 'B' | 'B-r2' | 'C' | 'D' | 'E' | 'E-w2' | 'E0' | 'F' | McpScenarioId;

interface Scenario {
  id: ScenarioId;
  title: string;
  /** `mcp`: HTTP/1.1 JSON-RPC POSTs, with a fixed latency rate of their own. */
  kind: 'http' | 'grpc' | 'mcp';
  /** Load target and, for CPU accounting, the process that does the scenario's work. */
  target(stack: BenchStack): { url: string; bodyFile?: string; headers: Record<string, string>; pid: number | null };
  /** Runs on a stack of its own (two replicas on Redis) instead of the main one. */
  replicated?: boolean;
  /** Runs on the stack of portcullis with this many workers (default: the main stack, one process). */
  workers?: number;
}

/** Workers of the E-w2 scenario's portcullis. */
const E_WORKERS = 2;

/** One measurement of one scenario in one round. */
interface Measurement {
  round: number;
  saturation: LoadResult;
  latency: LoadResult | null;
  /** CPU time of the scenario's server process per request at saturation (µs). */
  cpuUsPerRequest: number | null;
}

/** A target next to its measurement. */
interface TargetCheck {
  name: string;
  value: number | null;
  limit: number;
  op: '<=' | '>=';
  unit: string;
  pass: boolean | null;
}

const PAYLOAD_PATH = '/tools/weather/payload?bytes=4000';
const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';

const HTTP_SAT = { clients: 32, streams: 1 };
const HTTP_LAT_CLIENTS = 4;
const GRPC_SAT = { clients: 4, streams: 16 };
const GRPC_LAT = { clients: 4, streams: 4 };
/** First-SSE-event probe per target per round: timed requests, untimed warm-up, pause after event 1. */
const SSE_PROBE = { requests: 50, warmup: 5, gapMs: 20 };
/** Scenarios that can be measured on a baseline build, and the default set. */
const BASELINE_CAPABLE: ReadonlySet<ScenarioId> = new Set<ScenarioId>(['B', 'C', 'D']);
const BASELINE_DEFAULT: ReadonlySet<ScenarioId> = new Set<ScenarioId>(['C', 'D']);

/** One scenario on one build: the unit the rounds rotate over. */
interface Run {
  /** Key of its measurements: the scenario id for the current build, `<id>@baseline` otherwise. */
  key: string;
  sc: Scenario;
  stack: BenchStack;
}

const baseKey = (id: ScenarioId): string => `${id}@baseline`;

function median(values: readonly number[]): number | null {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

function fmt(v: number | null | undefined, digits = 2): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits);
}

function version(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (err) {
    return `unavailable (${(err as Error).message.split('\n')[0]})`;
  }
}

/** Plugin tag (stamp written by scripts/install-opa-envoy.sh) and the OPA version it embeds. */
function opaEnvoyVersion(bin: string): string {
  const opa = version(bin, ['version']).split('\n')[0]?.replace('Version: ', 'OPA ') ?? '';
  try {
    return `${readFileSync(`${dirname(bin)}/.opa-envoy-plugin.version`, 'utf8').trim()} (${opa})`;
  } catch {
    return opa;
  }
}

/** Whether a checkout's config schema has `server.workers` (older builds refuse unknown keys). */
function baselineKnowsWorkers(root: string): boolean {
  try {
    return readFileSync(join(root, 'src', 'config', 'schema.ts'), 'utf8').includes('workers:');
  } catch {
    return false;
  }
}

function scenarios(grpcBody: string, mcp: readonly McpScenario[]): Scenario[] {
  const http = (variant: EnvoyVariant, path: string, pidOf: (s: BenchStack) => number | null) => (s: BenchStack) => ({
    url: `${s.envoys.get(variant)!.url}${path}`,
    headers: { authorization: `Bearer ${s.token}` },
    pid: pidOf(s),
  });
  const portcullisPid = (s: BenchStack): number | null => s.portcullis.child.pid ?? null;
  const grpcHeaders = { 'content-type': 'application/grpc', te: 'trailers' };
  return [
    { id: 'A', title: 'Envoy -> tool, no filters (floor)', kind: 'http', target: http('floor', PAYLOAD_PATH, () => null) },
    { id: 'A-sse', title: 'Envoy -> tool SSE, no filters', kind: 'http', target: http('floor', `/tools${SSE_PATH}`, () => null) },
    { id: 'B', title: '+ ext_authz (JWT, policy, creds)', kind: 'http', target: http('authz', PAYLOAD_PATH, portcullisPid) },
    { id: 'B-r2', title: 'B on 2 replicas sharing Redis', kind: 'http', target: http('authz', PAYLOAD_PATH, portcullisPid), replicated: true },
    { id: 'C', title: '+ ext_proc, DLP on 4 KB JSON', kind: 'http', target: http('full', PAYLOAD_PATH, portcullisPid) },
    { id: 'D', title: '+ ext_proc, DLP on SSE stream', kind: 'http', target: http('full', `/tools${SSE_PATH}`, portcullisPid) },
    {
      id: 'E',
      title: 'gRPC Check -> portcullis',
      kind: 'grpc',
      target: (s) => ({ url: `http://127.0.0.1:${s.portcullis.grpcPort}${CHECK_PATH}`, bodyFile: grpcBody, headers: grpcHeaders, pid: portcullisPid(s) }),
    },
    {
      id: 'E-w2',
      title: `gRPC Check -> portcullis, ${E_WORKERS} workers`,
      kind: 'grpc',
      workers: E_WORKERS,
      target: (s) => ({ url: `http://127.0.0.1:${s.portcullis.grpcPort}${CHECK_PATH}`, bodyFile: grpcBody, headers: grpcHeaders, pid: portcullisPid(s) }),
    },
    {
      id: 'E0',
      title: 'gRPC Check -> null grpc-js server',
      kind: 'grpc',
      target: (s) => ({ url: `http://127.0.0.1:${s.nullServer!.port}${CHECK_PATH}`, bodyFile: grpcBody, headers: grpcHeaders, pid: s.nullServer!.child.pid ?? null }),
    },
    {
      id: 'F',
      title: 'gRPC Check -> OPA-Envoy',
      kind: 'grpc',
      target: (s) => ({ url: `http://127.0.0.1:${s.opaEnvoy!.port}${CHECK_PATH}`, bodyFile: grpcBody, headers: grpcHeaders, pid: s.opaEnvoy!.child.pid ?? null }),
    },
    ...mcp,
  ];
}

/** One request per HTTP scenario before any load: a scenario that does not work is not measured. */
async function sanityCheck(stack: BenchStack, list: readonly Scenario[]): Promise<void> {
  const weatherKey = stack.prepared.secrets['secrets/weather-api-key'];
  for (const sc of list.filter((s) => s.kind === 'http')) {
    const t = sc.target(stack);
    const res = await fetch(t.url, { headers: t.headers, signal: AbortSignal.timeout(5_000) });
    const body = await res.text();
    if (res.status !== 200) throw new Error(`scenario ${sc.id}: GET ${t.url} answered ${res.status}: ${body.slice(0, 500)}`);
    if (t.url.includes(SSE_PATH)) {
      const events = body.split('\n\n').filter((e) => e.startsWith('data: ')).length;
      if (!/^text\/event-stream/.test(res.headers.get('content-type') ?? '') || events !== SSE_EVENTS) {
        throw new Error(`scenario ${sc.id}: expected ${SSE_EVENTS} SSE events, got ${events} (${res.headers.get('content-type')})`);
      }
    } else if (!body.includes('"bytes":4000')) {
      throw new Error(`scenario ${sc.id}: unexpected payload body: ${body.slice(0, 200)}`);
    }
    const seen = stack.tool.received[stack.tool.received.length - 1];
    const injected = seen?.headers['x-api-key'];
    if (sc.id === 'B' || sc.id === 'B-r2' || sc.id === 'C' || sc.id === 'D') {
      if (injected !== weatherKey) throw new Error(`scenario ${sc.id}: the tool did not receive the injected credential`);
    } else if (injected !== undefined) {
      throw new Error(`scenario ${sc.id}: the floor unexpectedly carries a credential`);
    }
  }
}

function loadSpec(sc: Scenario, stack: BenchStack, opts: { durationS: number; warmupS: number; logFile?: string; totalRps?: number }): LoadSpec {
  const t = sc.target(stack);
  const shape = sc.kind !== 'grpc' ? (opts.totalRps ? { clients: HTTP_LAT_CLIENTS, streams: 1 } : HTTP_SAT) : opts.totalRps ? GRPC_LAT : GRPC_SAT;
  return {
    url: t.url,
    clients: shape.clients,
    streams: shape.streams,
    durationS: opts.durationS,
    warmupS: opts.warmupS,
    h1: sc.kind !== 'grpc',
    headers: t.headers,
    bodyFile: t.bodyFile,
    logFile: opts.logFile,
    rpsPerClient: opts.totalRps ? Math.max(1, Math.round(opts.totalRps / shape.clients)) : undefined,
  };
}

function errorsOf(r: LoadResult): number {
  return r.failed + r.errored + r.statusOther;
}

function errorText(r: LoadResult): string {
  if (errorsOf(r) === 0) return '';
  const parts = Object.entries(r.statusByClass).map(([c, n]) => `${n} ${c}`);
  if (r.failed) parts.push(`${r.failed} failed`);
  if (r.errored) parts.push(`${r.errored} errored`);
  return `  ERRORS ${parts.join(', ')}`;
}

/** `k=v,k2=v2` -> runtime values (true/false/numbers typed, the rest strings). */
function parseRuntime(text: string): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const pair of text.split(',').filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`--envoy-runtime: expected key=value, got "${pair}"`);
    const v = pair.slice(eq + 1);
    out[pair.slice(0, eq)] = v === 'true' ? true : v === 'false' ? false : v !== '' && Number.isFinite(Number(v)) ? Number(v) : v;
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      duration: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      'skip-opa-envoy': { type: 'string' },
      only: { type: 'string' },
      keep: { type: 'boolean', default: false },
      'envoy-runtime': { type: 'string' },
      'token-cache-size': { type: 'string' },
      'grpc-channel': { type: 'string', default: 'plaintext' },
      baseline: { type: 'string' },
    },
    strict: false,
  });
  const grpcChannel = values['grpc-channel'];
  if (grpcChannel !== 'plaintext' && grpcChannel !== 'mtls') throw new Error('--grpc-channel must be plaintext or mtls');
  const envoyRuntime = parseRuntime(typeof values['envoy-runtime'] === 'string' ? values['envoy-runtime'] : '');
  const tokenCacheSize = typeof values['token-cache-size'] === 'string' ? Number(values['token-cache-size']) : undefined;
  if (tokenCacheSize !== undefined && !(Number.isInteger(tokenCacheSize) && tokenCacheSize >= 0)) throw new Error('--token-cache-size must be a whole number >= 0');
  const rounds = Number(values.rounds);
  const durationS = Number(values.duration);
  const warmupS = Number(values.warmup);
  if (![rounds, durationS, warmupS].every((n) => Number.isInteger(n) && n >= 0) || rounds < 1 || durationS < 1) {
    throw new Error('--rounds, --duration and --warmup must be whole numbers (rounds, duration >= 1)');
  }

  const h2 = version('h2load', ['--version']);
  if (h2.startsWith('unavailable')) throw new Error('h2load is not installed: run "bash scripts/install-bench-tools.sh" (Debian package nghttp2-client)');
  const opaEnvoyBin = repoPath('.tools', 'bin', 'opa-envoy-plugin');
  let opaSkip = typeof values['skip-opa-envoy'] === 'string' ? values['skip-opa-envoy'] : null;
  if (!opaSkip && !existsSync(opaEnvoyBin)) {
    throw new Error(`${opaEnvoyBin} is missing: run "bash scripts/install-opa-envoy.sh" (or pass --skip-opa-envoy REASON)`);
  }

  const baselineRef = typeof values.baseline === 'string' ? values.baseline : null;
  if (values.baseline === true) throw new Error('--baseline needs a git ref, e.g. --baseline HEAD~1');
  // Said before the baseline is built, which takes a while.
  if (baselineRef && typeof values.only === 'string' && !values.only.split(',').some((id) => BASELINE_CAPABLE.has(id as ScenarioId))) {
    throw new Error('--baseline: --only selects none of B, C, D');
  }

  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));
  const grpcBody = join(dir, 'check-request.bin');
  let stack: BenchStack | null = null;
  let baselineStack: BenchStack | null = null;
  let workersStack: BenchStack | null = null;
  let baselineCheckout: BaselineCheckout | null = null;
  let mcpBench: McpBench | null = null;
  let replicatedStack: BenchStack | null = null;
  let redis: RedisServer | null = null;
  // One cleanup, shared: a signal and the failure it causes (h2load interrupted) both wait for it.
  let cleaning: Promise<void> | null = null;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      // The baseline stack shares the current stack's sample tool: stop it first.
      await baselineStack?.stop().catch(() => undefined);
      await replicatedStack?.stop().catch(() => undefined);
      await workersStack?.stop().catch(() => undefined);
      await stack?.stop().catch(() => undefined);
      await redis?.stop().catch(() => undefined);
      await mcpBench?.close().catch(() => undefined);
      await terminateAll();
      baselineCheckout?.remove();
      if (values.keep) console.log(`bench: working folder kept: ${dir}`);
      else rmSync(dir, { recursive: true, force: true });
    })());
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupted = true;
    process.stderr.write(`\nbench: ${sig}, stopping everything it started\n`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', killAllNow);
  // Last resort for the temporary worktree (its removal is synchronous and idempotent).
  process.once('exit', () => baselineCheckout?.remove());

  const started = new Date();
  const meta = {
    started: started.toISOString(),
    node: process.version,
    envoy: version(repoPath('.tools', 'bin', 'envoy'), ['--version']).replace(/^.*version: /s, ''),
    opaEnvoy: opaSkip ? `skipped: ${opaSkip}` : opaEnvoyVersion(opaEnvoyBin),
    h2load: h2,
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    loadavgAtStart: loadavg(),
    settings: {
      envoyRuntime,
      rounds,
      durationS,
      warmupS,
      httpSaturation: HTTP_SAT,
      httpLatencyClients: HTTP_LAT_CLIENTS,
      grpcSaturation: GRPC_SAT,
      grpcLatency: GRPC_LAT,
      envoyConcurrency: 1,
      grpcChannel,
      baselineRef,
      sseFirstEventProbe: { ...SSE_PROBE, events: SSE_EVENTS },
    },
  };

  try {
    console.log(`bench: node ${meta.node}, envoy ${meta.envoy.split('/')[1] ?? meta.envoy}, ${meta.opaEnvoy}, ${meta.cores} cores, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    let baseline: BaselineBuild | null = null;
    if (baselineRef) {
      baselineCheckout = checkoutBaseline(baselineRef);
      baseline = await buildBaseline(baselineCheckout, (line) => console.log(line));
      console.log(`bench: baseline built (policy bundle ${baseline.bundleSource}, envoy.yaml of the ${baseline.envoySource} checkout)`);
    }
    console.log('bench: starting sample tool, MCP server, portcullis, null Check server, OPA-Envoy and three Envoys ...');
    mcpBench = await startMcpBench(join(dir, 'mcp'));
    const mcp = mcpBench.upstream;
    stack = await startBenchStack({ dir, variants: ['floor', 'authz', 'full'], envoyRuntime, nullServer: true, opaEnvoyBin: opaSkip ? null : opaEnvoyBin, tokenCacheSize, grpcChannel, mcp, workers: 1 }).catch(async (err: unknown) => {
      // OPA-Envoy is a reference, not the product: if it alone fails, measure everything else.
      if (opaSkip || !/OPA-Envoy/.test((err as Error).message)) throw err;
      opaSkip = `failed to start: ${(err as Error).message.split('\n')[0]}`;
      console.log(`bench: OPA-Envoy ${opaSkip}; continuing without scenario F`);
      meta.opaEnvoy = `skipped: ${opaSkip}`;
      return startBenchStack({ dir, variants: ['floor', 'authz', 'full'], envoyRuntime, nullServer: true, opaEnvoyBin: null, tokenCacheSize, grpcChannel, mcp, workers: 1 });
    });
    const s = stack;
    writeFileSync(grpcBody, grpcFrame(encodeCheckRequest(weatherCheckRequest(s.token))));

    let list = scenarios(grpcBody, mcpBench.scenarios).filter((sc) => (sc.id !== 'F' || !opaSkip) && ((sc.id !== 'E' && sc.id !== 'E-w2') || grpcChannel === 'plaintext'));
    const only = typeof values.only === 'string' ? new Set(values.only.split(',')) : null;
    if (only) list = list.filter((sc) => only.has(sc.id));
    await sanityCheck(s, list);
    await mcpSanityCheck(s, list, mcpBench);

    // The baseline runs C and D by default, or the B/C/D scenarios picked with --only.
    const baselineList = baseline ? list.filter((sc) => (only ? BASELINE_CAPABLE : BASELINE_DEFAULT).has(sc.id)) : [];
    if (baseline && baselineList.length === 0) throw new Error('--baseline: none of B, C, D is selected');
    let bs: BenchStack | null = null;
    if (baseline) {
      console.log(`bench: starting the baseline's portcullis and Envoy (${baselineList.map((sc) => sc.id).join(', ')}) ...`);
      baselineStack = await startBenchStack({
        dir: join(dir, 'baseline'),
        variants: baselineList.some((sc) => sc.id === 'B') ? ['authz', 'full'] : ['full'],
        repoRoot: baseline.root,
        portcullisMain: baseline.main,
        policyBundle: baseline.bundle,
        renderEnvoy: baseline.renderEnvoy,
        // Same upstream as the current build and the floors, so only portcullis differs.
        tool: s.tool,
        envoyRuntime,
        tokenCacheSize,
        grpcChannel,
        // Like for like with the current build's one process, when the baseline knows the setting.
        ...(baselineKnowsWorkers(baseline.root) ? { workers: 1 } : {}),
      });
      bs = baselineStack;
      await sanityCheck(bs, baselineList);
    }

    // E-w2: the same gRPC load on a portcullis of its own with worker processes (no Envoy).
    let ws: BenchStack | null = null;
    if (list.some((sc) => sc.workers !== undefined)) {
      console.log(`bench: starting portcullis with ${E_WORKERS} workers (E-w2) ...`);
      workersStack = await startBenchStack({ dir: join(dir, 'workers'), variants: [], tool: s.tool, tokenCacheSize, grpcChannel, workers: E_WORKERS });
      ws = workersStack;
    }

    // B-r2: the same Envoy variant as B in front of two portcullis processes on one Redis.
    let rs: BenchStack | null = null;
    const replicatedList = list.filter((sc) => sc.replicated === true);
    if (replicatedList.length > 0) {
      console.log('bench: starting redis-server and two portcullis replicas on it behind one more Envoy ...');
      redis = await startRedis();
      replicatedStack = await startBenchStack({ dir: join(dir, 'replicas'), variants: ['authz'], tool: s.tool, envoyRuntime, tokenCacheSize, grpcChannel, replicas: 2, redisUrl: redis.url, workers: 1 });
      rs = replicatedStack;
      await sanityCheck(rs, replicatedList);
    }

    const stackOf = (sc: Scenario): BenchStack => (sc.workers !== undefined && ws ? ws : sc.replicated && rs ? rs : s);
    const currentRuns = new Map<ScenarioId, Run>(list.map((sc) => [sc.id, { key: sc.id, sc, stack: stackOf(sc) }]));
    const baselineRuns = new Map<ScenarioId, Run>(bs ? baselineList.map((sc) => [sc.id, { key: baseKey(sc.id), sc, stack: bs }]) : []);
    const allRuns = [...currentRuns.values(), ...baselineRuns.values()];
    /**
     * The order of a round: the scenarios rotated (so none always runs first or last), each
     * baseline run next to its current run, the two swapping places every other round.
     */
    const orderOf = (round: number): Run[] =>
      list
        .map((_, i) => list[(i + round - 1) % list.length]!)
        .flatMap((sc) => {
          const cur = currentRuns.get(sc.id)!;
          const base = baselineRuns.get(sc.id);
          return base ? (round % 2 === 1 ? [cur, base] : [base, cur]) : [cur];
        });

    // First-SSE-event probe targets: D, its floor and the baseline's D, when D is measured.
    const probeUrl = (st: BenchStack, variant: EnvoyVariant): string => `${st.envoys.get(variant)!.url}/tools${SSE_PATH}?${SSE_GAP_PARAM}=${SSE_PROBE.gapMs}`;
    const probeTargets: Array<{ key: string; url: string; headers: Record<string, string> }> = currentRuns.has('D')
      ? [
          { key: 'A-sse', url: probeUrl(s, 'floor'), headers: { authorization: `Bearer ${s.token}` } },
          { key: 'D', url: probeUrl(s, 'full'), headers: { authorization: `Bearer ${s.token}` } },
          ...(bs && baselineRuns.has('D') ? [{ key: baseKey('D'), url: probeUrl(bs, 'full'), headers: { authorization: `Bearer ${bs.token}` } }] : []),
        ]
      : [];
    for (const t of probeTargets) {
      const one = await firstEventProbe({ url: t.url, headers: t.headers, requests: 1, warmup: 0, events: SSE_EVENTS });
      if (one.errors > 0) throw new Error(`first-event probe ${t.key}: GET ${t.url} did not return ${SSE_EVENTS} SSE events`);
    }
    const probes = new Map<string, Array<{ round: number } & FirstEventResult>>(probeTargets.map((t) => [t.key, []]));

    const rss = new RssSampler(s.portcullis.child.pid!);
    const rssAtStartMb = (rssBytes(s.portcullis.child.pid!) ?? 0) / 2 ** 20;
    rss.start();
    const baseRss = bs ? new RssSampler(bs.portcullis.child.pid!) : null;
    const baseRssAtStartMb = bs ? (rssBytes(bs.portcullis.child.pid!) ?? 0) / 2 ** 20 : null;
    baseRss?.start();
    const label = (key: string): void => {
      rss.setLabel(key);
      baseRss?.setLabel(key);
    };
    const results = new Map<string, Measurement[]>(allRuns.map((r) => [r.key, []]));
    const rates = { http: 0, grpc: 0, mcp: 0 };
    const rateOf = (kind: Scenario['kind']): number => rates[kind];

    for (let round = 1; round <= rounds; round++) {
      const order = orderOf(round);
      for (const r of order) {
        label(r.key);
        const pid = r.sc.target(r.stack).pid;
        // Every portcullis process of the stack serves the scenario (replicas, or a primary and its
        // workers): their CPU is summed.
        const pids = pid === null ? [] : [pid, ...r.stack.replicas.flatMap((x) => (x.child.pid === undefined ? [] : [x.child.pid]))];
        const cpuOfPid = r.sc.workers !== undefined ? cpuMicrosTree : cpuMicros;
        const cpuOf = (): number | null => {
          let sum = 0;
          for (const p of pids) {
            const c = cpuOfPid(p);
            if (c === null) return null;
            sum += c;
          }
          return pids.length > 0 ? sum : null;
        };
        const cpu0 = cpuOf();
        const sat = await h2load(loadSpec(r.sc, r.stack, { durationS, warmupS }));
        const cpu1 = cpuOf();
        // CPU is counted over warm-up + measurement, so divide by the requests of both.
        const totalReq = sat.rps * (durationS + warmupS);
        const cpuUsPerRequest = cpu0 !== null && cpu1 !== null && totalReq > 0 ? (cpu1 - cpu0) / totalReq : null;
        results.get(r.key)!.push({ round, saturation: sat, latency: null, cpuUsPerRequest });
        console.log(`  round ${round} ${r.key.padEnd(10)} saturation ${fmt(sat.rps, 0).padStart(7)} req/s${errorText(sat)}`);
      }
      if (round === 1) {
        // Half the slowest run's saturation (baseline included), a multiple of the client count (whole rps each).
        const rateFor = (kind: Scenario['kind'], clients: number): number => {
          const sats = allRuns.filter((r) => r.sc.kind === kind).map((r) => results.get(r.key)![0]!.saturation.rps);
          return sats.length === 0 ? 0 : Math.max(clients, Math.round(Math.min(...sats) / 2 / clients) * clients);
        };
        rates.http = rateFor('http', HTTP_LAT_CLIENTS);
        rates.grpc = rateFor('grpc', GRPC_LAT.clients);
        rates.mcp = rateFor('mcp', HTTP_LAT_CLIENTS);
        console.log(`  latency runs at ${rates.http} req/s (HTTP scenarios), ${rates.grpc} req/s (gRPC scenarios) and ${rates.mcp} req/s (MCP scenarios)`);
      }
      for (const r of order) {
        label(r.key);
        const lat = await h2load(
          loadSpec(r.sc, r.stack, { durationS, warmupS, logFile: join(dir, `lat-${r.key}-${round}.log`), totalRps: rateOf(r.sc.kind) }),
        );
        const m = results.get(r.key)!.find((x) => x.round === round)!;
        m.latency = lat;
        console.log(`  round ${round} ${r.key.padEnd(10)} at ${fmt(lat.rps, 0).padStart(6)} req/s p50 ${fmt(lat.p50Ms)} ms p99 ${fmt(lat.p99Ms)} ms${errorText(lat)}`);
      }
      // Rotated like the load runs; each probe is short (about a second), so they run moments apart.
      for (let i = 0; i < probeTargets.length; i++) {
        const t = probeTargets[(i + round - 1) % probeTargets.length]!;
        label(`${t.key} first-event`);
        const res = await firstEventProbe({ url: t.url, headers: t.headers, requests: SSE_PROBE.requests, warmup: SSE_PROBE.warmup, events: SSE_EVENTS });
        probes.get(t.key)!.push({ round, ...res });
        console.log(
          `  round ${round} ${t.key.padEnd(10)} first SSE event p50 ${fmt(res.p50Ms)} ms p99 ${fmt(res.p99Ms)} ms (complete p50 ${fmt(res.completeP50Ms)} ms)${res.errors ? `  ERRORS ${res.errors}` : ''}`,
        );
      }
    }
    rss.stop();
    baseRss?.stop();

    // --- Summaries: per-round ratios first, then medians over rounds. ---
    const per = (key: string): Measurement[] => results.get(key) ?? [];
    const medianOf = (key: string, f: (m: Measurement) => number | null | undefined): number | null =>
      median(per(key).map((m) => f(m) ?? Number.NaN));
    const ratio = (a: string, b: string, f: (m: Measurement) => number | null | undefined): number | null =>
      median(per(a).map((m) => {
        const other = per(b).find((x) => x.round === m.round);
        const x = f(m);
        const y = other ? f(other) : null;
        return x !== null && x !== undefined && y !== null && y !== undefined && y !== 0 ? x / y : Number.NaN;
      }));
    const added = (a: string, b: string, f: (m: Measurement) => number | null | undefined): number | null =>
      median(per(a).map((m) => {
        const other = per(b).find((x) => x.round === m.round);
        const x = f(m);
        const y = other ? f(other) : null;
        return x !== null && x !== undefined && y !== null && y !== undefined ? x - y : Number.NaN;
      }));
    const sat = (m: Measurement): number => m.saturation.rps;
    const p50 = (m: Measurement): number | null => m.latency?.p50Ms ?? null;
    const p99 = (m: Measurement): number | null => m.latency?.p99Ms ?? null;
    // The floor each scenario is compared with: the same response without portcullis.
    const floorOf = (id: ScenarioId): ScenarioId | null => (id === 'D' ? 'A-sse' : id === 'B' || id === 'B-r2' || id === 'C' ? 'A' : mcpFloorOf(id));

    const rows = list.map((sc) => {
      const floor = sc.kind !== 'grpc' ? floorOf(sc.id) : null;
      const errors = per(sc.id).reduce((n, m) => n + errorsOf(m.saturation) + (m.latency ? errorsOf(m.latency) : 0), 0);
      return {
        id: sc.id,
        title: sc.title,
        saturationRps: medianOf(sc.id, sat),
        p50Ms: medianOf(sc.id, p50),
        p99Ms: medianOf(sc.id, p99),
        latencyRateRps: rateOf(sc.kind),
        floor,
        throughputVsFloor: floor ? ratio(sc.id, floor, sat) : null,
        throughputVsA: sc.kind === 'http' && sc.id !== 'A' ? ratio(sc.id, 'A', sat) : null,
        addedP50Ms: floor ? added(sc.id, floor, p50) : null,
        addedP99Ms: floor ? added(sc.id, floor, p99) : null,
        addedP50VsAMs: sc.kind === 'http' && sc.id !== 'A' ? added(sc.id, 'A', p50) : null,
        addedP99VsAMs: sc.kind === 'http' && sc.id !== 'A' ? added(sc.id, 'A', p99) : null,
        serverCpuUsPerRequest: medianOf(sc.id, (m) => m.cpuUsPerRequest),
        portcullisMaxRssMb: (rss.maxByLabel.get(sc.id) ?? 0) / 2 ** 20,
        errors,
      };
    });
    const row = (id: ScenarioId): (typeof rows)[number] | undefined => rows.find((r) => r.id === id);
    const has = (id: ScenarioId): boolean => row(id) !== undefined;
    const check = (name: string, value: number | null, op: '<=' | '>=', limit: number, unit: string): TargetCheck => ({
      name,
      value,
      op,
      limit,
      unit,
      pass: value === null ? null : op === '<=' ? value <= limit : value >= limit,
    });
    const targets: TargetCheck[] = [];
    if (has('B') && has('A')) {
      targets.push(check('B over A: added p50', row('B')!.addedP50Ms, '<=', 0.3, 'ms'));
      targets.push(check('B over A: added p99', row('B')!.addedP99Ms, '<=', 1, 'ms'));
    }
    if (has('C') && has('A')) {
      targets.push(check('C over A: added p50', row('C')!.addedP50Ms, '<=', 0.8, 'ms'));
      targets.push(check('C over A: added p99', row('C')!.addedP99Ms, '<=', 3, 'ms'));
    }
    if (has('E') && has('E0')) targets.push(check('E / E0 (Node floor) throughput', ratio('E', 'E0', sat), '>=', 0.6, 'x'));
    if (has('E') && has('F')) targets.push(check('E / F (OPA-Envoy) throughput', ratio('E', 'F', sat), '>=', 1.0, 'x'));
    targets.push(check('portcullis max RSS under load', rss.max / 2 ** 20, '<=', 150, 'MB'));
    // What one call costs the shared store: Redis' own command count over the Checks both replicas answered.
    // Commands run inside a Lua script are counted too; the scripts (eval/evalsha) are the round trips.
    let redisPerCheck: { commands: Record<string, number>; checks: number; perCheck: number | null; scriptsPerCheck: number | null; redisUsPerCheck: number | null } | null = null;
    if (redis && rs) {
      const { calls: commands, scriptUsec } = await redisCommandCounts(redis.url);
      const checks = await checksServed([rs.portcullis.adminUrl, ...rs.replicas.map((r) => r.adminUrl)]);
      const total = Object.values(commands).reduce((a, b) => a + b, 0);
      const scripts = (commands.eval ?? 0) + (commands.evalsha ?? 0);
      redisPerCheck = { commands, checks, perCheck: checks > 0 ? total / checks : null, scriptsPerCheck: checks > 0 ? scripts / checks : null, redisUsPerCheck: checks > 0 ? scriptUsec / checks : null };
    }
    const rssLine = `portcullis RSS: ${fmt(rssAtStartMb, 0)} MB idle after start, ${fmt(rss.max / 2 ** 20, 0)} MB max under load (sampled every 100 ms).`;

    const ratios = {
      'B/A throughput': has('B') && has('A') ? ratio('B', 'A', sat) : null,
      'B-r2/B throughput': has('B-r2') && has('B') ? ratio('B-r2', 'B', sat) : null,
      'B-r2/B cpu per request': has('B-r2') && has('B') ? ratio('B-r2', 'B', (m) => m.cpuUsPerRequest) : null,
      'B-r2 - B added p50 (ms)': has('B-r2') && has('B') ? added('B-r2', 'B', p50) : null,
      'C/A throughput': has('C') && has('A') ? ratio('C', 'A', sat) : null,
      'D/A throughput': has('D') && has('A') ? ratio('D', 'A', sat) : null,
      'D/A-sse throughput': has('D') && has('A-sse') ? ratio('D', 'A-sse', sat) : null,
      'E/E0 throughput': has('E') && has('E0') ? ratio('E', 'E0', sat) : null,
      'E/F throughput': has('E') && has('F') ? ratio('E', 'F', sat) : null,
      'E/F p50 latency': has('E') && has('F') ? ratio('E', 'F', p50) : null,
      'E-w2/E throughput': has('E-w2') && has('E') ? ratio('E-w2', 'E', sat) : null,
    };

    // --- Current vs baseline: the same figures for both builds, and current / baseline. ---
    const cpu = (m: Measurement): number | null => m.cpuUsPerRequest;
    const div = (a: number | null, b: number | null): number | null => (a !== null && b !== null && b !== 0 ? a / b : null);
    const mb = (bytes: number | undefined): number | null => (bytes === undefined ? null : bytes / 2 ** 20);
    const baselineRows = baselineList.map((sc) => {
      const k = baseKey(sc.id);
      const floor = floorOf(sc.id)!;
      const figures = (key: string, sampler: RssSampler | null) => ({
        saturationRps: medianOf(key, sat),
        p50Ms: medianOf(key, p50),
        p99Ms: medianOf(key, p99),
        addedP50Ms: added(key, floor, p50),
        addedP99Ms: added(key, floor, p99),
        cpuUsPerRequest: medianOf(key, cpu),
        maxRssMb: mb(sampler?.maxByLabel.get(key)),
        errors: per(key).reduce((n, m) => n + errorsOf(m.saturation) + (m.latency ? errorsOf(m.latency) : 0), 0),
      });
      const current = figures(sc.id, rss);
      const base = figures(k, baseRss);
      return {
        id: sc.id,
        title: sc.title,
        floor,
        current,
        baseline: base,
        // Throughput and CPU: per-round ratios (both builds measured moments apart), then the
        // median; added latency and RSS: ratio of the medians (a per-round ratio of two small
        // differences is mostly noise).
        currentOverBaseline: {
          throughput: ratio(sc.id, k, sat),
          addedP50: div(current.addedP50Ms, base.addedP50Ms),
          addedP99: div(current.addedP99Ms, base.addedP99Ms),
          cpuPerRequest: ratio(sc.id, k, cpu),
          maxRss: div(current.maxRssMb, base.maxRssMb),
        },
      };
    });

    // --- Time to first SSE event: medians over rounds of each round's p50/p99. ---
    const probeMedian = (key: string, f: (r: FirstEventResult) => number | null): number | null =>
      median((probes.get(key) ?? []).map((r) => f(r) ?? Number.NaN));
    const probeAdded = (key: string, f: (r: FirstEventResult) => number | null): number | null =>
      median(
        (probes.get(key) ?? []).map((r) => {
          const floor = probes.get('A-sse')?.find((x) => x.round === r.round);
          const x = f(r);
          const y = floor ? f(floor) : null;
          return x !== null && y !== null ? x - y : Number.NaN;
        }),
      );
    const firstEventRows = probeTargets.map((t) => ({
      key: t.key,
      build: t.key === 'A-sse' ? 'floor' : t.key === 'D' ? 'current' : 'baseline',
      p50Ms: probeMedian(t.key, (r) => r.p50Ms),
      p99Ms: probeMedian(t.key, (r) => r.p99Ms),
      addedP50Ms: t.key === 'A-sse' ? null : probeAdded(t.key, (r) => r.p50Ms),
      addedP99Ms: t.key === 'A-sse' ? null : probeAdded(t.key, (r) => r.p99Ms),
      completeP50Ms: probeMedian(t.key, (r) => r.completeP50Ms),
      errors: (probes.get(t.key) ?? []).reduce((n, r) => n + r.errors, 0),
    }));
    const feRow = (key: string) => firstEventRows.find((r) => r.key === key);
    const firstEventRatio = feRow('D') && feRow(baseKey('D'))
      ? { p50: div(feRow('D')!.p50Ms, feRow(baseKey('D'))!.p50Ms), p99: div(feRow('D')!.p99Ms, feRow(baseKey('D'))!.p99Ms) }
      : null;

    // --- Table ---
    const lines: string[] = [];
    lines.push('');
    lines.push(`portcullis benchmark — ${meta.started}, node ${meta.node}, ${meta.cores} cores (${meta.cpu})`);
    lines.push(`envoy ${meta.envoy}`);
    lines.push(`opa-envoy ${meta.opaEnvoy}; ${meta.h2load.split('\n')[0]}`);
    lines.push(
      `${rounds} interleaved rounds x ${durationS} s (+${warmupS} s warm-up) per run; medians over rounds; ratios and added latency computed within a round.`,
    );
    lines.push(
      `saturation: HTTP/1.1 ${HTTP_SAT.clients} connections, gRPC ${GRPC_SAT.clients} connections x ${GRPC_SAT.streams} streams; ` +
        `latency at fixed rate: HTTP ${rates.http} req/s (${HTTP_LAT_CLIENTS} conns), gRPC ${rates.grpc} req/s (${GRPC_LAT.clients} conns), MCP ${rates.mcp} req/s (${HTTP_LAT_CLIENTS} conns).`,
    );
    lines.push('');
    const head = `${'scenario'.padEnd(6)} ${'description'.padEnd(36)} ${'sat req/s'.padStart(9)} ${'x floor'.padStart(7)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'+p50'.padStart(6)} ${'+p99'.padStart(6)} ${'cpu us/req'.padStart(10)} ${'RSS MB'.padStart(6)} ${'errors'.padStart(6)}`;
    lines.push(head);
    lines.push('-'.repeat(head.length));
    for (const r of rows) {
      const floorRatio = r.throughputVsFloor ?? (r.id === 'E' || r.id === 'E-w2' ? ratio(r.id, 'E0', sat) : null);
      lines.push(
        `${r.id.padEnd(6)} ${r.title.padEnd(36)} ${fmt(r.saturationRps, 0).padStart(9)} ${fmt(floorRatio).padStart(7)} ${fmt(r.p50Ms).padStart(7)} ${fmt(r.p99Ms).padStart(7)} ` +
          `${fmt(r.addedP50Ms).padStart(6)} ${fmt(r.addedP99Ms).padStart(6)} ${fmt(r.serverCpuUsPerRequest, 0).padStart(10)} ` +
          `${(r.id === 'A' || r.id === 'A-sse' || r.id === 'E-w2' || r.id === 'E0' || r.id === 'F' || r.id === 'M0' || r.id === 'M0-list' ? '-' : fmt(r.portcullisMaxRssMb, 0)).padStart(6)} ${String(r.errors).padStart(6)}`,
      );
    }
    lines.push('');
    lines.push('x floor: throughput over the scenario\'s floor in the same round (B, B-r2, C over A; D over A-sse; E, E-w2 over E0; M over M0; M-list over M0-list).');
    lines.push('+p50/+p99: latency added over that floor at the same fixed rate. cpu us/req: CPU time of the server process');
    lines.push('(portcullis for B-E, its primary and workers together for E-w2, the null server for E0, OPA-Envoy for F)');
    lines.push('per request at saturation. RSS MB: highest');
    lines.push('portcullis RSS while the scenario ran (it only grows during a run). errors: non-2xx and failed requests.');
    lines.push('');
    lines.push(rssLine);
    if (redisPerCheck) {
      const by = Object.entries(redisPerCheck.commands).map(([k, v]) => `${k} ${v}`).join(', ');
      lines.push(
        `B-r2 Redis: ${fmt(redisPerCheck.scriptsPerCheck)} scripts (round trips), ${fmt(redisPerCheck.perCheck)} commands and ${fmt(redisPerCheck.redisUsPerCheck)} us of Redis time per Check (${redisPerCheck.checks} Checks; ${by || 'none'}).`,
      );
    }
    lines.push('ratios: ' + Object.entries(ratios).map(([k, v]) => `${k} ${fmt(v)}`).join(', '));
    lines.push('');
    lines.push('targets:');
    for (const t of targets) {
      const verdict = t.pass === null ? 'n/a ' : t.pass ? 'PASS' : 'FAIL';
      lines.push(`  ${verdict}  ${t.name.padEnd(34)} ${fmt(t.value).padStart(8)} ${t.unit.padEnd(2)} (target ${t.op} ${t.limit} ${t.unit})`);
    }
    if (opaSkip) lines.push(`  n/a   F (OPA-Envoy) not measured: ${opaSkip}`);
    if (baseline) {
      lines.push('');
      lines.push(`current vs baseline ${baseline.ref} (${baseline.commit.slice(0, 12)} ${baseline.subject})`);
      lines.push(`policy bundle ${baseline.bundleSource === 'reused' ? 'shared (policies unchanged)' : "built from the baseline's policies"}, envoy.yaml of the ${baseline.envoySource} checkout; same sample tool and floors.`);
      lines.push(`baseline portcullis RSS: ${fmt(baseRssAtStartMb, 0)} MB idle after start, ${fmt(mb(baseRss?.max), 0)} MB max under load.`);
      const bh = `${'scenario'.padEnd(8)} ${'build'.padEnd(9)} ${'sat req/s'.padStart(9)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'+p50'.padStart(6)} ${'+p99'.padStart(6)} ${'cpu us/req'.padStart(10)} ${'RSS MB'.padStart(6)} ${'errors'.padStart(6)}`;
      lines.push(bh);
      lines.push('-'.repeat(bh.length));
      for (const r of baselineRows) {
        for (const [build, f] of [['current', r.current], ['baseline', r.baseline]] as const) {
          lines.push(
            `${r.id.padEnd(8)} ${build.padEnd(9)} ${fmt(f.saturationRps, 0).padStart(9)} ${fmt(f.p50Ms).padStart(7)} ${fmt(f.p99Ms).padStart(7)} ${fmt(f.addedP50Ms).padStart(6)} ${fmt(f.addedP99Ms).padStart(6)} ` +
              `${fmt(f.cpuUsPerRequest, 0).padStart(10)} ${fmt(f.maxRssMb, 0).padStart(6)} ${String(f.errors).padStart(6)}`,
          );
        }
        const q = r.currentOverBaseline;
        lines.push(
          `${r.id.padEnd(8)} ${'cur/base'.padEnd(9)} ${fmt(q.throughput).padStart(9)} ${''.padStart(7)} ${''.padStart(7)} ${fmt(q.addedP50).padStart(6)} ${fmt(q.addedP99).padStart(6)} ${fmt(q.cpuPerRequest).padStart(10)} ${fmt(q.maxRss).padStart(6)}`,
        );
      }
      lines.push(`+p50/+p99 over the scenario's floor (${baselineRows.map((r) => `${r.id} over ${r.floor}`).join(', ')}) in the same round; cur/base: throughput and`);
      lines.push('cpu as the median of per-round ratios, added latency and RSS as the ratio of the medians (< 1 is less for the current build).');
    }
    if (firstEventRows.length > 0) {
      lines.push('');
      lines.push(
        `time to first SSE event: ${SSE_PROBE.requests} sequential requests per round on one connection (after ${SSE_PROBE.warmup} untimed); the tool sends` +
          ` event 1 at once and the other ${SSE_EVENTS - 1} after ${SSE_PROBE.gapMs} ms, so a buffered response shows a first event after ${SSE_PROBE.gapMs} ms or more.`,
      );
      const fh = `${'scenario'.padEnd(8)} ${'build'.padEnd(9)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'+p50'.padStart(6)} ${'+p99'.padStart(6)} ${'complete p50'.padStart(12)} ${'errors'.padStart(6)}`;
      lines.push(fh);
      lines.push('-'.repeat(fh.length));
      for (const r of firstEventRows) {
        lines.push(
          `${r.key.split('@')[0]!.padEnd(8)} ${r.build.padEnd(9)} ${fmt(r.p50Ms).padStart(7)} ${fmt(r.p99Ms).padStart(7)} ${fmt(r.addedP50Ms).padStart(6)} ${fmt(r.addedP99Ms).padStart(6)} ${fmt(r.completeP50Ms).padStart(12)} ${String(r.errors).padStart(6)}`,
        );
      }
      if (firstEventRatio) lines.push(`${'D'.padEnd(8)} ${'cur/base'.padEnd(9)} ${fmt(firstEventRatio.p50).padStart(7)} ${fmt(firstEventRatio.p99).padStart(7)}`);
      lines.push('+p50/+p99 over A-sse in the same round; complete p50: time to the end of the response.');
    }
    const table = lines.join('\n');

    await cleanup();

    // Micro-benchmarks run after the stack is gone so they do not compete with it.
    const micro: Record<string, string> = {};
    for (const file of ['micro.ts', 'dlp.bench.ts']) {
      const path = repoPath('bench', file);
      if (!existsSync(path)) continue;
      console.log(`\nbench: npx vite-node bench/${file}`);
      const res = await run(repoPath('node_modules', '.bin', 'vite-node'), [path], { timeoutMs: 180_000 });
      const out = res.code === 0 ? res.stdout : `exit ${res.code}\n${res.stdout}\n${res.stderr}`;
      micro[file] = out;
      console.log(out.trimEnd());
    }

    console.log(table);
    const outDir = repoPath('bench', 'results');
    mkdirSync(outDir, { recursive: true });
    const outFile = join(outDir, `${started.toISOString().replace(/[:.]/g, '-')}.json`);
    const raw = Object.fromEntries([...results.entries()].map(([id, ms]) => [id, ms]));
    const baselineJson = baseline
      ? {
          ref: baseline.ref,
          commit: baseline.commit,
          subject: baseline.subject,
          policyBundle: baseline.bundleSource,
          envoyConfig: baseline.envoySource,
          portcullisRssAtStartMb: baseRssAtStartMb,
          portcullisMaxRssMb: mb(baseRss?.max),
          scenarios: baselineRows,
        }
      : null;
    const firstSseEvent =
      firstEventRows.length > 0
        ? { settings: { ...SSE_PROBE, events: SSE_EVENTS }, rows: firstEventRows, currentOverBaseline: firstEventRatio, raw: Object.fromEntries(probes) }
        : null;
    writeFileSync(
      outFile,
      `${JSON.stringify({ meta: { ...meta, finished: new Date().toISOString(), loadavgAtEnd: loadavg() }, rates, scenarios: rows, ratios, targets, baseline: baselineJson, firstSseEvent, redisPerCheck, portcullisRssAtStartMb: rssAtStartMb, portcullisMaxRssMb: rss.max / 2 ** 20, raw, micro, table }, null, 2)}\n`,
    );
    console.log(`\nresults: ${outFile}`);
  } finally {
    await cleanup();
  }
}

/** Set on SIGINT/SIGTERM: the failures that follow are the interruption, not worth a report. */
let interrupted = false;

main().catch(async (err: unknown) => {
  await terminateAll();
  if (interrupted) return; // the signal handler exits once cleanup is done
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
