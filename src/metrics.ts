import { readFileSync } from 'node:fs';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The one Prometheus registry served on the admin port. Modules define their own metrics
 * against it (`registers: [registry]`), next to the code that updates them.
 */
export const registry = new Registry();
// Standard names (process_*, nodejs_*), so stock dashboards and alerts for Node.js apply as-is.
collectDefaultMetrics({ register: registry });
// Gauges named like counters (Prometheus naming rules, `promtool check metrics`); each is the sum
// of the by-type gauge without the suffix (`sum(nodejs_active_handles)`).
for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);

/**
 * Buckets (seconds) of the gateway's latency histograms: fine below a millisecond, where a
 * decision normally lands, and past Envoy's ext_authz timeout (1 s) and ext_proc
 * message_timeout (2 s), so a call Envoy gave up on is counted in a bucket of its own, not
 * only in +Inf.
 */
export const LATENCY_BUCKETS: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8];

/**
 * Buckets (seconds) of whole exchanges, which include the tool's own time: up to the longest
 * route timeout of envoy.yaml (300 s); longer event streams land in +Inf.
 */
export const EXCHANGE_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300];

/** The package version, read once (package.json sits one level above src/ and dist/). */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** What `portcullis_build_info` says: the package version, the source revision and Node.js. */
export const BUILD = {
  version: packageVersion(),
  // Set by the image build (e.g. the git commit); "unknown" when run from a checkout.
  revision: /^[\w.-]{1,64}$/.test(process.env.PORTCULLIS_REVISION ?? '') ? (process.env.PORTCULLIS_REVISION as string) : 'unknown',
  node_version: process.version,
} as const;

const buildInfo = new Gauge({
  name: 'portcullis_build_info',
  help: 'Build serving now (value is always 1): package version, source revision, Node.js version',
  labelNames: ['version', 'revision', 'node_version'] as const,
  registers: [registry],
});
buildInfo.set(BUILD, 1);

/** Label values of every reload counter (config, policy, data and watched files): one set. */
export type ReloadResult = 'success' | 'failure';

const fileReloads = new Counter({
  name: 'portcullis_file_reloads_total',
  help: 'Watched files re-read after a change (secret, jwks, pins), by result: failure keeps the last good content',
  labelNames: ['file', 'result'] as const,
  registers: [registry],
});

/** Counts one re-read of a watched file; `file` is the kind of file (bounded), never its path. */
export function countFileReload(file: 'secret' | 'jwks' | 'pins', result: ReloadResult): void {
  fileReloads.inc({ file, result });
}

/**
 * Label values from a source that is trusted but not a closed set (rule names a policy returns):
 * the first `max` well-formed values are kept as they are, anything else is `_other`, so a
 * policy that echoes its input into `rule` cannot grow the series without bound.
 */
export class BoundedLabel {
  private readonly seen = new Set<string>();

  constructor(private readonly max: number) {}

  /** The label value to use for `value`. */
  of(value: string): string {
    if (this.seen.has(value)) return value;
    if (this.seen.size >= this.max || !/^[\w.:/-]{1,100}$/.test(value)) return '_other';
    this.seen.add(value);
    return value;
  }
}
