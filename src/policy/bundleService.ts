import { Counter } from 'prom-client';
import { log } from '../log.js';
import { registry } from '../metrics.js';
import { parseVerifiedBundle } from './bundle.js';
import type { BundleVerifier } from './signatures.js';

/**
 * Fetches the policy bundle from an HTTP bundle service the way OPA's bundle plugin does:
 * conditional GETs (`If-None-Match` with the last ETag, 304 when unchanged), polling with a
 * random delay between a minimum and a maximum, long polling (`Prefer: wait=N`; a service that
 * answers with content type `application/vnd.openpolicyagent.bundles` supports it and is asked
 * again at once), and retries with exponential backoff on failure. A bundle is accepted only if
 * it parses and (with keys configured) its signature verifies; anything else keeps the last
 * good one.
 */

/** Content type a service that supports long polling answers with. */
export const LONG_POLL_CONTENT_TYPE = 'application/vnd.openpolicyagent.bundles';
/** Upper bound on a downloaded bundle (compressed). */
const MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024;
/** A long-poll 304 answered sooner than this was not held: the next request waits the polling delay. */
const MIN_HELD_MS = 1000;
/** First retry delay after a failure; doubles per consecutive failure up to the maximum delay. */
const RETRY_BASE_MS = 100;

const fetches = new Counter({
  name: 'portcullis_policy_bundle_fetches_total',
  help: 'Bundle service requests by result (updated, not_modified, invalid, error)',
  labelNames: ['result'] as const,
  registers: [registry],
});

/** Outcome of one request to the service. */
export type FetchResult = 'updated' | 'not_modified' | 'invalid' | 'error';

/** Settings of {@link BundleService}. */
export interface BundleServiceOptions {
  /** Full URL of the bundle. */
  readonly url: string;
  /** Request headers (e.g. authorization); never logged. */
  readonly headers: Readonly<Record<string, string>>;
  /** Timeout of one request, on top of the long-polling wait. */
  readonly timeoutMs: number;
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
  /** Long-polling wait asked of the service (seconds); null to poll only. */
  readonly longPollS: number | null;
  readonly verifier: BundleVerifier | null;
}

/** The bundle service client: holds the last good archive and says when a new one arrives. */
export class BundleService {
  private archive: Buffer | null = null;
  private etag: string | null = null;
  private failures = 0;
  private timer: NodeJS.Timeout | null = null;
  private abort: AbortController | null = null;
  private closed = false;
  private lastError: string | null = null;
  private readonly listeners: (() => void)[] = [];
  private firstWaiters: (() => void)[] = [];

  /** Creates the client; {@link start} begins polling. */
  constructor(private readonly opts: BundleServiceOptions) {}

  /** Where bundles come from (for messages; any user:password in the URL removed). */
  get url(): string {
    return withoutCredentials(this.opts.url);
  }

  /** The last accepted archive, or null before the first one arrived. */
  latest(): Buffer | null {
    return this.archive;
  }

  /** Why the last request failed or its bundle was refused; null after a good one. */
  error(): string | null {
    return this.lastError;
  }

  /** Registers a callback run whenever a new archive is accepted. */
  onBundle(cb: () => void): void {
    this.listeners.push(cb);
  }

  /** Resolves when the first archive has been accepted (or at once if one has). */
  firstBundle(): Promise<void> {
    if (this.archive) return Promise.resolve();
    return new Promise((done) => this.firstWaiters.push(done));
  }

  /** Starts polling (first request now). */
  start(): void {
    if (this.timer || this.closed) return;
    this.next(0);
  }

