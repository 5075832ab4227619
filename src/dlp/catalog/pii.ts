import type { RuleSpec } from '../types.js';
import {
  abaRouting,
  caSin,
  creditCard,
  iban,
  internalHost,
  ipv4,
  ipv6,
  macAddress,
  ukNino,
  usItin,
  usSsn,
  type CheckResult,
  type Validator,
} from '../validators.js';
import { contextual } from './helpers.js';

/** Every accepted IPv6 (`::` or 8 groups) and MAC address overlaps a match of this. */
const HEX_RUN = '[:-](?::|[0-9A-Fa-f]{1,4}[:-][0-9A-Fa-f]{1,4}[:-])';
const FILE_EXT = new Set(['png', 'jpg', 'jpeg', 'gif', 'svg', 'webp', 'ico', 'js', 'mjs', 'css', 'map', 'ts', 'json', 'html', 'md']);

/** Characters before an e-mail candidate that {@link email} reads. */
const EMAIL_LOOKBEHIND = 96;
/** `scheme://user:` just before the candidate: it is the password of a URI (a credential rule's). */
const URI_USER = /[A-Za-z][A-Za-z0-9+.-]{0,30}:\/\/[^\s/@:]{0,64}:$/;

/** E-mail: sane local part and an alphabetic top-level label that is not a file extension. */
const email: Validator = (text, start, end) => {
  if (text.charCodeAt(start - 1) === 58 && URI_USER.test(text.slice(Math.max(0, start - EMAIL_LOOKBEHIND), start))) return false;
  const s = text.slice(start, end);
  const at = s.indexOf('@');
  const local = s.slice(0, at);
  if (local.startsWith('.') || local.endsWith('.') || local.includes('..')) return false;
  const labels = s.slice(at + 1).split('.');
  const tld = labels[labels.length - 1]!;
  if (!/^[A-Za-z]{2,24}$/.test(tld) || FILE_EXT.has(tld.toLowerCase())) return false;
  return labels.every((l) => l.length > 0 && !l.startsWith('-') && !l.endsWith('-'));
};

/** Card candidates are greedy; also try prefixes that end at a group separator (longest first). */
const cardWithin: Validator = (text, start, end) => {
  if (creditCard(text, start, end) === true) return true;
  for (let e = end - 1; e > start + 12; e--) {
    const c = text.charCodeAt(e);
    if ((c === 32 || c === 45) && creditCard(text, start, e) === true) return [start, e] as CheckResult;
  }
  return false;
};

