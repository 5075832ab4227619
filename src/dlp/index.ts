/**
 * DLP: a built-in catalog of secret and PII rules (extensible by config), a linear-time
 * scanner, redaction of whole texts and of streams, and the `dlp scan` command.
 */
export type { DecodedEncoding, DlpAction, DlpCategory, DlpOptions, DlpResult, Finding, RuleSpec, Scanner, StreamRedactor } from './types.js';
export type { DlpConfig, DlpConfigProblem, DlpCustomRule, DlpRuleOverride } from './config.js';
export { dlpConfigSchema } from './config.js';
export { checkDlpConfig, compileCatalog, DEFAULT_MAX_HOLDBACK } from './scanner.js';
export { applyDlp, redact } from './redact.js';
export { createStreamRedactor } from './stream.js';
export { createSegmentRedactor, redactSegments, type ReleasedSegment, type SegmentRedactor, type SegmentResult } from './segments.js';
export { MIN_STRING_RUN, readText, scanBytes, scanStrings, writeText, type BytesResult, type BytesView, type ScanBytesOptions, type TextReading } from './bytes.js';
export { runDlpScan } from './cli.js';
export { BUILTIN_RULES } from './catalog/index.js';
export { compileSafePattern, PatternError, type SafePattern } from './regex/index.js';
