import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';

/**
 * Time to first SSE event: sequential requests on one keep-alive connection, each timed from the
 * moment it is sent to the moment the client holds the first complete event (`\n\n`). h2load
 * only sees whole responses, so it cannot tell a streamed response from a buffered one.
 */

/** What one probe measured. */
export interface FirstEventResult {
  /** Requests timed (warm-up excluded). */
  requests: number;
  /** Requests that failed, answered non-200 or did not carry the expected number of events. */
  errors: number;
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  /** Time to the end of the response, p50 (the gap the tool waits shows here). */
  completeP50Ms: number | null;
}

/** How {@link firstEventProbe} runs. */
export interface FirstEventSpec {
  url: string;
  headers: Readonly<Record<string, string>>;
  /** Timed requests. */
  requests: number;
  /** Untimed requests first (connection set-up, caches). */
  warmup: number;
  /** Events each response must carry to count. */
  events: number;
  timeoutMs?: number;
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

function once(spec: FirstEventSpec, agent: Agent): Promise<{ firstMs: number; completeMs: number } | null> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let firstMs: number | null = null;
    let text = '';
    const req = request(spec.url, { agent, headers: spec.headers, timeout: spec.timeoutMs ?? 10_000 }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        if (firstMs === null && text.includes('\n\n')) firstMs = performance.now() - t0;
      });
      res.on('end', () => {
        const events = text.split('\n\n').filter((e) => e.startsWith('data: ')).length;
        resolve(res.statusCode === 200 && firstMs !== null && events === spec.events ? { firstMs, completeMs: performance.now() - t0 } : null);
      });
      res.on('error', () => resolve(null));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(null));
    req.end();
  });
}

/** Runs the probe; never throws for a failed request (it counts in `errors`). */
export async function firstEventProbe(spec: FirstEventSpec): Promise<FirstEventResult> {
  // One socket: every request after the first reuses the connection, like an agent's client.
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const first: number[] = [];
  const complete: number[] = [];
  let errors = 0;
  try {
    for (let i = 0; i < spec.warmup + spec.requests; i++) {
      const r = await once(spec, agent);
      if (i < spec.warmup) continue;
      if (r === null) errors++;
      else {
        first.push(r.firstMs);
        complete.push(r.completeMs);
      }
    }
  } finally {
    agent.destroy();
  }
  first.sort((a, b) => a - b);
  complete.sort((a, b) => a - b);
  return {
    requests: spec.requests,
    errors,
    p50Ms: percentile(first, 0.5),
    p99Ms: percentile(first, 0.99),
    maxMs: first.length > 0 ? first[first.length - 1]! : null,
    completeP50Ms: percentile(complete, 0.5),
  };
}
