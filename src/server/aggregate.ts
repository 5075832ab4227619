import { AggregatorRegistry } from 'prom-client';
import type { MetricFamily } from './exposition.js';

/**
 * How a primary turns its workers' metrics (and its own) into one `/metrics`:
 *  - the gateway's own metrics are summed over workers (counters, histograms, bytes held), but
 *    an `*_info` gauge says what is serving (value 1 per label set): summing would count
 *    workers, so the highest value is kept;
 *  - the Node.js process metrics (`process_*`, `nodejs_*`) describe one process each: a sum of
 *    event-loop lags or an average of heap sizes means nothing, so each process keeps its own
 *    series, labelled `worker="<slot>"` (the primary: `worker="primary"`).
 */

/** prom-client's default metrics are the ones with these prefixes. */
const PROCESS_METRIC = /^(process|nodejs)_/;

/** The `worker` label value of the primary's own process metrics. */
export const PRIMARY_WORKER_LABEL = 'primary';

/** One process' metrics and its `worker` label value. */
export interface ProcessMetrics {
  readonly worker: string;
  readonly families: readonly MetricFamily[];
}

/** A process' families, ready to aggregate: process metrics labelled, `*_info` kept at their max. */
function prepare(p: ProcessMetrics): MetricFamily[] {
  return p.families.map((m) => {
    if (PROCESS_METRIC.test(m.name)) {
      // Distinct label sets per process: the aggregator never merges two processes' values.
      return { ...m, aggregator: 'sum', values: m.values.map((v) => ({ ...v, labels: { ...v.labels, worker: p.worker } })) };
    }
    return m.name.endsWith('_info') ? { ...m, aggregator: 'max' } : m;
  });
}

/** The families of every process as one set, as the primary serves them. */
export async function aggregate(processes: readonly ProcessMetrics[]): Promise<MetricFamily[]> {
  const input = processes.map(prepare) as unknown as Parameters<typeof AggregatorRegistry.aggregate>[0];
  const merged = AggregatorRegistry.aggregate(input);
  return (await merged.getMetricsAsJSON()) as unknown as MetricFamily[];
}
