import { createHash } from 'node:crypto';

/**
 * The hash chain of the audit file, shared by the writer and the verifier so both agree on
 * every byte. One line per record:
 *
 *   {...record, "seq": n, "prev_hash": sha256(previous line), "hash": sha256(canonical body)}
 *
 * - `seq` starts at 1 and grows by one per line;
 * - `prev_hash` is the hex SHA-256 of the previous line's exact bytes (without its newline);
 *   the first line carries {@link GENESIS_HASH};
 * - `hash` is the hex SHA-256 of the canonical JSON (keys sorted, no whitespace) of the line's
 *   object without `hash` itself, so editing any field, `seq` or `prev_hash` breaks it.
 */

/** `prev_hash` of the first line of a chain. */
export const GENESIS_HASH = '0'.repeat(64);

/** Chain position after a line: what the next line links to. */
export interface ChainHead {
  readonly seq: number;
  /** SHA-256 of the line's exact bytes. */
  readonly lineHash: string;
}

/** Head of an empty chain. */
export const GENESIS_HEAD: ChainHead = { seq: 0, lineHash: GENESIS_HASH };

/** Hex SHA-256 of a string (UTF-8) or bytes. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Canonical JSON: object keys sorted by code unit, no whitespace, `undefined` members omitted
 * (as `JSON.stringify` does). Parsing a line and canonicalising it again gives the same text,
 * which is what lets the verifier recompute a hash.
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
 * Chain fields override same-named record fields, so a record cannot forge its own position.
 */
export function sealLine(record: object, head: ChainHead): { line: string; head: ChainHead } {
  const seq = head.seq + 1;
  const body = { ...record, seq, prev_hash: head.lineHash, hash: undefined };
  const hash = sha256Hex(canonicalJson(body));
  const line = canonicalJson({ ...body, hash });
  return { line, head: { seq, lineHash: sha256Hex(line) } };
}

/** What a line says about itself once its own hash checks out. */
export type LineCheck =
  | { readonly ok: true; readonly seq: number; readonly prevHash: string; readonly lineHash: string }
  | { readonly ok: false; readonly seq?: number; readonly reason: string };

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Checks one line on its own: valid JSON object, well-formed chain fields, and a `hash` that
 * matches its content. Linking to the previous line is the caller's job.
 */
export function checkLine(bytes: Uint8Array): LineCheck {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8'));
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
  if (sha256Hex(canonicalJson({ ...obj, hash: undefined })) !== hash) {
    return { ok: false, seq, reason: 'hash does not match the record content (record edited)' };
  }
  return { ok: true, seq, prevHash, lineHash: sha256Hex(bytes) };
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
  if (line.prevHash !== prev.lineHash) {
    return prev.seq === 0
      ? 'prev_hash is not the genesis hash (chain does not start here)'
      : 'prev_hash does not match the previous line (record removed, replaced or reordered)';
  }
  return null;
}
