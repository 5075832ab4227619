import { constants, createPublicKey, verify, type JsonWebKey, type KeyObject } from 'node:crypto';

/**
 * Compact JWS, checked with node:crypto against keys imported once per JWKS load. Key selection
 * follows jose's local JWKS rules exactly, so switching implementation changes no accept/reject
 * decision; what goes away is jose's per-request WebCrypto work (key normalization, CryptoKey
 * checks, a WebCrypto job object) around the same OpenSSL call.
 */

/** How one JWS algorithm is checked: key type, curve and node:crypto parameters. */
interface AlgorithmSpec {
  readonly kty: 'RSA' | 'EC' | 'OKP';
  /** Curve the key must be on (EC, OKP); unset for RSA. */
  readonly crv?: string;
  /** Digest; null for EdDSA, which hashes internally. */
  readonly hash: string | null;
  /** RSA-PSS salt length (the digest length, as RFC 7518 requires); unset for PKCS#1 v1.5. */
  readonly pssSalt?: number;
}

const ALGORITHMS: ReadonlyMap<string, AlgorithmSpec> = new Map<string, AlgorithmSpec>([
  ['RS256', { kty: 'RSA', hash: 'sha256' }],
  ['RS384', { kty: 'RSA', hash: 'sha384' }],
  ['RS512', { kty: 'RSA', hash: 'sha512' }],
  ['PS256', { kty: 'RSA', hash: 'sha256', pssSalt: 32 }],
  ['PS384', { kty: 'RSA', hash: 'sha384', pssSalt: 48 }],
  ['PS512', { kty: 'RSA', hash: 'sha512', pssSalt: 64 }],
  ['ES256', { kty: 'EC', crv: 'P-256', hash: 'sha256' }],
  ['ES384', { kty: 'EC', crv: 'P-384', hash: 'sha384' }],
  ['ES512', { kty: 'EC', crv: 'P-521', hash: 'sha512' }],
  ['EdDSA', { kty: 'OKP', crv: 'Ed25519', hash: null }],
]);

/** RSA keys shorter than this are refused (RFC 7518 section 3.3; jose enforces the same). */
export const MIN_RSA_BITS = 2048;

/** A JWKS member: the parameters key selection reads, and the key imported once. */
export interface VerificationKey {
  readonly kty: unknown;
  readonly kid: unknown;
  readonly alg: unknown;
  readonly use: unknown;
  readonly crv: unknown;
  readonly ext: unknown;
  readonly keyOps: unknown;
  readonly key: KeyObject;
}

/** Imports one public JWK; throws if node:crypto cannot. */
export function importVerificationKey(jwk: Readonly<Record<string, unknown>>): VerificationKey {
  const key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
  const keyOps = Array.isArray(jwk.key_ops) ? Object.freeze([...(jwk.key_ops as unknown[])]) : jwk.key_ops;
  return Object.freeze({ kty: jwk.kty, kid: jwk.kid, alg: jwk.alg, use: jwk.use, crv: jwk.crv, ext: jwk.ext, keyOps, key });
}

/** The outcome of choosing a key for a token: exactly one, none (maybe rotated in), or ambiguous. */
export type KeyMatch = { readonly kind: 'one'; readonly key: KeyObject } | { readonly kind: 'none' } | { readonly kind: 'many' };

/**
 * Chooses the key for `alg` and the token's `kid` with jose's local JWKS rules: a usable key has
 * the algorithm's key type (and curve), the same `kid` when the token names one, no other `alg`,
 * `use` "sig" if set, `key_ops` including "verify" if set. More than one candidate is refused
 * rather than tried in turn, as jose's `jwtVerify` does.
 */
export function selectKey(keys: readonly VerificationKey[], alg: string, kid: unknown): KeyMatch {
  const spec = ALGORITHMS.get(alg);
  if (!spec) return { kind: 'none' };
  let found: KeyObject | null = null;
  for (const k of keys) {
    if (!usable(k, spec, alg, kid)) continue;
    if (found) return { kind: 'many' };
    found = k.key;
  }
  return found ? { kind: 'one', key: found } : { kind: 'none' };
}

function usable(k: VerificationKey, spec: AlgorithmSpec, alg: string, kid: unknown): boolean {
  const ops = k.keyOps;
  if (ops !== undefined && !(Array.isArray(ops) && ops.every((op, i) => typeof op === 'string' && ops.indexOf(op) === i) && ops.includes('verify'))) return false;
  return (
    (k.ext === undefined || typeof k.ext === 'boolean') &&
    k.kty === spec.kty &&
    (kid === undefined || (typeof kid === 'string' && kid === k.kid)) &&
    (k.alg === undefined || k.alg === alg) &&
    (k.use === undefined || k.use === 'sig') &&
    (spec.crv === undefined || k.crv === spec.crv)
  );
}

