import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../helpers/index.js';
import { call, eventually, metricValue, token } from './authz-support.js';
import { dashboardExpressions, families, metricNames, parseOpenMetrics, promtool, ruleExpressions, unexposed } from '../unit/metrics/support.js';

/**
 * `/metrics` of a running gateway behind the real Envoy, after real traffic: clean for
 * `promtool check metrics`, the standard Node.js process metrics (per process under workers),
 * latency per tool, build info, one result label set on every reload counter, OpenMetrics on
 * request, and every metric the shipped dashboard and alert rules query actually served.
 */

type Json = Record<string, any>;

/** What Prometheus 2.x/3.x sends when it scrapes (OpenMetrics preferred). */
const PROMETHEUS_ACCEPT = 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';

async function scrape(stack: Stack, accept?: string): Promise<{ type: string; text: string }> {
  const r = await call(`${stack.adminUrl}/metrics`, accept ? { headers: { accept } } : {});
  expect(r.status).toBe(200);
  return { type: r.headers.get('content-type') ?? '', text: r.text };
}

/** Allowed, denied, DLP-redacted and unknown-tool calls, and a refused then a good reload. */
async function traffic(stack: Stack): Promise<void> {
  const jwt = await token(stack, { agent: 'reporter', user: 'bob', roles: ['viewer'] });
  const auth = { headers: { authorization: `Bearer ${jwt}` } };
  stack.tool.handle('/weather/leak', (_req, res) => {
    const body = JSON.stringify({ aws: 'AKIAIOSFODNN7EXAMPLF', ok: 'sunny' });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  });
  for (let i = 0; i < 3; i++) expect((await call(`${stack.envoyUrl}/tools/weather/forecast?city=Rome`, auth)).status).toBe(200);
  expect((await call(`${stack.envoyUrl}/tools/weather/leak`, auth)).status).toBe(200);
  expect((await call(`${stack.envoyUrl}/tools/weather/forecast?city=Rome`)).status).toBe(401);
  expect((await call(`${stack.envoyUrl}/tools/nope/x`, auth)).status).toBe(404);
  const original = readFileSync(stack.configPath, 'utf8');
  try {
    writeFileSync(stack.configPath, 'tools: [ this is: not valid');
    expect((await call(`${stack.adminUrl}/reload`, { method: 'POST' })).status).toBe(422);
  } finally {
    writeFileSync(stack.configPath, original);
  }
  expect((await call(`${stack.adminUrl}/reload`, { method: 'POST' })).status).toBe(200);
}

