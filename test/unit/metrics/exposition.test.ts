import { describe, expect, it } from 'vitest';
import { Counter, Histogram, Registry } from 'prom-client';
import { aggregate, PRIMARY_WORKER_LABEL } from '../../../src/server/aggregate.js';
import { CONTENT_TYPES, negotiate, render, type MetricFamily } from '../../../src/server/exposition.js';
import { BoundedLabel, BUILD, registry } from '../../../src/metrics.js';
import { recordDecision } from '../../../src/authz/metrics.js';

async function families(r: Registry): Promise<MetricFamily[]> {
  return (await r.getMetricsAsJSON()) as unknown as MetricFamily[];
}

function sampleLines(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

describe('Accept negotiation', () => {
  it('answers OpenMetrics only when the scraper prefers it', () => {
    // What Prometheus sends by default.
    expect(negotiate('application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1')).toBe('openmetrics');
    expect(negotiate('APPLICATION/OpenMetrics-Text; version=1.0.0')).toBe('openmetrics');
    expect(negotiate('application/openmetrics-text')).toBe('openmetrics');
    expect(negotiate(undefined)).toBe('prometheus');
    expect(negotiate('')).toBe('prometheus');
    expect(negotiate('*/*')).toBe('prometheus');
    expect(negotiate('text/plain;version=0.0.4')).toBe('prometheus');
    // Preferred less than text, refused, or a version this renderer does not speak.
    expect(negotiate('text/plain;q=1,application/openmetrics-text;q=0.5')).toBe('prometheus');
    expect(negotiate('application/openmetrics-text;q=0')).toBe('prometheus');
    expect(negotiate('application/openmetrics-text;version=2.0.0')).toBe('prometheus');
    expect(CONTENT_TYPES.openmetrics).toBe(Registry.OPENMETRICS_CONTENT_TYPE);
    expect(CONTENT_TYPES.prometheus).toBe(Registry.PROMETHEUS_CONTENT_TYPE);
  });
});

describe('rendering', () => {
  const r = new Registry();
  const c = new Counter({ name: 't_calls_total', help: 'Calls "quoted" \\ and\nnewline', labelNames: ['tool'] as const, registers: [r] });
  const h = new Histogram({ name: 't_latency_seconds', help: 'Latency', labelNames: ['tool'] as const, buckets: [0.1, 1], registers: [r] });
  c.inc({ tool: 'a"b\\c\nd' }, 2);
  h.observe({ tool: 'x' }, 0.5);

  it('the Prometheus text format matches prom-client byte for byte', async () => {
    expect(render(await families(r), 'prometheus')).toBe(await r.metrics());
  });

  it('OpenMetrics: counter families without _total, samples with it, histograms whole, # EOF last', async () => {
    const text = render(await families(r), 'openmetrics');
    expect(text).toContain('# TYPE t_calls counter\n');
    expect(text).toContain('# HELP t_calls Calls \\"quoted\\" \\\\ and\\nnewline\n');
    expect(sampleLines(text, 't_calls_total')).toEqual(['t_calls_total{tool="a\\"b\\\\c\\nd"} 2']);
    expect(text).toContain('# TYPE t_latency_seconds histogram\n');
    expect(sampleLines(text, 't_latency_seconds_bucket')).toEqual(['t_latency_seconds_bucket{le="0.1",tool="x"} 0', 't_latency_seconds_bucket{le="1",tool="x"} 1', 't_latency_seconds_bucket{le="+Inf",tool="x"} 1']);
    expect(sampleLines(text, 't_latency_seconds_count')).toEqual(['t_latency_seconds_count{tool="x"} 1']);
    expect(text.endsWith('\n# EOF\n')).toBe(true);
    expect(text.indexOf('# EOF')).toBe(text.length - '# EOF\n'.length);
  });

  it('an OpenMetrics scrape leaves the next Prometheus scrape unchanged (no renaming in the registry)', async () => {
    const before = render(await families(r), 'prometheus');
    render(await families(r), 'openmetrics');
    const after = render(await families(r), 'prometheus');
    expect(after).toBe(before);
    expect(sampleLines(after, 't_calls_total')).toHaveLength(1);
  });
});

describe('the gateway registry', () => {
  it('has the standard Node.js and process metric names, no prefixed copies', async () => {
    const names = (await families(registry)).map((m) => m.name);
    for (const n of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes', 'nodejs_gc_duration_seconds']) expect(names).toContain(n);
    expect(names.filter((n) => n.startsWith('portcullis_process_'))).toEqual([]);
  });

  it('portcullis_build_info is 1 with the package and Node.js versions', async () => {
    const text = render(await families(registry), 'prometheus');
    expect(sampleLines(text, 'portcullis_build_info')).toEqual([`portcullis_build_info{version="${BUILD.version}",revision="${BUILD.revision}",node_version="${process.version}"} 1`]);
    expect(BUILD.version).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('aggregation over workers', () => {
  /** A registry shaped like one process of the gateway. */
  async function processLike(calls: number, lag: number, rss: number): Promise<MetricFamily[]> {
    const r = new Registry();
    new Counter({ name: 'portcullis_calls_total', help: 'h', registers: [r] }).inc(calls);
    const fam = await families(r);
    return [
      ...fam,
      { name: 'nodejs_eventloop_lag_seconds', help: 'lag', type: 'gauge', aggregator: 'average', values: [{ value: lag, labels: {} }] },
      { name: 'process_resident_memory_bytes', help: 'rss', type: 'gauge', aggregator: 'sum', values: [{ value: rss, labels: {} }] },
      { name: 'process_start_time_seconds', help: 'start', type: 'gauge', aggregator: 'omit', values: [{ value: 1000 + calls, labels: {} }] },
      { name: 'portcullis_build_info', help: 'b', type: 'gauge', aggregator: 'sum', values: [{ value: 1, labels: { version: '1' } }] },
    ];
  }

  it('sums the gateway counters, keeps each process its own process metrics (labelled by worker), info at 1', async () => {
    const merged = await aggregate([
      { worker: '0', families: await processLike(3, 0.5, 100) },
      { worker: '1', families: await processLike(4, 0.01, 200) },
      { worker: PRIMARY_WORKER_LABEL, families: await processLike(0, 0.001, 50) },
    ]);
    const text = render(merged, 'prometheus');
    expect(sampleLines(text, 'portcullis_calls_total')).toEqual(['portcullis_calls_total 7']);
    // One lagging worker stays visible: no average hides it.
    expect(sampleLines(text, 'nodejs_eventloop_lag_seconds').sort()).toEqual(['nodejs_eventloop_lag_seconds{worker="0"} 0.5', 'nodejs_eventloop_lag_seconds{worker="1"} 0.01', 'nodejs_eventloop_lag_seconds{worker="primary"} 0.001']);
    expect(sampleLines(text, 'process_resident_memory_bytes')).toHaveLength(3);
    // prom-client omits start times when aggregating; per process they stay meaningful.
    expect(sampleLines(text, 'process_start_time_seconds')).toHaveLength(3);
    expect(sampleLines(text, 'portcullis_build_info')).toEqual(['portcullis_build_info{version="1"} 1']);
  });
});

describe('bounded label values', () => {
  it('keeps the first well-formed values, maps the rest and anything odd to _other', () => {
    const l = new BoundedLabel(2);
    expect(l.of('policy.deny')).toBe('policy.deny');
    expect(l.of('x"}\nevil')).toBe('_other');
    expect(l.of('a'.repeat(101))).toBe('_other');
    expect(l.of('tool.unknown')).toBe('tool.unknown');
    expect(l.of('third.rule')).toBe('_other');
    // Values already kept stay themselves.
    expect(l.of('policy.deny')).toBe('policy.deny');
  });

  it('a policy echoing its input into rule cannot grow portcullis_authz_decisions_total without bound', async () => {
    for (let i = 0; i < 700; i++) recordDecision('deny', 'forbidden', 'bounded-tool', `echo.${i}`);
    const m = (await families(registry)).find((f) => f.name === 'portcullis_authz_decisions_total');
    const series = (m?.values ?? []).filter((v) => v.labels.tool === 'bounded-tool');
    expect(series.length).toBeLessThanOrEqual(501);
    expect(series.find((v) => v.labels.rule === '_other')?.value).toBeGreaterThanOrEqual(200);
  });
});