/** A compact JWS split and decoded; the signature is checked separately. */
export interface DecodedJws {
  readonly header: Readonly<Record<string, unknown>>;
  readonly payload: Readonly<Record<string, unknown>>;
  /** `BASE64URL(header) "." BASE64URL(payload)`, the bytes the signature covers. */
  readonly signingInput: string;
  readonly signature: string;
}

const B64URL = /^[A-Za-z0-9_-]*$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Splits `header.payload.signature` and decodes header and payload as base64url JSON objects.
 * Returns null for anything else (JWE, unsecured shapes, invalid base64url, UTF-8 or JSON).
 */
export function decodeCompact(token: string): DecodedJws | null {
  const first = token.indexOf('.');
  const second = first < 0 ? -1 : token.indexOf('.', first + 1);
  if (second < 0 || token.indexOf('.', second + 1) >= 0) return null;
  const header = jsonObject(token.slice(0, first));
  const payload = header && jsonObject(token.slice(first + 1, second));
  if (!header || !payload) return null;
  return { header, payload, signingInput: token.slice(0, second), signature: token.slice(second + 1) };
}

/**
 * Decodes base64url the way jose does (WHATWG forgiving base64 on the url alphabet): optional
 * `=` padding only on a whole quantum. Buffer's decoder alone would skip invalid characters.
 */
export function decodeBase64url(s: string): Buffer | null {
  let body = s;
  if (s.endsWith('=')) {
    if (s.length % 4 !== 0) return null;
    body = s.endsWith('==') ? s.slice(0, -2) : s.slice(0, -1);
  }
  if (body.length % 4 === 1 || !B64URL.test(body)) return null;
  return Buffer.from(body, 'base64url');
}

function jsonObject(segment: string): Record<string, unknown> | null {
  const bytes = decodeBase64url(segment);
  if (!bytes) return null;
  try {
    const value: unknown = JSON.parse(utf8.decode(bytes));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * Why the protected header cannot be processed (RFC 7515 `crit`; RFC 7797 `b64`, which a JWT
 * must not switch off), or null when it is fine. Only `b64` is a recognized extension, as in jose.
 */
export function headerProblem(header: Readonly<Record<string, unknown>>): string | null {
  const crit = header.crit;
  if (crit === undefined) return null;
  if (!Array.isArray(crit) || crit.length === 0 || crit.some((p) => typeof p !== 'string' || p === '')) {
    return 'the "crit" header parameter must be an array of non-empty strings';
  }
  for (const p of crit as string[]) {
    if (p !== 'b64') return `the critical header parameter ${JSON.stringify(p.slice(0, 40))} is not supported`;
  }
  if (typeof header.b64 !== 'boolean') return 'the "b64" header parameter must be a boolean';
  return header.b64 ? null : 'JWTs must not use an unencoded payload';
}

/** Signature check outcome; `weak-key` is an RSA key under {@link MIN_RSA_BITS}. */
export type SignatureResult = 'valid' | 'invalid' | 'weak-key';

/**
 * Verifies a JWS signature. `key` must come from {@link selectKey} for the same `alg` (type and
 * curve already matched). ECDSA signatures are the raw `r || s` of RFC 7518.
 *
 * The check runs on the libuv thread pool (node's one-shot `verify` with a callback): under load
 * the main thread, which also runs gRPC and the policy, keeps serving while another core checks
 * signatures. Measured on the Check path, this beat both jose's WebCrypto verify and a
 * synchronous `verify` on the main thread (see bench/micro.ts and scenario E with the token cache
 * off).
 */
export function verifySignature(alg: string, key: KeyObject, jws: DecodedJws): Promise<SignatureResult> {
  const spec = ALGORITHMS.get(alg);
  if (!spec) return Promise.resolve('invalid');
  if (spec.kty === 'RSA' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) return Promise.resolve('weak-key');
  const signature = decodeBase64url(jws.signature);
  if (!signature) return Promise.resolve('invalid');
  const data = Buffer.from(jws.signingInput, 'latin1');
  const keyInput =
    spec.kty === 'EC'
      ? { key, dsaEncoding: 'ieee-p1363' as const }
      : spec.pssSalt !== undefined
        ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: spec.pssSalt }
        : key;
  return new Promise((resolve) => {
    try {
      verify(spec.hash, data, keyInput, signature, (err, ok) => resolve(err === null && ok ? 'valid' : 'invalid'));
    } catch {
      // Arguments node refuses synchronously (e.g. a malformed signature length for the key).
      resolve('invalid');
    }
  });
}
