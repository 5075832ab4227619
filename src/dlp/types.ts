import type { Validator } from './validators.js';

/** What a finding does to the text: replace it, replace it and refuse the exchange, or only record it. */
export type DlpAction = 'redact' | 'block' | 'flag';

/** Kind of data a rule detects. */
export type DlpCategory = 'secret' | 'pii';

/** An encoding whose decoded view whole-text DLP also scans. */
export type DecodedEncoding = 'json_escape' | 'percent' | 'html_entity' | 'base64';

/** One detected span. Offsets are UTF-16 code units into the scanned string. */
export interface Finding {
  rule: string;
  category: 'secret' | 'pii';
  action: 'redact' | 'block' | 'flag';
  start: number;
  end: number;
  /**
   * Set when only a decoded view found it; `start`/`end` then cover the original characters
   * that decode to the finding (a whole escape, percent run or base64 run).
   */
  encoding?: DecodedEncoding;
}

/** Options of `applyDlp`. */
export interface DlpOptions {
  /** Decoded views to scan besides the raw text: `true` (default) all, `false` none, or a list. */
  readonly decode?: boolean | readonly DecodedEncoding[];
}

/** A compiled rule set. `scan` returns non-overlapping findings sorted by `start`. */
export interface Scanner {
  readonly ruleCount: number;
  scan(text: string): Finding[];
}

/** Redacted text, findings in the original text's offsets, and whether a `block` rule fired. */
export interface DlpResult {
  text: string;
  findings: Finding[];
  blocked: boolean;
}

/** Incremental redactor for a stream of text chunks; see `createStreamRedactor`. */
export interface StreamRedactor {
  push(chunk: string): DlpResult;
  end(): DlpResult;
}

/** A required keyword near the match (outside it), checked case-insensitively. */
export interface RuleContext {
  /** Words (ASCII) one of which must occur near the match. */
  readonly words: readonly string[];
  /** How many characters before the match start to look in. */
  readonly before: number;
}

/** Multi-line block rule: from a begin marker to an end marker, bounded. */
export interface RuleSpan {
  /** Pattern of the end marker (safe subset). */
  readonly end: string;
  /** Longest block; an unterminated block is cut here (or at the end of the text). */
  readonly maxLength: number;
}

/** Definition of one rule, built in or from config. */
export interface RuleSpec {
  readonly id: string;
  readonly category: DlpCategory;
  readonly description: string;
  readonly action: DlpAction;
  /** Safe-subset pattern; for span rules, the begin marker. */
  readonly pattern: string;
  readonly ignoreCase?: boolean;
  /**
   * Prefilter: every match contains one of these (ASCII, case-insensitive), or, for rules
   * with `context`, one of them occurs in the context window. Rules without keywords always run.
   */
  readonly keywords?: readonly string[];
  /**
   * Largest offset from the match start at which a keyword occurrence can begin (0 for
   * prefix tokens). Omitted: anywhere in the match. Tightens prefilter windows and how much
   * text a stream must hold back.
   */
  readonly keywordOffset?: number;
  /**
   * Cheap pattern (safe subset) that every accepted match overlaps, used as the prefilter
   * instead of keywords when no literal is shared by all matches (IPv4, IPv6 ...).
   */
  readonly trigger?: string;
  /** The keywords are the context words and occur only before the match, never inside it. */
  readonly keywordsInContext?: boolean;
  readonly validator?: Validator;
  readonly context?: RuleContext;
  readonly span?: RuleSpan;
  /** Characters after the match the validator reads (default 1). */
  readonly lookahead?: number;
  /** Characters before the match start the validator reads (default 1). */
  readonly lookbehind?: number;
}
