import { factor, parsePattern, type Node } from '../../../src/dlp/regex/parse.js';
import type { RuleSpec } from '../../../src/dlp/types.js';

/**
 * Test data for the catalog: a generator that builds a string matching a pattern from its
 * syntax tree, and hand-made samples for rules whose validators need real structure (Luhn,
 * mod-97, JWT headers ...). Token-like samples are assembled at run time, so the source holds
 * no literal credential.
 */

/** Small deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Character kinds cycled through, so generated tokens mix digits, upper and lower case. */
const KINDS = ['23456789', 'ABCDEFGHJKLMNPQRSTUVWXYZ', 'abcdefghijkmnopqrstuvwxyz'];
let turn = 0;

function pickChar(set: readonly number[], rand: () => number): string {
  const inSet = (c: number): boolean => {
    for (let i = 0; i < set.length; i += 2) if (c >= set[i]! && c <= set[i + 1]!) return true;
    return false;
  };
  const kinds = KINDS.map((k) => [...k].filter((ch) => inSet(ch.charCodeAt(0)))).filter((k) => k.length > 0);
  if (kinds.length > 0) {
    const kind = kinds[turn++ % kinds.length]!;
    return kind[Math.floor(rand() * kind.length)]!;
  }
  for (let c = 0x21; c < 0x7f; c++) if (inSet(c)) return String.fromCharCode(c);
  return String.fromCharCode(set[0]!);
}

function gen(n: Node, rand: () => number): string {
  switch (n.t) {
    case 'char':
      return pickChar(n.set, rand);
    case 'seq':
      return n.items.map((x) => gen(x, rand)).join('');
    case 'alt':
      return gen(n.alts[Math.floor(rand() * n.alts.length)]!, rand);
    case 'rep': {
      const count = n.min === 0 ? 0 : Math.min(n.max, Math.max(n.min, 24));
      let s = '';
      for (let i = 0; i < count; i++) s += gen(n.node, rand);
      return s;
    }
    case 'cap':
      return gen(n.node, rand);
    default:
      return '';
  }
}

/** A string matched by `pattern` (lookarounds are ignored; embed it between spaces). */
export function generate(pattern: string, seed = 1): string {
  turn = seed;
  const p = parsePattern(pattern);
  return gen(factor(p.root, p.ignoreCase), rng(seed));
}

const b64url = (s: string): string => Buffer.from(s).toString('base64url');

/** Luhn check digit appended to `digits`. */
export function withLuhn(digits: string): string {
  for (let d = 0; d <= 9; d++) {
    const full = digits + d;
    let sum = 0;
    let dbl = false;
    for (let i = full.length - 1; i >= 0; i--) {
      let x = full.charCodeAt(i) - 48;
      if (dbl) {
        x *= 2;
        if (x > 9) x -= 9;
      }
      sum += x;
      dbl = !dbl;
    }
    if (sum % 10 === 0) return full;
  }
  throw new Error('unreachable');
}

/** Hand-made positive samples (the text around the sample included). */
export const HANDMADE: Readonly<Record<string, string>> = {
  jwt: `token ${b64url('{"alg":"HS256","typ":"JWT"}')}.${b64url('{"sub":"1234567890","name":"Jane"}')}.${'Sf1KxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c'} end`,
  'auth.basic_credentials': `Authorization: Basic ${Buffer.from('alice:s3cret-Pass').toString('base64')}`,
  'pii.email': 'mail jane.doe+news@mail.example.org now',
  'pii.us_ssn': 'ssn 536-22-8714 on file',
  'pii.us_itin': 'ITIN: 912-70-1234',
  'pii.credit_card': 'card 4111 1111 1111 1111 exp',
  'pii.iban': 'IBAN DE89 3704 0044 0532 0130 00 thanks',
  'pii.us_bank_routing': 'routing number 021000021 acct',
  'pii.ca_sin': `SIN ${withLuhn('12345678').replace(/(\d{3})(\d{3})(\d{3})/, '$1 $2 $3')}`,
  'pii.uk_nino': 'NI number AB 12 34 56 C',
  'pii.ipv4': 'host at 192.168.10.20 port',
  'pii.ipv6': 'addr 2001:db8:85a3::8a2e:370:7334 up',
  'pii.mac_address': 'mac 00:1A:2B:3C:4D:5E seen',
  'pii.internal_hostname': 'connect to db01.prod.corp now',
  'pii.phone_nanp': 'call (415) 555-2671 today',
  'pii.phone_e164': 'call +44 20 7946 0958 today',
  'pii.unix_home_path': 'file /home/alice/projects/plan.txt read',
  'pii.windows_user_path': 'file C:\\Users\\bob\\Documents\\plan.docx read',
  'pii.date_of_birth': '"dob": "1990-04-23"',
  'pii.passport_number': 'passport no. 123456789',
  'generic.password': '"db_password": "Xk8#pQ2vLm9z"',
  'generic.secret': 'client_secret = "q7F2mZ9xW4vB8nK1"',
  'generic.token': 'access_token: aZ9xQ2wE7rT4yU1iO6pL',
  'generic.api_key': 'API_KEY=9fKx2LmQ7vB3nZ8wR4tY',
  'generic.url_password_param': 'https://x.example.com/login?user=a&password=Hunter42x&next=1',
  'cli.password_flag': 'mysqldump --password=Zq8vLx2m db',
  'aws.secret_access_key': `aws_secret_access_key = ${'wJalrXUtnFEMI/K7MDENG/bPxRfiCY'}${'EXAMPLEKEY'}`,
  'db.postgres_uri_password': 'postgres://app:S3cr3tPw@db.internal:5432/app',
  'net.http_url_password': 'https://admin:Passw0rd9@example.com/path',
};

/** Texts that must produce no finding of the given rule (checksums and structure). */
export const NEGATIVES: Readonly<Record<string, readonly string[]>> = {
  'pii.credit_card': ['card 4111 1111 1111 1112 exp', 'id 1234567812345678 x', 'n 4111-1111 1111-1111'],
  'pii.iban': ['IBAN DE89 3704 0044 0532 0130 01 thanks', 'XX12 3456 7890 1234 5678 90', 'GB82 WEST 1234 5698 7654 33'],
  'pii.us_ssn': ['ssn 000-12-3456', 'ssn 666-12-3456', 'ssn 912-34-5678', 'ssn 123-00-4567', 'ssn 123-45-0000', 'ssn 123-45 6789'],
  'pii.ipv4': ['ver 300.1.2.3 x', 'v 1.2.3.4.5', 'ip 01.2.3.4'],
  'pii.us_bank_routing': ['routing number 021000022'],
  'pii.ca_sin': ['SIN 123 456 789', 'SIN 046 454 286'],
  jwt: [`tok ${b64url('not json at all')}.${b64url('{"a":1}')}.sig`],
  'auth.basic_credentials': ['Basic information about the product'],
  'pii.email': ['logo@2x.png'],
  'pii.ipv6': ['time 12:30:45 ok', 'std::vector<int>'],
  'generic.password': ['password: ${DB_PASSWORD}', '"password": "********"', 'password=changeme'],
  'aws.secret_access_key': [`sha ${'a'.repeat(40)} end`],
};

/** A positive sample for a rule: hand-made, or generated (plus context words when needed). */
export function sampleFor(rule: RuleSpec, seed = 7): string {
  const hand = HANDMADE[rule.id];
  if (hand !== undefined) return hand;
  let s = generate(rule.pattern, seed);
  if (rule.span) s = `${s}\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n${generate(rule.span.end, seed)}`;
  if (rule.context) s = `${rule.context.words[0]} = ${s}`;
  return ` ${s} `;
}
