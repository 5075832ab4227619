import { createHash, createHmac, createPublicKey, timingSafeEqual, verify, X509Certificate, constants, type JsonWebKey, type KeyObject } from 'node:crypto';
import type { LoadedPolicy } from '@open-policy-agent/opa-wasm';
import { rulesCalling } from './wasmCallers.js';

/**
 * Host implementations of OPA built-ins that compiled wasm policies import instead of
 * implementing natively, for the ones OPA-Envoy policies commonly use (token decoding and
 * verification, time, URL encoding, hashes). Semantics follow OPA: a built-in that cannot
 * produce a value returns `undefined`, which the policy sees as undefined (not an error).
 */

/** Built-ins the opa-wasm SDK implements itself. */
const SDK_BUILTINS: ReadonlySet<string> = new Set(['sprintf', 'json.is_valid', 'regex.split', 'yaml.is_valid', 'yaml.marshal', 'yaml.unmarshal']);

type Builtin = (...args: unknown[]) => unknown;

/** `time.now_ns` is constant within one evaluation, as in OPA. */
let evalNowNs: number | null = null;

/** Starts a new evaluation (resets the clock `time.now_ns` reports). */
export function beginEvaluation(): void {
  evalNowNs = null;
}

function nowNs(): number {
  evalNowNs ??= Date.now() * 1_000_000;
  return evalNowNs;
}

const B64URL = /^[A-Za-z0-9_-]*$/;

interface DecodedJwt {
  readonly header: Record<string, unknown>;
  readonly payload: Record<string, unknown>;
  readonly signature: Buffer;
  readonly signingInput: string;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function decodeJwt(token: unknown): DecodedJwt | null {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((p) => B64URL.test(p))) return null;
  const [h, p, s] = parts as [string, string, string];
  try {
    const header: unknown = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
    const payload: unknown = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
    if (!isObject(header) || !isObject(payload)) return null;
    return { header, payload, signature: Buffer.from(s, 'base64url'), signingInput: `${h}.${p}` };
  } catch {
    return null;
  }
}

/** Parsed key material by its text: policies pass the same certificate or JWKS on every call. */
const keyCache = new Map<string, KeyObject[]>();
const KEY_CACHE_MAX = 64;

