import { describe, expect, it } from 'vitest';
import { dirname } from 'node:path';
import { dashboard, dashboardExpressions, metricNames, promtool, RULES_PATH, RULES_TEST_PATH, ruleExpressions, unexposed } from './support.js';

/**
 * The Grafana dashboard and the Prometheus rules shipped in deploy/: valid for their tools, and
 * built on the metric names the gateway serves (the e2e metrics suite checks the names against a
 * live scrape; here against a fixed list, so a rename in one place fails fast).
 */

type Json = Record<string, any>;

describe('Prometheus rules', () => {
  it('pass promtool check rules', () => {
    const r = promtool(['check', 'rules', RULES_PATH]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('pass their promtool unit tests (denial spike, fail closed, reload failure, event-loop lag)', () => {
    const r = promtool(['test', 'rules', RULES_TEST_PATH], { cwd: dirname(RULES_TEST_PATH) });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('SUCCESS');
  });

  it('promtool test rules fails when an alert is not what its test expects (the tests bite)', () => {
    const r = promtool(['test', 'rules', '/dev/stdin'], {
      cwd: dirname(RULES_TEST_PATH),
      input: [
        'rule_files: [portcullis-rules.yaml]',
        'tests:',
        '  - interval: 1m',
        '    input_series:',
        "      - series: 'portcullis_response_buffer_refusals_total{instance=\"gw\"}'",
        "        values: '0 0 0 0 0'",
        '    alert_rule_test:',
        '      - eval_time: 4m',
        '        alertname: PortcullisResponseBudgetRefusals',
        '        exp_alerts: [{ exp_labels: { severity: warning, instance: gw } }]',
        '',
      ].join('\n'),
    });
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('FAILED');
  });

  it('cover the alerts the gateway needs', () => {
    const exprs = ruleExpressions().join('\n');
    for (const name of ['portcullis_authz_decisions_total', 'portcullis_dlp_findings_total', 'portcullis_dlp_alerts_total', 'portcullis_config_reloads_total', 'portcullis_policy_reloads_total', 'portcullis_file_reloads_total', 'nodejs_eventloop_lag_p99_seconds', 'portcullis_response_buffer_refusals_total', 'portcullis_store_errors_total']) {
      expect(exprs).toContain(name);
    }
  });
});

describe('Grafana dashboard', () => {
  const d = dashboard();
  const all: Json[] = [];
  const walk = (ps: Json[]): void => {
    for (const p of ps) {
      all.push(p);
      walk((p.panels ?? []) as Json[]);
    }
  };
  walk(d.panels as Json[]);
  const panels = all.filter((p) => p.type !== 'row');

  it('has a title, a stable uid and a Prometheus data source variable every query uses', () => {
    expect(d.title).toBe('portcullis');
    expect(d.uid).toMatch(/^[\w-]{1,40}$/);
    const vars = d.templating.list as Json[];
    const ds = vars.find((v) => v.type === 'datasource');
    expect(ds).toMatchObject({ name: 'datasource', query: 'prometheus' });
    for (const v of vars.filter((x) => x.type === 'query')) expect(v.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
    expect(panels.length).toBeGreaterThan(10);
    for (const p of panels) {
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect((p.targets as Json[]).length, p.title).toBeGreaterThan(0);
      for (const t of p.targets as Json[]) {
        expect(t.datasource).toEqual(p.datasource);
        expect(typeof t.expr).toBe('string');
        expect(t.expr).not.toBe('');
      }
    }
  });

  it('has unique panel ids and refIds, and panels laid out inside the 24-column grid without overlapping', () => {
    const ids = all.map((p) => p.id as number);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels) {
      const refs = (p.targets as Json[]).map((t) => t.refId as string);
      expect(new Set(refs).size).toBe(refs.length);
    }
    const cells = new Set<string>();
    for (const p of all) {
      const g = p.gridPos as { x: number; y: number; w: number; h: number };
      expect(g.x + g.w, p.title).toBeLessThanOrEqual(24);
      for (let x = g.x; x < g.x + g.w; x++) {
        for (let y = g.y; y < g.y + g.h; y++) {
          const k = `${x},${y}`;
          expect(cells.has(k), `${p.title} overlaps at ${k}`).toBe(false);
          cells.add(k);
        }
      }
    }
  });

  it('shows what an SRE needs: decisions, denials by rule, latency per tool, DLP, limits, idempotency, reloads, event loop, memory, CPU, store errors', () => {
    const exprs = dashboardExpressions(d).join('\n');
    expect(exprs).toMatch(/sum by \(outcome, code\) \(rate\(portcullis_authz_decisions_total/);
    expect(exprs).toMatch(/sum by \(rule\) \(rate\(portcullis_authz_decisions_total\{[^}]*outcome="deny"/);
    for (const q of ['0.5', '0.99']) {
      expect(exprs).toContain(`histogram_quantile(${q}, sum by (tool, le) (rate(portcullis_authz_check_duration_seconds_bucket`);
      expect(exprs).toContain(`histogram_quantile(${q}, sum by (tool, phase, le) (rate(portcullis_extproc_phase_seconds_bucket`);
    }
    for (const name of ['portcullis_dlp_findings_total', 'portcullis_idempotency_total', 'portcullis_rate_limit_store_fallbacks_total', 'portcullis_config_reloads_total', 'nodejs_eventloop_lag_p99_seconds', 'process_resident_memory_bytes', 'process_cpu_seconds_total', 'portcullis_store_errors_total']) {
      expect(exprs).toContain(name);
    }
  });

  it('every expression reads only known metric families (the resolver flags unknown names)', () => {
    const names = dashboardExpressions(d).flatMap(metricNames);
    expect(names.length).toBeGreaterThan(20);
    const exposed = new Map([
      ['portcullis_authz_check_duration_seconds', 'histogram'],
      ['portcullis_authz_decisions_total', 'counter'],
    ]);
    expect(unexposed(['portcullis_authz_check_duration_seconds_bucket', 'portcullis_authz_decisions_total'], exposed)).toEqual([]);
    expect(unexposed(['portcullis_authz_decisions_total_bucket', 'portcullis_nope_total'], exposed)).toEqual(['portcullis_authz_decisions_total_bucket', 'portcullis_nope_total']);
  });
});
