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
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { repoPath } from '../test/helpers/paths.js';
import { encodeCheckRequest, grpcFrame, weatherCheckRequest } from './lib/checkRequest.js';
import { h2load, type LoadResult, type LoadSpec } from './lib/h2load.js';
import { cpuMicros, rssBytes, RssSampler } from './lib/procstat.js';
import { killAllNow, run, terminateAll } from './lib/procs.js';
import { SSE_EVENTS, SSE_PATH, startBenchStack, type BenchStack } from './lib/stack.js';
import type { EnvoyVariant } from './lib/envoy.js';

type ScenarioId = 'A' | 'A-sse' | 'B' | 'C' | 'D' | 'E' | 'E0' | 'F';

interface Scenario {
  id: ScenarioId;
  title: string;
  kind: 'http' | 'grpc';
  /** Load target and, for CPU accounting, the process that does the scenario's work. */
  target(stack: BenchStack): { url: string; bodyFile?: string; headers: Record<string, string>; pid: number | null };
}

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

/** Plugin tag (stamp written by scripts/install-bench-tools.sh) and the OPA version it embeds. */
function opaEnvoyVersion(bin: string): string {
  const opa = version(bin, ['version']).split('\n')[0]?.replace('Version: ', 'OPA ') ?? '';
  try {
    return `${readFileSync(`${dirname(bin)}/.opa-envoy-plugin.version`, 'utf8').trim()} (${opa})`;
  } catch {
    return opa;
  }
}

function scenarios(grpcBody: string): Scenario[] {
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
    { id: 'C', title: '+ ext_proc, DLP on 4 KB JSON', kind: 'http', target: http('full', PAYLOAD_PATH, portcullisPid) },
    { id: 'D', title: '+ ext_proc, DLP on SSE stream', kind: 'http', target: http('full', `/tools${SSE_PATH}`, portcullisPid) },
    {
      id: 'E',
      title: 'gRPC Check -> portcullis',
      kind: 'grpc',
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
    if (sc.id === 'B' || sc.id === 'C' || sc.id === 'D') {
      if (injected !== weatherKey) throw new Error(`scenario ${sc.id}: the tool did not receive the injected credential`);
    } else if (injected !== undefined) {
      throw new Error(`scenario ${sc.id}: the floor unexpectedly carries a credential`);
    }
  }
}