/** Public keys from a PEM certificate/public key, a JWK or a JWK Set; empty when unusable. */
function publicKeys(material: string): KeyObject[] {
  const cached = keyCache.get(material);
  if (cached) return cached;
  let keys: KeyObject[] = [];
  try {
    const text = material.trim();
    if (text.startsWith('{')) {
      const json: unknown = JSON.parse(text);
      const jwks = isObject(json) && Array.isArray(json.keys) ? json.keys : [json];
      for (const jwk of jwks) {
        try {
          keys.push(createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' }));
        } catch {
          // A key of an unsupported type in a set does not invalidate the others.
        }
      }
    } else if (text.includes('-----BEGIN CERTIFICATE-----')) {
      keys = (text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((pem) => new X509Certificate(pem).publicKey);
    } else {
      keys = [createPublicKey(text)];
    }
  } catch {
    keys = [];
  }
  if (keyCache.size >= KEY_CACHE_MAX) keyCache.clear();
  keyCache.set(material, keys);
  return keys;
}

const HASHES = { '256': 'sha256', '384': 'sha384', '512': 'sha512' } as const;

/** Verifies a JWS signature for `alg` with a secret (HS*) or key material (RS*, PS*, ES*). */
function verifySignature(jwt: DecodedJwt, alg: string, secretOrKey: string): boolean {
  const m = /^(HS|RS|PS|ES)(256|384|512)$/.exec(alg);
  if (!m) return false;
  const family = m[1] as 'HS' | 'RS' | 'PS' | 'ES';
  const hash = HASHES[m[2] as keyof typeof HASHES];
  const data = Buffer.from(jwt.signingInput);
  if (family === 'HS') {
    const mac = createHmac(hash, secretOrKey).update(data).digest();
    return mac.length === jwt.signature.length && timingSafeEqual(mac, jwt.signature);
  }
  for (const key of publicKeys(secretOrKey)) {
    try {
      const ok =
        family === 'RS'
          ? verify(hash, data, key, jwt.signature)
          : family === 'PS'
            ? verify(hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }, jwt.signature)
            : verify(hash, data, { key, dsaEncoding: 'ieee-p1363' }, jwt.signature);
      if (ok) return true;
    } catch {
      // Wrong key type for this algorithm: try the next key.
    }
  }
  return false;
}

function verifyAs(alg: string): Builtin {
  return (token, key) => {
    if (typeof key !== 'string') return undefined;
    const jwt = decodeJwt(token);
    return jwt ? verifySignature(jwt, alg, key) : undefined;
  };
}

const INVALID = [false, {}, {}];

/** `io.jwt.decode_verify(token, constraints)`: `[valid, header, payload]`. */
function decodeVerify(token: unknown, constraints: unknown): unknown {
  if (!isObject(constraints)) return undefined;
  const { cert, secret, alg, iss, aud, time } = constraints;
  const hasCert = typeof cert === 'string';
  const hasSecret = typeof secret === 'string';
  if (hasCert === hasSecret) return undefined; // exactly one of cert and secret
  const jwt = decodeJwt(token);
  if (!jwt) return INVALID;
  const headerAlg = jwt.header.alg;
  if (typeof headerAlg !== 'string' || (typeof alg === 'string' && alg !== headerAlg)) return INVALID;
  if (headerAlg.startsWith('HS') !== hasSecret) return INVALID;
  if (!verifySignature(jwt, headerAlg, (hasCert ? cert : secret) as string)) return INVALID;
  const now = typeof time === 'number' ? time : nowNs();
  const { exp, nbf } = jwt.payload;
  if (exp !== undefined && (typeof exp !== 'number' || now >= exp * 1e9)) return INVALID;
  if (nbf !== undefined && (typeof nbf !== 'number' || now < nbf * 1e9)) return INVALID;
  if (typeof iss === 'string' && jwt.payload.iss !== iss) return INVALID;
  const tokenAud = jwt.payload.aud;
  if (tokenAud !== undefined) {
    const auds = Array.isArray(tokenAud) ? tokenAud : [tokenAud];
    if (typeof aud !== 'string' || !auds.includes(aud)) return INVALID;
  } else if (aud !== undefined) {
    return INVALID;
  }
  return [true, jwt.header, jwt.payload];
}

/** Go `url.QueryEscape`. */
function queryEscape(s: string): string {
  return encodeURIComponent(s)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+');
}

function queryUnescape(s: unknown): string | undefined {
  if (typeof s !== 'string') return undefined;
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

function encodeObject(obj: unknown): string | undefined {
  if (!isObject(obj)) return undefined;
  const pairs: string[] = [];
  for (const key of Object.keys(obj).sort()) {
    const v = obj[key];
    const values = typeof v === 'string' ? [v] : Array.isArray(v) ? v : null;
    if (!values || !values.every((x) => typeof x === 'string')) return undefined;
    for (const x of values as string[]) pairs.push(`${queryEscape(key)}=${queryEscape(x)}`);
  }
  return pairs.join('&');
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

/** `time.parse_rfc3339_ns`. */
function parseRfc3339Ns(s: unknown): number | undefined {
  if (typeof s !== 'string') return undefined;
  const m = RFC3339.exec(s);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, sec, frac, sign, oh, om] = m;
  let ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(sec));
  if (Number.isNaN(ms)) return undefined;
  if (sign) ms -= (sign === '+' ? 1 : -1) * (Number(oh) * 60 + Number(om)) * 60_000;
  return ms * 1_000_000 + Number((frac ?? '').padEnd(9, '0') || 0);
}

function hashHex(alg: string): Builtin {
  return (s) => (typeof s === 'string' ? createHash(alg).update(s).digest('hex') : undefined);
}

function hmacHex(alg: string): Builtin {
  return (s, key) => (typeof s === 'string' && typeof key === 'string' ? createHmac(alg, key).update(s).digest('hex') : undefined);
}

const DURATION_UNITS: Readonly<Record<string, number>> = { ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** `time.parse_duration_ns`: Go's `time.ParseDuration` (`1h30m`, `-1.5s`, `300ms`, `0`). */
function parseDurationNs(s: unknown): number | undefined {
  if (typeof s !== 'string') return undefined;
  const m = /^([-+]?)(.+)$/.exec(s);
  if (!m) return undefined;
  const [, sign, rest] = m as unknown as [string, string, string];
  if (rest === '0') return 0;
  const part = /(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
  let total = 0;
  let pos = 0;
  while (pos < rest.length) {
    part.lastIndex = pos;
    const p = part.exec(rest);
    if (!p) return undefined;
    total += Number(p[1]) * (DURATION_UNITS[p[2] as string] as number);
    pos = part.lastIndex;
  }
  return Math.round(sign === '-' ? -total : total);
}

/** `hex.decode`: undefined for text that is not whole hex byte pairs. */
function hexDecode(s: unknown): string | undefined {
  if (typeof s !== 'string' || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) return undefined;
  return Buffer.from(s, 'hex').toString('utf8');
}

/** `crypto.hmac.equal`: constant-time comparison of two MACs. */
function hmacEqual(a: unknown, b: unknown): boolean | undefined {
  if (typeof a !== 'string' || typeof b !== 'string') return undefined;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Built-ins supplied to every loaded policy. */
export const HOST_BUILTINS: Readonly<Record<string, Builtin>> = Object.freeze({
  'time.now_ns': () => nowNs(),
  'time.parse_rfc3339_ns': parseRfc3339Ns,
  'io.jwt.decode': (token: unknown) => {
    const jwt = decodeJwt(token);
    return jwt ? [jwt.header, jwt.payload, jwt.signature.toString('hex')] : undefined;
  },
  'io.jwt.decode_verify': decodeVerify,
  ...Object.fromEntries(
    ['HS', 'RS', 'PS', 'ES'].flatMap((f) => ['256', '384', '512'].map((n) => [`io.jwt.verify_${f.toLowerCase()}${n}`, verifyAs(`${f}${n}`)])),
  ),
  'urlquery.encode': (s: unknown) => (typeof s === 'string' ? queryEscape(s) : undefined),
  'urlquery.decode': queryUnescape,
  'urlquery.encode_object': encodeObject,
  'base64url.encode_no_pad': (s: unknown) => (typeof s === 'string' ? Buffer.from(s).toString('base64url') : undefined),
  'crypto.md5': hashHex('md5'),
  'crypto.sha1': hashHex('sha1'),
  'crypto.sha256': hashHex('sha256'),
  'crypto.hmac.md5': hmacHex('md5'),
  'crypto.hmac.sha1': hmacHex('sha1'),
  'crypto.hmac.sha256': hmacHex('sha256'),
  'crypto.hmac.sha512': hmacHex('sha512'),
  'crypto.hmac.equal': hmacEqual,
  'hex.encode': (s: unknown) => (typeof s === 'string' ? Buffer.from(s).toString('hex') : undefined),
  'hex.decode': hexDecode,
  'time.parse_duration_ns': parseDurationNs,
});

/** Names of the built-ins a loaded policy imports from its host. */
export function importedBuiltins(policy: LoadedPolicy): string[] {
  // Structural view of the instance: the ABI exports every OPA wasm module has.
  const wasm = policy as unknown as {
    wasmInstance: { exports: { builtins?: () => number; opa_json_dump?: (addr: number) => number } };
    mem: { buffer: ArrayBuffer };
  };
  const { builtins, opa_json_dump: dump } = wasm.wasmInstance.exports;
  if (!builtins || !dump) return [];
  const addr = dump(builtins());
  const mem = new Uint8Array(wasm.mem.buffer);
  const end = mem.indexOf(0, addr);
  const map: unknown = JSON.parse(Buffer.from(mem.subarray(addr, end === -1 ? mem.length : end)).toString('utf8'));
  return isObject(map) ? Object.keys(map) : [];
}

/** Imported built-ins neither the SDK nor {@link HOST_BUILTINS} implement (sorted). */
export function missingBuiltins(policy: LoadedPolicy): string[] {
  return importedBuiltins(policy)
    .filter((name) => !SDK_BUILTINS.has(name) && !Object.hasOwn(HOST_BUILTINS, name))
    .sort();
}

/**
 * One line per built-in the policy imports that neither the SDK nor the gateway implements:
 * its name and the rules whose compiled code calls it (read from `policy.wasm`: the Rego
 * sources of a wasm bundle are only stubs), e.g. `http.send (called from data.envoy.authz.allow)`.
 * Empty when every import is provided.
 */
export function builtinProblems(policy: LoadedPolicy, wasm: Buffer): string[] {
  const ids = importedBuiltinIds(policy);
  return missingBuiltins(policy).map((name) => {
    const id = ids.get(name);
    const rules = id !== undefined ? rulesCalling(wasm, id) : [];
    return rules.length > 0 ? `${name} (called from ${rules.join(', ')})` : `${name} (call site unknown)`;
  });
}

/** Built-in name to the id the module passes when it calls it. */
function importedBuiltinIds(policy: LoadedPolicy): Map<string, number> {
  const wasm = policy as unknown as {
    wasmInstance: { exports: { builtins?: () => number; opa_json_dump?: (addr: number) => number } };
    mem: { buffer: ArrayBuffer };
  };
  const { builtins, opa_json_dump: dump } = wasm.wasmInstance.exports;
  if (!builtins || !dump) return new Map();
  const addr = dump(builtins());
  const mem = new Uint8Array(wasm.mem.buffer);
  const end = mem.indexOf(0, addr);
  const map: unknown = JSON.parse(Buffer.from(mem.subarray(addr, end === -1 ? mem.length : end)).toString('utf8'));
  return new Map(isObject(map) ? Object.entries(map).filter((e): e is [string, number] => typeof e[1] === 'number') : []);
}
