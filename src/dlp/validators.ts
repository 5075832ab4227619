/**
 * Checksums and structural checks that turn regex candidates into findings. Each works on
 * `text.slice(start, end)` plus at most one character on either side, in time linear in the
 * match (the scanner's streaming guarantee relies on both).
 */

/** Outcome of a check: reject, accept the match, or accept a narrower `[start, end)` span. */
export type CheckResult = boolean | readonly [number, number];

/** A validator over a match `text[start, end)`. */
export type Validator = (text: string, start: number, end: number) => CheckResult;

function digitsOf(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) out += s[i];
  }
  return out;
}

/** Luhn mod-10 check over a string of digits. */
export function luhn(digits: string): boolean {
  let sum = 0;
  let dbl = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    dbl = !dbl;
  }
  return digits.length > 0 && sum % 10 === 0;
}

/** Card network for a PAN (digits only) by issuer prefix and length, or null. */
export function cardIssuer(pan: string): string | null {
  const n = pan.length;
  const p2 = Number(pan.slice(0, 2));
  const p3 = Number(pan.slice(0, 3));
  const p4 = Number(pan.slice(0, 4));
  const p6 = Number(pan.slice(0, 6));
  if (pan[0] === '4' && (n === 13 || n === 16 || n === 19)) return 'visa';
  if (((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) && n === 16) return 'mastercard';
  if ((p2 === 34 || p2 === 37) && n === 15) return 'amex';
  if ((p4 === 6011 || p2 === 65 || (p3 >= 644 && p3 <= 649) || (p6 >= 622126 && p6 <= 622925)) && n >= 16 && n <= 19) return 'discover';
  if (p4 >= 3528 && p4 <= 3589 && n >= 16 && n <= 19) return 'jcb';
  if (((p3 >= 300 && p3 <= 305) || p2 === 36 || p2 === 38 || p2 === 39 || p3 === 309) && n >= 14 && n <= 19) return 'diners';
  if (p2 === 62 && n >= 16 && n <= 19) return 'unionpay';
  if ((p2 === 50 || (p2 >= 56 && p2 <= 58) || p2 === 67 || p2 === 63) && n >= 12 && n <= 19) return 'maestro';
  return null;
}

/** Digits of the PAN being checked (reused: the card check runs on every digit run). */
const pan = new Uint8Array(20);

/** {@link cardIssuer} and {@link luhn} over `pan[0, n)`, without building strings. */
function panValid(n: number): boolean {
  if (n < 12 || n > 19) return false;
  const p2 = pan[0]! * 10 + pan[1]!;
  const p3 = p2 * 10 + pan[2]!;
  const p4 = p3 * 10 + pan[3]!;
  const p6 = (p4 * 10 + pan[4]!) * 10 + pan[5]!;
  const known =
    (pan[0] === 4 && (n === 13 || n === 16 || n === 19)) ||
    (((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) && n === 16) ||
    ((p2 === 34 || p2 === 37) && n === 15) ||
    ((p4 === 6011 || p2 === 65 || (p3 >= 644 && p3 <= 649) || (p6 >= 622126 && p6 <= 622925)) && n >= 16) ||
    (p4 >= 3528 && p4 <= 3589 && n >= 16) ||
    (((p3 >= 300 && p3 <= 305) || p2 === 36 || p2 === 38 || p2 === 39 || p3 === 309) && n >= 14) ||
    (p2 === 62 && n >= 16) ||
    p2 === 50 ||
    (p2 >= 56 && p2 <= 58) ||
    p2 === 67 ||
    p2 === 63;
  if (!known) return false;
  let sum = 0;
  for (let i = n - 1, dbl = false; i >= 0; i--, dbl = !dbl) {
    let d = pan[i]!;
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  if (sum % 10 !== 0) return false;
  for (let i = 1; i < n; i++) if (pan[i] !== pan[0]) return true;
  return false;
}

/** Payment card: consistent separators, a known issuer prefix and length, and Luhn. */
export const creditCard: Validator = (text, start, end) => {
  let n = 0;
  let sep = -1;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (n === 19) return false;
      pan[n++] = c - 48;
    } else if (sep === -1) sep = c;
    else if (sep !== c) return false;
  }
  return panValid(n);
};

/** IBAN length per country (ISO 13616 registry). */
const IBAN_LENGTHS: Readonly<Record<string, number>> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BI: 27, BR: 29, BY: 28, CH: 21, CR: 22, CY: 28,
  CZ: 24, DE: 22, DJ: 27, DK: 18, DO: 28, EE: 20, EG: 29, ES: 24, FI: 18, FK: 18, FO: 18, FR: 27, GB: 22, GE: 22, GI: 23,
  GL: 18, GR: 27, GT: 28, HR: 21, HU: 28, IE: 22, IL: 23, IQ: 23, IS: 26, IT: 27, JO: 30, KW: 30, KZ: 20, LB: 28, LC: 32,
  LI: 21, LT: 20, LU: 20, LV: 21, LY: 25, MC: 27, MD: 24, ME: 22, MK: 19, MN: 20, MR: 27, MT: 31, MU: 30, NI: 28, NL: 18,
  NO: 15, OM: 23, PK: 24, PL: 28, PS: 29, PT: 25, QA: 29, RO: 24, RS: 22, RU: 33, SA: 24, SC: 31, SD: 18, SE: 24, SI: 19,
  SK: 24, SM: 27, SO: 23, ST: 25, SV: 28, TL: 23, TN: 24, TR: 26, UA: 29, VA: 22, VG: 24, XK: 20, YE: 30,
};