/** Personal data. */
export const PII_RULES: readonly RuleSpec[] = [
  {
    id: 'pii.email',
    category: 'pii',
    description: 'E-mail address',
    action: 'redact',
    pattern: '(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\\.[A-Za-z0-9-]{1,63}){1,8}',
    keywords: ['@'],
    keywordOffset: 64,
    validator: email,
    lookbehind: EMAIL_LOOKBEHIND,
  },
  {
    id: 'pii.phone_e164',
    category: 'pii',
    description: 'Phone number in international E.164 form (+ country code, 8-15 digits)',
    action: 'redact',
    pattern: '(?<![0-9A-Za-z+])\\+[1-9](?:[ .-]?[0-9]){7,14}(?![0-9])',
    keywords: ['+1', '+2', '+3', '+4', '+5', '+6', '+7', '+8', '+9'],
    keywordOffset: 0,
  },
  {
    id: 'pii.phone_nanp',
    category: 'pii',
    description: 'North American phone number ((415) 555-2671, 415-555-2671, +1 415.555.2671)',
    action: 'redact',
    pattern: '(?<![0-9A-Za-z+])(?:\\+?1[ .-]?)?(?:\\([2-9][0-9]{2}\\) ?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}(?![0-9])',
  },
  {
    id: 'pii.us_ssn',
    category: 'pii',
    description: 'US Social Security number (area 000, 666 and 900-999, group 00 and serial 0000 excluded)',
    action: 'redact',
    pattern: '(?<![0-9A-Za-z-])[0-8][0-9]{2}[- ][0-9]{2}[- ][0-9]{4}(?![0-9A-Za-z-])',
    validator: usSsn,
  },
  contextual('pii.us_itin', 'US Individual Taxpayer Identification Number (near an ITIN/taxpayer keyword)', ['itin', 'taxpayer', 'tax id', 'tin'], '(?<![0-9A-Za-z-])9[0-9]{2}[- ][0-9]{2}[- ][0-9]{4}(?![0-9A-Za-z-])', {
    category: 'pii',
    validator: usItin,
  }),
  {
    id: 'pii.credit_card',
    category: 'pii',
    description: 'Payment card number (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro; Luhn-checked)',
    action: 'redact',
    pattern: '(?<![0-9A-Za-z])[0-9]{4}(?:[ -]?[0-9]){8,15}(?![0-9])',
    validator: cardWithin,
  },
  {
    id: 'pii.iban',
    category: 'pii',
    description: 'International Bank Account Number (country length and mod-97 checked)',
    action: 'redact',
    pattern: '(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}',
    validator: iban,
  },
  contextual('pii.us_bank_routing', 'US ABA routing number (checksum, near a routing keyword)', ['routing', 'aba', 'rtn'], '(?<![0-9])[0-9]{9}(?![0-9])', {
    category: 'pii',
    validator: abaRouting,
  }),
  contextual('pii.ca_sin', 'Canadian Social Insurance Number (Luhn, near a SIN keyword)', ['sin', 'social insurance', 'nas'], '(?<![0-9A-Za-z-])[0-9]{3}[- ][0-9]{3}[- ][0-9]{3}(?![0-9A-Za-z-])', {
    category: 'pii',
    validator: caSin,
  }),
  {
    id: 'pii.uk_nino',
    category: 'pii',
    description: 'UK National Insurance number',
    action: 'redact',
    pattern: '(?<![A-Za-z0-9])[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D](?![A-Za-z0-9])',
    validator: ukNino,
  },
  contextual('pii.passport_number', 'Passport number (near a passport keyword)', ['passport'], '(?<![A-Za-z0-9])[A-Z0-9][0-9]{7,8}(?![A-Za-z0-9])', {
    category: 'pii',
    before: 60,
  }),
  {
    id: 'pii.date_of_birth',
    category: 'pii',
    description: 'Date of birth next to a DOB/birth-date label',
    action: 'redact',
    pattern:
      '(?i)(?<![a-z0-9])(?:dob|date[ _]of[ _]birth|birth(?:[ _]date|d(?:ate|ay)))["\']?[\\s:=]{1,6}["\']?(?<secret>[0-9]{1,4}[/.-][0-9]{1,2}[/.-][0-9]{2,4})(?![0-9])',
    keywords: ['dob', 'birth'],
    keywordOffset: 8,
  },
  {
    id: 'pii.ipv4',
    category: 'pii',
    description: 'IPv4 address',
    action: 'flag',
    pattern: '(?<![0-9A-Za-z.])(?:[0-9]{1,3}\\.){3}[0-9]{1,3}(?![0-9A-Za-z])',
    trigger: '[0-9]\\.[0-9]{1,3}\\.[0-9]',
    validator: ipv4,
    lookahead: 2,
  },
  {
    id: 'pii.ipv6',
    category: 'pii',
    description: 'IPv6 address (full or compressed form)',
    action: 'flag',
    pattern: '(?<![0-9A-Za-z:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![0-9A-Za-z:])',
    trigger: HEX_RUN,
    validator: ipv6,
  },
  {
    id: 'pii.mac_address',
    category: 'pii',
    description: 'MAC (EUI-48) address',
    action: 'flag',
    pattern: '(?<![0-9A-Za-z:-])[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}(?![0-9A-Za-z:-])',
    trigger: HEX_RUN,
    validator: macAddress,
  },
  {
    id: 'pii.internal_hostname',
    category: 'pii',
    description: 'Internal hostname (*.internal, *.corp, *.local, *.lan, *.intranet, *.home.arpa ...)',
    action: 'redact',
    pattern: '(?<![A-Za-z0-9.-])[A-Za-z0-9-]{1,63}(?:\\.[A-Za-z0-9-]{1,63}){1,6}(?![A-Za-z0-9-])',
    keywords: ['.internal', '.corp', '.local', '.lan', '.intranet', '.home', '.private', '.priv', '.intra'],
    validator: internalHost,
  },
  {
    id: 'pii.unix_home_path',
    category: 'pii',
    description: 'Unix or macOS home directory path naming a user (/home/<user>/..., /Users/<user>, /root/...)',
    action: 'redact',
    pattern:
      '(?<![A-Za-z0-9._~-])/(?:home/[A-Za-z0-9._-]{1,64}(?:/[A-Za-z0-9._@+-]{1,100}){1,12}|Users/[A-Za-z0-9._-]{1,64}(?:/[A-Za-z0-9._@+-]{1,100}){0,12}|root(?:/[A-Za-z0-9._@+-]{1,100}){1,12})',
    keywords: ['/home/', '/users/', '/root/'],
    keywordOffset: 0,
  },
  {
    id: 'pii.windows_user_path',
    category: 'pii',
    description: 'Windows user profile path naming a user (C:\\Users\\<user>, also JSON-escaped)',
    action: 'redact',
    pattern:
      '(?i)(?<![a-z0-9])[a-z]:(?:\\\\{1,2}|/)(?:users|documents and settings)(?:\\\\{1,2}|/)[^\\\\/:*?"<>|\\s]{1,64}(?:(?:\\\\{1,2}|/)[^\\\\/:*?"<>|\\s]{1,100}){0,12}',
    keywords: ['\\users', '/users', 'documents and settings'],
    keywordOffset: 4,
  },
];
