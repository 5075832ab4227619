import { Counter } from 'prom-client';
import { registry } from '../metrics.js';
import { log } from '../log.js';

const alerts = new Counter({
  name: 'portcullis_dlp_alerts_total',
  help: 'Principals that crossed the DLP block/redaction alert threshold within the window',
  labelNames: ['tool'] as const,
  registers: [registry],
});

/** Upper bound on tracked principals so a flood of identities cannot grow memory without bound. */
const MAX_TRACKED = 50_000;

/**
 * Sliding-window counter of DLP blocks/redactions per principal. Crossing `threshold` within
 * `windowS` logs one warning and bumps a metric (once per window per principal).
 */
export class DlpAlerter {
  private readonly hits = new Map<string, number[]>();
  private readonly alerted = new Map<string, number>();

  constructor(
    private readonly threshold: number,
    private readonly windowS: number,
  ) {}

  /** Notes `count` events for a principal; returns true when this call raised an alert. */
  note(principal: string, tool: string, count: number, nowMs: number): boolean {
    if (count <= 0 || this.threshold <= 0) return false;
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
    alerts.inc({ tool });
    log.warn({ principal, tool, events: times.length, window_s: this.windowS, threshold: this.threshold }, 'DLP alert: many blocked or redacted payloads for one principal');
    return true;
  }
}