  /** Stops polling and aborts a request in flight. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.abort?.abort();
    this.listeners.length = 0;
  }

  /** One request to the service, with its result applied (also what each poll runs). */
  async poll(): Promise<{ result: FetchResult; longPoll: boolean }> {
    const abort = new AbortController();
    this.abort = abort;
    const headers: Record<string, string> = { ...this.opts.headers };
    if (this.etag) headers['if-none-match'] = this.etag;
    if (this.opts.longPollS !== null) headers.prefer = `wait=${this.opts.longPollS}`;
    const timeout = this.opts.timeoutMs + (this.opts.longPollS ?? 0) * 1000;
    const timer = setTimeout(() => abort.abort(new Error(`no answer within ${timeout} ms`)), timeout);
    timer.unref();
    let longPoll = false;
    const started = Date.now();
    try {
      const res = await fetch(this.opts.url, { headers, signal: abort.signal });
      longPoll = this.opts.longPollS !== null && (res.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase() === LONG_POLL_CONTENT_TYPE;
      if (res.status === 304) {
        await res.arrayBuffer().catch(() => undefined);
        // A "long-polling" service that answers 304 at once would be asked again in a tight
        // loop: only a 304 that was actually held earns an immediate new request.
        return this.done('not_modified', null, longPoll && Date.now() - started >= MIN_HELD_MS);
      }
      if (res.status !== 200) {
        await res.arrayBuffer().catch(() => undefined);
        return this.done('error', `the bundle service answered HTTP ${res.status}`, false);
      }
      const body = await readLimited(res, MAX_DOWNLOAD_BYTES);
      try {
        await parseVerifiedBundle(body, this.url, this.opts.verifier);
      } catch (err) {
        return this.done('invalid', (err as Error).message, false);
      }
      this.archive = body;
      this.etag = res.headers.get('etag');
      for (const cb of [...this.listeners]) cb();
      for (const w of this.firstWaiters.splice(0)) w();
      return this.done('updated', null, longPoll);
    } catch (err) {
      if (this.closed) return { result: 'error', longPoll: false };
      const reason = abort.signal.aborted && abort.signal.reason instanceof Error ? abort.signal.reason.message : (err as Error).message;
      return this.done('error', `the bundle service cannot be reached (${reason})`, false);
    } finally {
      clearTimeout(timer);
      if (this.abort === abort) this.abort = null;
    }
  }

  private done(result: FetchResult, error: string | null, longPoll: boolean): { result: FetchResult; longPoll: boolean } {
    fetches.inc({ result });
    if (result === 'updated' || result === 'not_modified') {
      this.failures = 0;
      this.lastError = null;
    } else {
      this.failures += 1;
      this.lastError = error;
      log.warn({ url: withoutCredentials(this.opts.url), result, err: error, serving: this.archive ? 'last good bundle' : 'none yet' }, 'policy bundle not updated');
    }
    return { result, longPoll };
  }

  /** Delay before the next request after an outcome. */
  private delayAfter(result: FetchResult, longPoll: boolean): number {
    if (result === 'error' || result === 'invalid') {
      const backoff = Math.min(this.opts.maxDelayMs, RETRY_BASE_MS * 2 ** Math.min(this.failures - 1, 20));
      return backoff / 2 + Math.random() * (backoff / 2);
    }
    if (longPoll) return 0;
    return this.opts.minDelayMs + Math.random() * (this.opts.maxDelayMs - this.opts.minDelayMs);
  }

  private next(delayMs: number): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      void this.poll().then(({ result, longPoll }) => {
        this.timer = null;
        this.next(this.delayAfter(result, longPoll));
      });
    }, delayMs);
    this.timer.unref();
  }
}

async function readLimited(res: Response, max: number): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > max) throw new Error(`the bundle is larger than ${max} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  if (!res.body) return Buffer.alloc(0);
  for await (const chunk of res.body) {
    size += (chunk as Uint8Array).length;
    if (size > max) throw new Error(`the bundle is larger than ${max} bytes`);
    chunks.push(Buffer.from(chunk as Uint8Array));
  }
  return Buffer.concat(chunks);
}

/** A URL for messages: user and password (if any) removed. */
export function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return '(invalid URL)';
  }
}
