import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { pino, type DestinationStream, type Logger } from 'pino';
import { Counter } from 'prom-client';
import type { AuditConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { log } from '../log.js';
import { registry } from '../metrics.js';
import { GENESIS_HEAD, checkLine, sealLine, type ChainHead } from './chain.js';
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
 * The default destination writes asynchronously.
 */
export class StdoutSink implements AuditSink {
  private readonly logger: Logger;
  private readonly dest: DestinationStream;
  private readonly ownsDest: boolean;
  private closed = false;

  constructor(destination?: DestinationStream) {
    this.ownsDest = destination === undefined;
    this.dest = destination ?? pino.destination({ dest: 1, sync: false });
    this.logger = pino({ level: 'info', base: { service: 'portcullis' } }, this.dest);
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
    const dest = this.dest as DestinationStream & { end?: () => void; once?: (ev: string, fn: () => void) => void };
    if (!this.ownsDest || typeof dest.end !== 'function' || typeof dest.once !== 'function') return;
    // Ending our own SonicBoom waits for pending writes; it never closes fd 1 itself.
    await new Promise<void>((done) => {
      dest.once!('close', done);
      dest.end!();
    });
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
      return { seq: c.seq, lineHash: c.lineHash };
    }
  } finally {
    await fh.close();
  }
}

/**
 * Append-only, hash-chained audit file (format in `chain.ts`). Opening continues the chain of an
 * existing file after checking its last line. `write` only queues: lines are sealed and appended
 * in order by one asynchronous writer, so the request path never waits for the disk. After a
 * failed write the sink stops writing (later lines could not link) and counts what it drops.
 *
 * One writer per file: two sinks appending to the same file would fork the chain. Within the
 * process, {@link AuditLogger.fromConfig} shares one sink per file across reloads.
 */
export class HashChainFileSink implements AuditSink {
  private queue: AuditRecord[] = [];
  private draining: Promise<void> | null = null;
  private closed = false;
  private failed = false;

  private constructor(
    /** Resolved file path. */
    readonly path: string,
    private readonly fh: FileHandle,
    private head: ChainHead,
  ) {}

  /** Opens (or creates) the file and positions the chain after its last record. */
  static async open(path: string): Promise<HashChainFileSink> {
    const file = resolve(path);
    await mkdir(dirname(file), { recursive: true });
    const head = await readChainHead(file);
    const fh = await open(file, 'a', 0o640);
    return new HashChainFileSink(file, fh, head);
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
    this.queue.push(r);
    this.draining ??= this.drain();
  }

  /** Resolves once every record queued so far is on disk (or dropped after a failure). */
  async flush(): Promise<void> {
    while (this.draining) await this.draining;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flush();
    await this.fh.close();
  }

  private async drain(): Promise<void> {
    // Let the current tick finish so records written together go out in one append.
    await new Promise<void>((done) => setImmediate(done));
    try {
      while (this.queue.length > 0 && !this.failed) {
        const batch = this.queue;
        this.queue = [];
        let head = this.head;
        const lines: string[] = [];
        for (const r of batch) {
          const sealed = sealLine(r, head);
          lines.push(sealed.line, '\n');
          head = sealed.head;
        }
        try {
          await this.fh.write(lines.join(''));
          this.head = head;
        } catch (err) {
          this.failed = true;
          sinkFailures.inc({ sink: 'file' }, batch.length + this.queue.length);
          this.queue = [];
          log.error({ file: this.path, err: (err as Error).message }, 'audit file write failed; the file sink stops writing');
        }
      }
    } finally {
      this.draining = null;
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
  ) {}

  /** Builds the logger for an `audit` config section; relative file paths resolve against `baseDir`. */
  static fromConfig(cfg: AuditConfig, baseDir: string): Promise<AuditLogger> {
    return fromConfig(cfg, baseDir);
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
    const r = buildAuditRecord({ ...x, payload: x.payload ? { ...x.payload, capture: this.payload } : undefined });
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
export async function fromConfig(cfg: AuditConfig, baseDir: string): Promise<AuditLogger> {
  const sinks: AuditSink[] = [];
  if (cfg.file) sinks.push(await acquireFileSink(resolve(baseDir, cfg.file)));
  if (cfg.stdout) sinks.push(new StdoutSink());
  return new AuditLogger(sinks, cfg.payload);
}
