import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { repoPath } from '../../helpers/index.js';
import { EXCHANGE_BUCKETS, LATENCY_BUCKETS, registry } from '../../../src/metrics.js';
import { observeCheck } from '../../../src/authz/metrics.js';
import { observeExchange } from '../../../src/extproc/metrics.js';

type Json = Record<string, any>;

/** Every value of `key` anywhere under `node`. */
function find(node: unknown, key: string, out: unknown[] = []): unknown[] {
  if (Array.isArray(node)) for (const n of node) find(n, key, out);
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node as Json)) {
      if (k === key) out.push(v);
      find(v, key, out);
    }
  }
  return out;
}

function seconds(d: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(d);
  if (!m) throw new Error(`not a duration: ${d}`);
  return Number(m[1]) / (m[2] === 'ms' ? 1000 : 1);
}

describe('latency buckets and Envoy timeouts', () => {
  const envoy = parse(readFileSync(repoPath('envoy', 'envoy.yaml'), 'utf8')) as Json;
  const filters = find(envoy, 'http_filters').flat() as Json[];
  const authz = filters.filter((f) => f.name === 'envoy.filters.http.ext_authz').map((f) => seconds(f.typed_config.grpc_service.timeout as string));
  const extproc = filters.filter((f) => f.name === 'envoy.filters.http.ext_proc').map((f) => seconds(f.typed_config.message_timeout as string));

  it('reach past the ext_authz timeout and the ext_proc message_timeout, with a bound at each', () => {
    expect(authz.length).toBeGreaterThan(0);
    expect(extproc.length).toBeGreaterThan(0);
    for (const t of [...authz, ...extproc]) {
      // A call at the timeout lands in its own bucket, one that ran well past it in the next.
      expect(LATENCY_BUCKETS).toContain(t);
      expect(LATENCY_BUCKETS.some((b) => b >= 2 * t)).toBe(true);
    }
    expect([...LATENCY_BUCKETS].sort((a, b) => a - b)).toEqual(LATENCY_BUCKETS);
    expect(LATENCY_BUCKETS[0]).toBeLessThanOrEqual(0.0001);
  });

  it('exchange buckets reach the longest finite route timeout', () => {
    const routeTimeouts = find(envoy, 'route')
      .map((r) => (r as Json).timeout)
      .filter((t): t is string => typeof t === 'string')
      .map(seconds)
      .filter((t) => t > 0);
    expect(routeTimeouts.length).toBeGreaterThan(0);
    expect(EXCHANGE_BUCKETS.at(-1)).toBeGreaterThanOrEqual(Math.max(...routeTimeouts));
  });
});

describe('a call Envoy timed out is visible in the histograms', () => {
  async function buckets(name: string, labels: Record<string, string>): Promise<Map<string, number>> {
    const m = (await registry.getMetricsAsJSON()).find((f) => f.name === name);
    const out = new Map<string, number>();
    for (const v of (m?.values ?? []) as { value: number; labels: Record<string, string | number>; metricName?: string }[]) {
      if (v.metricName !== `${name}_bucket`) continue;
      if (Object.entries(labels).every(([k, x]) => v.labels[k] === x)) out.set(String(v.labels.le), v.value);
    }
    return out;
  }

  it('a 1.5 s Check (past the 1 s ext_authz timeout) counts above le=1 and within le=2', async () => {
    observeCheck(process.hrtime.bigint() - 1_500_000_000n, 'slow-tool', 'deny');
    const b = await buckets('portcullis_authz_check_duration_seconds', { tool: 'slow-tool', outcome: 'deny' });
    expect(b.get('1')).toBe(0);
    expect(b.get('2')).toBe(1);
    expect(b.get('+Inf')).toBe(1);
  });

  it('a 45 s exchange counts within le=60, not only in +Inf', async () => {
    observeExchange('slow-tool', 'none', 45);
    const b = await buckets('portcullis_extproc_exchange_duration_seconds', { tool: 'slow-tool', code: 'none' });
    expect(b.get('30')).toBe(0);
    expect(b.get('60')).toBe(1);
  });
});
