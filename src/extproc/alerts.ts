import { createHash } from 'node:crypto';
import { Counter } from 'prom-client';
import { registry } from '../metrics.js';
import { log } from '../log.js';
import type { Store } from '../limits/store.js';

const alerts = new Counter({
  name: 'portcullis_dlp_alerts_total',
  help: 'Principals that crossed the DLP block/redaction alert threshold within the window',
  labelNames: ['tool'] as const,
  registers: [registry],
});

/** Upper bound on principals tracked locally, so a flood of identities cannot grow memory without bound. */
const MAX_TRACKED = 50_000;

/**
 * DLP blocks and redactions per principal within a window; crossing `threshold` logs one warning
 * and bumps a metric, once per window per principal. On the shared store the window is one
 * counter for every replica and worker (a fixed window from the principal's first event), so a
 * principal spreading its attempts over replicas is still seen; when the store cannot answer,
 * this process' own sliding window counts instead (an alert is never lost to an outage).
 */
export class DlpAlerter {
  private readonly hits = new Map<string, number[]>();
  private readonly alerted = new Map<string, number>();

  constructor(
    private readonly threshold: number,
    private readonly windowS: number,
    private readonly store?: Store,
  ) {}

  /** Notes `count` events for a principal; resolves true when this call raised the alert. Never rejects. */
  async note(principal: string, tool: string, count: number, nowMs: number): Promise<boolean> {
    if (count <= 0 || this.threshold <= 0) return false;
    if (this.store) {
      try {
        const key = `dlpalert:${createHash('sha256').update(principal).digest('hex').slice(0, 32)}`;
        const hit = await this.store.increment(key, this.windowS * 1000, count);
        // Exactly one call moves the window's count past the threshold.
        return hit.count > this.threshold && hit.count - count <= this.threshold ? this.raise(principal, tool, hit.count) : false;
      } catch {
        // Counted locally below; the store's own errors are logged and counted where it fails.
      }
    }
    return this.noteLocally(principal, tool, count, nowMs);
  }

  private noteLocally(principal: string, tool: string, count: number, nowMs: number): boolean {
    const since = nowMs - this.windowS * 1000;
    let times = this.hits.get(principal);
    if (!times) {
      if (this.hits.size >= MAX_TRACKED) {
        const oldest = this.hits.keys().next().value;
        if (oldest !== undefined) this.hits.delete(oldest);
      }
      times = [];
      this.hits.set(principal, times);
    }
    for (let i = 0; i < count; i++) times.push(nowMs);
    while (times.length > 0 && (times[0] as number) < since) times.shift();
    if (times.length <= this.threshold) return false;
    const last = this.alerted.get(principal);
    if (last !== undefined && last >= since) return false;
    this.alerted.set(principal, nowMs);
    return this.raise(principal, tool, times.length);
  }

  private raise(principal: string, tool: string, events: number): boolean {
    alerts.inc({ tool });
    log.warn({ principal, tool, events, window_s: this.windowS, threshold: this.threshold }, 'DLP alert: many blocked or redacted payloads for one principal');
    return true;
  }
}
