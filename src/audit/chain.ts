import { createHash } from 'node:crypto';

/**
 * The hash chain of the audit file, shared by the writer and the verifier so both agree on
 * every byte. One JSON line per record, serialised once, in the key order the record builder
 * defines, with the chain fields last:
 *
 *   {...record, "seq": n, "prev_hash": <hash of the previous record>, "hash": <hash of this one>}
 *
 * - `seq` starts at 1 and grows by one per line;
 * - `hash` is the hex SHA-256 of the line's exact bytes without its `,"hash":"…"` member, that is
 *   of `line[0 .. len-75] + "}"`; the verifier recomputes it from the bytes as stored, so any
 *   edit (a field, `seq`, `prev_hash`, even whitespace) breaks it;
 * - `prev_hash` is the previous line's `hash` (the first line carries {@link GENESIS_HASH}), so
 *   removing, inserting or reordering lines breaks the link.
 *
 * Files written before this format (keys sorted canonically, `hash` over the canonical JSON,
 * `prev_hash` = SHA-256 of the previous line's bytes) still verify, and a new line can follow
 * such a line: see {@link checkLine}.
 */

/** `prev_hash` of the first line of a chain. */
export const GENESIS_HASH = '0'.repeat(64);

/** Chain position after a line: what the next line links to. */
export interface ChainHead {
  readonly seq: number;
  /** The value the next line's `prev_hash` must carry. */
  readonly linkHash: string;
}

/** Head of an empty chain. */
export const GENESIS_HEAD: ChainHead = { seq: 0, linkHash: GENESIS_HASH };

/** Hex SHA-256 of a string (UTF-8) or bytes. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** `,"hash":"` + 64 hex digits + `"}`: the fixed-size tail of every sealed line. */
const HASH_TAIL_LENGTH = 9 + 64 + 2;

/**
 * Canonical JSON: object keys sorted by code unit, no whitespace, `undefined` members omitted
 * (as `JSON.stringify` does). Only needed to check lines of the older, canonical format.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean') return String(value);
  if (typeof value === 'number') return Number.isFinite(value) ? JSON.stringify(value) : 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) {
    return `[${value.map((v) => (v === undefined || typeof v === 'function' ? 'null' : canonicalJson(v))).join(',')}]`;
  }
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const parts: string[] = [];
    for (const key of Object.keys(obj).sort()) {
      const v = obj[key];
      if (v === undefined || typeof v === 'function') continue;
      parts.push(`${JSON.stringify(key)}:${canonicalJson(v)}`);
    }
    return `{${parts.join(',')}}`;
  }
  return 'null';
}

/**
 * Seals one record onto the chain: returns the line to append (without newline) and the new head.
 * The record is serialised once; chain fields override same-named record fields, so a record
 * cannot forge its own position.
 */
export function sealLine(record: object, head: ChainHead): { line: string; head: ChainHead } {
  const seq = head.seq + 1;
  const body = JSON.stringify({ ...record, seq, prev_hash: head.linkHash, hash: undefined });
  const hash = sha256Hex(body);
  // body ends with "}": reopen it and append the hash member last.
  const line = `${body.slice(0, -1)},"hash":"${hash}"}`;
  return { line, head: { seq, linkHash: hash } };
}

/** What a line says about itself once its own hash checks out. */
export type LineCheck =
  | { readonly ok: true; readonly seq: number; readonly prevHash: string; readonly linkHash: string; readonly record: Readonly<Record<string, unknown>> }
  | { readonly ok: false; readonly seq?: number; readonly reason: string };

const HEX64 = /^[0-9a-f]{64}$/;

/** True when `buf` ends with `,"hash":"<hash>"}` and the bytes before it hash to `hash`. */
function exactBytesHashMatches(buf: Buffer, hash: string): boolean {
  if (buf.length < HASH_TAIL_LENGTH + 2) return false;
  const tailAt = buf.length - HASH_TAIL_LENGTH;
  if (buf.toString('latin1', tailAt) !== `,"hash":"${hash}"}`) return false;
  return createHash('sha256').update(buf.subarray(0, tailAt)).update('}').digest('hex') === hash;
}

/**
 * Checks one line on its own: valid JSON object, well-formed chain fields, and a `hash` that
 * matches its content (exact bytes, or canonical JSON for lines of the older format). Linking to
 * the previous line is the caller's job.
 */
export function checkLine(bytes: Uint8Array): LineCheck {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let parsed: unknown;
  try {
    parsed = JSON.parse(buf.toString('utf8'));
  } catch {
    return { ok: false, reason: 'not valid JSON (truncated or garbled line)' };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { ok: false, reason: 'not a JSON object' };
  }
  const obj = parsed as Record<string, unknown>;
  const { seq, prev_hash: prevHash, hash } = obj;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) {
    return { ok: false, reason: 'missing or invalid "seq"' };
  }
  if (typeof prevHash !== 'string' || !HEX64.test(prevHash)) {
    return { ok: false, seq, reason: 'missing or invalid "prev_hash"' };
  }
  if (typeof hash !== 'string' || !HEX64.test(hash)) {
    return { ok: false, seq, reason: 'missing or invalid "hash"' };
  }
  if (exactBytesHashMatches(buf, hash)) return { ok: true, seq, prevHash, linkHash: hash, record: obj };
  // Older format: the next line links to the SHA-256 of this line's bytes.
  if (sha256Hex(canonicalJson({ ...obj, hash: undefined })) === hash) return { ok: true, seq, prevHash, linkHash: sha256Hex(buf), record: obj };
  return { ok: false, seq, reason: 'hash does not match the record content (record edited)' };
}

/**
 * Checks that a self-consistent line follows `prev` on the chain. Returns a reason, or null
 * when it links correctly.
 */
export function linkProblem(line: { seq: number; prevHash: string }, prev: ChainHead): string | null {
  if (line.seq !== prev.seq + 1) {
    if (line.seq > prev.seq + 1) return `seq gap: expected ${prev.seq + 1}, found ${line.seq} (record removed)`;
    return `seq out of order: expected ${prev.seq + 1}, found ${line.seq} (records reordered or duplicated)`;
  }
  if (line.prevHash !== prev.linkHash) {
    return prev.seq === 0
      ? 'prev_hash is not the genesis hash (chain does not start here)'
      : 'prev_hash does not match the previous line (record removed, replaced or reordered)';
  }
  return null;
}
