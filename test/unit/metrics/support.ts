import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { repoPath } from '../../helpers/index.js';

/** promtool, pinned by scripts/install-tools.sh. Missing, it throws: these checks must fail, never skip. */
export function promtoolPath(): string {
  const path = repoPath('.tools', 'bin', 'promtool');
  if (!existsSync(path)) throw new Error(`promtool is not installed at ${path}: run "bash scripts/install-tools.sh" (npm test does it)`);
  return path;
}

/** Runs promtool; stdout and stderr together, and the exit code. */
export function promtool(args: string[], opts: { input?: string; cwd?: string } = {}): { code: number; out: string } {
  const r = spawnSync(promtoolPath(), args, { input: opts.input, cwd: opts.cwd, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

export const DASHBOARD_PATH = repoPath('deploy', 'grafana', 'portcullis-dashboard.json');
export const RULES_PATH = repoPath('deploy', 'prometheus', 'portcullis-rules.yaml');
export const RULES_TEST_PATH = repoPath('deploy', 'prometheus', 'portcullis-rules.test.yaml');

type Json = Record<string, any>;

/** The dashboard as parsed JSON. */
export function dashboard(): Json {
  return JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as Json;
}

/** Every PromQL expression of the dashboard: panel targets and template variable queries. */
export function dashboardExpressions(d: Json = dashboard()): string[] {
  const out: string[] = [];
  const walk = (panels: Json[]): void => {
    for (const p of panels) {
      for (const t of (p.targets ?? []) as Json[]) out.push(String(t.expr));
      walk((p.panels ?? []) as Json[]);
    }
  };
  walk(d.panels as Json[]);
  for (const v of (d.templating?.list ?? []) as Json[]) if (v.type === 'query') out.push(String(v.definition));
  return out;
}

/** Every expression of the alert rules. */
export function ruleExpressions(): string[] {
  const doc = parse(readFileSync(RULES_PATH, 'utf8')) as { groups: { rules: { expr: string }[] }[] };
  return doc.groups.flatMap((g) => g.rules.map((r) => r.expr));
}

/**
 * Metric names an expression reads: the gateway's and the Node.js process metrics it exposes
 * (label values such as `"limits.store_unavailable"` never start with these prefixes).
 */
export function metricNames(expr: string): string[] {
  return [...new Set(expr.match(/\b(?:portcullis|process|nodejs)_[A-Za-z0-9_]+/g) ?? [])];
}

/** Metric families of a Prometheus text exposition: name → type. */
export function families(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1] as string, m[2] as string);
  return out;
}

/** Names queried that `exposed` does not serve (a histogram's `_bucket`/`_sum`/`_count` resolve to it). */
export function unexposed(names: Iterable<string>, exposed: Map<string, string>): string[] {
  const missing: string[] = [];
  for (const n of names) {
    if (exposed.has(n)) continue;
    const base = /^(.*)_(bucket|sum|count)$/.exec(n)?.[1];
    if (base && (exposed.get(base) === 'histogram' || exposed.get(base) === 'summary')) continue;
    missing.push(n);
  }
  return missing;
}

/**
 * Reads an OpenMetrics exposition with Prometheus' own OpenMetrics parser (promtool's backfill,
 * which needs a timestamp on every sample: one is added). Returns promtool's exit code and output.
 */
export function parseOpenMetrics(text: string): { code: number; out: string } {
  const dir = mkdtempSync(join(tmpdir(), 'openmetrics-'));
  try {
    const ts = Math.floor(Date.now() / 1000);
    const stamped = text.split('\n').map((l) => (l === '' || l.startsWith('#') ? l : `${l} ${ts}`)).join('\n');
    writeFileSync(join(dir, 'scrape.om'), stamped);
    return promtool(['tsdb', 'create-blocks-from', 'openmetrics', join(dir, 'scrape.om'), join(dir, 'blocks')]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