function loadSpec(sc: Scenario, stack: BenchStack, opts: { durationS: number; warmupS: number; logFile?: string; totalRps?: number }): LoadSpec {
  const t = sc.target(stack);
  const shape = sc.kind === 'http' ? (opts.totalRps ? { clients: HTTP_LAT_CLIENTS, streams: 1 } : HTTP_SAT) : opts.totalRps ? GRPC_LAT : GRPC_SAT;
  return {
    url: t.url,
    clients: shape.clients,
    streams: shape.streams,
    durationS: opts.durationS,
    warmupS: opts.warmupS,
    h1: sc.kind === 'http',
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
  if (h2.startsWith('unavailable')) throw new Error('h2load is not installed: run "bash scripts/install-tools.sh" (Debian package nghttp2-client)');
  const opaEnvoyBin = repoPath('.tools', 'bin', 'opa-envoy-plugin');
  let opaSkip = typeof values['skip-opa-envoy'] === 'string' ? values['skip-opa-envoy'] : null;
  if (!opaSkip && !existsSync(opaEnvoyBin)) {
    throw new Error(`${opaEnvoyBin} is missing: run "bash scripts/install-bench-tools.sh" (or pass --skip-opa-envoy REASON)`);
  }

  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));
  const grpcBody = join(dir, 'check-request.bin');
  let stack: BenchStack | null = null;
  // One cleanup, shared: a signal and the failure it causes (h2load interrupted) both wait for it.
  let cleaning: Promise<void> | null = null;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      await stack?.stop().catch(() => undefined);
      await terminateAll();
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
    settings: { envoyRuntime, rounds, durationS, warmupS, httpSaturation: HTTP_SAT, httpLatencyClients: HTTP_LAT_CLIENTS, grpcSaturation: GRPC_SAT, grpcLatency: GRPC_LAT, envoyConcurrency: 1 },
  };

  try {
    console.log(`bench: node ${meta.node}, envoy ${meta.envoy.split('/')[1] ?? meta.envoy}, ${meta.opaEnvoy}, ${meta.cores} cores, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    console.log('bench: starting sample tool, portcullis, null Check server, OPA-Envoy and three Envoys ...');
    stack = await startBenchStack({ dir, variants: ['floor', 'authz', 'full'], envoyRuntime, nullServer: true, opaEnvoyBin: opaSkip ? null : opaEnvoyBin, tokenCacheSize, grpcChannel }).catch(async (err: unknown) => {
      // OPA-Envoy is a reference, not the product: if it alone fails, measure everything else.
      if (opaSkip || !/OPA-Envoy/.test((err as Error).message)) throw err;
      opaSkip = `failed to start: ${(err as Error).message.split('\n')[0]}`;
      console.log(`bench: OPA-Envoy ${opaSkip}; continuing without scenario F`);
      meta.opaEnvoy = `skipped: ${opaSkip}`;
      return startBenchStack({ dir, variants: ['floor', 'authz', 'full'], envoyRuntime, nullServer: true, opaEnvoyBin: null, tokenCacheSize, grpcChannel });
    });
    const s = stack;
    writeFileSync(grpcBody, grpcFrame(encodeCheckRequest(weatherCheckRequest(s.token))));

    let list = scenarios(grpcBody).filter((sc) => (sc.id !== 'F' || !opaSkip) && (sc.id !== 'E' || grpcChannel === 'plaintext'));
    if (typeof values.only === 'string') {
      const only = new Set(values.only.split(','));
      list = list.filter((sc) => only.has(sc.id));
    }
    await sanityCheck(s, list);

    const rss = new RssSampler(s.portcullis.child.pid!);
    const rssAtStartMb = (rssBytes(s.portcullis.child.pid!) ?? 0) / 2 ** 20;
    rss.start();
    const results = new Map<ScenarioId, Measurement[]>(list.map((sc) => [sc.id, []]));
    const rates = { http: 0, grpc: 0 };

    for (let round = 1; round <= rounds; round++) {
      // Rotate the order each round so no scenario always runs first or last.
      const order = list.map((_, i) => list[(i + round - 1) % list.length]!);
      for (const sc of order) {
        rss.setLabel(sc.id);
        const pid = sc.target(s).pid;
        const cpu0 = pid === null ? null : cpuMicros(pid);
        const sat = await h2load(loadSpec(sc, s, { durationS, warmupS }));
        const cpu1 = pid === null ? null : cpuMicros(pid);
        // CPU is counted over warm-up + measurement, so divide by the requests of both.
        const totalReq = sat.rps * (durationS + warmupS);
        const cpuUsPerRequest = cpu0 !== null && cpu1 !== null && totalReq > 0 ? (cpu1 - cpu0) / totalReq : null;
        results.get(sc.id)!.push({ round, saturation: sat, latency: null, cpuUsPerRequest });
        console.log(`  round ${round} ${sc.id.padEnd(5)} saturation ${fmt(sat.rps, 0).padStart(7)} req/s${errorText(sat)}`);
      }
      if (round === 1) {
        // Half the slowest scenario's saturation, a multiple of the client count (whole rps each).
        const rateFor = (kind: Scenario['kind'], clients: number): number => {
          const sats = list.filter((sc) => sc.kind === kind).map((sc) => results.get(sc.id)![0]!.saturation.rps);
          return sats.length === 0 ? 0 : Math.max(clients, Math.round(Math.min(...sats) / 2 / clients) * clients);
        };
        rates.http = rateFor('http', HTTP_LAT_CLIENTS);
        rates.grpc = rateFor('grpc', GRPC_LAT.clients);
        console.log(`  latency runs at ${rates.http} req/s (HTTP scenarios) and ${rates.grpc} req/s (gRPC scenarios)`);
      }
      for (const sc of order) {
        rss.setLabel(sc.id);
        const lat = await h2load(
          loadSpec(sc, s, { durationS, warmupS, logFile: join(dir, `lat-${sc.id}-${round}.log`), totalRps: sc.kind === 'http' ? rates.http : rates.grpc }),
        );
        const m = results.get(sc.id)!.find((x) => x.round === round)!;
        m.latency = lat;
        console.log(`  round ${round} ${sc.id.padEnd(5)} at ${fmt(lat.rps, 0).padStart(6)} req/s p50 ${fmt(lat.p50Ms)} ms p99 ${fmt(lat.p99Ms)} ms${errorText(lat)}`);
      }
    }
    rss.stop();

    // --- Summaries: per-round ratios first, then medians over rounds. ---
    const per = (id: ScenarioId): Measurement[] => results.get(id) ?? [];
    const medianOf = (id: ScenarioId, f: (m: Measurement) => number | null | undefined): number | null =>
      median(per(id).map((m) => f(m) ?? Number.NaN));
    const ratio = (a: ScenarioId, b: ScenarioId, f: (m: Measurement) => number | null | undefined): number | null =>
      median(per(a).map((m) => {
        const other = per(b).find((x) => x.round === m.round);
        const x = f(m);
        const y = other ? f(other) : null;
        return x !== null && x !== undefined && y !== null && y !== undefined && y !== 0 ? x / y : Number.NaN;
      }));
    const added = (a: ScenarioId, b: ScenarioId, f: (m: Measurement) => number | null | undefined): number | null =>
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
    const floorOf = (id: ScenarioId): ScenarioId | null => (id === 'D' ? 'A-sse' : id === 'B' || id === 'C' ? 'A' : null);

    const rows = list.map((sc) => {
      const floor = sc.kind === 'http' ? floorOf(sc.id) : null;
      const errors = per(sc.id).reduce((n, m) => n + errorsOf(m.saturation) + (m.latency ? errorsOf(m.latency) : 0), 0);
      return {
        id: sc.id,
        title: sc.title,
        saturationRps: medianOf(sc.id, sat),
        p50Ms: medianOf(sc.id, p50),
        p99Ms: medianOf(sc.id, p99),
        latencyRateRps: sc.kind === 'http' ? rates.http : rates.grpc,
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
    const rssLine = `portcullis RSS: ${fmt(rssAtStartMb, 0)} MB idle after start, ${fmt(rss.max / 2 ** 20, 0)} MB max under load (sampled every 100 ms).`;

    const ratios = {
      'B/A throughput': has('B') && has('A') ? ratio('B', 'A', sat) : null,
      'C/A throughput': has('C') && has('A') ? ratio('C', 'A', sat) : null,
      'D/A throughput': has('D') && has('A') ? ratio('D', 'A', sat) : null,
      'D/A-sse throughput': has('D') && has('A-sse') ? ratio('D', 'A-sse', sat) : null,
      'E/E0 throughput': has('E') && has('E0') ? ratio('E', 'E0', sat) : null,
      'E/F throughput': has('E') && has('F') ? ratio('E', 'F', sat) : null,
      'E/F p50 latency': has('E') && has('F') ? ratio('E', 'F', p50) : null,
    };

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
        `latency at fixed rate: HTTP ${rates.http} req/s (${HTTP_LAT_CLIENTS} conns), gRPC ${rates.grpc} req/s (${GRPC_LAT.clients} conns).`,
    );
    lines.push('');
    const head = `${'scenario'.padEnd(6)} ${'description'.padEnd(36)} ${'sat req/s'.padStart(9)} ${'x floor'.padStart(7)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'+p50'.padStart(6)} ${'+p99'.padStart(6)} ${'cpu us/req'.padStart(10)} ${'RSS MB'.padStart(6)} ${'errors'.padStart(6)}`;
    lines.push(head);
    lines.push('-'.repeat(head.length));
    for (const r of rows) {
      const floorRatio = r.throughputVsFloor ?? (r.id === 'E' ? ratio('E', 'E0', sat) : null);
      lines.push(
        `${r.id.padEnd(6)} ${r.title.padEnd(36)} ${fmt(r.saturationRps, 0).padStart(9)} ${fmt(floorRatio).padStart(7)} ${fmt(r.p50Ms).padStart(7)} ${fmt(r.p99Ms).padStart(7)} ` +
          `${fmt(r.addedP50Ms).padStart(6)} ${fmt(r.addedP99Ms).padStart(6)} ${fmt(r.serverCpuUsPerRequest, 0).padStart(10)} ` +
          `${(r.id === 'A' || r.id === 'A-sse' || r.id === 'E0' || r.id === 'F' ? '-' : fmt(r.portcullisMaxRssMb, 0)).padStart(6)} ${String(r.errors).padStart(6)}`,
      );
    }
    lines.push('');
    lines.push('x floor: throughput over the scenario\'s floor in the same round (B, C over A; D over A-sse; E over E0).');
    lines.push('+p50/+p99: latency added over that floor at the same fixed rate. cpu us/req: CPU time of the server process');
    lines.push('(portcullis for B-E, the null server for E0, OPA-Envoy for F) per request at saturation. RSS MB: highest');
    lines.push('portcullis RSS while the scenario ran (it only grows during a run). errors: non-2xx and failed requests.');
    lines.push('');
    lines.push(rssLine);
    lines.push('ratios: ' + Object.entries(ratios).map(([k, v]) => `${k} ${fmt(v)}`).join(', '));
    lines.push('');
    lines.push('targets:');
    for (const t of targets) {
      const verdict = t.pass === null ? 'n/a ' : t.pass ? 'PASS' : 'FAIL';
      lines.push(`  ${verdict}  ${t.name.padEnd(34)} ${fmt(t.value).padStart(8)} ${t.unit.padEnd(2)} (target ${t.op} ${t.limit} ${t.unit})`);
    }
    if (opaSkip) lines.push(`  n/a   F (OPA-Envoy) not measured: ${opaSkip}`);
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
    writeFileSync(
      outFile,
      `${JSON.stringify({ meta: { ...meta, finished: new Date().toISOString(), loadavgAtEnd: loadavg() }, rates, scenarios: rows, ratios, targets, portcullisRssAtStartMb: rssAtStartMb, portcullisMaxRssMb: rss.max / 2 ** 20, raw, micro, table }, null, 2)}\n`,
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
