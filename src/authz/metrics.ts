import { Counter, Histogram } from 'prom-client';
import { BoundedLabel, LATENCY_BUCKETS, registry } from '../metrics.js';
import { traceStage } from '../tracing/check.js';

const decisions = new Counter({
  name: 'portcullis_authz_decisions_total',
  help: 'ext_authz decisions by outcome, error code, tool and rule',
  labelNames: ['outcome', 'code', 'tool', 'rule'] as const,
  registers: [registry],
});

const stages = new Histogram({
  name: 'portcullis_authz_stage_seconds',
  help: 'Time spent in each ext_authz stage',
  labelNames: ['stage'] as const,
  buckets: [...LATENCY_BUCKETS],
  registers: [registry],
});

const checks = new Histogram({
  name: 'portcullis_authz_check_duration_seconds',
  help: 'Time to decide one ext_authz Check, from the call to the decision, by tool and outcome',
  labelNames: ['tool', 'outcome'] as const,
  buckets: [...LATENCY_BUCKETS],
  registers: [registry],
});

/** Distinct rule names kept as labels (the gateway's own, and those of the policy). */
const rules = new BoundedLabel(500);

/** Counts one decision. Tools come from configuration; rules are bounded (see {@link BoundedLabel}). */
export function recordDecision(outcome: 'allow' | 'deny' | 'dry_run_allow', code: string, tool: string | null, rule: string | null): void {
  decisions.inc({ outcome, code, tool: tool ?? '_none', rule: rule === null ? '_none' : rules.of(rule) });
}

/** Starts timing a stage (and its child span of the Check's span); call the returned function when it ends. */
export function stageTimer(stage: string): () => void {
  const end = stages.startTimer({ stage });
  const endSpan = traceStage(stage);
  return () => {
    end();
    endSpan();
  };
}

/** Observes one whole Check, started at `startedNs` (process.hrtime.bigint()); tools come from configuration. */
export function observeCheck(startedNs: bigint, tool: string | null, outcome: 'allow' | 'deny' | 'dry_run_allow'): void {
  checks.observe({ tool: tool ?? '_none', outcome }, Number(process.hrtime.bigint() - startedNs) / 1e9);
}
