import { createHash, createPublicKey, createSecretKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { compactVerify, decodeProtectedHeader } from 'jose';
import { parse as parseYaml } from 'yaml';
import type { TarEntry } from './tar.js';

/**
 * Verification of OPA signed bundles (`.signatures.json`, as `opa build --signing-key` writes
 * it): one JWT whose `files` claim lists every file of the bundle with its digest. JSON and YAML
 * files are hashed in OPA's canonical form (keys sorted, compact, numbers as written), anything
 * else byte for byte.
 */

/** Algorithms OPA accepts for bundle signing keys. */
export const SIGNING_ALGORITHMS = ['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'] as const;
/** One of {@link SIGNING_ALGORITHMS}. */
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];

/** One verification key as configured (OPA's `keys.<id>`). */
export interface SigningKeyConfig {
  readonly algorithm: SigningAlgorithm;
  /** PEM public key or certificate (RS/PS/ES), or the shared secret (HS). */
  readonly key?: string;
  /** File holding `key` instead (relative to the config file). */
  readonly key_file?: string;
}

/** Bundle verification settings (OPA's `bundles.<name>.signing`). */
export interface SigningConfig {
  /** Verification keys by id. */
  readonly keys: Readonly<Record<string, SigningKeyConfig>>;
  /** Key used when the token names none (`kid` header or `keyid` claim). */
  readonly keyid?: string;
  /** Required `scope` claim, when set. */
  readonly scope?: string;
  /** Files (bundle paths, `*` globs) neither hashed nor required to be listed. */
  readonly exclude_files?: readonly string[];
}

/** Keys compiled once at config load. */
export interface BundleVerifier {
  readonly keys: ReadonlyMap<string, { readonly algorithm: SigningAlgorithm; readonly key: KeyObject }>;
  readonly keyid: string | null;
  readonly scope: string | null;
  readonly exclude: readonly RegExp[];
}

const HASH_ALGS: Readonly<Record<string, string>> = {
  MD5: 'md5',
  'SHA-1': 'sha1',
  'SHA-224': 'sha224',
  'SHA-256': 'sha256',
  'SHA-384': 'sha384',
  'SHA-512': 'sha512',
  'SHA-512-224': 'sha512-224',
  'SHA-512-256': 'sha512-256',
};

function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/^\/+/, '')
    .split('*')
    .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
    .join('[^/]*');
  return new RegExp(`^${body}$`);
}

function keyObject(id: string, cfg: SigningKeyConfig, baseDir: string): KeyObject {
  const material = cfg.key ?? (cfg.key_file ? readFileSync(resolve(baseDir, cfg.key_file), 'utf8') : null);
  if (material === null) throw new Error(`policy.signing.keys.${id}: set key or key_file`);
  if (cfg.algorithm.startsWith('HS')) return createSecretKey(Buffer.from(material, 'utf8'));
  try {
    if (material.includes('-----BEGIN CERTIFICATE-----')) return new X509Certificate(material).publicKey;
    const key = createPublicKey(material);
    return key;
  } catch (err) {
    throw new Error(`policy.signing.keys.${id}: not a PEM public key or certificate (${(err as Error).message})`);
  }
}

/**
 * Compiles the configured keys (reads key files, parses PEM). Throws an `Error` naming the key
 * that cannot be used.
 */
export function compileVerifier(cfg: SigningConfig, baseDir: string): BundleVerifier {
  const keys = new Map<string, { algorithm: SigningAlgorithm; key: KeyObject }>();
  for (const [id, k] of Object.entries(cfg.keys)) keys.set(id, { algorithm: k.algorithm, key: keyObject(id, k, baseDir) });
  if (cfg.keyid !== undefined && !keys.has(cfg.keyid)) throw new Error(`policy.signing.keyid "${cfg.keyid}" is not one of policy.signing.keys`);
  return { keys, keyid: cfg.keyid ?? null, scope: cfg.scope ?? null, exclude: (cfg.exclude_files ?? []).map(globToRegExp) };
}

