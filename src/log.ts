import { writeSync } from 'node:fs';
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

/** Longest time a line waits in the stdout buffer before it is handed to the OS. */
const STDOUT_FLUSH_MS = 20;
/** Buffered text (UTF-16 units) that is written at once, without waiting for the timer. */
const STDOUT_BATCH = 16 * 1024;
/** Text waiting for a stalled stdout beyond which new lines are dropped (and counted). */
const STDOUT_MAX_PENDING = 16 * 1024 * 1024;

type SonicBoom = ReturnType<typeof pino.destination>;

/**
 * Buffered, asynchronous stdout shared by every logger of the process, so no line blocks the
 * event loop and lines from different loggers never interleave mid-line. Lines are coalesced for
 * up to {@link STDOUT_FLUSH_MS} (or {@link STDOUT_BATCH}) and handed to one asynchronous writer:
 * a handful of `write(2)` calls per second of load instead of one per line, which is what a
 * line per audit record cost. On process exit whatever is still buffered is written
 * synchronously; {@link flushStdout} lets a graceful shutdown wait for it instead.
 */
export class BufferedStdout implements DestinationStream {
  private chunks: string[] = [];
  private size = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly spillLater = (): void => {
    this.timer = null;
    this.spill();
  };
  /** Bytes handed to the writer, and bytes it reported written: equal when nothing is in flight. */
  private handed = 0;
  private written = 0;
  private waiters: (() => void)[] = [];
  /** Lines refused because too much was already waiting for a stalled stdout. */
  dropped = 0;

  /**
   * @param boom asynchronous writer for the file descriptor (pino's SonicBoom).
   * @param fd that file descriptor, written directly at exit.
   */
  constructor(
    private readonly boom: SonicBoom,
    private readonly fd = 1,
  ) {
    boom.on('write', (n: number) => {
      this.written += n;
      if (this.written >= this.handed) this.wake();
    });
    // A failed or closed stdout must not hang a shutdown that waits for it.
    boom.on('error', () => this.wake());
    boom.on('close', () => this.wake());
    process.on('exit', () => this.flushSync());
  }

  /** Queues one line (pino calls this with a complete, newline-terminated line). */
  write(line: string): void {
    if (this.size > STDOUT_MAX_PENDING) {
      this.dropped += 1;
      return;
    }
    this.chunks.push(line);
    this.size += line.length;
    if (this.size >= STDOUT_BATCH) this.spill();
    else if (this.timer === null) {
      this.timer = setTimeout(this.spillLater, STDOUT_FLUSH_MS);
      // The buffer never keeps the process alive: exit flushes it synchronously.
      this.timer.unref();
    }
  }

  /** Resolves once every line queued so far has been handed to the OS. */
  flush(): Promise<void> {
    this.spill();
    if (this.written >= this.handed) return Promise.resolve();
    return new Promise((done) => this.waiters.push(done));
  }

  /** Writes everything still buffered synchronously (process exit: no event loop left). */
  flushSync(): void {
    if (this.written >= this.handed && this.chunks.length > 0) {
      // Nothing in flight: write the rest straight to the descriptor. Handing it to the
      // asynchronous writer now would queue a write that the exiting process never completes.
      if (this.timer !== null) clearTimeout(this.timer);
      this.timer = null;
      const text = this.chunks.join('');
      this.chunks = [];
      this.size = 0;
      try {
        writeSync(this.fd, text);
      } catch {
        // stdout closed or not writable: nothing left to do at exit.
      }
      return;
    }
    this.spill();
    try {
      this.boom.flushSync();
    } catch {
      // stdout closed or not writable: nothing left to do at exit.
    }
  }

  private spill(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.chunks.length === 0) return;
    const text = this.chunks.length === 1 ? this.chunks[0]! : this.chunks.join('');
    this.chunks = [];
    this.size = 0;
    this.handed += Buffer.byteLength(text);
    this.boom.write(text);
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/** The process' stdout, buffered (see {@link BufferedStdout}); pino loggers write here. */
export const stdout: BufferedStdout = new BufferedStdout(pino.destination({ dest: 1, sync: false, minLength: 0 }));

/** Resolves once every log and audit line written so far to stdout has reached the OS. */
export function flushStdout(): Promise<void> {
  return stdout.flush();
}

/**
 * Options every pino logger of the process starts from: ISO-8601 times (`"time":"2025-06-01T
 * 12:00:00.000Z"`) and string levels (`"level":"warn"`), which log pipelines read without a
 * mapping table. `extra` is merged over them.
 */
export function loggerOptions(extra: LoggerOptions = {}): LoggerOptions {
  return {
    base: { service: 'portcullis' },
    timestamp: pino.stdTimeFunctions.isoTime,
    ...extra,
    formatters: { ...extra.formatters, level: (label: string) => ({ level: label }) },
  };
}

/** Keys of a log line that the plain-text rendering leaves out (they are in the prefix or noise). */
const PLAIN_SKIP = new Set(['level', 'time', 'service', 'msg', 'pid', 'hostname']);

/**
 * Renders pino JSON lines as one plain-text diagnostic each on stderr
 * (`portcullis: warning: <msg> (key=value, ...)`): what a person running a CLI command reads.
 */
export class PlainStderr implements DestinationStream {
  constructor(private readonly out: { write(s: string): unknown } = process.stderr) {}

  /** Takes one newline-terminated JSON line from pino. */
  write(line: string): void {
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.out.write(line.endsWith('\n') ? line : `${line}\n`);
      return;
    }
    const level = rec.level === 'warn' ? 'warning' : String(rec.level ?? 'log');
    const fields = Object.entries(rec)
      .filter(([k, v]) => !PLAIN_SKIP.has(k) && v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
    this.out.write(`portcullis: ${level}: ${String(rec.msg ?? '')}${fields.length > 0 ? ` (${fields.join(', ')})` : ''}\n`);
  }
}

/**
 * Where the process log goes: the buffered stdout while serving, plain text on stderr for CLI
 * commands (see {@link useCliLogging}). One indirection, so modules keep importing one `log`.
 */
class LogTarget implements DestinationStream {
  current: DestinationStream = stdout;

  write(line: string): void {
    this.current.write(line);
  }
}

const target = new LogTarget();

/**
 * Process-wide pino logger (JSON to stdout). Redaction paths are a second line of defence:
 * code must not pass secrets to the logger in the first place.
 */
export const log: Logger = pino(
  loggerOptions({
    level: process.env.PORTCULLIS_LOG_LEVEL ?? 'info',
    redact: {
      paths: [
        '*.authorization',
        '*.headers.authorization',
        '*.headers["x-api-key"]',
        '*.headers.cookie',
        '*.secret',
        '*.token',
      ],
      censor: '[redacted]',
    },
  }),
  target,
);

/**
 * For CLI commands (everything but `serve`): stdout carries only the command's output, so the
 * process log becomes plain-text diagnostics on `err` (stderr), warnings and worse unless
 * PORTCULLIS_LOG_LEVEL says otherwise. No JSON line reaches stdout.
 */
export function useCliLogging(err: { write(s: string): unknown } = process.stderr): void {
  target.current = new PlainStderr(err);
  log.level = process.env.PORTCULLIS_LOG_LEVEL ?? 'warn';
}

/** Sets the level after config load (config may be more or less verbose than the default). */
export function setLogLevel(level: string): void {
  log.level = level;
}
