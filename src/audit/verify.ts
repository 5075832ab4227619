import { createReadStream } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import type { Anchor } from './anchors.js';
import { GENESIS_HEAD, checkLine, linkProblem, type ChainHead } from './chain.js';
import { checkpointOf, checkpointSignatureProblem, keyIdOf } from './checkpoint.js';

/** What to check an audit file against, besides its own chain. */
export interface AuditVerifyOptions {
  /** Trusted checkpoint keys: a checkpoint signed by any other key is reported. */
  readonly publicKeys?: readonly KeyObject[];
  /** Trusted key ids (see `keyIdOf`), alone or beside `publicKeys`. */
  readonly keyIds?: readonly string[];
  /** Checkpoints kept elsewhere: each must match the file at its `seq`. */
  readonly anchors?: readonly Anchor[];
}

/** A problem found at one place. */
export interface AuditProblem {
  /** 1-based line of the audit file (or of the anchor file, for anchor problems). */
  readonly line: number;
  readonly seq?: number;
  readonly reason: string;
}

/** Result of checking an audit file. */
export interface AuditVerifyResult {
  /**
   * True when nothing shows tampering: every line is intact and linked, every checkpoint
   * verifies (under a trusted key when keys are given), and every anchor matches the file.
   */
  readonly ok: boolean;
  /** Lines (records and checkpoints) that verified before the first chain problem (all when intact). */
  readonly records: number;
  /** The first broken line (1-based), its `seq` when readable, and what is wrong. */
  readonly firstBad?: AuditProblem;
  readonly checkpoints: {
    readonly count: number;
    /** `seq` of the last checkpoint line, or null. */
    readonly lastSeq: number | null;
    /** Whether signatures were checked against pinned keys (else only against the key each carries). */
    readonly pinned: boolean;
    readonly problems: readonly AuditProblem[];
  };
  /**
   * Lines after the last checkpoint (all lines when there is none): not covered by a signature,
   * so a cut there shows only against an anchor.
   */
  readonly unanchored: number;
  readonly anchors: { readonly checked: number; readonly problems: readonly AuditProblem[] };
  /** Request ids with a forwarded record and no exchange record: the outcome was never recorded. */
  readonly incomplete: readonly string[];
}

/** At most this many checkpoint or anchor problems are listed. */
const MAX_PROBLEMS = 20;

