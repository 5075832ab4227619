import { isUtf8 } from 'node:buffer';
import type { AuthzMetadata } from '../authz/check.js';
import type { IdempotencyConfig } from '../config/types.js';
import { log } from '../log.js';
import { countIdempotency, doneRecord, parseEntry, REPLAYABLE_STATUSES, STORED_HEADERS } from '../limits/idempotency.js';
import type { Store } from '../limits/store.js';
import type { ProtoHeaderMutation } from './proto.js';

/**
 * ext_proc's half of idempotency keys (the Check's half is src/limits/idempotency.ts): a call
 * that holds a claim sees its response whole, and when the exchange ends the claim is settled
 * exactly once — replaced by the delivered answer (status < 500, body as delivered, i.e.
 * redacted, at most `max_stored_bytes`, UTF-8), or released so a retry runs (5xx, reset or
 * cancel, a failure, an event stream, a body too large or not text). Storing is awaited
 * before the last body reply (one store round trip) so a retry right after the answer finds
 * it; a store failure is logged and counted, never turned into an error for the agent.
 */

/** Whether a verified hand-off is a call answered from the idempotency store (no tool was called). */
export function isReplay(meta: AuthzMetadata): boolean {
  return meta.idempotency_key !== null && meta.idempotency_claim === null;
}

/** The claim of one exchange, settled once. */
export class IdempotencyClaim {
  private settled = false;
  private status: number | null = null;
  private headers: [string, string][] = [];

  private constructor(
    private readonly store: Store | undefined,
    private readonly tool: string,
    private readonly key: string,
    private readonly claim: string,
    private readonly cfg: IdempotencyConfig | undefined,
  ) {}

  /** The claim a verified hand-off carries, or null when the call holds none. */
  static of(store: Store | undefined, meta: AuthzMetadata | null, cfg: IdempotencyConfig | undefined): IdempotencyClaim | null {
    if (!meta || meta.idempotency_key === null || meta.idempotency_claim === null) return null;
    return new IdempotencyClaim(store, meta.tool ?? '_none', meta.idempotency_key, meta.idempotency_claim, cfg);
  }

  /** The response body must be seen whole (stored) rather than passed through unread. */
  get needsBody(): boolean {
    return !this.settled;
  }

  /**
   * Response headers as delivered (the tool's, with the gateway's mutation applied). A status
   * of 500 or more releases the claim now (the call may not have run, a retry must), as does
   * one Envoy could not replay.
   */
  async noteHeaders(status: number | null, headers: Readonly<Record<string, string>>, mutation: ProtoHeaderMutation): Promise<void> {
    if (this.settled) return;
    this.status = status;
    // Released before the answer leaves, so the agent's retry finds the key free.
    if (status === null || !REPLAYABLE_STATUSES.has(status)) return this.release(`upstream status ${String(status)}`);
    const out = new Map<string, string>();
    for (const [k, v] of Object.entries(headers)) if (STORED_HEADERS.has(k)) out.set(k, v);
    for (const k of mutation.removeHeaders ?? []) out.delete(k.toLowerCase());
    for (const h of mutation.setHeaders ?? []) {
      const k = h.header.key.toLowerCase();
      if (!STORED_HEADERS.has(k) || h.append?.value) continue;
      out.set(k, h.header.rawValue.toString('utf8'));
    }
    this.headers = [...out];
  }

  /**
   * The whole body as delivered: stored in place of the pending marker (one round trip,
   * awaited; never throws). A body over `max_stored_bytes` or not UTF-8 releases the claim.
   */
  async complete(body: Buffer): Promise<void> {
    if (this.settled) return;
    const max = this.cfg?.max_stored_bytes;
    if (this.status === null || max === undefined) return this.release('no response status or idempotency no longer configured');
    if (body.length > max) return this.release(`response of ${body.length} bytes is larger than max_stored_bytes (${max})`);
    if (!isUtf8(body)) return this.release('response body is not text');
    this.settled = true;
    let fingerprint: string;
    try {
      fingerprint = parseEntry(this.claim).body_sha256;
    } catch {
      this.settled = false;
      return this.release('the claim is not a pending marker');
    }
    const done = doneRecord(fingerprint, this.status, this.headers, body, Date.now());
    try {
      const swapped = this.store ? await this.store.swap(this.key, this.claim, done, (this.cfg?.ttl_s ?? 0) * 1000) : false;
      countIdempotency(this.tool, swapped ? 'stored' : 'store_error');
      // Not swapped: the claim expired (the call outlived in_flight_ttl_s) and the key is free or another call's.
      if (!swapped) log.warn({ tool: this.tool }, 'idempotency claim no longer held; the answer was delivered but not stored');
    } catch (err) {
      countIdempotency(this.tool, 'store_error');
      log.warn({ tool: this.tool, cause: (err as Error)?.message }, 'idempotent answer could not be stored; the claim expires on its own');
    }
  }

  /**
   * Gives the key back (a retry runs the call). Never rejects; callers on the reply path await
   * it (one round trip), the end of an exchange does not.
   */
  release(why: string): Promise<void> {
    if (this.settled) return Promise.resolve();
    this.settled = true;
    log.debug({ tool: this.tool, why }, 'idempotency claim released');
    if (!this.store) return Promise.resolve();
    return this.store.swap(this.key, this.claim, null, 0).then(
      () => countIdempotency(this.tool, 'released'),
      (err: unknown) => {
        countIdempotency(this.tool, 'store_error');
        log.warn({ tool: this.tool, cause: (err as Error)?.message }, 'idempotency claim could not be released; it expires on its own');
      },
    );
  }
}
