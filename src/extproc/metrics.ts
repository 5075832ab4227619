import { Counter, Histogram } from 'prom-client';
import { EXCHANGE_BUCKETS, LATENCY_BUCKETS, registry } from '../metrics.js';

const phases = new Histogram({
  name: 'portcullis_extproc_phase_seconds',
  help: 'Time spent handling one ext_proc message, by phase and tool',
  labelNames: ['phase', 'tool'] as const,
  buckets: [...LATENCY_BUCKETS],
  registers: [registry],
});

const exchanges = new Histogram({
  name: 'portcullis_extproc_exchange_duration_seconds',
  help: 'Whole exchanges seen by ext_proc, first message to end of stream (the tool\'s time included), by tool and error code (none: completed)',
  labelNames: ['tool', 'code'] as const,
  buckets: [...EXCHANGE_BUCKETS],
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

/** Phases Envoy sends; anything else is counted as `unknown` (bounded label values). */
const PHASES = new Set(['requestHeaders', 'requestBody', 'requestTrailers', 'responseHeaders', 'responseBody', 'responseTrailers']);

/**
 * Starts timing a phase; call the returned function with the exchange's tool when it ends (the
 * first message is what names the tool).
 */
export function phaseTimer(phase: string): (tool: string | null) => void {
  const end = phases.startTimer();
  return (tool) => end({ phase: PHASES.has(phase) ? phase : 'unknown', tool: tool ?? '_none' });
}

/** Observes one whole exchange of `seconds`; `code` is the error that ended it, `none` when it completed. */
export function observeExchange(tool: string, code: string, seconds: number): void {
  exchanges.observe({ tool, code }, seconds);
}

/** Counts DLP findings of one exchange direction (rule ids come from the compiled catalog). */
export function countFindings(direction: 'request' | 'response', rules: Iterable<string>, action: string): void {
  for (const rule of rules) findings.inc({ direction, rule, action });
}

/** Counts prompt-injection matches. */
export function countInjections(tool: string, rules: Iterable<string>): void {
  for (const rule of rules) injections.inc({ tool, rule });
}