/** Yields the file's lines as exact bytes (newline excluded), flagging a last line without one. */
export async function* fileLines(path: string): AsyncGenerator<{ bytes: Buffer; terminated: boolean }> {
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

/** Tracks forwarded records until their exchange record arrives. */
export class CompletionTracker {
  private readonly open = new Map<string, number>();

  /** Notes one parsed line. */
  note(record: Readonly<Record<string, unknown>>, seq: number): void {
    const id = record.request_id;
    if (typeof id !== 'string') return;
    if (record.record_type === 'forwarded') this.open.set(id, seq);
    else if (record.record_type === 'exchange') this.open.delete(id);
  }

  /** Whether `id` was forwarded and has not completed (so far). */
  isOpen(id: string): boolean {
    return this.open.has(id);
  }

  /** Request ids still open, in the order they were forwarded. */
  incomplete(): string[] {
    return [...this.open.keys()];
  }
}

/**
 * The ids among `ids` that have an exchange record in any of `files`. Several replicas each
 * write their own file, and an exchange's forwarded record (written where it was decided) and
 * its completion (written where it was inspected) can land in different ones; only ids still
 * open are looked up, so memory stays bounded by those. Lines that do not parse are skipped
 * (each file's own verification reports them).
 */
export async function completedIn(files: readonly string[], ids: ReadonlySet<string>): Promise<Set<string>> {
  const done = new Set<string>();
  if (ids.size === 0) return done;
  for (const file of files) {
    for await (const { bytes } of fileLines(file)) {
      let record: unknown;
      try {
        record = JSON.parse(bytes.toString('utf8'));
      } catch {
        continue;
      }
      const r = record as { record_type?: unknown; request_id?: unknown } | null;
      if (r?.record_type === 'exchange' && typeof r.request_id === 'string' && ids.has(r.request_id)) done.add(r.request_id);
    }
  }
  return done;
}

/** Checks the signature and trust of one checkpoint; a reason, or null. */
function checkpointProblem(time: string, cp: Parameters<typeof checkpointSignatureProblem>[1], trusted: ReadonlySet<string> | null): string | null {
  const sig = checkpointSignatureProblem(time, cp);
  if (sig) return sig;
  if (trusted && !trusted.has(cp.key_id)) return `checkpoint signed by key ${cp.key_id}, not a trusted key (chain rewritten, or wrong key given)`;
  return null;
}

/**
 * Checks an audit file written by the hash-chained sink, streaming it line by line: the chain
 * (an edited record no longer matches its hash; a removed, inserted or reordered record breaks
 * `seq` or `prev_hash`; a torn last line), every checkpoint (it must cover the line before it and
 * its signature must verify, under a pinned key when one is given), and each anchor (the file
 * must hold the anchored `seq` with the anchored hash: an anchor beyond the end means the file
 * was cut). Reports records after the last checkpoint and forwarded exchanges never completed.
 */
export async function verifyAuditFile(path: string, opts: AuditVerifyOptions = {}): Promise<AuditVerifyResult> {
  const pinnedIds = [...(opts.keyIds ?? []), ...(opts.publicKeys ?? []).map(keyIdOf)];
  const trusted = pinnedIds.length > 0 ? new Set(pinnedIds) : null;
  const cpProblems: AuditProblem[] = [];
  const anchorProblems: AuditProblem[] = [];
  const addProblem = (list: AuditProblem[], p: AuditProblem): void => {
    if (list.length < MAX_PROBLEMS) list.push(p);
  };

  // Anchors by the seq they cover; a bad anchor proves nothing about the file.
  const bySeq = new Map<number, Anchor>();
  for (const a of opts.anchors ?? []) {
    const problem = checkpointProblem(a.time, a.checkpoint, trusted);
    if (problem) addProblem(anchorProblems, { line: a.line, seq: a.checkpoint.seq, reason: `anchor: ${problem}` });
    else bySeq.set(a.checkpoint.seq, a);
  }

  const completion = new CompletionTracker();
  let head: ChainHead = GENESIS_HEAD;
  let lineNo = 0;
  let checkpoints = 0;
  let lastCheckpointSeq: number | null = null;
  let firstBad: AuditProblem | undefined;
  for await (const { bytes, terminated } of fileLines(path)) {
    lineNo += 1;
    const bad = (reason: string, seq?: number): AuditProblem => (seq === undefined ? { line: lineNo, reason } : { line: lineNo, seq, reason });
    if (bytes.length === 0) {
      firstBad = bad('empty line');
      break;
    }
    const c = checkLine(bytes);
    if (!c.ok) {
      firstBad = bad(terminated ? c.reason : `last line is incomplete (no trailing newline): ${c.reason}`, c.seq);
      break;
    }
    const problem = linkProblem(c, head);
    if (problem) {
      firstBad = bad(problem, c.seq);
      break;
    }
    if (!terminated) {
      firstBad = bad('last line is incomplete: no trailing newline', c.seq);
      break;
    }
    if (c.record.record_type === 'checkpoint') {
      checkpoints += 1;
      lastCheckpointSeq = c.seq;
      const cp = checkpointOf(c.record);
      if (!cp) addProblem(cpProblems, bad('malformed checkpoint', c.seq));
      else if (cp.checkpoint.seq !== head.seq || cp.checkpoint.head_hash !== head.linkHash) {
        addProblem(cpProblems, bad('checkpoint does not match the chain before it (head hash mismatch: chain rewritten)', c.seq));
      } else {
        const p = checkpointProblem(cp.time, cp.checkpoint, trusted);
        if (p) addProblem(cpProblems, bad(p, c.seq));
      }
    } else completion.note(c.record, c.seq);
    const anchor = bySeq.get(c.seq);
    if (anchor && anchor.checkpoint.head_hash !== c.linkHash) {
      addProblem(anchorProblems, { line: anchor.line, seq: c.seq, reason: `the file differs from the anchor at seq ${c.seq} (rewritten)` });
    }
    head = { seq: c.seq, linkHash: c.linkHash };
  }
  for (const [seq, a] of bySeq) {
    if (seq <= head.seq) continue;
    // Past a chain break the file cannot be compared; the break is the finding.
    if (firstBad) continue;
    addProblem(anchorProblems, { line: a.line, seq, reason: `anchor at seq ${seq} is beyond the end of the file (last seq ${head.seq}): the file was truncated` });
  }
  return {
    ok: !firstBad && cpProblems.length === 0 && anchorProblems.length === 0,
    records: head.seq,
    ...(firstBad ? { firstBad } : {}),
    checkpoints: { count: checkpoints, lastSeq: lastCheckpointSeq, pinned: trusted !== null, problems: cpProblems },
    unanchored: head.seq - (lastCheckpointSeq ?? 0),
    anchors: { checked: opts.anchors?.length ?? 0, problems: anchorProblems },
    incomplete: completion.incomplete(),
  };
}
