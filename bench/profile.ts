/**
 * CPU profile of portcullis under load through the real Envoy: starts the stack with portcullis
 * under `node --cpu-prof`, drives one scenario at saturation, stops portcullis cleanly so V8
 * writes the profile, and prints the functions (and files) with the most self time.
 *
 *   npx vite-node bench/profile.ts [--scenario C|B|D|E|M|M-list] [--seconds 10] [--top 10]
 *
 * The profile is kept as bench/results/profile-<scenario>-<timestamp>.cpuprofile (open it in
 * Chrome DevTools or speedscope) next to a JSON summary.
 */
import { startMcpBench, type McpBench } from './mcp.js';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { REPO_ROOT, repoPath } from '../test/helpers/paths.js';
import { encodeCheckRequest, grpcFrame, weatherCheckRequest } from './lib/checkRequest.js';
import { h2load, type LoadSpec } from './lib/h2load.js';
import { killAllNow, terminateAll } from './lib/procs.js';
import { SSE_PATH, startBenchStack, stopPortcullisGracefully, type BenchStack } from './lib/stack.js';
import type { EnvoyVariant } from './lib/envoy.js';

/** A node of a V8 `.cpuprofile`. */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

/** A V8 `.cpuprofile` document. */
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time of one function. */
export interface SelfTime {
  /** `file:function` (file relative to the repository, or a node: / V8 pseudo-frame). */
  name: string;
  /** Self time in ms. */
  ms: number;
  /** Share of the non-idle profiled time, in percent. */
  percent: number;
}

function where(url: string): string {
  if (!url) return '';
  if (url.startsWith('file://')) {
    const path = fileURLToPath(url);
    const nm = path.lastIndexOf('/node_modules/');
    return nm >= 0 ? path.slice(nm + 1) : relative(REPO_ROOT, path);
  }
  return url;
}

/**
 * Self time per function (summed over all its call sites), largest first. `(idle)` is left out
 * of the percentages so they read as shares of the time portcullis was busy.
 */
