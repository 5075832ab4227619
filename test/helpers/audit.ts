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
