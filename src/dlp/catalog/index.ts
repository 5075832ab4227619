import type { RuleSpec } from '../types.js';
import { CLOUD_RULES } from './cloud.js';
import { CODE_RULES } from './code.js';
import { GENERIC_RULES } from './generic.js';
import { DATABASE_RULES, KEY_RULES } from './keys.js';
import { MESSAGING_RULES } from './messaging.js';
import { PII_RULES } from './pii.js';
import { AI_RULES, PAYMENT_RULES, SAAS_RULES } from './services.js';

/**
 * The built-in rule catalog. Order matters only for ties (two rules matching exactly the same
 * span): the earlier rule names the finding, so specific rules come before generic ones.
 */
export const BUILTIN_RULES: readonly RuleSpec[] = [
  ...CLOUD_RULES,
  ...CODE_RULES,
  ...MESSAGING_RULES,
  ...PAYMENT_RULES,
  ...SAAS_RULES,
  ...AI_RULES,
  ...KEY_RULES,
  ...DATABASE_RULES,
  ...PII_RULES,
  ...GENERIC_RULES,
];
