import { Counter, Histogram } from 'prom-client';
import { registry } from '../metrics.js';

const phases = new Histogram({
  name: 'portcullis_extproc_phase_seconds',
  help: 'Time spent handling one ext_proc message, by phase',
  labelNames: ['phase'] as const,
  buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25],
  registers: [registry],
});

const findings = new Counter({
  name: 'portcullis_dlp_findings_total',
  help: 'DLP findings by direction, rule and outcome',
  labelNames: ['direction', 'rule', 'action'] as const,
  registers: [registry],
});

const injections = new Counter({
  name: 'portcullis_injection_findings_total',
  help: 'Prompt-injection pattern matches in tool arguments, by tool and rule',
  labelNames: ['tool', 'rule'] as const,
  registers: [registry],
});

/** Starts timing a phase; call the returned function when it ends. */
export function phaseTimer(phase: string): () => void {
  return phases.startTimer({ phase });
}

/** Counts DLP findings of one exchange direction (rule ids come from the compiled catalog). */
export function countFindings(direction: 'request' | 'response', rules: Iterable<string>, action: string): void {
  for (const rule of rules) findings.inc({ direction, rule, action });
}

/** Counts prompt-injection matches. */
export function countInjections(tool: string, rules: Iterable<string>): void {
  for (const rule of rules) injections.inc({ tool, rule });
}
