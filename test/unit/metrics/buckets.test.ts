import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { repoPath } from '../../helpers/index.js';
import { EXCHANGE_BUCKETS, LATENCY_BUCKETS } from '../../../src/metrics.js';

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
