import { writeSync } from 'node:fs';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { pino, type DestinationStream, type Logger } from 'pino';
import { Counter } from 'prom-client';
import type { AuditConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { flushStdout, log, loggerOptions, stdout } from '../log.js';
import { registry } from '../metrics.js';
import { GENESIS_HEAD, checkLine, sealLine, type ChainHead } from './chain.js';
import type { Scanner } from '../dlp/types.js';
import { SecretStore } from '../credentials/secrets.js';
import { AnchorFile } from './anchors.js';
import { CheckpointSigner } from './checkpoint.js';
import { auditOutcome, buildAuditRecord, buildForwardedRecord, type AuditExchange, type AuditForwarded, type AuditLine, type AuditRecord } from './record.js';

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

/** Why a durable write was refused: the caller must not forward what it could not record. */
function sinkUnavailable(path: string): GatewayError {
  return new GatewayError('unavailable', `the audit file ${path} cannot be written`, { rule: 'audit.unavailable' });
}

/**
 * Destination of audit records. `write` never blocks or throws; `durable` resolves once the
 * record is as durable as the sink makes it (rejects if it cannot be; a sink without it is
 * written to and counts as durable); `close` flushes what is pending.
 */
export interface AuditSink {
  write(r: AuditLine): void;
  durable?(r: AuditLine): Promise<void>;
  /** Resolves once every record written so far is as durable as `write` makes it (optional). */
  flush?(): Promise<void>;
  close(): Promise<void>;
}

function writeDurable(s: AuditSink, r: AuditLine): Promise<void> {
  if (s.durable) return s.durable(r);
  s.write(r);
  return Promise.resolve();
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
    this.logger = pino(loggerOptions({ level: 'info' }), destination ?? stdout);
  }

  write(r: AuditLine): void {
    if (this.closed) {
      sinkFailures.inc({ sink: 'stdout' });
      return;
    }
    this.logger.info({ audit: r }, 'audit');
  }

  /** Stdout is a log stream, not a durable store: written is enough. */
  durable(r: AuditLine): Promise<void> {
    this.write(r);
    return Promise.resolve();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // The shared stdout stays open for the process log; only wait for what was written.
    if (this.destination === undefined) await flushStdout();
  }
}

/** Where an existing file ends: its chain head, and whether its last line is a checkpoint. */
interface FileEnd {
  readonly head: ChainHead;
  readonly checkpointed: boolean;
}

/** Reads the last line of an existing audit file and returns the chain head it ends at. */
async function readChainHead(path: string): Promise<FileEnd> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { head: GENESIS_HEAD, checkpointed: true };
    throw err;
  }
  try {
    const size = (await fh.stat()).size;
    if (size === 0) return { head: GENESIS_HEAD, checkpointed: true };
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
      const last = JSON.parse(line.toString('utf8')) as { record_type?: unknown };
      return { head: { seq: c.seq, linkHash: c.linkHash }, checkpointed: last.record_type === 'checkpoint' };
    }
  } finally {
    await fh.close();
  }
}

/** Checkpointing of {@link HashChainFileSink} (see `checkpoint.ts`). */
export interface CheckpointOptions {
  readonly signer: CheckpointSigner;
  /** A checkpoint after this many lines. */
  readonly everyRecords: number;
  /** A checkpoint this often (ms) when lines were written since the last one. */
  readonly everyMs: number;
  /** Receives each checkpoint line once it is in the file; owned (closed) by the sink. */
  readonly anchor?: AnchorFile;
}

/** Batching, durability and checkpointing of {@link HashChainFileSink}. */
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
  /** fdatasync after each append, before durable writes resolve. Default false. */
  readonly fsync?: boolean;
  /** Signed checkpoints; omitted: none. */
  readonly checkpoint?: CheckpointOptions;
}

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

