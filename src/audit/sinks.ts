import { writeSync } from 'node:fs';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { pino, type DestinationStream, type Logger } from 'pino';
import { Counter } from 'prom-client';
import type { AuditConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { flushStdout, log, stdout } from '../log.js';
import { registry } from '../metrics.js';
import { GENESIS_HEAD, checkLine, sealLine, type ChainHead } from './chain.js';
import type { Scanner } from '../dlp/types.js';
import { auditOutcome, buildAuditRecord, type AuditExchange, type AuditRecord } from './record.js';

const recordsTotal = new Counter({
  name: 'portcullis_audit_records_total',
  help: 'Audit records emitted, by outcome of the exchange',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

const sinkFailures = new Counter({
  name: 'portcullis_audit_sink_failures_total',
  help: 'Audit records a sink could not write, by sink',
  labelNames: ['sink'] as const,
  registers: [registry],
});

/** Destination of audit records. `write` never blocks or throws; `close` flushes what is pending. */
export interface AuditSink {
  write(r: AuditRecord): void;
  close(): Promise<void>;
}

/**
 * One JSON line per record on stdout (or the given destination) through a pino logger of its
 * own, so the process log level never hides audit records: `{"msg":"audit","audit":{...}}`.
 * By default it writes to the process' buffered asynchronous stdout (shared with the process
 * log, see `log.ts`); closing waits until its lines have reached the OS.
 */
export class StdoutSink implements AuditSink {
  private readonly logger: Logger;
  private closed = false;

  constructor(private readonly destination?: DestinationStream) {
    this.logger = pino({ level: 'info', base: { service: 'portcullis' } }, destination ?? stdout);
  }

  write(r: AuditRecord): void {
    if (this.closed) {
      sinkFailures.inc({ sink: 'stdout' });
      return;
    }
    this.logger.info({ audit: r }, 'audit');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // The shared stdout stays open for the process log; only wait for what was written.
    if (this.destination === undefined) await flushStdout();
  }
}

/** Reads the last line of an existing audit file and returns the chain head it ends at. */
async function readChainHead(path: string): Promise<ChainHead> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return GENESIS_HEAD;
    throw err;
  }
  try {
    const size = (await fh.stat()).size;
    if (size === 0) return GENESIS_HEAD;
    const corrupt = (reason: string): GatewayError =>
      new GatewayError('internal', `audit file ${path} ends with a corrupt record (${reason}); refusing to append to it. Check it with "portcullis audit verify"`, {
        rule: 'audit.chain',
      });
    // Read backwards in growing windows until the start of the last line is inside the window.
    for (let window = 64 * 1024; ; window *= 4) {
      const start = Math.max(0, size - window);
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      if (buf[buf.length - 1] !== 0x0a) throw corrupt('last line is incomplete: no trailing newline');
      const prevNl = buf.lastIndexOf(0x0a, buf.length - 2);
      if (prevNl < 0 && start > 0) continue;
      const line = buf.subarray(prevNl + 1, buf.length - 1);
      const c = checkLine(line);
      if (!c.ok) throw corrupt(c.reason);
      return { seq: c.seq, linkHash: c.linkHash };
    }
  } finally {
    await fh.close();
  }
}

/** Batching of {@link HashChainFileSink}. */
export interface FileSinkOptions {
  /** Longest time a sealed line waits before it is appended (ms). Default 20. */
  readonly flushIntervalMs?: number;
  /** Pending text (UTF-16 units) that is appended at once, without waiting. Default 64 Ki. */
  readonly batchSize?: number;
  /**
   * Pending text beyond which new records are refused, counted in
   * `portcullis_audit_sink_failures_total{sink="file"}` and logged: a disk that stalls must not
   * grow the process without bound. Default 32 Mi (tens of thousands of records).
   */
  readonly maxPending?: number;
}

/**
 * Append-only, hash-chained audit file (format in `chain.ts`). Opening continues the chain of an
 * existing file after checking its last line.
 *
 * `write` seals the record at once (serialise, hash) and queues the line; queued lines are
 * appended in order by one asynchronous writer, in batches: every `flushIntervalMs`, or as soon
 * as `batchSize` is pending, so the request path never waits for the disk and the disk sees a
 * few appends per second instead of one per record. `flush`/`close` append everything pending
 * (the graceful shutdown path closes every sink); on process exit whatever is still pending is
 * appended synchronously. After a crash (SIGKILL, OOM, power loss) the lines not yet appended,
 * at most `flushIntervalMs` or `batchSize` worth, are lost and the file ends at an intact
 * record (a torn last line is refused on the next start and reported by `audit verify`).
 *
 * After a failed write the sink stops writing (later lines could not link) and counts what it
 * drops. One writer per file: two sinks appending to the same file would fork the chain. Within
 * the process, {@link AuditLogger.fromConfig} shares one sink per file across reloads.
 */
export class HashChainFileSink implements AuditSink {
  private pending: string[] = [];
  private pendingSize = 0;
  private writing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private failed = false;
  private overflowing = false;
  private readonly flushIntervalMs: number;
  private readonly batchSize: number;
  private readonly maxPending: number;
  private readonly onExit = (): void => this.appendSyncAtExit();
  private readonly appendLater = (): void => {
    this.timer = null;
    this.startAppend();
  };

  private constructor(
    /** Resolved file path. */
    readonly path: string,
    private readonly fh: FileHandle,
    private head: ChainHead,
    opts: FileSinkOptions,
  ) {
    this.flushIntervalMs = opts.flushIntervalMs ?? 20;
    this.batchSize = opts.batchSize ?? 64 * 1024;
    this.maxPending = opts.maxPending ?? 32 * 1024 * 1024;
    process.on('exit', this.onExit);
  }

  /** Opens (or creates) the file and positions the chain after its last record. */
  static async open(path: string, opts: FileSinkOptions = {}): Promise<HashChainFileSink> {
    const file = resolve(path);
    await mkdir(dirname(file), { recursive: true });
    const head = await readChainHead(file);
    const fh = await open(file, 'a', 0o640);
    return new HashChainFileSink(file, fh, head, opts);
  }

  /** Sequence number of the last record sealed so far. */
  get lastSeq(): number {
    return this.head.seq;
  }

  write(r: AuditRecord): void {
    if (this.closed || this.failed) {
      sinkFailures.inc({ sink: 'file' });
      return;
    }
    if (this.pendingSize > this.maxPending) {
      // Refused before sealing, so the chain on disk stays intact; the metric shows the loss.
      sinkFailures.inc({ sink: 'file' });
      if (!this.overflowing) {
        this.overflowing = true;
        log.error({ file: this.path, pending: this.pendingSize }, 'audit file is not keeping up; records are dropped until it catches up');
      }
      return;
    }
    const sealed = sealLine(r, this.head);
    this.head = sealed.head;
    this.pending.push(`${sealed.line}\n`);
    this.pendingSize += sealed.line.length + 1;
    if (this.writing) return; // the writer picks it up when the current append completes
    if (this.pendingSize >= this.batchSize) this.startAppend();
    else if (this.timer === null) {
      this.timer = setTimeout(this.appendLater, this.flushIntervalMs);
      // Never keeps the process alive: exit appends what is left (see appendSyncAtExit).
      this.timer.unref();
    }
  }

  /** Resolves once every record written so far is on disk (or dropped after a failure). */
  async flush(): Promise<void> {
    while (this.writing || (this.pending.length > 0 && !this.failed)) {
      this.startAppend();
      await this.writing;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flush();
    process.off('exit', this.onExit);
    await this.fh.close();
  }

  /** Appends everything pending now, then keeps going while the batch threshold is reached. */
  private startAppend(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.writing || this.pending.length === 0 || this.failed) return;
    const lines = this.pending;
    this.pending = [];
    this.pendingSize = 0;
    this.writing = this.append(lines).finally(() => {
      this.writing = null;
      if (this.pending.length === 0) return;
      // What arrived during the append: write it now if a batch is full, else within the interval.
      if (this.pendingSize >= this.batchSize || this.closed) this.startAppend();
      else if (this.timer === null) {
        this.timer = setTimeout(this.appendLater, this.flushIntervalMs);
        this.timer.unref();
      }
    });
  }

  private async append(lines: string[]): Promise<void> {
    const data = Buffer.from(lines.join(''), 'utf8');
    try {
      // One write(2) in practice; a short write is continued, never left half a line.
      for (let off = 0; off < data.length; ) off += (await this.fh.write(data, off)).bytesWritten;
      this.overflowing = false;
    } catch (err) {
      this.failed = true;
      sinkFailures.inc({ sink: 'file' }, lines.length + this.pending.length);
      this.pending = [];
      this.pendingSize = 0;
      log.error({ file: this.path, err: (err as Error).message }, 'audit file write failed; the file sink stops writing');
    }
  }

  /**
   * Process exit without a graceful close (process.exit, uncaught exception): append what is
   * pending synchronously. Skipped while an asynchronous append is in flight, since lines written
   * now could land before it; the file then ends at the last complete append.
   */
  private appendSyncAtExit(): void {
    if (this.writing || this.failed || this.pending.length === 0) return;
    try {
      writeSync(this.fh.fd, this.pending.join(''));
      this.pending = [];
      this.pendingSize = 0;
    } catch {
      // Exiting: nothing else can be done with the error.
    }
  }
}

interface SharedFile {
  readonly sink: Promise<HashChainFileSink>;
  refs: number;
}

/** Open file sinks by resolved path, so a reload keeps appending through the same writer. */
const sharedFiles = new Map<string, SharedFile>();

async function acquireFileSink(path: string): Promise<AuditSink> {
  const file = resolve(path);
  let entry = sharedFiles.get(file);
  if (!entry) {
    const created: SharedFile = { sink: HashChainFileSink.open(file), refs: 0 };
    created.sink.catch(() => {
      if (sharedFiles.get(file) === created) sharedFiles.delete(file);
    });
    sharedFiles.set(file, created);
    entry = created;
  }
  const held = entry;
  // Counted before waiting, so a concurrent release cannot close the writer under us.
  held.refs += 1;
  let sink: HashChainFileSink;
  try {
    sink = await held.sink;
  } catch (err) {
    held.refs -= 1;
    throw err;
  }
  let released = false;
  return {
    write: (r) => sink.write(r),
    close: async () => {
      if (released) return;
      released = true;
      held.refs -= 1;
      if (held.refs > 0) return sink.flush();
      if (sharedFiles.get(file) === held) sharedFiles.delete(file);
      return sink.close();
    },
  };
}

/** Audit input without the capture settings, which the logger supplies from its configuration. */
export type LoggedExchange = Omit<AuditExchange, 'payload'> & {
  readonly payload?: { readonly request?: string | null; readonly response?: string | null };
};

/** Fans each record out to every configured sink and counts it by outcome. */
export class AuditLogger {
  constructor(
    private readonly sinks: readonly AuditSink[],
    /** Payload capture settings applied by {@link AuditLogger.record}. */
    readonly payload: AuditConfig['payload'],
    /** DLP scanner that redacts secrets in recorded paths; null redacts query values only. */
    private readonly scanner: Scanner | null = null,
  ) {}

  /**
   * Builds the logger for an `audit` config section; relative file paths resolve against
   * `baseDir`. `scanner` (the gateway's DLP catalog) redacts secrets in recorded paths.
   */
  static fromConfig(cfg: AuditConfig, baseDir: string, scanner: Scanner | null = null): Promise<AuditLogger> {
    return fromConfig(cfg, baseDir, scanner);
  }

  /** Writes a built record to every sink. */
  write(r: AuditRecord): void {
    recordsTotal.inc({ outcome: auditOutcome(r) });
    for (const s of this.sinks) {
      try {
        s.write(r);
      } catch (err) {
        log.error({ err: (err as Error).message }, 'audit sink write failed');
      }
    }
  }

  /** Builds the record of an exchange with this logger's capture settings, writes it, returns it. */
  record(x: LoggedExchange): AuditRecord {
    const r = buildAuditRecord({ ...x, payload: x.payload ? { ...x.payload, capture: this.payload } : undefined }, this.scanner);
    this.write(r);
    return r;
  }

  /** Flushes and closes every sink. */
  async close(): Promise<void> {
    const results = await Promise.allSettled(this.sinks.map((s) => s.close()));
    for (const r of results) {
      if (r.status === 'rejected') log.error({ err: (r.reason as Error)?.message }, 'audit sink close failed');
    }
  }
}

/**
 * Opens the sinks an `audit` section asks for: stdout when `stdout` is true, the hash-chained
 * file when `file` is set (resolved against `baseDir`). Rejects when the file cannot be opened
 * or its last record is corrupt.
 */
export async function fromConfig(cfg: AuditConfig, baseDir: string, scanner: Scanner | null = null): Promise<AuditLogger> {
  const sinks: AuditSink[] = [];
  if (cfg.file) sinks.push(await acquireFileSink(resolve(baseDir, cfg.file)));
  if (cfg.stdout) sinks.push(new StdoutSink());
  return new AuditLogger(sinks, cfg.payload, scanner);
}
