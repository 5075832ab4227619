import { createReadStream } from 'node:fs';
import { GENESIS_HEAD, checkLine, linkProblem, type ChainHead } from './chain.js';

/** Result of checking an audit file's hash chain. */
export interface AuditVerifyResult {
  /** True when every line is intact and linked to the one before. */
  readonly ok: boolean;
  /** Records that verified before the first problem (all of them when ok). */
  readonly records: number;
  /** The first broken line (1-based), its `seq` when readable, and what is wrong. */
  readonly firstBad?: { readonly line: number; readonly seq?: number; readonly reason: string };
}

/** Yields the file's lines as exact bytes (newline excluded), flagging a last line without one. */
async function* lines(path: string): AsyncGenerator<{ bytes: Buffer; terminated: boolean }> {
  let carry: Buffer = Buffer.alloc(0);
  for await (const chunk of createReadStream(path)) {
    let buf = carry.length > 0 ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer);
    let nl = buf.indexOf(0x0a);
    while (nl >= 0) {
      yield { bytes: buf.subarray(0, nl), terminated: true };
      buf = buf.subarray(nl + 1);
      nl = buf.indexOf(0x0a);
    }
    carry = Buffer.from(buf);
  }
  if (carry.length > 0) yield { bytes: carry, terminated: false };
}

/**
 * Checks an audit file written by the hash-chained sink, line by line, and reports the first
 * problem: an edited record (its hash no longer matches), a removed, inserted or reordered record
 * (`seq` gap or `prev_hash` not matching the previous line), or a truncated or garbled line.
 * Removing records from the very end cannot be seen from the file alone; compare `records` with
 * the last `seq` seen elsewhere (e.g. the stdout sink) for that.
 */
export async function verifyAuditFile(path: string): Promise<AuditVerifyResult> {
  let head: ChainHead = GENESIS_HEAD;
  let lineNo = 0;
  for await (const { bytes, terminated } of lines(path)) {
    lineNo += 1;
    const bad = (reason: string, seq?: number): AuditVerifyResult => ({
      ok: false,
      records: head.seq,
      firstBad: seq === undefined ? { line: lineNo, reason } : { line: lineNo, seq, reason },
    });
    if (bytes.length === 0) return bad('empty line');
    const c = checkLine(bytes);
    if (!c.ok) return bad(terminated ? c.reason : `last line is incomplete (no trailing newline): ${c.reason}`, c.seq);
    const problem = linkProblem(c, head);
    if (problem) return bad(problem, c.seq);
    if (!terminated) return bad('last line is incomplete: no trailing newline', c.seq);
    head = { seq: c.seq, linkHash: c.linkHash };
  }
  return { ok: true, records: head.seq };
}