/**
 * Append-only, hash-chained audit file (format in `chain.ts`). Opening continues the chain of an
 * existing file after checking its last line.
 *
 * `write` seals the record at once (serialise, hash) and queues the line; queued lines are
 * appended in order by one asynchronous writer, in batches: every `flushIntervalMs`, or as soon
 * as `batchSize` is pending, so the request path never waits for the disk and the disk sees a
 * few appends per second instead of one per record. `durable` queues the same way but starts
 * the append at once (or right after the one in flight) and resolves when its write(2) has
 * completed, fdatasync included with `fsync`: concurrent durable lines share one append (group
 * commit). `flush`/`close` append everything pending (the graceful shutdown path closes every
 * sink); on process exit whatever is still pending is appended synchronously. After a crash
 * (SIGKILL, OOM, power loss) the lines not yet appended, at most `flushIntervalMs` or
 * `batchSize` worth of non-durable ones, are lost and the file ends at an intact record (a torn
 * last line is refused on the next start and reported by `audit verify`).
 *
 * With checkpoints, a signed checkpoint line follows every `everyRecords` lines, every `everyMs`
 * when something was written, and at close and exit, so a cleanly closed file ends with one.
 *
 * After a failed write the sink stops writing (later lines could not link), rejects durable
 * writes and counts what it drops. One writer per file: two sinks appending to the same file
 * would fork the chain. Within the process, {@link AuditLogger.fromConfig} shares one sink per
 * file across reloads.
 */
export class HashChainFileSink implements AuditSink {
  private head: ChainHead;
  private pending: string[] = [];
  private pendingSize = 0;
  private waiters: Waiter[] = [];
  /** Checkpoint lines among `pending`, sent to the anchor once appended. */
  private pendingAnchors: string[] = [];
  private writing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private checkpointTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private failed = false;
  private overflowing = false;
  /** Lines this writer sealed since the last checkpoint. */
  private sinceCheckpoint: number;
  private readonly flushIntervalMs: number;
  private readonly batchSize: number;
  private readonly maxPending: number;
  private fsync: boolean;
  private checkpoints: CheckpointOptions | null = null;
  private readonly onExit = (): void => this.appendSyncAtExit();
  private readonly appendLater = (): void => {
    this.timer = null;
    this.startAppend();
  };

  private constructor(
    /** Resolved file path. */
    readonly path: string,
    private readonly fh: FileHandle,
    end: FileEnd,
    opts: FileSinkOptions,
  ) {
    this.head = end.head;
    // Lines an earlier writer left unanchored are covered by this writer's first checkpoint,
    // made only once it writes: a process that opens and closes the file (`portcullis check`)
    // must never append to a file another process is writing.
    this.sinceCheckpoint = 0;
    if (opts.checkpoint && !end.checkpointed) {
      log.warn({ file: path }, 'audit file does not end with a checkpoint: the previous writer did not shut down cleanly, or checkpoints are new to this file');
    }
    this.flushIntervalMs = opts.flushIntervalMs ?? 20;
    this.batchSize = opts.batchSize ?? 64 * 1024;
    this.maxPending = opts.maxPending ?? 32 * 1024 * 1024;
    this.fsync = opts.fsync ?? false;
    this.configure(opts);
    process.on('exit', this.onExit);
  }

  /** Opens (or creates) the file and positions the chain after its last record. */
  static async open(path: string, opts: FileSinkOptions = {}): Promise<HashChainFileSink> {
    const file = resolve(path);
    await mkdir(dirname(file), { recursive: true });
    const end = await readChainHead(file);
    const fh = await open(file, 'a', 0o640);
    return new HashChainFileSink(file, fh, end, opts);
  }

  /** Sequence number of the last record sealed so far. */
  get lastSeq(): number {
    return this.head.seq;
  }

  /**
   * Applies fsync and checkpoint settings (a reload reuses the open sink). A replaced anchor is
   * closed once its queued lines are written; checkpoint lines not yet appended go to the new one.
   */
  configure(opts: Pick<FileSinkOptions, 'fsync' | 'checkpoint'>): void {
    this.fsync = opts.fsync ?? false;
    const prev = this.checkpoints;
    this.checkpoints = opts.checkpoint ?? null;
    if (prev?.anchor && prev.anchor !== this.checkpoints?.anchor) void prev.anchor.close();
    if (this.checkpointTimer !== null) clearInterval(this.checkpointTimer);
    this.checkpointTimer = null;
    if (this.checkpoints) {
      this.checkpointTimer = setInterval(() => {
        if (this.sinceCheckpoint === 0 || this.closed || this.failed) return;
        this.sealCheckpoint();
        this.schedule();
      }, this.checkpoints.everyMs);
      this.checkpointTimer.unref();
    }
  }

