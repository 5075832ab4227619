import type { RuleSpec } from '../types.js';
import { highEntropy, onValue } from '../validators.js';

/**
 * `<key> <sep> <value>` assignment: the key contains `stem` (letters, digits, `_.-` may
 * follow it), then optional quote, `:` or `=`, optional quote, and the value is the finding.
 */
function assignment(stem: string, valueMin: number): string {
  return (
    `(?i)(?<![a-z0-9])(?:${stem})[a-z0-9_.-]{0,30}["']?\\s{0,3}[:=]\\s{0,3}["']?` +
    `(?<secret>[^\\s"'\`<>,;&(){}\\[\\]]{${valueMin},200})`
  );
}

/** Keyword + high-entropy value rules; they come last so specific rules win ties. */
export const GENERIC_RULES: readonly RuleSpec[] = [
  {
    id: 'generic.url_password_param',
    category: 'secret',
    description: 'Password in a URL query parameter (?password=..., &pwd=...)',
    action: 'redact',
    pattern: '(?i)[?&](?:pass(?:word|wd)?|pwd)=(?<secret>[^&\\s"\'#]{4,128})',
    keywords: ['pass', 'pwd'],
    keywordOffset: 1,
    validator: onValue((v) => !/^[$%{<*]/.test(v)),
  },
  {
    id: 'generic.password',
    category: 'secret',
    description: 'Password assignment (password=, "passwd": ...) with a random-looking value',
    action: 'redact',
    pattern: assignment('pass|pwd', 6),
    keywords: ['pass', 'pwd'],
    keywordOffset: 0,
    validator: onValue(highEntropy(2.5)),
  },
  {
    id: 'generic.secret',
    category: 'secret',
    description: 'Secret or credential assignment (client_secret:, credentials=) with a high-entropy value',
    action: 'redact',
    pattern: assignment('secret|credential', 8),
    keywords: ['secret', 'credential'],
    keywordOffset: 0,
    validator: onValue(highEntropy(3.0)),
  },
  {
    id: 'generic.token',
    category: 'secret',
    description: 'Token assignment (access_token=, "token": ...) with a high-entropy value',
    action: 'redact',
    pattern: assignment('token', 12),
    keywords: ['token'],
    keywordOffset: 0,
    validator: onValue(highEntropy(3.2)),
  },
  {
    id: 'generic.api_key',
    category: 'secret',
    description: 'API or access key assignment (api_key=, accessKey: ...) with a high-entropy value',
    action: 'redact',
    pattern: assignment('api[_.-]?key|access[_.-]?key|auth[_.-]?key|signing[_.-]?key|encryption[_.-]?key', 12),
    keywords: ['apikey', 'api_key', 'api-key', 'api.key', 'accesskey', 'access_key', 'access-key', 'access.key', 'authkey', 'auth_key', 'auth-key', 'auth.key', 'signingkey', 'signing_key', 'signing-key', 'signing.key', 'encryptionkey', 'encryption_key', 'encryption-key', 'encryption.key'],
    keywordOffset: 0,
    validator: onValue(highEntropy(3.2)),
  },
];