/** ISO 7064 mod-97-10 over an IBAN without spaces. */
export function ibanMod97(iban: string): boolean {
  const moved = iban.slice(4) + iban.slice(0, 4);
  let rem = 0;
  for (let i = 0; i < moved.length; i++) {
    const c = moved.charCodeAt(i);
    if (c >= 48 && c <= 57) rem = (rem * 10 + (c - 48)) % 97;
    else if (c >= 65 && c <= 90) rem = (rem * 100 + (c - 55)) % 97;
    else return false;
  }
  return rem === 1;
}

/**
 * IBAN: the country's registered length (the match is cut to it, so trailing words are not
 * swallowed) and mod-97.
 */
export const iban: Validator = (text, start, end) => {
  const want = IBAN_LENGTHS[text.slice(start, start + 2)];
  if (want === undefined) return false;
  let compact = '';
  let i = start;
  for (; i < end && compact.length < want; i++) if (text[i] !== ' ') compact += text[i];
  if (compact.length !== want) return false;
  const next = text.charCodeAt(i);
  if ((next >= 48 && next <= 57) || (next >= 65 && next <= 90)) return false;
  return ibanMod97(compact) ? [start, i] : false;
};

/** US SSN `AAA-GG-SSSS` (same separator twice): no 000/666/9xx area, 00 group or 0000 serial. */
export const usSsn: Validator = (text, start, end) => {
  const s = text.slice(start, end);
  if (s[3] !== s[6]) return false;
  const area = Number(s.slice(0, 3));
  const group = s.slice(4, 6);
  const serial = s.slice(7, 11);
  if (area === 0 || area === 666 || area >= 900) return false;
  if (group === '00' || serial === '0000') return false;
  return s !== '123-45-6789' && s !== '078-05-1120';
};

/** US ITIN `9AA-GG-SSSS`, group 50-65, 70-88, 90-92 or 94-99. */
export const usItin: Validator = (text, start, end) => {
  const s = text.slice(start, end);
  if (s[3] !== s[6]) return false;
  const g = Number(s.slice(4, 6));
  return (g >= 50 && g <= 65) || (g >= 70 && g <= 88) || (g >= 90 && g <= 92) || (g >= 94 && g <= 99);
};

/** Canadian SIN: nine digits, consistent separators, Luhn, not starting with 0 or 8. */
export const caSin: Validator = (text, start, end) => {
  const s = text.slice(start, end);
  if (s[3] !== s[7]) return false;
  const d = digitsOf(s);
  return d[0] !== '0' && d[0] !== '8' && luhn(d);
};

