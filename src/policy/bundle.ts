import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { parse as parseYaml } from 'yaml';
import { GatewayError } from '../errors.js';
import { verifyBundle, type BundleVerifier } from './signatures.js';
import { readTar, type TarEntry } from './tar.js';

/** Upper bound on the decompressed bundle size (protects against gzip bombs). */
const MAX_BUNDLE_BYTES = 256 * 1024 * 1024;
const WASM_MAGIC = Buffer.from([0x00, 0x61, 0x73, 0x6d]);

/** The parts of an OPA bundle `.manifest` the gateway uses. */
export interface BundleManifest {
  readonly revision?: string;
  readonly roots?: readonly string[];
  readonly wasm?: readonly { readonly entrypoint: string; readonly module: string }[];
}

/** A wasm bundle built by `opa build -t wasm`, read into memory. */
export interface PolicyBundle {
  /** The compiled policy (`/policy.wasm`). */
  readonly wasm: Buffer;
  /** The data document: every `data.json`/`data.yaml` in the bundle, mounted at its folder. */
  readonly data: Record<string, unknown>;
  readonly manifest: BundleManifest | null;
  /** Hex SHA-256 of the archive as read. */
  readonly sha256: string;
  /** Every member of the archive (signature verification, Rego sources for messages). */
  readonly files: readonly TarEntry[];
}

function fail(source: string, message: string, cause?: unknown): GatewayError {
  return new GatewayError('internal', `policy bundle ${source}: ${message}`, { rule: 'policy.bundle', cause });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Recursively merges `src` over `dst` into a new object (objects merge, anything else
 * replaces). Keys are defined as own properties, so a `__proto__` key in data stays data.
 */
export function deepMerge(dst: Record<string, unknown>, src: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(dst)) setOwn(out, key, value);
  for (const [key, value] of Object.entries(src)) {
    const prev = Object.hasOwn(out, key) ? out[key] : undefined;
    setOwn(out, key, isPlainObject(prev) && isPlainObject(value) ? deepMerge(prev, value) : value);
  }
  return out;
}

function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function parseManifest(source: string, raw: Buffer): BundleManifest {
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw fail(source, `/.manifest is not valid JSON (${(err as Error).message})`, err);
  }
  if (!isPlainObject(value)) throw fail(source, '/.manifest must be a JSON object');
  if (value.revision !== undefined && typeof value.revision !== 'string') throw fail(source, '/.manifest revision must be a string');
  return value as BundleManifest;
}

function parseDataFile(source: string, path: string, raw: Buffer): unknown {
  const text = raw.toString('utf8');
  try {
    return path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw fail(source, `${path} cannot be parsed (${(err as Error).message})`, err);
  }
}

/** Places `value` at `segments` inside `root`, merging with what is already there. */
function mount(root: Record<string, unknown>, segments: readonly string[], value: unknown, source: string, path: string): Record<string, unknown> {
  if (segments.length === 0) {
    if (!isPlainObject(value)) throw fail(source, `${path} must hold a JSON object at the top level`);
    return deepMerge(root, value);
  }
  let wrapped: unknown = value;
  for (let i = segments.length - 1; i >= 0; i--) {
    const level: Record<string, unknown> = {};
    setOwn(level, segments[i] as string, wrapped);
    wrapped = level;
  }
  return deepMerge(root, wrapped as Record<string, unknown>);
}

/**
 * Parses a gzipped OPA wasm bundle. Throws a {@link GatewayError} (`internal`, rule
 * `policy.bundle`) naming `source` and the problem: not gzip, corrupt tar, no `/policy.wasm`,
 * unparsable data or manifest.
 */
export function parseBundle(archive: Buffer, source = '(memory)'): PolicyBundle {
  return bundleFromEntries(archive, archiveEntries(archive, source), source);
}

/** Gunzips and lists an archive (no member is interpreted yet). */
function archiveEntries(archive: Buffer, source: string): TarEntry[] {
  let tar: Buffer;
  try {
    tar = gunzipSync(archive, { maxOutputLength: MAX_BUNDLE_BYTES });
  } catch (err) {
    throw fail(source, `not a readable gzip archive (${(err as Error).message})`, err);
  }
  let entries;
  try {
    entries = readTar(tar);
  } catch (err) {
    throw fail(source, `corrupt tar archive (${(err as Error).message})`, err);
  }
  return entries;
}

function bundleFromEntries(archive: Buffer, entries: TarEntry[], source: string): PolicyBundle {
  let wasm: Buffer | null = null;
  let manifest: BundleManifest | null = null;
  let data: Record<string, unknown> = {};
  // Shallow data files first so deeper ones merge into them, independent of archive order.
  const files = entries.filter((e) => e.type === 'file').sort((a, b) => a.path.split('/').length - b.path.split('/').length);
  for (const entry of files) {
    const segments = entry.path.split('/').filter(Boolean);
    const base = segments.pop();
    if (entry.path === '/policy.wasm') wasm = entry.data;
    else if (entry.path === '/.manifest') manifest = parseManifest(source, entry.data);
    else if (base === 'data.json' || base === 'data.yaml' || base === 'data.yml') {
      data = mount(data, segments, parseDataFile(source, entry.path, entry.data), source, entry.path);
    }
  }
  if (!wasm) throw fail(source, 'has no /policy.wasm; build it with `opa build -t wasm -e <decision>`');
  if (wasm.length < 8 || !wasm.subarray(0, 4).equals(WASM_MAGIC)) throw fail(source, '/policy.wasm is not a WebAssembly module');
  return {
    wasm: Buffer.from(wasm),
    data,
    manifest,
    sha256: createHash('sha256').update(archive).digest('hex'),
    files: entries,
  };
}

/**
 * {@link parseBundle}, with a verifier (signing keys configured) checking the bundle's signature
 * over every file first; a bundle that fails is refused with a {@link GatewayError} saying why.
 */
export async function parseVerifiedBundle(archive: Buffer, source: string, verifier: BundleVerifier | null): Promise<PolicyBundle> {
  const entries = archiveEntries(archive, source);
  // Verified before any data file or manifest is interpreted: an unsigned bundle is never parsed.
  if (verifier) {
    try {
      await verifyBundle(entries, verifier);
    } catch (err) {
      throw fail(source, `signature check failed: ${(err as Error).message}`, err);
    }
  }
  return bundleFromEntries(archive, entries, source);
}

/** Reads and parses a bundle file; see {@link parseBundle} for the errors. */
export async function readBundle(path: string, verifier: BundleVerifier | null = null): Promise<PolicyBundle> {
  let archive: Buffer;
  try {
    archive = await readFile(path);
  } catch (err) {
    throw fail(path, `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, err);
  }
  return parseVerifiedBundle(archive, path, verifier);
}
