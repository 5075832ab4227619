import { Gauge, Counter } from 'prom-client';
import { registry } from '../../metrics.js';

const heldBytes = new Gauge({
  name: 'portcullis_response_buffer_bytes',
  help: 'Response body bytes held by portcullis for inspection, across all streams',
  registers: [registry],
});

const refused = new Counter({
  name: 'portcullis_response_buffer_refusals_total',
  help: 'Responses refused (retryable 503) because the inspection memory budget was used up',
  registers: [registry],
});

/** Share of the budget large (held) bodies may use together. */
const LARGE_SHARE = 0.75;

/**
 * The memory budget for response bodies held for inspection, shared by every stream of the
 * process: a large download reserves what it holds, and when the budget is used up the next
 * reservation fails (that response is refused, retryably) instead of the process growing until
 * other agents' calls time out.
 */
export class MemoryBudget {
  private used = 0;

  constructor(private limit: number) {}

  /** Sets a new limit (config reload); bytes already held stay held. */
  resize(limit: number): void {
    this.limit = limit;
  }

  /** Bytes reserved now. */
  get inUse(): number {
    return this.used;
  }

  /**
   * Reserves `bytes`; false (and nothing reserved) when that would exceed the budget. Large
   * bodies (`large`: held by portcullis) may fill only three quarters of it, so ordinary
   * responses of other calls always find room while big downloads queue up against the rest.
   */
  reserve(bytes: number, large = false): boolean {
    if (bytes <= 0) return true;
    const cap = large ? Math.floor(this.limit * LARGE_SHARE) : this.limit;
    if (this.used + bytes > cap) {
      refused.inc();
      return false;
    }
    this.used += bytes;
    heldBytes.set(this.used);
    return true;
  }

  /** Returns bytes reserved earlier. */
  release(bytes: number): void {
    if (bytes <= 0) return;
    this.used = Math.max(0, this.used - bytes);
    heldBytes.set(this.used);
  }
}

/** What one stream holds of the budget; released as a whole when the stream ends. */
export class Reservation {
  private held = 0;

  constructor(private readonly budget: MemoryBudget) {}

  /** Bytes this stream holds. */
  get bytes(): number {
    return this.held;
  }

  /** Grows the reservation by `bytes` (of a large body, or not); false when the budget cannot give them. */
  grow(bytes: number, large = false): boolean {
    if (!this.budget.reserve(bytes, large)) return false;
    this.held += bytes;
    return true;
  }

  /** Gives everything back (idempotent). */
  release(): void {
    this.budget.release(this.held);
    this.held = 0;
  }
}