/** ABA routing number checksum (3-7-1 weights). */
export const abaRouting: Validator = (text, start, end) => {
  const d = digitsOf(text.slice(start, end));
  if (d.length !== 9) return false;
  const w = [3, 7, 1, 3, 7, 1, 3, 7, 1];
  let sum = 0;
  for (let i = 0; i < 9; i++) sum += (d.charCodeAt(i) - 48) * w[i]!;
  const prefix = Number(d.slice(0, 2));
  const okPrefix = prefix <= 12 || (prefix >= 21 && prefix <= 32) || (prefix >= 61 && prefix <= 72) || prefix === 80;
  return okPrefix && sum % 10 === 0;
};

/** UK National Insurance number prefixes that are never issued. */
const NINO_BAD = new Set(['BG', 'GB', 'KN', 'NK', 'NT', 'TN', 'ZZ']);

/** UK NINO: valid prefix letters, consistent spacing. */
export const ukNino: Validator = (text, start, end) => {
  const s = text.slice(start, end).replace(/ /g, '');
  if (s.length !== 9) return false;
  if (NINO_BAD.has(s.slice(0, 2))) return false;
  if ('DFIQUV'.includes(s[0]!) || 'DFIQUVO'.includes(s[1]!)) return false;
  return true;
};

/** IPv4: four octets 0-255 without leading zeros, not followed by another `.digit`. */
export const ipv4: Validator = (text, start, end) => {
  const parts = text.slice(start, end).split('.');
  if (parts.length !== 4) return false;
  for (const p of parts) {
    if (p.length > 1 && p[0] === '0') return false;
    if (Number(p) > 255) return false;
  }
  if (text[end] === '.' && /[0-9]/.test(text[end + 1] ?? '')) return false;
  if (text[start - 1] === '.') return false;
  return true;
};

/** IPv6 textual form (RFC 4291, no embedded IPv4): 8 groups, or fewer with exactly one `::`. */
export const ipv6: Validator = (text, start, end) => {
  const s = text.slice(start, end);
  const dbl = s.indexOf('::');
  if (dbl !== s.lastIndexOf('::')) return false;
  if (s.includes(':::')) return false;
  const groups = s.split(':');
  const filled = groups.filter((g) => g.length > 0);
  if (filled.some((g) => g.length > 4)) return false;
  if (dbl < 0) return groups.length === 8 && filled.length === 8;
  if (s.startsWith(':') && dbl !== 0) return false;
  if (s.endsWith(':') && dbl !== s.length - 2) return false;
  // Short compressed forms (`a::b`) are too often something else (C++ scopes, times).
  return filled.length <= 7 && filled.length >= 2 && filled.some((g) => /[0-9]/.test(g));
};

/** MAC address with one consistent separator. */
export const macAddress: Validator = (text, start, end) => {
  const s = text.slice(start, end);
  const seps = new Set(s.replace(/[0-9A-Fa-f]/g, ''));
  return seps.size === 1 && !/^([0-9A-Fa-f])\1(?:[:-]\1\1){5}$/.test(s);
};

/** Top-level labels that only resolve inside an organisation. */
const INTERNAL_TLDS = new Set(['internal', 'corp', 'local', 'lan', 'intranet', 'localdomain', 'home', 'private', 'priv', 'intra']);

/** Hostname whose last label is an internal-only TLD (or `*.home.arpa`). */
export const internalHost: Validator = (text, start, end) => {
  const s = text.slice(start, end).toLowerCase();
  const labels = s.split('.');
  if (labels.length < 2) return false;
  const tld = labels[labels.length - 1]!;
  if (s.endsWith('.home.arpa')) return labels.length >= 3;
  if (!INTERNAL_TLDS.has(tld)) return false;
  return labels.every((l) => l.length > 0 && !l.startsWith('-') && !l.endsWith('-'));
};