  write(r: AuditLine): void {
    if (!this.accepts()) return;
    this.seal(r);
    this.schedule();
  }

  durable(r: AuditLine): Promise<void> {
    if (!this.accepts()) return Promise.reject(sinkUnavailable(this.path));
    this.seal(r);
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    // Group commit: joins what is pending now; an append in flight starts the next one when it ends.
    if (!this.writing) this.startAppend();
    return done;
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
    if (this.checkpoints && this.sinceCheckpoint > 0 && !this.failed) this.sealCheckpoint();
    this.closed = true;
    if (this.checkpointTimer !== null) clearInterval(this.checkpointTimer);
    await this.flush();
    process.off('exit', this.onExit);
    await this.checkpoints?.anchor?.close();
    await this.fh.close();
  }

  /** Whether a new line may be sealed; counts the ones refused. */
  private accepts(): boolean {
    if (this.closed || this.failed) {
      sinkFailures.inc({ sink: 'file' });
      return false;
    }
    if (this.pendingSize > this.maxPending) {
      // Refused before sealing, so the chain on disk stays intact; the metric shows the loss.
      sinkFailures.inc({ sink: 'file' });
      if (!this.overflowing) {
        this.overflowing = true;
        log.error({ file: this.path, pending: this.pendingSize }, 'audit file is not keeping up; records are dropped until it catches up');
      }
      return false;
    }
    return true;
  }

  private push(line: string): void {
    this.pending.push(`${line}\n`);
    this.pendingSize += line.length + 1;
  }

  private seal(r: AuditLine): void {
    const sealed = sealLine(r, this.head);
    this.head = sealed.head;
    this.push(sealed.line);
    this.sinceCheckpoint += 1;
    if (this.checkpoints && this.sinceCheckpoint >= this.checkpoints.everyRecords) this.sealCheckpoint();
  }

  /** Seals a checkpoint covering the head now. */
  private sealCheckpoint(): void {
    const cp = this.checkpoints;
    if (!cp || this.head.seq === 0) return;
    const sealed = sealLine(cp.signer.checkpoint(this.head.seq, this.head.linkHash), this.head);
    this.head = sealed.head;
    this.push(sealed.line);
    if (cp.anchor) this.pendingAnchors.push(sealed.line);
    this.sinceCheckpoint = 0;
  }

  /** Appends now when a batch is full or a durable write waits, else within the interval. */
  private schedule(): void {
    if (this.writing) return; // the writer picks it up when the current append completes
    if (this.pendingSize >= this.batchSize || this.waiters.length > 0) this.startAppend();
    else if (this.timer === null) {
      this.timer = setTimeout(this.appendLater, this.flushIntervalMs);
      // Never keeps the process alive: exit appends what is left (see appendSyncAtExit).
      this.timer.unref();
    }
  }

