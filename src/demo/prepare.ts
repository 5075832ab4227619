import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Document, parseDocument } from 'yaml';
import { generateSigningKey } from '../identity/mint.js';
import { makeCa, makeLeaf } from './pki.js';

/**
 * Prepares a self-contained gateway folder from a config file (the demo's, usually): a copy of
 * the config with chosen ports, the files it reads (schemas, policy bundle and data) copied next
 * to it, a freshly generated ES256 signing key and JWKS, and random values for every secret it
 * references. Shared by `npm run demo` and the end-to-end test harness, so both run the same setup.
 */

/** Server settings to force into the prepared config. */
export interface ServerOverrides {
  readonly grpcPort?: number;
  readonly adminPort?: number;
  /** Bind address for both the gRPC and the admin port. */
  readonly address?: string;
  /**
   * How Envoy reaches portcullis: `mtls` keeps the config's `grpc_tls` (a demo PKI is generated
   * for it), `unix` replaces it with a unix socket in the folder (`grpc.sock`), `plaintext`
   * with loopback plaintext. Default: the config as written.
   */
  readonly channel?: 'mtls' | 'unix' | 'plaintext';
}

/** SAN of the demo portcullis server certificate (Envoy's `portcullis` cluster checks it). */
export const DEMO_PORTCULLIS_SAN = 'spiffe://demo.portcullis/portcullis';

/** How the prepared gateway is reached, with what Envoy needs for it (absolute paths). */
export type PreparedChannel =
  | {
      readonly kind: 'mtls';
      /** CA that signed both certificates (Envoy's trusted CA for portcullis, and portcullis' for Envoy). */
      readonly ca: string;
      /** Envoy's client certificate and key (SAN: the config's first `client_sans`). */
      readonly clientCert: string;
      readonly clientKey: string;
      /** The URI SAN of portcullis' server certificate. */
      readonly serverSan: string;
    }
  | { readonly kind: 'unix'; readonly socketPath: string }
  | { readonly kind: 'plaintext' };

/** What {@link prepareDemo} needs. */
export interface PrepareOptions {
  /** Target folder (created if missing). */
  readonly dir: string;
  /** Config to start from; relative paths in it resolve against its own folder. */
  readonly sourceConfig: string;
  /** Built policy bundle to copy in; default: the source config's `policy.bundle`. */
  readonly policyBundle?: string;
  readonly server?: ServerOverrides;
  /** Last word on the config (plain object, as written to YAML) before it is saved. */
  readonly edit?: (cfg: Record<string, unknown>) => void;
  /** Key generator; default: {@link generateSigningKey}. */
  readonly generateKey?: KeyGenerator;
}

/** Writes an ES256 private JWK and the matching JWKS into `dir`; returns both paths. */
export type KeyGenerator = (dir: string) => Promise<{ privateJwkPath: string; jwksPath: string }>;

/** The prepared folder. Secret values are returned so tests can sign or compare with them. */
export interface PreparedDemo {
  readonly configPath: string;
  readonly privateJwkPath: string;
  readonly jwksPath: string;
  /** Secret file path (relative to the folder) → value written there. */
  readonly secrets: Readonly<Record<string, string>>;
  /** Environment variables the config's `{env: NAME}` secrets need. */
  readonly env: Readonly<Record<string, string>>;
  /** The gRPC channel of the prepared config; null when the config sets none. */
  readonly channel: PreparedChannel | null;
}

/** Config keys whose value is a JSON Schema file the gateway reads (copied along when relative). */
const SCHEMA_KEYS = new Set(['schema', 'input_schema']);
/** Config keys whose value is a secret reference (`per_user` maps hold them too). */
const SECRET_KEYS = new Set(['secret', 'handoff_key', 'admin_token']);

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A secret reference (see `SecretRef`): `{file}` or `{env}`. */
function secretRef(v: unknown): { file: string } | { env: string } | null {
  if (!isObject(v)) return null;
  if (typeof v.file === 'string') return { file: v.file };
  if (typeof v.env === 'string') return { env: v.env };
  return null;
}

function walk(node: unknown, visit: (key: string, value: unknown, parent: Json) => void): void {
  if (Array.isArray(node)) {
    for (const item of node) walk(item, visit);
    return;
  }
  if (!isObject(node)) return;
  for (const [key, value] of Object.entries(node)) {
    visit(key, value, node);
    walk(value, visit);
  }
}

function copyInto(src: string, dest: string): void {
  mkdirSync(dirname(dest), { recursive: true });
  copyFileSync(src, dest);
}

function secretValue(name: string): string {
  return `demo-${name.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase()}-${randomBytes(12).toString('hex')}`;
}

/**
 * Builds the folder described in {@link PrepareOptions}. Throws with a clear message when an
 * input (config, bundle, schema) is missing.
 */
