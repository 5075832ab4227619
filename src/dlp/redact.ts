import type { DlpOptions, DlpResult, Finding, Scanner } from './types.js';
import { withDecodedViews } from './views.js';

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

/**
 * Scans and redacts a complete text: the raw text and, unless `opts.decode` is false, its
 * decoded views (JSON escapes, percent-encoding, HTML entities, base64 runs), whose findings
 * are mapped back to and redacted in the original characters.
 */
export function applyDlp(scanner: Scanner, text: string, opts: DlpOptions = {}): DlpResult {
  const raw = scanner.scan(text);
  const decode = opts.decode ?? true;
  const findings = decode === false ? raw : withDecodedViews(scanner, text, raw, decode === true ? undefined : decode);
  return { text: redact(text, findings), findings, blocked: findings.some((f) => f.action === 'block') };
}