export function selfTimes(profile: CpuProfile): { busyMs: number; idleMs: number; functions: SelfTime[]; files: SelfTime[] } {
  const byNode = new Map<number, number>();
  profile.samples.forEach((id, i) => byNode.set(id, (byNode.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const byName = new Map<string, number>();
  const byFile = new Map<string, number>();
  let idle = 0;
  let busy = 0;
  for (const node of profile.nodes) {
    const us = byNode.get(node.id) ?? 0;
    if (us === 0) continue;
    const f = node.callFrame;
    if (f.functionName === '(idle)') {
      idle += us;
      continue;
    }
    busy += us;
    const file = where(f.url);
    const name = `${file ? `${file}:${f.lineNumber + 1}:` : ''}${f.functionName || '(anonymous)'}`;
    byName.set(name, (byName.get(name) ?? 0) + us);
    const group = file || f.functionName;
    byFile.set(group, (byFile.get(group) ?? 0) + us);
  }
  const sorted = (m: Map<string, number>): SelfTime[] =>
    [...m.entries()].map(([name, us]) => ({ name, ms: us / 1000, percent: busy > 0 ? (100 * us) / busy : 0 })).sort((a, b) => b.ms - a.ms);
  return { busyMs: busy / 1000, idleMs: idle / 1000, functions: sorted(byName), files: sorted(byFile) };
}

const SCENARIOS: Record<string, { variant: EnvoyVariant | null; path: string; mcpBody?: 'call' | 'list' }> = {
  B: { variant: 'authz', path: '/tools/weather/payload?bytes=4000' },
  C: { variant: 'full', path: '/tools/weather/payload?bytes=4000' },
  D: { variant: 'full', path: `/tools${SSE_PATH}` },
  E: { variant: null, path: '/envoy.service.auth.v3.Authorization/Check' },
  // MCP tools/call and tools/list against the SDK-built server (bench/mcp.ts).
  M: { variant: 'full', path: '/tools/docs/', mcpBody: 'call' },
  'M-list': { variant: 'full', path: '/tools/docs/', mcpBody: 'list' },
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { scenario: { type: 'string', default: 'C' }, seconds: { type: 'string', default: '10' }, top: { type: 'string', default: '10' } },
    strict: false,
  });
  const id = String(values.scenario);
  const sc = SCENARIOS[id];
  if (!sc) throw new Error(`--scenario must be one of ${Object.keys(SCENARIOS).join(', ')}`);
  const seconds = Number(values.seconds);
  const top = Number(values.top);

  const dir = mkdtempSync(join(tmpdir(), 'portcullis-profile-'));
  const profDir = join(dir, 'prof');
  let stack: BenchStack | null = null;
  let mcp: McpBench | null = null;
  let cleaning: Promise<void> | null = null;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      await stack?.stop().catch(() => undefined);
      await mcp?.close().catch(() => undefined);
      await terminateAll();
      rmSync(dir, { recursive: true, force: true });
    })());
  const onSignal = (): void => {
    interrupted = true;
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', killAllNow);

  try {
    mcp = sc.mcpBody ? await startMcpBench(join(dir, 'mcp')) : null;
    stack = await startBenchStack({
      dir,
      variants: sc.variant ? [sc.variant] : [],
      portcullisNodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`],
      // One process: its profile is the whole gateway's work.
      workers: 1,
      ...(mcp ? { mcp: mcp.upstream } : {}),
    });
    const s = stack;
    let spec: LoadSpec;
    if (mcp) {
      const target = mcp.scenarios.find((m) => m.id === id)!.target(s);
      spec = { url: target.url, clients: 16, streams: 1, h1: true, durationS: seconds, warmupS: 1, headers: target.headers, bodyFile: target.bodyFile };
    } else if (sc.variant) {
      spec = { url: `${s.envoys.get(sc.variant)!.url}${sc.path}`, clients: 32, streams: 1, h1: true, durationS: seconds, warmupS: 1, headers: { authorization: `Bearer ${s.token}` } };
    } else {
      const body = join(dir, 'check.bin');
      writeFileSync(body, grpcFrame(encodeCheckRequest(weatherCheckRequest(s.token))));
      spec = {
        url: `http://127.0.0.1:${s.portcullis.grpcPort}${sc.path}`,
        clients: 4,
        streams: 16,
        h1: false,
        durationS: seconds,
        warmupS: 1,
        headers: { 'content-type': 'application/grpc', te: 'trailers' },
        bodyFile: body,
      };
    }
    console.log(`profile: scenario ${id}, ${seconds} s at saturation, portcullis under --cpu-prof ...`);
    const load = await h2load(spec);
    console.log(`profile: ${load.rps.toFixed(0)} req/s (profiler overhead included), ${load.statusOther + load.failed + load.errored} errors`);
    // Envoys first: portcullis drains nothing new, then exits and V8 writes the profile.
    await Promise.all([...s.envoys.values()].map((e) => e.child.kill('SIGTERM')));
    await stopPortcullisGracefully(s);

    const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error(`portcullis exited without writing a CPU profile in ${profDir}`);
    const profile = JSON.parse(readFileSync(join(profDir, file), 'utf8')) as CpuProfile;
    const { busyMs, idleMs, functions, files } = selfTimes(profile);

    const outDir = repoPath('bench', 'results');
    mkdirSync(outDir, { recursive: true });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const kept = join(outDir, `profile-${id}-${stamp}.cpuprofile`);
    copyFileSync(join(profDir, file), kept);
    writeFileSync(join(outDir, `profile-${id}-${stamp}.json`), `${JSON.stringify({ scenario: id, seconds, rps: load.rps, busyMs, idleMs, top: functions.slice(0, 50), files: files.slice(0, 30) }, null, 2)}\n`);

    console.log(`\nportcullis busy ${(busyMs / 1000).toFixed(1)} s, idle ${(idleMs / 1000).toFixed(1)} s; top ${top} functions by self time (share of busy time):`);
    for (const f of functions.slice(0, top)) console.log(`  ${f.percent.toFixed(1).padStart(5)} %  ${f.ms.toFixed(0).padStart(6)} ms  ${f.name}`);
    console.log(`\nself time by file (share of busy time):`);
    for (const f of files.slice(0, top)) console.log(`  ${f.percent.toFixed(1).padStart(5)} %  ${f.ms.toFixed(0).padStart(6)} ms  ${f.name}`);
    console.log(`\nprofile: ${kept}`);
  } finally {
    await cleanup();
  }
}

/** Set on SIGINT/SIGTERM: the failures that follow are the interruption, not worth a report. */
let interrupted = false;

main().catch(async (err: unknown) => {
  await terminateAll();
  if (interrupted) return;
  process.stderr.write(`profile failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
