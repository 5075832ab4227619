import { buildAuditRecord, type AuditRecord } from '../../src/audit/record.js';
import { readFileSync } from 'node:fs';

/**
 * Exchange records of an audit file, parsed (one per exchange; with `all`, every line: forwarded
 * records and checkpoints too). The file sink appends in batches while a test reads, so only
 * complete lines (ending in a newline) count: a line still being written is not a record yet.
 */
export function readAuditFile(file: string, opts: { all?: boolean } = {}): Record<string, unknown>[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const complete = text.slice(0, text.lastIndexOf('\n') + 1);
  return complete
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => opts.all === true || r.record_type === 'exchange');
}

/** The exchange record of a plain allowed call number `i` (fixed time and ids), for sink and chain tests. */
export function sampleRecord(i: number, over: Partial<Parameters<typeof buildAuditRecord>[0]> = {}): AuditRecord {
  return buildAuditRecord({
    time: new Date(Date.UTC(2024, 0, 1, 0, 0, i)),
    requestId: `req-${i}`,
    tool: 'weather',
    method: 'GET',
    path: `/tools/weather/${i}`,
    decision: { allowed: true, rule: 'allow', reason: null, policy_version: 'v1', dry_run: false },
    responseStatus: 200,
    upstreamStatus: 200,
    ...over,
  });
}
