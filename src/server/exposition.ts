/**
 * The text of `/metrics` in the format the scraper asks for: the Prometheus text format
 * (0.0.4) by default, OpenMetrics 1.0 when the Accept header prefers it. Rendered here from
 * prom-client's JSON form, which a single process and a primary aggregating its workers both
 * have: prom-client's own OpenMetrics output renames counters in its registry as it goes, and
 * would leave the next Prometheus-format scrape without the `_total` suffix.
 */

/** One sample of a metric family (prom-client's JSON form). */
export interface Sample {
  readonly value: number;
  readonly labels: Readonly<Record<string, string | number | undefined>>;
  /** Set for histogram and summary series (`_bucket`, `_sum`, `_count`). */
  readonly metricName?: string;
}

/** One metric family (prom-client's `getMetricsAsJSON()` item). */
export interface MetricFamily {
  readonly name: string;
  readonly help: string;
  /** `counter`, `gauge`, `histogram` or `summary` (a string at run time). */
  readonly type: unknown;
  readonly aggregator?: string;
  readonly values: readonly Sample[];
}

/** The two formats `/metrics` speaks. */
export type ExpositionFormat = 'prometheus' | 'openmetrics';

/** Content types of the two formats. */
export const CONTENT_TYPES: Readonly<Record<ExpositionFormat, string>> = {
  prometheus: 'text/plain; version=0.0.4; charset=utf-8',
  openmetrics: 'application/openmetrics-text; version=1.0.0; charset=utf-8',
};

/**
 * The format an Accept header asks for: OpenMetrics when `application/openmetrics-text` has a
 * higher (or equal, being listed first) quality than every text/plain or wildcard entry, as
 * Prometheus itself sends it; the Prometheus text format otherwise (no header, `*\/*`, text/plain,
 * or an OpenMetrics version other than 1.x).
 */
export function negotiate(accept: string | undefined): ExpositionFormat {
  if (!accept) return 'prometheus';
  let om = -1;
  let text = -1;
  for (const part of accept.split(',')) {
    const [type = '', ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    let q = 1;
    let version: string | null = null;
    for (const p of params) {
      const [k, v = ''] = p.split('=').map((s) => s.trim());
      if (k === 'q') q = Number.isFinite(Number(v)) ? Number(v) : 0;
      if (k === 'version') version = v;
    }
    if (q <= 0) continue;
    if (type === 'application/openmetrics-text') {
      if (version === null || /^1(\.|$)/.test(version)) om = Math.max(om, q);
    } else if (type === 'text/plain' || type === '*/*' || type === 'text/*') {
      text = Math.max(text, q);
    }
  }
  return om >= 0 && om >= text ? 'openmetrics' : 'prometheus';
}

function value(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labelText(labels: Sample['labels']): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(labels)) {
    if (v === undefined) continue;
    parts.push(`${k}="${escapeLabel(typeof v === 'number' ? value(v) : v)}"`);
  }
  return parts.length > 0 ? `{${parts.join(',')}}` : '';
}

/** One family in the Prometheus text format. */
function prometheusFamily(m: MetricFamily): string {
  const lines = [`# HELP ${m.name} ${m.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${m.name} ${String(m.type)}`];
  for (const s of m.values) lines.push(`${s.metricName ?? m.name}${labelText(s.labels)} ${value(s.value)}`);
  return lines.join('\n');
}

/** One family in OpenMetrics: a counter's family name has no `_total`, its samples do. */
function openMetricsFamily(m: MetricFamily): string {
  const counter = m.type === 'counter';
  const family = counter ? m.name.replace(/_total$/, '') : m.name;
  const lines = [`# TYPE ${family} ${String(m.type)}`, `# HELP ${family} ${escapeLabel(m.help)}`];
  for (const s of m.values) {
    const name = counter ? `${family}_total` : (s.metricName ?? m.name);
    lines.push(`${name}${labelText(s.labels)} ${value(s.value)}`);
  }
  return lines.join('\n');
}

/** Renders metric families in `format`, ready to serve. */
export function render(families: readonly MetricFamily[], format: ExpositionFormat): string {
  if (format === 'openmetrics') return `${families.map(openMetricsFamily).join('\n')}\n# EOF\n`;
  return `${families.map(prometheusFamily).join('\n\n')}\n`;
}