/** Go's JSON string encoding without HTML escaping (what OPA's hasher writes). */
function goString(s: string): string {
  return JSON.stringify(s).replace(/[\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
}

/** A number kept as written in the file (OPA decodes with json.Number). */
class NumberText {
  constructor(readonly text: string) {}
}

function canonical(v: unknown): string {
  if (v instanceof NumberText) return v.text;
  if (v === null) return 'null';
  if (typeof v === 'string') return goString(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'object') {
    const obj = v as Record<string, unknown>;
    // Go sorts keys by bytes; for UTF-16 strings, code point order is the same up to surrogates.
    const keys = Object.keys(obj).sort((a, b) => (Buffer.compare(Buffer.from(a), Buffer.from(b))));
    return `{${keys.map((k) => `${goString(k)}:${canonical(obj[k])}`).join(',')}}`;
  }
  return 'null';
}

type Reviver = (this: unknown, key: string, value: unknown, context?: { source?: string }) => unknown;

/** The bytes OPA hashes for one bundle file. */
export function hashedForm(path: string, data: Buffer): Buffer {
  const base = path.split('/').pop() ?? '';
  if (base === 'data.json' || base === '.manifest') {
    const reviver: Reviver = (_k, value, context) => (typeof value === 'number' && context?.source !== undefined ? new NumberText(context.source) : value);
    const parsed: unknown = JSON.parse(data.toString('utf8'), reviver as (k: string, v: unknown) => unknown);
    return Buffer.from(canonical(parsed));
  }
  if (base === 'data.yaml' || base === 'data.yml') return Buffer.from(canonical(parseYaml(data.toString('utf8'))));
  return data;
}

interface FileClaim {
  readonly name: string;
  readonly hash: string;
  readonly algorithm: string;
}

function readClaims(payload: unknown): { files: FileClaim[]; keyid?: string; scope?: string } {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) throw new Error('the signature claims are not a JSON object');
  const p = payload as Record<string, unknown>;
  if (!Array.isArray(p.files)) throw new Error('the signature has no "files" claim');
  const files = p.files.map((f, i) => {
    const o = f as Record<string, unknown> | null;
    if (!o || typeof o.name !== 'string' || typeof o.hash !== 'string' || typeof o.algorithm !== 'string') {
      throw new Error(`the signature's files[${i}] needs string name, hash and algorithm`);
    }
    return { name: o.name, hash: o.hash, algorithm: o.algorithm };
  });
  return {
    files,
    ...(typeof p.keyid === 'string' ? { keyid: p.keyid } : {}),
    ...(typeof p.scope === 'string' ? { scope: p.scope } : {}),
  };
}

/**
 * Verifies a bundle's `.signatures.json` against the configured keys and the bundle's files.
 * Throws an `Error` saying why the bundle is refused: unsigned, not exactly one signature, an
 * unknown key, a bad signature, a wrong scope, a file not listed, a listed file missing, or a
 * digest that does not match.
 */
export async function verifyBundle(entries: readonly TarEntry[], verifier: BundleVerifier): Promise<void> {
  const files = entries.filter((e) => e.type === 'file');
  const sigFile = files.find((e) => e.path === '/.signatures.json');
  if (!sigFile) throw new Error('is not signed (no /.signatures.json) but signing keys are configured');
  let doc: unknown;
  try {
    doc = JSON.parse(sigFile.data.toString('utf8'));
  } catch (err) {
    throw new Error(`/.signatures.json is not valid JSON (${(err as Error).message})`);
  }
  const sigs = (doc as { signatures?: unknown } | null)?.signatures;
  if (!Array.isArray(sigs) || sigs.length !== 1 || typeof sigs[0] !== 'string') {
    throw new Error('/.signatures.json must hold exactly one signature (a JWT) in "signatures"');
  }
  const jwt = sigs[0];
  let header;
  try {
    header = decodeProtectedHeader(jwt);
  } catch (err) {
    throw new Error(`the bundle signature is not a JWT (${(err as Error).message})`);
  }
  let unverified: ReturnType<typeof readClaims>;
  try {
    const part = jwt.split('.')[1] ?? '';
    unverified = readClaims(JSON.parse(Buffer.from(part, 'base64url').toString('utf8')));
  } catch (err) {
    throw new Error(`the bundle signature's claims cannot be read (${(err as Error).message})`);
  }
  // As OPA: the header's kid, else the keyid claim, else the configured key id.
  const kid = typeof header.kid === 'string' && header.kid !== '' ? header.kid : (unverified.keyid ?? verifier.keyid);
  if (kid === null) throw new Error('the bundle signature names no key and policy.signing.keyid is not set');
  const key = verifier.keys.get(kid);
  if (!key) throw new Error(`the bundle is signed with key "${kid}", which is not one of policy.signing.keys`);
  if (header.alg !== key.algorithm) throw new Error(`the bundle signature uses ${String(header.alg)} but key "${kid}" is configured for ${key.algorithm}`);
  let claims: ReturnType<typeof readClaims>;
  try {
    const { payload } = await compactVerify(jwt, key.key, { algorithms: [key.algorithm] });
    claims = readClaims(JSON.parse(Buffer.from(payload).toString('utf8')));
  } catch (err) {
    throw new Error(`the bundle signature does not verify with key "${kid}" (${(err as Error).message})`);
  }
  if (verifier.scope !== null && claims.scope !== verifier.scope) {
    throw new Error(`the bundle signature's scope ${claims.scope === undefined ? 'is not set' : `"${claims.scope}"`} but policy.signing.scope is "${verifier.scope}"`);
  }
  const excluded = (name: string): boolean => verifier.exclude.some((re) => re.test(name));
  const listed = new Map<string, FileClaim>();
  for (const f of claims.files) {
    const name = f.name.replace(/^\/+/, '');
    if (listed.has(name)) throw new Error(`the bundle signature lists ${name} twice`);
    listed.set(name, f);
  }
  const present = new Set<string>();
  for (const entry of files) {
    const name = entry.path.slice(1);
    if (name === '.signatures.json' || excluded(name)) continue;
    present.add(name);
    const claim = listed.get(name);
    if (!claim) throw new Error(`file ${name} is in the bundle but not in its signature`);
    const alg = HASH_ALGS[claim.algorithm];
    if (!alg) throw new Error(`file ${name}: unsupported digest algorithm ${claim.algorithm}`);
    let digest: string;
    try {
      digest = createHash(alg).update(hashedForm(entry.path, entry.data)).digest('hex');
    } catch (err) {
      throw new Error(`file ${name} cannot be hashed (${(err as Error).message})`);
    }
    if (digest !== claim.hash.toLowerCase()) throw new Error(`file ${name} does not match its signed digest (tampered or rebuilt without re-signing)`);
  }
  for (const name of listed.keys()) {
    if (!present.has(name) && !excluded(name)) throw new Error(`file ${name} is listed in the bundle signature but missing from the bundle`);
  }
}
