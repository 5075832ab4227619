import { checkDlpConfig } from '../dlp/index.js';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { parseDocument } from 'yaml';
import { configSchema } from './schema.js';
import { serverProblems } from './server.js';
import type { GatewayConfig } from './types.js';

/** One problem in a configuration file, located by its JSON path. */
export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

/** Raised when a configuration cannot be used; lists every problem, not just the first. */
export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: readonly ConfigProblem[],
  ) {
    super(`${file}: ${problems.length} problem(s)\n${problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, allowUnionTypes: true });
const validate = ajv.compile(configSchema);

/** Headers that always carry caller-supplied identity and never reach an upstream. */
export const ALWAYS_STRIPPED = ['x-user-id', 'x-forwarded-user', 'x-remote-user', 'x-authenticated-user', 'x-forwarded-email', 'x-forwarded-client-cert'] as const;

function describe(e: ErrorObject): ConfigProblem {
  const path = `$${e.instancePath.replace(/\/([^/]+)/g, (_m, seg: string) => (/^\d+$/.test(seg) ? `[${seg}]` : `.${seg}`))}`;
  switch (e.keyword) {
    case 'additionalProperties':
      return { path, message: `unknown key "${String(e.params.additionalProperty)}"` };
    case 'enum':
      return { path, message: `must be one of ${JSON.stringify(e.params.allowedValues)}` };
    case 'required':
      return { path, message: `missing required key "${String(e.params.missingProperty)}"` };
    default:
      return { path, message: e.message ?? e.keyword };
  }
}

/** Drops the noise ajv adds for `oneOf` branches when a more precise error is present at the same path. */
function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const k = `${p.path}\u0000${p.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** Cross-field rules the schema cannot express. */
function semanticProblems(cfg: GatewayConfig): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  const names = new Map<string, number>();
  cfg.tools.forEach((t, i) => {
    const prev = names.get(t.name);
    if (prev !== undefined) out.push({ path: `$.tools[${i}].name`, message: `duplicate tool name "${t.name}" (also $.tools[${prev}])` });
    names.set(t.name, i);
    if (t.mcp && t.request.schema) {
      out.push({ path: `$.tools[${i}]`, message: 'use either request.schema (plain JSON) or mcp.tools (JSON-RPC), not both' });
    }
    const credHeaders = new Set<string>();
    t.credentials.forEach((c, j) => {
      if (credHeaders.has(c.header)) out.push({ path: `$.tools[${i}].credentials[${j}].header`, message: `header "${c.header}" is set twice` });
      credHeaders.add(c.header);
    });
  });
  const ids = new Set<string>();
  cfg.identity.api_keys.forEach((k, i) => {
    if (ids.has(k.id)) out.push({ path: `$.identity.api_keys[${i}].id`, message: `duplicate api key id "${k.id}"` });
    ids.add(k.id);
  });
  cfg.identity.signatures.forEach((s, i) => {
    for (const tool of s.tools ?? []) {
      if (!names.has(tool)) out.push({ path: `$.identity.signatures[${i}].tools`, message: `unknown tool "${tool}"` });
    }
  });
  // The DLP section is checked by the DLP compiler itself (rule syntax, linear-time patterns).
  for (const p of checkDlpConfig(cfg.dlp).problems) out.push({ path: p.path.replace(/^\$/, '$.dlp'), message: p.message });
  return out;
}

/** Options of {@link parseConfig}. */
export interface ParseOptions {
  /**
   * Also require an authenticated gRPC channel to be configured (see config/server.ts). On for
   * files loaded to serve or check; fragments parsed in isolation may leave it out.
   */
  readonly requireChannel?: boolean;
}

/**
 * Parses and validates configuration text. Returns the typed config with defaults applied,
 * or throws a {@link ConfigError} listing every problem with its path.
 */
export function parseConfig(text: string, file: string, opts: ParseOptions = {}): GatewayConfig {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({ path: e.linePos ? `line ${e.linePos[0].line}:${e.linePos[0].col}` : '$', message: e.message.split('\n')[0] ?? e.code })),
    );
  }
  const raw: unknown = doc.toJS() ?? {};
  if (!validate(raw)) {
    throw new ConfigError(file, dedupe((validate.errors ?? []).map(describe)));
  }
  const cfg = { ...(raw as object), base_dir: dirname(resolve(file)) } as GatewayConfig;
  const problems = [...semanticProblems(cfg), ...serverProblems(cfg.server, opts.requireChannel ?? false)];
  if (problems.length > 0) throw new ConfigError(file, problems);
  return cfg;
}

/** Reads, parses and validates a configuration file to serve (see {@link parseConfig}; the gRPC channel is required). */
export function loadConfig(file: string): GatewayConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [{ path: '$', message: `cannot read file (${(err as NodeJS.ErrnoException).code ?? 'error'})` }]);
  }
  return parseConfig(text, file, { requireChannel: true });
}
