import { createWriteStream, type WriteStream } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { Counter } from 'prom-client';
import { log, stdout } from '../log.js';
import { registry } from '../metrics.js';
import { withoutCredentials } from './bundleService.js';
import type { DecisionEvent } from './decisionLog.js';

/**
 * Where decision log events go: stdout (one JSON line each, through the process' buffered
 * stdout, never in pino's envelope), an append-only file, or an HTTP service speaking OPA's
 * decision log API (POST gzipped JSON arrays to `<url>/logs`). No sink ever blocks or fails a
 * Check: a slow or failing service costs buffered events (counted), never a decision.
 */

const events = new Counter({
  name: 'portcullis_decision_logs_total',
  help: 'Decision log events by sink and result (written, sent, dropped)',
  labelNames: ['sink', 'result'] as const,
  registers: [registry],
});
const uploads = new Counter({
  name: 'portcullis_decision_log_uploads_total',
  help: 'Decision log uploads to the HTTP service by result (success, failure)',
  labelNames: ['result'] as const,
  registers: [registry],
});

/** One destination of decision events. */
export interface DecisionSink {
  /** Takes one event; never throws, never waits. */
  write(event: DecisionEvent): void;
  /** Writes out what is buffered (best effort, bounded by the sink's timeout) and stops. */
  close(): Promise<void>;
}

/** Events as JSON lines on stdout. */
export class ConsoleSink implements DecisionSink {
  /** @inheritdoc */
  write(event: DecisionEvent): void {
    stdout.write(`${JSON.stringify(event)}\n`);
    events.inc({ sink: 'console', result: 'written' });
  }

  /** @inheritdoc */
  close(): Promise<void> {
    return stdout.flush();
  }
}

/** Events as JSON lines appended to a file. */
export class FileSink implements DecisionSink {
  private readonly stream: WriteStream;
  private failed = false;

  /** Opens `path` for appending (created with mode 0600: inputs may still be sensitive). */
  constructor(private readonly path: string) {
    this.stream = createWriteStream(path, { flags: 'a', mode: 0o600 });
    this.stream.on('error', (err) => {
      if (!this.failed) log.error({ err: err.message, file: this.path }, 'decision log file cannot be written; dropping events');
      this.failed = true;
    });
  }

  /** @inheritdoc */
  write(event: DecisionEvent): void {
    if (this.failed) {
      events.inc({ sink: 'file', result: 'dropped' });
      return;
    }
    this.stream.write(`${JSON.stringify(event)}\n`);
    events.inc({ sink: 'file', result: 'written' });
  }

  /** @inheritdoc */
  close(): Promise<void> {
    return new Promise((done) => this.stream.end(() => done()));
  }
}

/** Settings of {@link HttpSink}. */
export interface HttpSinkOptions {
  /** Service base URL; events are posted to `<url><resource>`. */
  readonly url: string;
  /** Path appended to `url` (OPA's `decision_logs.resource`), default `/logs`. */
  readonly resource: string;
  /** Extra request headers (e.g. authorization); never logged. */
  readonly headers: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  /** Upper bound on one upload's uncompressed JSON. */
  readonly maxBatchBytes: number;
  /** Upper bound on events waiting to be sent; beyond it new events are dropped. */
  readonly maxBufferBytes: number;
  /** Time between uploads when the batch is not full. */
  readonly intervalMs: number;
}

/**
 * Batched uploads to an OPA-style decision log service. Events wait in a bounded buffer; an
 * upload runs every interval (or as soon as a batch is full), one at a time. A failed upload
 * puts its events back at the front when they still fit, so a short outage loses nothing and a
 * long one drops the newest events, counted.
 */
export class HttpSink implements DecisionSink {
  private queue: { line: string; bytes: number }[] = [];
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private closed = false;
  private readonly endpoint: string;

  /** Starts the upload timer. */
  constructor(private readonly opts: HttpSinkOptions) {
    this.endpoint = `${opts.url.replace(/\/+$/, '')}${opts.resource.startsWith('/') ? '' : '/'}${opts.resource}`;
    this.schedule();
  }

  /** @inheritdoc */
  write(event: DecisionEvent): void {
    const line = JSON.stringify(event);
    const bytes = Buffer.byteLength(line);
    if (this.closed || this.queuedBytes + bytes > this.opts.maxBufferBytes || bytes + 2 > this.opts.maxBatchBytes) {
      events.inc({ sink: 'service', result: 'dropped' });
      return;
    }
    this.queue.push({ line, bytes });
    this.queuedBytes += bytes;
    if (this.queuedBytes >= this.opts.maxBatchBytes) this.kick();
  }

  /** Events waiting to be sent (for tests and status). */
  pending(): number {
    return this.queue.length;
  }

  /** Uploads now (one batch), unless an upload is already running. */
  flush(): Promise<void> {
    this.kick();
    return this.inFlight ?? Promise.resolve();
  }

  /** @inheritdoc */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.inFlight;
    // One last batch, bounded by the upload timeout.
    if (this.queue.length > 0) await this.upload();
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.kick();
      this.schedule();
    }, this.opts.intervalMs);
    this.timer.unref();
  }

  private kick(): void {
    if (this.inFlight || this.queue.length === 0) return;
    this.inFlight = this.upload().finally(() => {
      this.inFlight = null;
      // More than one batch waiting: keep going without waiting for the timer.
      if (this.queuedBytes >= this.opts.maxBatchBytes && !this.closed) this.kick();
    });
  }

  private takeBatch(): { line: string; bytes: number }[] {
    const batch: { line: string; bytes: number }[] = [];
    let size = 2;
    while (this.queue.length > 0) {
      const next = this.queue[0] as { line: string; bytes: number };
      if (batch.length > 0 && size + next.bytes + 1 > this.opts.maxBatchBytes) break;
      batch.push(next);
      size += next.bytes + 1;
      this.queue.shift();
    }
    this.queuedBytes -= batch.reduce((n, e) => n + e.bytes, 0);
    return batch;
  }

  private async upload(): Promise<void> {
    const batch = this.takeBatch();
    if (batch.length === 0) return;
    const body = gzipSync(`[${batch.map((e) => e.line).join(',')}]`);
    try {
      const res = await fetch(this.endpoint, {
        method: 'POST',
        headers: { ...this.opts.headers, 'content-type': 'application/json', 'content-encoding': 'gzip' },
        body,
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.status < 200 || res.status > 299) throw new Error(`HTTP ${res.status}`);
      uploads.inc({ result: 'success' });
      events.inc({ sink: 'service', result: 'sent' }, batch.length);
    } catch (err) {
      uploads.inc({ result: 'failure' });
      log.warn({ err: (err as Error).message, events: batch.length, endpoint: withoutCredentials(this.endpoint) }, 'decision log upload failed');
      this.requeue(batch);
    }
  }

  /** Puts a failed batch back at the front while it fits; what does not fit is dropped. */
  private requeue(batch: { line: string; bytes: number }[]): void {
    if (this.closed) {
      events.inc({ sink: 'service', result: 'dropped' }, batch.length);
      return;
    }
    const keep: { line: string; bytes: number }[] = [];
    let room = this.opts.maxBufferBytes - this.queuedBytes;
    for (const e of batch) {
      if (e.bytes > room) break;
      keep.push(e);
      room -= e.bytes;
    }
    const lost = batch.length - keep.length;
    if (lost > 0) events.inc({ sink: 'service', result: 'dropped' }, lost);
    this.queue = [...keep, ...this.queue];
    this.queuedBytes += keep.reduce((n, e) => n + e.bytes, 0);
  }
}