export async function prepareDemo(opts: PrepareOptions): Promise<PreparedDemo> {
  const dir = resolve(opts.dir);
  const sourceConfig = resolve(opts.sourceConfig);
  const sourceDir = dirname(sourceConfig);
  if (!existsSync(sourceConfig)) throw new Error(`config not found: ${sourceConfig}`);
  mkdirSync(dir, { recursive: true });

  const doc = parseDocument(readFileSync(sourceConfig, 'utf8'));
  if (doc.errors.length > 0) throw new Error(`${sourceConfig}: ${doc.errors[0]?.message ?? 'invalid YAML'}`);
  const cfg = doc.toJS() as Json;

  const server = opts.server ?? {};
  if (server.grpcPort !== undefined) doc.setIn(['server', 'grpc_port'], server.grpcPort);
  if (server.adminPort !== undefined) doc.setIn(['server', 'admin_port'], server.adminPort);
  if (server.address !== undefined) {
    doc.setIn(['server', 'grpc_address'], server.address);
    doc.setIn(['server', 'admin_address'], server.address);
  }
  if (server.channel === 'unix') {
    doc.setIn(['server', 'grpc_address'], `unix://${join(dir, 'grpc.sock')}`);
    doc.deleteIn(['server', 'grpc_tls']);
    doc.deleteIn(['server', 'grpc_port']);
  } else if (server.channel === 'plaintext') {
    doc.deleteIn(['server', 'grpc_tls']);
    doc.setIn(['server', 'grpc_plaintext'], true);
  } else if (server.channel === 'mtls' && !isObject((cfg.server as Json | undefined)?.grpc_tls)) {
    throw new Error(`${sourceConfig}: channel "mtls" needs server.grpc_tls in the config`);
  }

  // Policy bundle: copied in so a test may rewrite it without touching the build output.
  const policy = isObject(cfg.policy) ? cfg.policy : {};
  const bundleSrc = opts.policyBundle
    ? resolve(opts.policyBundle)
    : typeof policy.bundle === 'string'
      ? resolve(sourceDir, policy.bundle)
      : null;
  if (bundleSrc) {
    if (!existsSync(bundleSrc)) throw new Error(`policy bundle not found: ${bundleSrc} (build it with: bash scripts/build-policy.sh)`);
    const bundleDest = join(dir, 'policy', 'bundle.tar.gz');
    copyInto(bundleSrc, bundleDest);
    doc.setIn(['policy', 'bundle'], bundleDest);
  }

  // Files the config reads (schemas, policy data): copied with the same relative layout.
  const copyRelative = (what: string, file: string): void => {
    if (isAbsolute(file)) return;
    const src = resolve(sourceDir, file);
    if (!existsSync(src)) throw new Error(`${sourceConfig}: ${what} file not found: ${src}`);
    copyInto(src, resolve(dir, file));
  };
  if (typeof policy.data === 'string') copyRelative('policy.data', policy.data);

  // Secrets: a random value per referenced relative file or environment variable. Absolute
  // paths are real mounted secrets and are never written.
  const secrets: Record<string, string> = {};
  const env: Record<string, string> = {};
  const provide = (value: unknown): void => {
    const ref = secretRef(value);
    if (!ref) return;
    if ('env' in ref) {
      env[ref.env] ??= secretValue(ref.env);
      return;
    }
    if (isAbsolute(ref.file) || secrets[ref.file] !== undefined) return;
    const secret = secretValue(ref.file.split('/').pop() ?? ref.file);
    const dest = resolve(dir, ref.file);
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, `${secret}\n`, { mode: 0o600 });
    secrets[ref.file] = secret;
  };
  walk(cfg, (key, value) => {
    if (SCHEMA_KEYS.has(key) && typeof value === 'string') copyRelative(key, value);
    // Secret references sit under `secret:` keys and in `per_user:` maps (user -> reference).
    if (SECRET_KEYS.has(key)) provide(value);
    if (key === 'per_user' && isObject(value)) Object.values(value).forEach(provide);
  });

  // Signing key for the demo issuer; the JWKS goes where the config's first local issuer reads it.
  const generateKey: KeyGenerator = opts.generateKey ?? ((keyDir) => generateSigningKey(keyDir));
  const keys = await generateKey(join(dir, 'keys'));
  const identity = isObject(cfg.identity) ? cfg.identity : {};
  const issuers = Array.isArray(identity.jwt) ? identity.jwt : [];
  const localIssuer = issuers.findIndex((j) => isObject(j) && typeof j.jwks_file === 'string');
  if (localIssuer >= 0) doc.setIn(['identity', 'jwt', localIssuer, 'jwks_file'], relative(dir, keys.jwksPath));

  const channel = await prepareChannel(doc.toJS() as Json, dir);

  let text: string;
  if (opts.edit) {
    const edited = doc.toJS() as Json;
    opts.edit(edited);
    text = new Document(edited).toString();
  } else {
    text = doc.toString();
  }
  const configPath = join(dir, 'portcullis.yaml');
  writeFileSync(configPath, text);
  return { configPath, privateJwkPath: keys.privateJwkPath, jwksPath: keys.jwksPath, secrets, env, channel };
}

