import { resolve } from 'node:path';
import { log } from '../log.js';
import { applyMask, DecisionEventBuilder, DEFAULT_MASK, headerPointers, readMaskRule, type DecisionEvent, type DecisionFacts, type MaskRule } from './decisionLog.js';
import { ConsoleSink, FileSink, HttpSink, type DecisionSink } from './decisionLogSinks.js';

/** `decision_logs` configuration. */
export interface DecisionLogConfig {
  /** Events as JSON lines on stdout. */
  readonly console: boolean;
  /** Events as JSON lines appended to this file (relative to the config file). */
  readonly file?: string;
  /** OPA decision log service. */
  readonly service?: {
    readonly url: string;
    readonly resource: string;
    readonly headers: Readonly<Record<string, string>>;
    readonly timeout_s: number;
    readonly max_batch_bytes: number;
    readonly max_buffer_bytes: number;
    readonly interval_s: number;
  };
  /** Extra mask rules: JSON pointers (removed) or `{op: upsert, path, value}`. */
  readonly mask: readonly unknown[];
  /** Remove credential headers and the request body (see {@link DEFAULT_MASK}); default true. */
  readonly mask_defaults: boolean;
  /** Labels added to every event (`id` and `version` are set unless given here). */
  readonly labels: Readonly<Record<string, string>>;
}

/** Evaluates the policy's own `data.system.log.mask` for an event; null when the bundle has none. */
export type PolicyMask = (event: DecisionEvent) => unknown;

function peerOf(input: unknown): string {
  const attrs = (input as { attributes?: { source?: { address?: { socketAddress?: { address?: unknown; portValue?: unknown } } } } } | null)?.attributes;
  const sock = attrs?.source?.address?.socketAddress;
  if (!sock || typeof sock.address !== 'string') return '';
  return typeof sock.portValue === 'number' ? `${sock.address}:${sock.portValue}` : sock.address;
}

/**
 * Builds, masks and hands out one event per policy decision. Mask order: the policy's
 * `system.log.mask` rules first (as OPA applies them), then the defaults and configured rules.
 */
export class DecisionLogger {
  private readonly builder: DecisionEventBuilder;
  private readonly rules: readonly MaskRule[];
  private policyMaskFailed = false;

  /**
   * @param extraSecretHeaders credential headers of the configured identity methods (API key,
   *   request signature), masked with the defaults.
   */
  constructor(
    cfg: DecisionLogConfig,
    version: string,
    private readonly sinks: readonly DecisionSink[],
    extraSecretHeaders: readonly string[] = [],
  ) {
    this.builder = new DecisionEventBuilder(cfg.labels, version);
    const configured = cfg.mask.map((m, i) => {
      const rule = readMaskRule(m);
      if (!rule) throw new Error(`decision_logs.mask[${i}] must be a JSON pointer under /input or /result, or {op: remove|upsert, path, value}`);
      return rule;
    });
    const defaults = cfg.mask_defaults ? [...DEFAULT_MASK, ...headerPointers(extraSecretHeaders)].map((p) => ({ op: 'remove', path: p }) as const) : [];
    this.rules = [...new Map([...defaults, ...configured].map((r) => [`${r.op} ${r.path}`, r])).values()];
  }

  /** Records one decision; never throws (a logging failure must not change a decision). */
  record(facts: Omit<DecisionFacts, 'requestedBy'>, policyMask: PolicyMask | null): void {
    try {
      const event = this.builder.build({ ...facts, requestedBy: peerOf(facts.input) });
      if (policyMask) this.applyPolicyMask(event, policyMask);
      applyMask(event, this.rules);
      for (const sink of this.sinks) sink.write(event);
    } catch (err) {
      log.error({ err: (err as Error).message, decision_id: facts.decisionId }, 'decision log event could not be written');
    }
  }

  /** Stops every sink after writing out what they buffer. */
  async close(): Promise<void> {
    await Promise.all(this.sinks.map((s) => s.close().catch(() => undefined)));
  }

  private applyPolicyMask(event: DecisionEvent, policyMask: PolicyMask): void {
    let value: unknown;
    try {
      value = policyMask(event);
    } catch (err) {
      // A broken mask rule must not leak what it should hide: drop input and result.
      if (!this.policyMaskFailed) log.error({ err: (err as Error).message }, 'system.log.mask failed; erasing input and result');
      this.policyMaskFailed = true;
      applyMask(event, [
        { op: 'remove', path: '/input' },
        { op: 'remove', path: '/result' },
      ]);
      return;
    }
    const list = Array.isArray(value) ? value : [];
    const rules = list.map(readMaskRule).filter((r): r is MaskRule => r !== null);
    applyMask(event, rules);
  }
}

/** Opens the sinks a configuration names; null when it names none. */
export function openDecisionLogger(cfg: DecisionLogConfig | undefined, baseDir: string, version: string, secretHeaders: readonly string[] = []): DecisionLogger | null {
  if (!cfg) return null;
  const sinks: DecisionSink[] = [];
  if (cfg.console) sinks.push(new ConsoleSink());
  if (cfg.file) sinks.push(new FileSink(resolve(baseDir, cfg.file)));
  if (cfg.service) {
    const s = cfg.service;
    sinks.push(
      new HttpSink({
        url: s.url,
        resource: s.resource,
        headers: s.headers,
        timeoutMs: s.timeout_s * 1000,
        maxBatchBytes: s.max_batch_bytes,
        maxBufferBytes: s.max_buffer_bytes,
        intervalMs: s.interval_s * 1000,
      }),
    );
  }
  if (sinks.length === 0) return null;
  return new DecisionLogger(cfg, version, sinks, secretHeaders);
}
