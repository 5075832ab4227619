/**
 * Added latency of the ext_proc response phase on a 4 KB JSON body, measured end to end through
 * Envoy: the same request against two otherwise identical stacks, one with response DLP on the
 * tool (buffered body round trip + field filter + scan) and one with `response.dlp: false` (the
 * response body is never sent to portcullis). Requests are sequential and interleaved A/B so
 * both sides see the same machine noise. Also reports portcullis' own time in the response phase
 * (`latency_ms.response_inspect` of the audit records).
 *
 *   npx vite-node bench/response-phase.ts [--requests 200] [--warmup 50] [--bytes 4096]
 *
 * Needs `npm run build`, `bash scripts/build-policy.sh` and the pinned tools (like the e2e tests).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { startStack, type Stack } from '../test/helpers/index.js';
import { mintToken } from '../src/identity/mint.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '200' },
    warmup: { type: 'string', default: '50' },
    bytes: { type: 'string', default: '4096' },
  },
  strict: true,
});
const REQUESTS = Number(values.requests);
const WARMUP = Number(values.warmup);
const BYTES = Number(values.bytes);
const PATH = '/tools/weather/report';

/** A JSON document of exactly `bytes` bytes that looks like a tool answer (text, numbers, ids), no secrets. */
function document(bytes: number): string {
  const days: unknown[] = [];
  const doc: Record<string, unknown> = { city: 'Berlin', source: 'sample-weather', generated_at: '2026-01-01T00:00:00Z', days, comment: '' };
  for (let i = 0; ; i++) {
    const day = {
      day: i,
      summary: ['sunny spells and light wind', 'overcast with showers later', 'heavy rain in the afternoon'][i % 3],
      high_c: 10 + (i % 9),
      low_c: 2 + (i % 5),
      station: `DE-BER-${String(100 + i)}`,
      note: 'Forecast model run 12Z; values rounded to the nearest degree.',
    };
    days.push(day);
    if (JSON.stringify(doc).length > bytes) {
      days.pop();
      break;
    }
  }
  doc.comment = 'Values are forecasts. '.repeat(20).slice(0, Math.max(0, bytes - JSON.stringify(doc).length));
  return JSON.stringify(doc);
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

function summary(samples: readonly number[]): { p50: number; p90: number; p99: number; mean: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

const fmt = (v: number): string => v.toFixed(3).padStart(8);

async function once(stack: Stack, token: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${stack.envoyUrl}${PATH}`, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  const ms = performance.now() - t0;
  if (res.status !== 200 || text.length < BYTES * 0.9) throw new Error(`unexpected answer ${res.status} (${text.length} bytes): ${text.slice(0, 200)}`);
  return ms;
}

function responseInspectMs(stack: Stack, skip: number): number[] {
  return readFileSync(join(dirname(stack.configPath), 'audit.log'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .slice(skip)
    .map((l) => (JSON.parse(l) as { latency_ms: { response_inspect: number | null } }).latency_ms.response_inspect ?? 0);
}

async function main(): Promise<void> {
  const body = document(BYTES);
  /** Both stacks: the demo rate limit (50/s) would throttle a sequential benchmark. */
  const edit = (responseDlp: boolean) => (cfg: Record<string, unknown>): void => {
    const tools = cfg.tools as { name: string; rate_limit?: unknown; response?: Record<string, unknown> }[];
    const weather = tools.find((t) => t.name === 'weather');
    if (!weather) throw new Error('demo config has no weather tool');
    weather.rate_limit = { rps: 1_000_000, burst: 1_000_000, key: 'agent' };
    weather.response = { ...weather.response, dlp: responseDlp };
    // One process, as the figures this compares with were measured.
    (cfg.server as Record<string, unknown>).workers = 1;
  };
  const withDlp = await startStack({ editConfig: edit(true) });
  const withoutDlp = await startStack({ editConfig: edit(false) });
  try {
    const stacks = [withDlp, withoutDlp] as const;
    const tokens: string[] = [];
    for (const s of stacks) {
      s.tool.handle('/weather/report', (_req, res) => res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body));
      tokens.push(await mintToken({ issuer: 'https://issuer.demo.portcullis', audience: 'portcullis', agent: 'helpdesk', user: 'bench', tenant: 'acme', roles: ['support'], ttlS: 3600, privateJwkPath: s.prepared.privateJwkPath }));
    }
    for (let i = 0; i < WARMUP; i++) for (let k = 0; k < 2; k++) await once(stacks[k]!, tokens[k]!);
    await new Promise((r) => setTimeout(r, 200));
    const auditSkip = stacks.map((s) => readFileSync(join(dirname(s.configPath), 'audit.log'), 'utf8').split('\n').filter(Boolean).length);
    const samples: number[][] = [[], []];
    for (let i = 0; i < REQUESTS; i++) {
      // Alternate which side goes first so neither always follows the other.
      const order = i % 2 === 0 ? [0, 1] : [1, 0];
      for (const k of order) samples[k]!.push(await once(stacks[k]!, tokens[k]!));
    }
    await new Promise((r) => setTimeout(r, 300));
    const a = summary(samples[0]!);
    const b = summary(samples[1]!);
    const inspect = summary(responseInspectMs(withDlp, auditSkip[0]!));
    process.stdout.write(
      [
        `response phase on a ${Buffer.byteLength(body)}-byte JSON body, ${REQUESTS} sequential requests per side (after ${WARMUP} warm-up), client-side ms through Envoy`,
        `                          p50      p90      p99     mean`,
        `response DLP on      ${fmt(a.p50)} ${fmt(a.p90)} ${fmt(a.p99)} ${fmt(a.mean)}`,
        `response DLP off     ${fmt(b.p50)} ${fmt(b.p90)} ${fmt(b.p99)} ${fmt(b.mean)}`,
        `added                ${fmt(a.p50 - b.p50)} ${fmt(a.p90 - b.p90)} ${fmt(a.p99 - b.p99)} ${fmt(a.mean - b.mean)}`,
        `portcullis response_inspect (audit, DLP on): p50 ${inspect.p50.toFixed(3)} ms, p99 ${inspect.p99.toFixed(3)} ms`,
        '',
      ].join('\n'),
    );
  } finally {
    await Promise.all([withDlp.stop(), withoutDlp.stop()]);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