/**
 * The channel of a prepared config. For mTLS with relative file paths, generates the demo PKI
 * there: one CA (`grpc_tls.ca`), portcullis' server certificate (`grpc_tls.cert`/`key`, SANs
 * {@link DEMO_PORTCULLIS_SAN}, localhost, 127.0.0.1) and Envoy's client certificate
 * (`envoy.crt`/`envoy.key` beside the CA, SAN: the first `client_sans`).
 */
async function prepareChannel(cfg: Json, dir: string): Promise<PreparedChannel | null> {
  const server = isObject(cfg.server) ? cfg.server : {};
  const address = typeof server.grpc_address === 'string' ? server.grpc_address : '';
  if (address.startsWith('unix:')) {
    const rest = address.slice('unix:'.length).replace(/^\/\//, '');
    return { kind: 'unix', socketPath: isAbsolute(rest) ? rest : resolve(dir, rest) };
  }
  if (server.grpc_plaintext === true) return { kind: 'plaintext' };
  const tls = isObject(server.grpc_tls) ? server.grpc_tls : null;
  if (!tls) return null;
  const [ca, cert, key] = [tls.ca, tls.cert, tls.key].map((f) => (typeof f === 'string' ? f : ''));
  const sans = Array.isArray(tls.client_sans) ? tls.client_sans.filter((v): v is string => typeof v === 'string') : [];
  if (!ca || !cert || !key || sans.length === 0) throw new Error('server.grpc_tls needs ca, cert, key and client_sans');
  if ([ca, cert, key].some((f) => isAbsolute(f))) throw new Error('server.grpc_tls: the demo PKI is generated only for relative paths');
  const pkiDir = dirname(resolve(dir, ca));
  const made = await makeCa(pkiDir, 'ca');
  const serverCert = await makeLeaf(pkiDir, 'portcullis', made, 'serverAuth', `URI:${DEMO_PORTCULLIS_SAN}, DNS:localhost, IP:127.0.0.1`);
  const client = await makeLeaf(pkiDir, 'envoy', made, 'clientAuth', `URI:${sans[0]}`);
  const place = (from: string, to: string): void => {
    if (resolve(from) !== resolve(dir, to)) copyInto(from, resolve(dir, to));
  };
  place(made.cert, ca);
  place(serverCert.cert, cert);
  place(serverCert.key, key);
  return { kind: 'mtls', ca: resolve(dir, ca), clientCert: client.cert, clientKey: client.key, serverSan: DEMO_PORTCULLIS_SAN };
}

/** Single-quotes a value for POSIX shells. */
function shellQuote(v: string): string {
  return `'${v.replace(/'/g, `'\\''`)}'`;
}

function isMain(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

/**
 * CLI: `node dist/demo/prepare.js --dir .demo --config scripts/demo/portcullis.yaml`. Writes the
 * folder plus `env.sh` (the env secrets, mode 0600) and prints shell assignments for the caller
 * to eval (also saved as `prepared.sh`): PORTCULLIS_CONFIG, PORTCULLIS_KEY, PORTCULLIS_ENV_FILE.
 */
async function cli(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dir: { type: 'string' },
      config: { type: 'string' },
      bundle: { type: 'string' },
      'grpc-port': { type: 'string' },
      'admin-port': { type: 'string' },
    },
    strict: true,
  });
  if (!values.dir || !values.config) throw new Error('usage: prepare --dir DIR --config FILE [--bundle FILE] [--grpc-port N] [--admin-port N]');
  const prepared = await prepareDemo({
    dir: values.dir,
    sourceConfig: values.config,
    policyBundle: values.bundle,
    server: {
      grpcPort: values['grpc-port'] ? Number(values['grpc-port']) : undefined,
      adminPort: values['admin-port'] ? Number(values['admin-port']) : undefined,
    },
  });
  const dir = resolve(values.dir);
  const envFile = join(dir, 'env.sh');
  const lines = Object.entries(prepared.env).map(([k, v]) => `export ${k}=${shellQuote(v)}`);
  writeFileSync(envFile, `${lines.join('\n')}\n`, { mode: 0o600 });
  chmodSync(envFile, 0o600);
  // Paths only (no secret values): safe to print and to source from other shells.
  const assignments = [
    `PORTCULLIS_CONFIG=${shellQuote(prepared.configPath)}`,
    `PORTCULLIS_KEY=${shellQuote(prepared.privateJwkPath)}`,
    `PORTCULLIS_ENV_FILE=${shellQuote(envFile)}`,
  ].join('\n') + '\n';
  writeFileSync(join(dir, 'prepared.sh'), assignments);
  process.stdout.write(assignments);
}

if (isMain()) {
  cli().catch((err: unknown) => {
    process.stderr.write(`prepare: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
