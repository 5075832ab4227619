import type { DlpResult, Finding, Scanner } from './types.js';

/** Replacement text for a redacted finding. */
export function marker(rule: string): string {
  return `[REDACTED:${rule}]`;
}

/**
 * Replaces `redact` and `block` findings with `[REDACTED:<rule id>]`; `flag` findings leave the
 * text unchanged. Findings are expected sorted and non-overlapping (as `Scanner.scan` returns
 * them); any that overlap an earlier redaction are applied only to the part after it.
 */
export function redact(text: string, findings: readonly Finding[]): string {
  let out = '';
  let pos = 0;
  for (const f of findings) {
    if (f.action === 'flag') continue;
    const start = Math.max(f.start, pos);
    if (f.end <= start) continue;
    out += text.slice(pos, start) + marker(f.rule);
    pos = f.end;
  }
  return pos === 0 ? text : out + text.slice(pos);
}

/** Scans and redacts a complete text. */
export function applyDlp(scanner: Scanner, text: string): DlpResult {
  const findings = scanner.scan(text);
  return { text: redact(text, findings), findings, blocked: findings.some((f) => f.action === 'block') };
}
