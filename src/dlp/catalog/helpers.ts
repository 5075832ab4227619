import type { DlpAction, RuleSpec } from '../types.js';
import type { Validator } from '../validators.js';

/** Builders that keep the catalog tables short and their patterns uniform. */

/** Escapes regex metacharacters of a literal. */
export function lit(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
}

/** Extra options of the builders. */
export interface TokenOptions {
  readonly action?: DlpAction;
  readonly validator?: Validator;
  readonly ignoreCase?: boolean;
  /** Keywords when they differ from the prefixes. */
  readonly keywords?: readonly string[];
  /** Largest offset of such a keyword from the match start. */
  readonly keywordOffset?: number;
  /** Character class (without brackets) that must not precede the token. */
  readonly guard?: string;
  /** Character class (without brackets) that must not follow the token. */
  readonly tail?: string;
}

/**
 * Prefixed token: `prefix` (one or several literals) followed by `body`. The prefixes are the
 * prefilter keywords, so every match contains one.
 */
export function token(id: string, description: string, prefix: string | readonly string[], body: string, o: TokenOptions = {}): RuleSpec {
  const prefixes = typeof prefix === 'string' ? [prefix] : prefix;
  const head = prefixes.length === 1 ? lit(prefixes[0]!) : `(?:${prefixes.map(lit).join('|')})`;
  const guard = `(?<![${o.guard ?? 'A-Za-z0-9'}])`;
  const tail = o.tail ? `(?![${o.tail}])` : '';
  return {
    id,
    category: 'secret',
    description,
    action: o.action ?? 'redact',
    pattern: guard + head + body + tail,
    keywords: o.keywords ?? prefixes.map((p) => p.toLowerCase()),
    ...(o.keywords ? (o.keywordOffset === undefined ? {} : { keywordOffset: o.keywordOffset }) : { keywordOffset: 0 }),
    ...(o.validator ? { validator: o.validator } : {}),
    ...(o.ignoreCase ? { ignoreCase: true } : {}),
  };
}

/**
 * Token without a distinctive prefix, accepted only with one of `words` within `before`
 * characters ahead of it (e.g. an AWS secret key near "aws_secret_access_key").
 */
export function contextual(
  id: string,
  description: string,
  words: readonly string[],
  pattern: string,
  o: { before?: number; action?: DlpAction; validator?: Validator; category?: 'secret' | 'pii' } = {},
): RuleSpec {
  const lower = words.map((w) => w.toLowerCase());
  return {
    id,
    category: o.category ?? 'secret',
    description,
    action: o.action ?? 'redact',
    pattern,
    keywords: lower,
    keywordsInContext: true,
    context: { words: lower, before: o.before ?? 80 },
    ...(o.validator ? { validator: o.validator } : {}),
  };
}

/** PEM-style armored block from `-----BEGIN <label>-----` to the matching END line. */
export function armored(id: string, description: string, label: string, o: { action?: DlpAction; dashes?: string } = {}): RuleSpec {
  const d = o.dashes ?? '-----';
  return {
    id,
    category: 'secret',
    description,
    action: o.action ?? 'block',
    pattern: `${lit(d)}BEGIN ${lit(label)}${lit(d)}`,
    keywords: [`begin ${label.toLowerCase()}`],
    keywordOffset: d.length,
    span: { end: `${lit(d)}END ${lit(label)}${lit(d)}`, maxLength: 16384 },
  };
}

/**
 * URI with inline credentials (`scheme://user:password@host`); only the password is the finding.
 * `keywords` are scheme stems contained in every scheme alternative.
 */
export function credentialUri(id: string, description: string, schemes: readonly string[], keywords: readonly string[]): RuleSpec {
  return {
    id,
    category: 'secret',
    description,
    action: 'redact',
    pattern: `(?<![A-Za-z0-9+.-])(?:${schemes.join('|')})://[^\\s:@/"'<>\\\\]{0,128}:(?<secret>[^\\s@/"'<>\\\\]{1,128})@`,
    ignoreCase: true,
    keywords,
    // Scheme stems start the match; an '@' keyword can be anywhere in it.
    ...(keywords.includes('@') ? {} : { keywordOffset: 0 }),
  };
}
