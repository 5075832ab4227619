import { readFileSync, rmSync } from 'node:fs';
import { run } from './procs.js';

/** One h2load run. */
export interface LoadSpec {
  url: string;
  /** Concurrent connections. */
  clients: number;
  /** Concurrent streams per connection (HTTP/2 only; 1 for HTTP/1.1). */
  streams: number;
  durationS: number;
  warmupS: number;
  /** HTTP/1.1 instead of HTTP/2 (prior knowledge). */
  h1: boolean;
  /** Requests per second per client; omitted: as fast as possible (saturation). */
  rpsPerClient?: number;
  headers?: Readonly<Record<string, string>>;
  /** File whose content is sent as the request body (POST). */
  bodyFile?: string;
  /** Per-request log (start, status, duration) used for percentiles; deleted after reading. */
  logFile?: string;
}

/** What one run measured. */
export interface LoadResult {
  rps: number;
  done: number;
  succeeded: number;
  failed: number;
  errored: number;
  status2xx: number;
  /** 3xx + 4xx + 5xx responses. */
  statusOther: number;
  /** Non-2xx responses by class, e.g. `{ "5xx": 3 }`. */
  statusByClass: Record<string, number>;
  /** Latency percentiles in ms from the per-request log; null without a log file. */
  p50Ms: number | null;
  p90Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
}

function num(re: RegExp, text: string, what: string): number {
  const m = re.exec(text);
  if (!m?.[1]) throw new Error(`h2load output has no ${what}:\n${text}`);
  return Number(m[1]);
}

/** Nearest-rank percentile of a sorted array. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/**
 * Reads h2load's per-request log. Only requests that started after the warm-up are kept: h2load
 * logs warm-up requests too, and they would mix connection set-up into the percentiles.
 */
function latencies(logFile: string, measureFromUs: number): number[] {
  const out: number[] = [];
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    const [start, status, dur] = line.split('\t');
    if (!start || !status || !dur) continue;
    if (Number(start) < measureFromUs || Number(status) < 0) continue;
    out.push(Number(dur) / 1000);
  }
  return out.sort((a, b) => a - b);
}

/** Runs h2load once; throws with its output when it fails to run. */
export async function h2load(spec: LoadSpec): Promise<LoadResult> {
  const args = [
    '-c', String(spec.clients),
    '-m', String(spec.streams),
    '-t', '1',
    '-D', String(spec.durationS),
    `--warm-up-time=${spec.warmupS}`,
  ];
  if (spec.h1) args.push('--h1');
  if (spec.rpsPerClient !== undefined) args.push(`--rps=${spec.rpsPerClient}`);
  for (const [k, v] of Object.entries(spec.headers ?? {})) args.push('-H', `${k}: ${v}`);
  if (spec.bodyFile) args.push('-d', spec.bodyFile);
  if (spec.logFile) args.push(`--log-file=${spec.logFile}`);
  args.push(spec.url);

  const startedUs = Date.now() * 1000;
  const res = await run('h2load', args, { timeoutMs: (spec.durationS + spec.warmupS + 30) * 1000 });
  const text = `${res.stdout}\n${res.stderr}`;
  if (res.code !== 0) throw new Error(`h2load exited with ${res.code}: ${args.join(' ')}\n${text}`);

  const requests = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(text);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(text);
  if (!requests || !codes) throw new Error(`unexpected h2load output:\n${text}`);
  const result: LoadResult = {
    rps: num(/finished in [\d.]+\w+, ([\d.]+) req\/s/, text, 'req/s'),
    done: Number(requests[3]),
    succeeded: Number(requests[4]),
    failed: Number(requests[5]),
    errored: Number(requests[6]),
    status2xx: Number(codes[1]),
    statusOther: Number(codes[2]) + Number(codes[3]) + Number(codes[4]),
    statusByClass: Object.fromEntries(
      (['3xx', '4xx', '5xx'] as const).map((c, i) => [c, Number(codes[i + 2])] as const).filter(([, n]) => n > 0),
    ),
    p50Ms: null,
    p90Ms: null,
    p99Ms: null,
    maxMs: null,
  };
  if (spec.logFile) {
    const lat = latencies(spec.logFile, startedUs + spec.warmupS * 1_000_000);
    rmSync(spec.logFile, { force: true });
    if (lat.length > 0) {
      result.p50Ms = percentile(lat, 50);
      result.p90Ms = percentile(lat, 90);
      result.p99Ms = percentile(lat, 99);
      result.maxMs = lat[lat.length - 1]!;
    }
  }
  return result;
}
