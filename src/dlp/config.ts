import type { DlpAction, DlpCategory } from './types.js';
import { VALIDATOR_NAMES } from './validators.js';

/** A rule added by configuration. Patterns use the same safe subset as the built-in rules. */
export interface DlpCustomRule {
  readonly id: string;
  /** Safe-subset pattern; a `(?<secret>...)` group narrows the finding to that part. */
  readonly pattern: string;
  /** ASCII words one of which occurs in every match (case-insensitive); enables the prefilter. */
  readonly keywords?: readonly string[];
  readonly action: DlpAction;
  readonly category?: DlpCategory;
  readonly description?: string;
  readonly ignore_case?: boolean;
  /** Named checksum/structure check (`luhn`, `iban`, `credit_card`, `entropy`, ...). */
  readonly validator?: string;
  /** Require one of `words` within `before` characters ahead of the match. */
  readonly context?: { readonly words: readonly string[]; readonly before?: number };
}

/** Change to a built-in (or custom) rule. */
export interface DlpRuleOverride {
  readonly action?: DlpAction;
  readonly enabled?: boolean;
}

/** The `dlp` section of the gateway config. */
export interface DlpConfig {
  readonly rules?: readonly DlpCustomRule[];
  readonly overrides?: Readonly<Record<string, DlpRuleOverride>>;
  /** Categories whose rules are all disabled. */
  readonly disabled_categories?: readonly DlpCategory[];
  /** Longest tail a stream redactor holds back (UTF-16 code units; default 4096). */
  readonly max_holdback_bytes?: number;
}

const action = { enum: ['redact', 'block', 'flag'] } as const;
const category = { enum: ['secret', 'pii'] } as const;

/** JSON Schema (draft 2019-09/2020-12 compatible, usable with ajv) for {@link DlpConfig}. */
export const dlpConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    rules: {
      type: 'array',
      maxItems: 1000,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'pattern', 'action'],
        properties: {
          id: { type: 'string', pattern: '^[a-z0-9][a-z0-9_.-]{0,99}$' },
          pattern: { type: 'string', minLength: 1, maxLength: 4096 },
          keywords: { type: 'array', maxItems: 64, items: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[\\x20-\\x7e]+$' } },
          action,
          category,
          description: { type: 'string', maxLength: 500 },
          ignore_case: { type: 'boolean' },
          validator: { enum: [...VALIDATOR_NAMES] },
          context: {
            type: 'object',
            additionalProperties: false,
            required: ['words'],
            properties: {
              words: { type: 'array', minItems: 1, maxItems: 64, items: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[\\x20-\\x7e]+$' } },
              before: { type: 'integer', minimum: 1, maximum: 1024 },
            },
          },
        },
      },
    },
    overrides: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        minProperties: 1,
        properties: { action, enabled: { type: 'boolean' } },
      },
    },
    disabled_categories: { type: 'array', items: category, uniqueItems: true },
    max_holdback_bytes: { type: 'integer', minimum: 256, maximum: 1048576 },
  },
} as const;

/** One configuration problem, with a JSON path into the `dlp` section. */
export interface DlpConfigProblem {
  readonly path: string;
  readonly message: string;
}
