import { createReadStream, writeSync } from 'node:fs';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { log } from '../log.js';
import { checkpointOf, type CheckpointBody } from './checkpoint.js';

/**
 * Anchors: checkpoint lines kept apart from the audit file (a second file on other storage, a
 * log shipper's copy), so cutting the end of the audit file or rewriting it is seen against
 * them. The writer appends each checkpoint line as it appears in the audit file; the reader
 * also accepts a checkpoint wrapped in a stdout sink line (`{"msg":"audit","audit":{...}}`).
 */

/** A checkpoint read from an anchor file. */
export interface Anchor {
  /** 1-based line of the anchor file. */
  readonly line: number;
  readonly time: string;
  readonly checkpoint: CheckpointBody;
}

/** Append-only file of checkpoint lines. Writes are queued in order and never throw. */
export class AnchorFile {
  private queue: Promise<void> = Promise.resolve();
  private failed = false;

  private constructor(
    /** Resolved file path. */
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  /** Opens (or creates) the anchor file for appending. */
  static async open(path: string): Promise<AnchorFile> {
    const file = resolve(path);
    await mkdir(dirname(file), { recursive: true });
    return new AnchorFile(file, await open(file, 'a', 0o640));
  }

  /** Appends one checkpoint line (without newline). */
  write(line: string): void {
    if (this.failed) return;
    const data = Buffer.from(`${line}\n`, 'utf8');
    this.queue = this.queue.then(async () => {
      try {
        for (let off = 0; off < data.length; ) off += (await this.fh.write(data, off)).bytesWritten;
      } catch (err) {
        // The audit file itself is unaffected; its checkpoints are just not anchored from now on.
        this.failed = true;
        log.error({ file: this.path, err: (err as Error).message }, 'audit anchor file write failed; checkpoints are no longer anchored');
      }
    });
  }

  /** Process exit: appends synchronously. */
  writeSyncAtExit(line: string): void {
    if (this.failed) return;
    try {
      writeSync(this.fh.fd, `${line}\n`);
    } catch {
      // Exiting: nothing else can be done with the error.
    }
  }

  /** Waits for queued writes, then closes the file. */
  async close(): Promise<void> {
    await this.queue;
    await this.fh.close();
  }
}

/**
 * Reads every checkpoint of an anchor file. Lines that are not checkpoints are skipped and
 * counted in `skipped` (an anchor stream may be a whole stdout log).
 */
export async function readAnchors(path: string): Promise<{ anchors: Anchor[]; skipped: number }> {
  const anchors: Anchor[] = [];
  let skipped = 0;
  let lineNo = 0;
  const rl = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  for await (const text of rl) {
    lineNo += 1;
    if (text.trim() === '') continue;
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch {
      skipped += 1;
      continue;
    }
    const inner = typeof obj === 'object' && obj !== null && 'audit' in obj ? (obj as { audit: unknown }).audit : obj;
    const cp = typeof inner === 'object' && inner !== null ? checkpointOf(inner as Record<string, unknown>) : null;
    if (cp) anchors.push({ line: lineNo, ...cp });
    else skipped += 1;
  }
  return { anchors, skipped };
}