/** Sample lines of one metric (any labels). */
function samples(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

function labelsOf(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  const inner = /^[^{ ]+\{(.*)\} \S+$/.exec(line)?.[1] ?? '';
  for (const m of inner.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) out[m[1] as string] = m[2] as string;
  return out;
}

/** Checks every mode shares. */
function commonChecks(get: () => Stack, mode: string): void {
  it(`${mode}: promtool check metrics finds nothing to lint after traffic`, async () => {
    const { type, text } = await scrape(get());
    expect(type).toBe('text/plain; version=0.0.4; charset=utf-8');
    const r = promtool(['check', 'metrics'], { input: text });
    expect(r.out).toBe('');
    expect(r.code).toBe(0);
    // The check bites: a gauge named like a counter is reported.
    const bad = promtool(['check', 'metrics'], { input: `${text}# HELP x_total a\n# TYPE x_total gauge\nx_total 1\n` });
    expect(bad.code).not.toBe(0);
    expect(bad.out).toContain('x_total');
  });

  it(`${mode}: standard process and Node.js metric names, build info at 1`, async () => {
    const { text } = await scrape(get());
    const fam = families(text);
    for (const n of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'nodejs_eventloop_lag_seconds', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_heap_size_used_bytes', 'nodejs_gc_duration_seconds']) expect(fam.has(n), n).toBe(true);
    expect([...fam.keys()].filter((n) => n.startsWith('portcullis_process_'))).toEqual([]);
    const info = samples(text, 'portcullis_build_info');
    expect(info).toHaveLength(1);
    expect(info[0]).toMatch(/ 1$/);
    expect(labelsOf(info[0] as string)).toMatchObject({ version: '0.1.0', node_version: process.version });
  });

  it(`${mode}: Check, ext_proc phase and exchange latency per tool, in buckets past Envoy's timeouts`, async () => {
    const { text } = await scrape(get());
    expect(metricValue(text, 'portcullis_authz_check_duration_seconds_count', { tool: 'weather', outcome: 'allow' })).toBeGreaterThanOrEqual(4);
    expect(metricValue(text, 'portcullis_authz_check_duration_seconds_count', { tool: 'weather', outcome: 'deny' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'portcullis_authz_check_duration_seconds_count', { tool: '_none', outcome: 'deny' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'portcullis_extproc_phase_seconds_count', { tool: 'weather', phase: 'responseHeaders' })).toBeGreaterThanOrEqual(4);
    expect(metricValue(text, 'portcullis_extproc_phase_seconds_count', { tool: 'weather', phase: 'responseBody' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'portcullis_extproc_exchange_duration_seconds_count', { tool: 'weather', code: 'none' })).toBeGreaterThanOrEqual(4);
    for (const le of ['1', '2', '4', '+Inf']) expect(samples(text, 'portcullis_authz_check_duration_seconds_bucket').some((l) => labelsOf(l).le === le), le).toBe(true);
    expect(metricValue(text, 'portcullis_dlp_findings_total', { direction: 'response' })).toBeGreaterThanOrEqual(1);
  });

  it(`${mode}: every reload counter says result="success" or "failure", and the refused reload is counted`, async () => {
    const { text } = await scrape(get());
    const reloadLines = text.split('\n').filter((l) => /^portcullis_\w*reloads_total\{/.test(l));
    expect(reloadLines.length).toBeGreaterThan(0);
    for (const l of reloadLines) expect(['success', 'failure']).toContain(labelsOf(l).result);
    expect(metricValue(text, 'portcullis_config_reloads_total', { result: 'failure' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'portcullis_config_reloads_total', { result: 'success' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'portcullis_policy_reloads_total', { result: 'success' })).toBeGreaterThanOrEqual(1);
  });

  it(`${mode}: OpenMetrics when the scraper asks for it, and the Prometheus format unchanged after`, async () => {
    const om = await scrape(get(), PROMETHEUS_ACCEPT);
    expect(om.type).toBe('application/openmetrics-text; version=1.0.0; charset=utf-8');
    expect(om.text.endsWith('\n# EOF\n')).toBe(true);
    expect(om.text).toContain('# TYPE portcullis_authz_decisions counter\n');
    expect(om.text).not.toContain('# TYPE portcullis_authz_decisions_total');
    expect(samples(om.text, 'portcullis_authz_decisions_total').length).toBeGreaterThan(0);
    expect(om.text).not.toContain('_total_total');
    // Prometheus' OpenMetrics parser reads all of it (and refuses it without the # EOF).
    const parsed = parseOpenMetrics(om.text);
    expect(parsed.code, parsed.out).toBe(0);
    expect(parsed.out).toMatch(/NUM SAMPLES/);
    expect(parseOpenMetrics(om.text.replace('# EOF\n', '')).code).not.toBe(0);
    const plain = await scrape(get(), 'text/plain');
    expect(plain.type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(plain.text).toContain('# TYPE portcullis_authz_decisions_total counter\n');
    expect(plain.text).not.toContain('# EOF');
    expect(promtool(['check', 'metrics'], { input: plain.text }).code).toBe(0);
  });

  it(`${mode}: every metric the dashboard and the alert rules query is served`, async () => {
    const fam = families((await scrape(get())).text);
    const queried = [...new Set([...dashboardExpressions(), ...ruleExpressions()].flatMap(metricNames))];
    expect(queried.length).toBeGreaterThan(20);
    // Metrics of the primary exist only with workers.
    const primaryOnly = mode === 'single process' ? ['portcullis_workers', 'portcullis_worker_restarts_total'] : [];
    expect(unexposed(queried, fam).filter((n) => !primaryOnly.includes(n))).toEqual([]);
  });
}

describe('a primary with two workers', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ editConfig: (cfg) => ((cfg.server as Json).workers = 2) });
    await traffic(stack);
  }, 120_000);
  afterAll(async () => stack?.stop());

  commonChecks(() => stack, 'workers');

  it('workers: each process keeps its own process metrics, labelled by worker; gateway counters are summed', async () => {
    const { text } = await scrape(stack);
    for (const name of ['process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds', 'process_start_time_seconds']) {
      const workers = samples(text, name).map((l) => labelsOf(l).worker).sort();
      expect(workers, name).toEqual(['0', '1', 'primary']);
    }
    const calls = metricValue(text, 'portcullis_worker_grpc_calls_total', {});
    expect(calls).toBeGreaterThan(0);
    // Summed over workers: six Checks at least, whichever worker made them.
    const decided = samples(text, 'portcullis_authz_decisions_total').reduce((a, l) => a + Number(l.split(' ').at(-1)), 0);
    expect(decided).toBeGreaterThanOrEqual(6);
    expect(await eventually(async () => samples((await scrape(stack)).text, 'portcullis_workers')[0] === 'portcullis_workers 2', 5_000)).toBe(true);
  });
});

describe('a single process (server.workers: 1)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ editConfig: (cfg) => ((cfg.server as Json).workers = 1) });
    await traffic(stack);
  }, 120_000);
  afterAll(async () => stack?.stop());

  commonChecks(() => stack, 'single process');

  it('single process: process metrics carry no worker label, and there are no worker metrics', async () => {
    const { text } = await scrape(stack);
    expect(samples(text, 'process_resident_memory_bytes')).toHaveLength(1);
    expect(labelsOf(samples(text, 'process_resident_memory_bytes')[0] as string)).toEqual({});
    expect(text).not.toContain('portcullis_worker');
  });
});
