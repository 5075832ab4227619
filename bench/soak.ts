/**
 * Bounded soak of the response side: many large responses at once through the real Envoy and
 * shipped config, while another agent keeps making ordinary calls. Shows that portcullis'
 * memory stays bounded by the response memory budget and that the other agent's calls never
 * fail; large responses are either delivered whole (and inspected) or refused retryably.
 *
 *   npx vite-node bench/soak.ts [--rounds 10] [--large 20] [--size-mb 10] [--budget-mb 128]
 *                               [--small 10]
 *
 * Each round starts `large` downloads of `size-mb` at once (half with a content-length, half
 * without), and while they are in flight another agent makes `small` concurrent ordinary calls.
 *
 * Prints the figures and exits non-zero when another agent's call failed, a large response
 * failed in any other way than a retryable refusal, or RSS grew by more than the bound
 * (3 x budget + 96 MiB: the held bytes, their decoded text and the redacted copy).
 */
import { parseArgs } from 'node:util';
import { request as httpRequest } from 'node:http';
import { startStack, type Stack } from '../test/helpers/index.js';
import { mintToken } from '../src/identity/mint.js';
import { rssBytes } from './lib/procstat.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '10' },
    large: { type: 'string', default: '20' },
    'size-mb': { type: 'string', default: '10' },
    'budget-mb': { type: 'string', default: '128' },
    small: { type: 'string', default: '10' },
  },
});
const rounds = Number(values.rounds);
const concurrency = Number(values.large);
const sizeBytes = Number(values['size-mb']) * 1024 * 1024;
const budgetBytes = Number(values['budget-mb']) * 1024 * 1024;
const smallCalls = Number(values.small);
for (const [k, v] of Object.entries({ rounds, concurrency, sizeBytes, budgetBytes, smallCalls })) {
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${k}: expected a positive number`);
}

const SECRET = 'AKIA2OGYBAH6TQWERTYU';
const MB = 1024 * 1024;

interface Outcome {
  status: number;
  bytes: number;
  ok: boolean;
  rule: string | null;
  error: string | null;
}

function get(stack: Stack, path: string, token: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = httpRequest(new URL(path, stack.envoyUrl), { headers: { authorization: `Bearer ${token}` }, agent: false, timeout: 60_000 }, (res) => {
      let bytes = 0;
      let head = '';
      let redacted = false;
      let leaked = false;
      let tail = '';
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (head.length < 512) head += c.toString('utf8', 0, Math.min(c.length, 512));
        const text = tail + c.toString('latin1');
        if (text.includes(SECRET)) leaked = true;
        if (text.includes('[REDACTED:aws.access_key_id]')) redacted = true;
        tail = text.slice(-64);
      });
      res.on('close', () => {
        let rule: string | null = null;
        try {
          rule = (JSON.parse(head) as { error?: { rule?: string } }).error?.rule ?? null;
        } catch {
          rule = null;
        }
        const status = res.statusCode ?? 0;
        const complete = res.complete;
        resolve({ status, bytes, rule, ok: complete && !leaked && (status !== 200 || redacted || path.includes('small')), error: complete ? (leaked ? 'secret delivered' : null) : 'incomplete' });
      });
    });
    req.on('error', (err) => resolve({ status: 0, bytes: 0, ok: false, rule: null, error: err.message }));
    req.end();
  });
}

async function main(): Promise<void> {
  const stack = await startStack({
    nodeArgs: process.env.SOAK_NODE_ARGS ? process.env.SOAK_NODE_ARGS.split(' ') : undefined,
    editConfig: (cfg) => {
      cfg.inspect = { ...(cfg.inspect as object), response_memory_budget_bytes: budgetBytes };
      // One process: the RSS, heap and event-loop figures read are the whole gateway's.
      (cfg.server as Record<string, unknown>).workers = 1;
      const tools = cfg.tools as { name: string; rate_limit?: unknown }[];
      // The soak is about memory, not the limiter.
      tools.find((t) => t.name === 'weather')!.rate_limit = { rps: 10_000, burst: 10_000, key: 'agent' };
    },
  });
  try {
    const mint = (user: string): Promise<string> =>
      mintToken({ issuer: 'https://issuer.demo.portcullis', audience: 'portcullis', agent: 'helpdesk', user, tenant: 'acme', roles: ['support'], ttlS: 3600, privateJwkPath: stack.prepared.privateJwkPath });
    const downloader = await mint('alice');
    const other = await mint('bob');
    const line = '{"row":"weather forecast, ordinary text of some length for the soak"}\n';
    const body = Buffer.from(line.repeat(Math.ceil(sizeBytes / line.length)).slice(0, sizeBytes - SECRET.length - 1) + SECRET + '\n');
    let n = 0;
    stack.tool.handle('/weather/soak-large', (_req, res) => {
      // Half announce their length, half do not (held chunk by chunk).
      const headers: Record<string, string | number> = { 'content-type': 'application/x-ndjson' };
      if (n++ % 2 === 0) headers['content-length'] = body.length;
      res.writeHead(200, headers);
      let off = 0;
      const more = (): void => {
        if (res.destroyed) return;
        if (off >= body.length) return void res.end();
        const next = body.subarray(off, off + MB);
        off += next.length;
        res.write(next, () => setTimeout(more, 5));
      };
      more();
    });
    stack.tool.handle('/weather/soak-small', (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));

    const pid = stack.portcullisPid()!;
    await get(stack, '/tools/weather/soak-small', other);
    const rssStart = rssBytes(pid) ?? 0;
    let rssPeak = rssStart;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssBytes(pid) ?? 0)), 50);
    // Where portcullis' memory is at its peaks: V8 heap, and buffers outside it.
    const parts = { heap_used: 0, external: 0 };
    const gauge = (text: string, name: string): number => Number(text.split('\n').find((l) => l.startsWith(`${name} `))?.split(' ').pop() ?? 0);
    const partSampler = setInterval(() => {
      void fetch(`${stack.adminUrl}/metrics`)
        .then((r) => r.text())
        .then((t) => {
          parts.heap_used = Math.max(parts.heap_used, gauge(t, 'nodejs_heap_size_used_bytes'));
          parts.external = Math.max(parts.external, gauge(t, 'nodejs_external_memory_bytes'));
        })
        .catch(() => undefined);
    }, 250);
    const large: Outcome[] = [];
    const small: Outcome[] = [];
    const t0 = performance.now();
    for (let r = 0; r < rounds; r++) {
      const downloads = Array.from({ length: concurrency }, () => get(stack, '/tools/weather/soak-large', downloader));
      await new Promise((res) => setTimeout(res, 300));
      small.push(...(await Promise.all(Array.from({ length: smallCalls }, () => get(stack, '/tools/weather/soak-small', other)))));
      large.push(...(await Promise.all(downloads)));
    }
    const durationS = Math.round((performance.now() - t0) / 100) / 10;
    const metrics = await (await fetch(`${stack.adminUrl}/metrics`)).text();
    const lag = (name: string): number => Number(metrics.split('\n').find((l) => l.startsWith(`nodejs_eventloop_lag_${name}_seconds `))?.split(' ').pop() ?? NaN);
    clearInterval(sampler);
    clearInterval(partSampler);
    const rssEnd = rssBytes(pid) ?? 0;

    const served = large.filter((o) => o.status === 200 && o.ok && o.bytes > 0);
    const refused = large.filter((o) => o.rule === 'inspect.memory_budget' || (o.status === 200 && o.error === 'incomplete' && o.bytes === 0));
    const badLarge = large.filter((o) => !served.includes(o) && !refused.includes(o));
    const badSmall = small.filter((o) => o.status !== 200 || !o.ok);
    const bound = 3 * budgetBytes + 96 * MB;
    const report = {
      rounds,
      duration_s: durationS,
      large: { concurrency, size_mb: sizeBytes / MB, total: large.length, served_inspected: served.length, refused_retryable: refused.length, other_failures: badLarge.length },
      other_agent: { total: small.length, failed: badSmall.length, statuses: [...new Set(small.map((o) => o.status))] },
      rss_mb: { start: +(rssStart / MB).toFixed(1), peak: +(rssPeak / MB).toFixed(1), end: +(rssEnd / MB).toFixed(1), growth: +((rssPeak - rssStart) / MB).toFixed(1), bound: bound / MB },
      budget_mb: budgetBytes / MB,
      peak_parts_mb: { heap_used: +(parts.heap_used / MB).toFixed(1), external: +(parts.external / MB).toFixed(1) },
      event_loop_lag_ms: { p50: +(lag('p50') * 1000).toFixed(1), p99: +(lag('p99') * 1000).toFixed(1), max: +(lag('max') * 1000).toFixed(1) },
    };
    console.log(JSON.stringify(report, null, 2));
    if (badLarge.length > 0) console.log('large failures (first 5):', badLarge.slice(0, 5));
    const failed = badSmall.length > 0 || badLarge.length > 0 || rssPeak - rssStart > bound || served.length === 0;
    if (failed) process.exitCode = 1;
  } finally {
    await stack.stop();
  }
}

await main();
