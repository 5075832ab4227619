import { Counter, Histogram } from 'prom-client';
import { registry } from '../metrics.js';
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
  buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25],
  registers: [registry],
});

/** Counts one decision. Tool and rule come from configuration and policy, so cardinality is bounded. */
export function recordDecision(outcome: 'allow' | 'deny' | 'dry_run_allow', code: string, tool: string | null, rule: string | null): void {
  decisions.inc({ outcome, code, tool: tool ?? '_none', rule: rule ?? '_none' });
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
