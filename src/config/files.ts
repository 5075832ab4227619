import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { GatewayConfig, SecretRef } from './types.js';

/**
 * Every file a configuration names, with the JSON path of the key that names it. One list, so
 * `portcullis check` looks at the same files `serve` opens, resolved the same way: a relative
 * path is relative to the configuration file's folder (`base_dir`), for every key alike.
 */

/** How the gateway uses a file: reads it at load, or writes it (created when missing). */
export type FileUse = 'read' | 'write';

/** One file-valued key of a configuration. */
export interface ConfigFile {
  /** JSON path of the key, e.g. `$.tools[2].request.schema`. */
  readonly path: string;
  /** The value as written. */
  readonly file: string;
  /** The file the gateway opens (relative values resolved against `base_dir`). */
  readonly abs: string;
  readonly use: FileUse;
}

/** One secret reference of a configuration (`{file}` or `{env}`). */
export interface ConfigSecret {
  readonly path: string;
  readonly ref: SecretRef;
}

/** Resolves a configured path the way the gateway does: against the configuration file's folder. */
export function configPath(cfg: Pick<GatewayConfig, 'base_dir'>, file: string): string {
  return resolve(cfg.base_dir, file);
}

/** Every file-valued key of a validated configuration, in file order. */
export function configFiles(cfg: GatewayConfig): ConfigFile[] {
  const out: ConfigFile[] = [];
  const add = (path: string, file: string | undefined, use: FileUse): void => {
    if (typeof file === 'string' && file.length > 0) out.push({ path, file, abs: configPath(cfg, file), use });
  };
  const tls = cfg.server.grpc_tls;
  if (tls) for (const k of ['ca', 'cert', 'key'] as const) add(`$.server.grpc_tls.${k}`, tls[k], 'read');
  cfg.identity.jwt.forEach((j, i) => add(`$.identity.jwt[${i}].jwks_file`, j.jwks_file, 'read'));
  add('$.policy.bundle', cfg.policy.bundle, 'read');
  add('$.policy.data', cfg.policy.data, 'read');
  for (const [id, k] of Object.entries(cfg.policy.signing?.keys ?? {})) add(`$.policy.signing.keys.${id}.key_file`, k.key_file, 'read');
  cfg.tools.forEach((t, i) => {
    add(`$.tools[${i}].request.schema`, t.request.schema, 'read');
    if (!t.mcp) return;
    for (const [name, m] of Object.entries(t.mcp.tools)) add(`$.tools[${i}].mcp.tools.${name}.input_schema`, m.input_schema, 'read');
    add(`$.tools[${i}].mcp.pins_file`, t.mcp.pins_file, 'write');
  });
  add('$.audit.file', cfg.audit.file, 'write');
  add('$.audit.checkpoint.anchor_file', cfg.audit.checkpoint?.anchor_file, 'write');
  add('$.decision_logs.file', cfg.decision_logs?.file, 'write');
  return out;
}

/** Every secret reference of a validated configuration, in file order. */
export function configSecrets(cfg: GatewayConfig): ConfigSecret[] {
  const out: ConfigSecret[] = [];
  const add = (path: string, ref: SecretRef | undefined): void => {
    if (ref) out.push({ path, ref });
  };
  add('$.server.handoff_key', cfg.server.handoff_key);
  add('$.server.admin_token', cfg.server.admin_token);
  cfg.identity.signatures.forEach((s, i) => {
    add(`$.identity.signatures[${i}].secret`, s.secret);
    (s.secrets ?? []).forEach((r, j) => add(`$.identity.signatures[${i}].secrets[${j}]`, r));
  });
  cfg.tools.forEach((t, i) => {
    t.credentials.forEach((c, j) => {
      add(`$.tools[${i}].credentials[${j}].secret`, c.secret);
      for (const [user, ref] of Object.entries(c.per_user ?? {})) add(`$.tools[${i}].credentials[${j}].per_user.${user}`, ref);
    });
    add(`$.tools[${i}].request_signing.secret`, t.request_signing?.secret);
  });
  add('$.audit.checkpoint.key', cfg.audit.checkpoint?.key);
  return out;
}

/** The file as written, and where it resolved to when that differs. */
function where(file: string, abs: string): string {
  return isAbsolute(file) ? file : `${file} (resolved to ${abs})`;
}

function code(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? 'error';
}

/** Why a file the gateway reads cannot be read, or null. */
function readProblem(f: ConfigFile): string | null {
  try {
    if (!statSync(f.abs).isFile()) return 'is not a file';
    accessSync(f.abs, constants.R_OK);
    return null;
  } catch (err) {
    return code(err) === 'ENOENT' ? 'not found' : `cannot be read (${code(err)})`;
  }
}

/**
 * Why a file the gateway writes cannot be written, or null. A missing file (and missing
 * folders) is created at start, so then its nearest existing folder must be writable.
 */
function writeProblem(f: ConfigFile): string | null {
  try {
    if (!statSync(f.abs).isFile()) return 'is not a file';
    accessSync(f.abs, constants.R_OK | constants.W_OK);
    return null;
  } catch (err) {
    if (code(err) !== 'ENOENT') return `cannot be written (${code(err)})`;
  }
  let dir = dirname(f.abs);
  for (;;) {
    try {
      if (!statSync(dir).isDirectory()) return `cannot be created: ${dir} is not a folder`;
      accessSync(dir, constants.W_OK);
      return null;
    } catch (err) {
      if (code(err) !== 'ENOENT' || dirname(dir) === dir) return `cannot be created in ${dir} (${code(err)})`;
      dir = dirname(dir);
    }
  }
}

/**
 * Why a secret is not available now, or null: the same reading as the gateway's secret store
 * (a file's trailing newline is not part of the secret; empty is missing), without watching.
 */
export function secretProblem(cfg: GatewayConfig, ref: SecretRef): string | null {
  if ('env' in ref) return process.env[ref.env] ? null : `environment variable ${ref.env} is not set`;
  const abs = configPath(cfg, ref.file);
  try {
    if (readFileSync(abs, 'utf8').replace(/\r?\n$/, '').length === 0) return `secret file is empty: ${where(ref.file, abs)}`;
    return null;
  } catch (err) {
    return `secret file ${code(err) === 'ENOENT' ? 'not found' : `cannot be read (${code(err)})`}: ${where(ref.file, abs)}`;
  }
}

/** A problem located by the JSON path of the key that names the file. */
export interface FileProblem {
  readonly path: string;
  readonly message: string;
}

/**
 * Every file and secret of a configuration that the gateway could not open now, each with the
 * path of its key. `missing` holds those paths, so later checks skip what is already reported.
 */
export function fileProblems(cfg: GatewayConfig): { problems: FileProblem[]; missing: Set<string> } {
  const problems: FileProblem[] = [];
  const missing = new Set<string>();
  for (const f of configFiles(cfg)) {
    const p = f.use === 'read' ? readProblem(f) : writeProblem(f);
    if (!p) continue;
    problems.push({ path: f.path, message: `${p}: ${where(f.file, f.abs)}` });
    missing.add(f.path);
  }
  for (const s of configSecrets(cfg)) {
    const p = secretProblem(cfg, s.ref);
    if (!p) continue;
    problems.push({ path: s.path, message: p });
    missing.add(s.path);
  }
  return { problems, missing };
}