  /** Appends everything pending now, then keeps going while the batch threshold is reached. */
  private startAppend(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.writing || this.pending.length === 0 || this.failed) return;
    const lines = this.pending;
    const waiters = this.waiters;
    const anchors = this.pendingAnchors;
    this.pending = [];
    this.pendingSize = 0;
    this.waiters = [];
    this.pendingAnchors = [];
    this.writing = this.append(lines, waiters, anchors).finally(() => {
      this.writing = null;
      if (this.pending.length === 0) return;
      // What arrived during the append: now if a batch is full, a durable write waits or closing.
      if (this.closed) this.startAppend();
      else this.schedule();
    });
  }

  private async append(lines: string[], waiters: Waiter[], anchors: string[]): Promise<void> {
    const data = Buffer.from(lines.join(''), 'utf8');
    try {
      // One write(2) in practice; a short write is continued, never left half a line.
      for (let off = 0; off < data.length; ) off += (await this.fh.write(data, off)).bytesWritten;
      if (this.fsync) await this.fh.datasync();
      this.overflowing = false;
    } catch (err) {
      this.failed = true;
      sinkFailures.inc({ sink: 'file' }, lines.length + this.pending.length);
      const refused = sinkUnavailable(this.path);
      for (const w of [...waiters, ...this.waiters]) w.reject(refused);
      this.pending = [];
      this.pendingSize = 0;
      this.waiters = [];
      this.pendingAnchors = [];
      log.error({ file: this.path, err: (err as Error).message }, 'audit file write failed; the file sink stops writing');
      return;
    }
    for (const w of waiters) w.resolve();
    for (const line of anchors) this.checkpoints?.anchor?.write(line);
  }

  /**
   * Process exit without a graceful close (process.exit, uncaught exception): append what is
   * pending synchronously, after a last checkpoint. Skipped while an asynchronous append is in
   * flight, since lines written now could land before it; the file then ends at the last
   * complete append.
   */
  private appendSyncAtExit(): void {
    if (this.writing || this.failed) return;
    if (this.checkpoints && this.sinceCheckpoint > 0) this.sealCheckpoint();
    if (this.pending.length === 0) return;
    try {
      writeSync(this.fh.fd, this.pending.join(''));
      this.pending = [];
      this.pendingSize = 0;
      for (const line of this.pendingAnchors) this.checkpoints?.anchor?.writeSyncAtExit(line);
      this.pendingAnchors = [];
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

async function acquireFileSink(path: string, opts: Pick<FileSinkOptions, 'fsync' | 'checkpoint'>): Promise<AuditSink> {
  const file = resolve(path);
  let entry = sharedFiles.get(file);
  let created = false;
  if (!entry) {
    const fresh: SharedFile = { sink: HashChainFileSink.open(file, opts), refs: 0 };
    fresh.sink.catch(() => {
      if (sharedFiles.get(file) === fresh) sharedFiles.delete(file);
    });
    sharedFiles.set(file, fresh);
    entry = fresh;
    created = true;
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
  // The newest configuration (a reload) decides fsync and checkpoints for the shared writer.
  if (!created) sink.configure(opts);
  let released = false;
  return {
    write: (r) => sink.write(r),
    durable: (r) => (released ? Promise.reject(sinkUnavailable(file)) : sink.durable(r)),
    flush: () => sink.flush(),
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

/** What {@link AuditLogger.forwarded} reads: the request side of an exchange. */
export type LoggedForwarded = AuditForwarded;

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
   * `baseDir`. `scanner` (the gateway's DLP catalog) redacts secrets in recorded paths;
   * `secrets` resolves the checkpoint key (a store of the logger's own when omitted).
   */
  static fromConfig(cfg: AuditConfig, baseDir: string, scanner: Scanner | null = null, secrets?: SecretStore): Promise<AuditLogger> {
    return fromConfig(cfg, baseDir, scanner, secrets);
  }

  /** Writes a built record to every sink. */
  write(r: AuditLine): void {
    if (r.record_type === 'exchange') recordsTotal.inc({ outcome: auditOutcome(r) });
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

  /**
   * Records that a request is being forwarded to its tool. Resolves once the record is durable
   * in every file sink (its append completed; fdatasync too with `audit.fsync`); concurrent
   * calls share one append. Rejects with an `unavailable` GatewayError (rule `audit.unavailable`)
   * when a sink cannot take it: the caller must then not forward the request (fail closed).
   */
  async forwarded(x: LoggedForwarded): Promise<void> {
    const r = buildForwardedRecord(x, this.scanner);
    const results = await Promise.allSettled(this.sinks.map((s) => writeDurable(s, r)));
    const failed = results.find((p): p is PromiseRejectedResult => p.status === 'rejected');
    if (failed) {
      throw failed.reason instanceof GatewayError ? failed.reason : new GatewayError('unavailable', 'the audit record could not be written', { rule: 'audit.unavailable' });
    }
  }

  /** Flushes and closes every sink. */
  async close(): Promise<void> {
    const results = await Promise.allSettled(this.sinks.map((s) => s.close()));
    for (const r of results) {
      if (r.status === 'rejected') log.error({ err: (r.reason as Error)?.message }, 'audit sink close failed');
    }
  }
}

/** Reads the checkpoint key through the secret store; errors name the reference, never the key. */
function checkpointSigner(ref: NonNullable<AuditConfig['checkpoint']>['key'], baseDir: string, secrets: SecretStore | undefined): CheckpointSigner {
  const store = secrets ?? new SecretStore(baseDir);
  try {
    const problem = store.prepare(ref);
    if (problem) throw new Error(problem);
    return CheckpointSigner.fromPem(store.get(ref));
  } catch (err) {
    throw new Error(`audit.checkpoint.key (${SecretStore.describe(ref)}): ${(err as Error).message}`);
  } finally {
    // The key is read once per (re)load; a store of our own has nothing left to watch.
    if (!secrets) store.close();
  }
}

/**
 * Where the file records of a worker process go: to the primary, which owns the file (one
 * writer, one hash chain). `durable` resolves once the primary has the record as durable as its
 * sink makes it; `flush` once everything sent so far is appended.
 */
export interface AuditForwarder {
  /** False when the record could not be sent (counted as a sink failure). */
  write(r: AuditLine): boolean;
  durable(r: AuditLine): Promise<void>;
  flush(): Promise<void>;
}

let forwarder: AuditForwarder | null = null;

/**
 * Makes every file sink opened from now on in this process forward to `f` instead of opening
 * the file (worker processes); null opens files again.
 */
export function forwardFileRecords(f: AuditForwarder | null): void {
  forwarder = f;
}

/** The file sink of a worker: records sealed by the primary; a refusal there is a refusal here. */
function forwardedFileSink(f: AuditForwarder, path: string): AuditSink {
  return {
    write: (r) => {
      if (!f.write(r)) sinkFailures.inc({ sink: 'file' });
    },
    durable: (r) =>
      f.durable(r).catch((err: unknown) => {
        sinkFailures.inc({ sink: 'file' });
        throw err instanceof GatewayError ? err : sinkUnavailable(path);
      }),
    // The primary's writer outlives this configuration: only wait for what was sent.
    close: () => f.flush().catch(() => undefined),
  };
}

/**
 * The hash-chained file sink an `audit` section asks for (null without `audit.file`), with
 * signed checkpoints and their anchor file when `checkpoint` is set. In a worker process (see
 * {@link forwardFileRecords}) the checkpoint key is still checked, so a worker refuses the same
 * configurations as the primary that writes the file.
 */
export async function openFileSink(cfg: AuditConfig, baseDir: string, secrets?: SecretStore): Promise<AuditSink | null> {
  if (!cfg.file) {
    if (cfg.checkpoint) throw new Error('audit.checkpoint needs audit.file: checkpoints are lines of the hash-chained file');
    return null;
  }
  if (forwarder) {
    if (cfg.checkpoint) checkpointSigner(cfg.checkpoint.key, baseDir, secrets);
    return forwardedFileSink(forwarder, resolve(baseDir, cfg.file));
  }
  let checkpoint: CheckpointOptions | undefined;
  if (cfg.checkpoint) {
    const c = cfg.checkpoint;
    const signer = checkpointSigner(c.key, baseDir, secrets);
    const anchor = c.anchor_file ? await AnchorFile.open(resolve(baseDir, c.anchor_file)) : undefined;
    checkpoint = { signer, everyRecords: c.every_records, everyMs: c.every_seconds * 1000, ...(anchor ? { anchor } : {}) };
  }
  try {
    return await acquireFileSink(resolve(baseDir, cfg.file), { fsync: cfg.fsync, ...(checkpoint ? { checkpoint } : {}) });
  } catch (err) {
    await checkpoint?.anchor?.close();
    throw err;
  }
}

/**
 * Opens the sinks an `audit` section asks for: stdout when `stdout` is true, the hash-chained
 * file when `file` is set (resolved against `baseDir`), with signed checkpoints and their anchor
 * file when `checkpoint` is set. Rejects when the file cannot be opened, its last record is
 * corrupt, or the checkpoint key is unusable.
 */
export async function fromConfig(cfg: AuditConfig, baseDir: string, scanner: Scanner | null = null, secrets?: SecretStore): Promise<AuditLogger> {
  const sinks: AuditSink[] = [];
  const file = await openFileSink(cfg, baseDir, secrets);
  if (file) sinks.push(file);
  if (cfg.stdout) sinks.push(new StdoutSink());
  return new AuditLogger(sinks, cfg.payload, scanner);
}
