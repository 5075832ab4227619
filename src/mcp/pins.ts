import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { watchPath, type FileWatch } from '../files/watch.js';
import { log } from '../log.js';
import { countFileReload } from '../metrics.js';

/**
 * Pins of MCP tool definitions: for each logical tool and MCP tool name, the definition hash the
 * gateway accepts (see definition.ts for what is hashed). A pin is recorded the first time a
 * definition is seen, or by an operator's approval. Kept in memory, and in a JSON file when one
 * is configured, so pins survive restarts and replicas sharing the file see approvals:
 *
 * ```json
 * { "version": 1,
 *   "pins": { "<logical tool>": { "<mcp tool>": { "hash": "<sha256 hex>", "since": "<ISO time>", "by": "first_seen" } } } }
 * ```
 *
 * Writes are atomic (a temporary file in the same directory, renamed over the file) and
 * re-read the file first, so concurrent writers lose at most an equal pin, never the file.
 */

/** One pin. */
export interface Pin {
  readonly hash: string;
  /** When it was recorded (ISO 8601). */
  readonly since: string;
  /** Who recorded it: `first_seen`, `on_change_flag`, `cli`, `admin`. */
  readonly by: string;
}

/** The pin file's content. */
export interface PinDocument {
  readonly version: 1;
  readonly pins: Record<string, Record<string, Pin>>;
}

const HASH = /^[0-9a-f]{64}$/;

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Parses a pin file's text; throws an Error naming the first problem. */
export function parsePinDocument(text: string): PinDocument {
  const raw: unknown = JSON.parse(text);
  if (!isObj(raw) || raw.version !== 1 || !isObj(raw.pins)) throw new Error('not a pin file (expected {"version": 1, "pins": {...}})');
  const pins: Record<string, Record<string, Pin>> = {};
  for (const [tool, names] of Object.entries(raw.pins)) {
    if (!isObj(names)) throw new Error(`pins of tool "${tool}" are not an object`);
    const out: Record<string, Pin> = {};
    for (const [name, p] of Object.entries(names)) {
      if (!isObj(p) || typeof p.hash !== 'string' || !HASH.test(p.hash)) throw new Error(`pin of "${tool}"/"${name}" has no sha256 hash`);
      out[name] = { hash: p.hash, since: typeof p.since === 'string' ? p.since : '', by: typeof p.by === 'string' ? p.by : '' };
    }
    pins[tool] = out;
  }
  return { version: 1, pins };
}

/** Reads a pin file; a missing file is an empty document. */
export function readPinFile(path: string): PinDocument {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, pins: {} };
    throw err;
  }
  return parsePinDocument(text);
}

/** Writes a pin document atomically (temporary file + rename in the same directory). */
export function writePinFile(path: string, doc: PinDocument): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  writeFileSync(tmp, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o644 });
  renameSync(tmp, path);
}

/** Sets one pin in a file (read, change, atomic write). */
export function setPinInFile(path: string, tool: string, name: string, pin: Pin): void {
  setPinsInFile(path, tool, { [name]: pin });
}

/** Sets pins of one tool in a file in one write. */
export function setPinsInFile(path: string, tool: string, pins: Readonly<Record<string, Pin>>): void {
  const doc = readPinFile(path);
  writePinFile(path, { version: 1, pins: { ...doc.pins, [tool]: { ...doc.pins[tool], ...pins } } });
}

/**
 * The pins of one file (or of memory only, with a null path), watched for changes made by
 * other replicas or the CLI. A file that cannot be read at start is an error (the caller
 * refuses the configuration); one that turns unreadable later keeps the last good pins.
 */
export class PinStore {
  private doc: PinDocument;
  private watch: FileWatch | null = null;

  constructor(readonly path: string | null) {
    this.doc = path ? readPinFile(path) : { version: 1, pins: {} };
    if (path) this.watch = watchPath(path, () => this.reload());
  }

  /** The pin of one MCP tool, if any. */
  get(tool: string, name: string): Pin | undefined {
    return this.doc.pins[tool]?.[name];
  }

  /** Every pin. */
  all(): PinDocument {
    return this.doc;
  }

  /** Records a pin (in memory, and in the file when there is one). A failed write is thrown; memory keeps the pin. */
  set(tool: string, name: string, pin: Pin): void {
    this.setMany(tool, { [name]: pin });
  }

  /** Records several pins of one tool with one write (a first list of many tools). */
  setMany(tool: string, pins: Readonly<Record<string, Pin>>): void {
    this.doc = { version: 1, pins: { ...this.doc.pins, [tool]: { ...this.doc.pins[tool], ...pins } } };
    if (!this.path) return;
    setPinsInFile(this.path, tool, pins);
    this.reload();
  }

  /** Re-reads the file now. */
  reload(): void {
    if (!this.path) return;
    try {
      this.doc = readPinFile(this.path);
      countFileReload('pins', 'success');
    } catch (err) {
      log.error({ file: this.path, reason: (err as Error).message }, 'MCP pin file unreadable; keeping the last good pins');
      countFileReload('pins', 'failure');
    }
  }

  /** Stops watching the file. */
  close(): void {
    this.watch?.close();
    this.watch = null;
  }
}