/** Shannon entropy in bits per character. */
export function entropy(s: string): number {
  if (s.length === 0) return 0;
  const counts = new Map<number, number>();
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    counts.set(c, (counts.get(c) ?? 0) + 1);
  }
  let h = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    h -= p * Math.log2(p);
  }
  return h;
}

const PLACEHOLDER = /^(?:x{3,}|\*{3,}|\.{3,}|<[^>]*>|\$\{[^}]*\}|\{\{[^}]*\}\}|%[a-z_]+%|(?:your|my|the)[_-]|changeme|password|secret|redacted|example|placeholder|null|undefined|none|true|false)/i;

/** Whether a value is a template, mask or placeholder rather than a secret. */
export function isPlaceholder(v: string): boolean {
  return PLACEHOLDER.test(v) || v.includes('REDACTED');
}

/** Accepts values that look random: entropy >= `minBits` per char and at least two character kinds. */
export function highEntropy(minBits: number): (v: string) => boolean {
  return (v) => {
    if (isPlaceholder(v)) return false;
    let kinds = 0;
    if (/[a-z]/.test(v)) kinds++;
    if (/[A-Z]/.test(v)) kinds++;
    if (/[0-9]/.test(v)) kinds++;
    if (/[^A-Za-z0-9]/.test(v)) kinds++;
    return kinds >= 2 && entropy(v) >= minBits;
  };
}

/** Applies a value test to the match text. */
export function onValue(test: (v: string) => boolean): Validator {
  return (text, start, end) => test(text.slice(start, end));
}

function b64Decode(s: string): string | null {
  const norm = s.replace(/-/g, '+').replace(/_/g, '/');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(norm)) return null;
  try {
    return Buffer.from(norm, 'base64').toString('utf8');
  } catch {
    return null;
  }
}

/** JWT: the header segment decodes to a JSON object with an `alg`. */
export const jwt: Validator = (text, start, end) => {
  const s = text.slice(start, end);
  const dot = s.indexOf('.');
  const header = b64Decode(s.slice(0, dot));
  if (header === null || !header.startsWith('{') || !header.trimEnd().endsWith('}')) return false;
  try {
    const h = JSON.parse(header) as unknown;
    return typeof h === 'object' && h !== null && typeof (h as Record<string, unknown>).alg === 'string';
  } catch {
    return false;
  }
};

/** HTTP Basic credentials: decodes to printable `user:password`. */
export const basicAuth: Validator = (text, start, end) => {
  const d = b64Decode(text.slice(start, end));
  return d !== null && /^[\x20-\x7e]{1,200}:[\x20-\x7e]{1,200}$/.test(d);
};

/** Luhn over the digits of the match (SIN-like identifiers, IMEI). */
export const luhnDigits: Validator = (text, start, end) => luhn(digitsOf(text.slice(start, end)));

/** Base64 run whose decoded text reads like instructions to a model. */
export const base64Instructions: Validator = (text, start, end) => {
  const raw = text.slice(start, end);
  const d = b64Decode(raw.slice(0, raw.length - (raw.length % 4)));
  if (d === null) return false;
  let printable = 0;
  for (let i = 0; i < d.length; i++) {
    const c = d.charCodeAt(i);
    if ((c >= 0x20 && c < 0x7f) || c === 10 || c === 13 || c === 9) printable++;
  }
  if (printable < d.length * 0.9) return false;
  return /\b(?:ignore|disregard|instructions?|system prompt|you are|assistant|developer mode|jailbreak)\b/i.test(d);
};

/** Named validators that config rules may reference. */
export const NAMED_VALIDATORS: Readonly<Record<string, Validator>> = {
  luhn: luhnDigits,
  credit_card: creditCard,
  iban,
  us_ssn: usSsn,
  ipv4,
  ipv6,
  jwt,
  entropy: onValue(highEntropy(3.0)),
  basic_auth: basicAuth,
  aba_routing: abaRouting,
};

/** Names accepted by {@link NAMED_VALIDATORS}. */
export const VALIDATOR_NAMES: readonly string[] = Object.keys(NAMED_VALIDATORS);
