import { checkDlpConfig } from '../dlp/index.js';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { parseDocument } from 'yaml';
import { configSchema } from './schema.js';
import { serverProblems } from './server.js';
import { isJsonTool } from '../inspect/requestBody.js';
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

let compiled: ValidateFunction | null = null;

/** The configuration validator, compiled on first use: commands that load no configuration (help) skip it. */
function validator(): ValidateFunction {
  compiled ??= new Ajv({ allErrors: true, useDefaults: true, strict: false, allowUnionTypes: true }).compile(configSchema);
  return compiled;
}

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

/** Body limit of a tool that is not a JSON tool, when the configuration does not set one. */
export const DEFAULT_MAX_BODY_BYTES = 1048576;

/**
 * Fills each tool's unset `request.max_body_bytes`: a JSON tool gets what the Check can read
 * whole (`inspect.check_body_bytes`), any other tool {@link DEFAULT_MAX_BODY_BYTES}.
 */
function applyBodyLimitDefaults(cfg: GatewayConfig): void {
  for (const t of cfg.tools) {
    const request = t.request as { max_body_bytes?: number };
    request.max_body_bytes ??= isJsonTool(t) ? Math.min(cfg.inspect.check_body_bytes, DEFAULT_MAX_BODY_BYTES) : DEFAULT_MAX_BODY_BYTES;
  }
}

/** Cross-field rules the schema cannot express. */
function semanticProblems(cfg: GatewayConfig): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  const names = new Map<string, number>();
  cfg.tools.forEach((t, i) => {
    const prev = names.get(t.name);
    if (prev !== undefined) out.push({ path: `$.tools[${i}].name`, message: `duplicate tool name "${t.name}" (also $.tools[${prev}])` });
    names.set(t.name, i);
    if (isJsonTool(t) && t.request.max_body_bytes > cfg.inspect.check_body_bytes) {
      out.push({
        path: `$.tools[${i}].request.max_body_bytes`,
        message:
          `tool "${t.name}" takes JSON bodies (${t.mcp ? 'MCP' : 'request.schema'}) up to ${t.request.max_body_bytes} bytes, but the Check reads at most ` +
          `inspect.check_body_bytes (${cfg.inspect.check_body_bytes}, Envoy's with_request_body.max_request_bytes) whole: ` +
          'its policy would decide on a truncated body. Lower max_body_bytes, or raise both limits together',
      });
    }
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
  // A tool's response overrides name rules of the same catalog (an unknown rule id is a typo).
  cfg.tools.forEach((t, i) => {
    const o = t.response.dlp_overrides;
    if (!o || Object.keys(o).length === 0) return;
    for (const p of checkDlpConfig({ ...cfg.dlp, overrides: o }).problems) {
      if (p.path.startsWith('$.overrides')) out.push({ path: p.path.replace(/^\$\.overrides/, () => `$.tools[${i}].response.dlp_overrides`), message: p.message });
    }
  });
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
 * What reading a configuration found: the typed config with defaults applied once it passed the
 * schema (`null` when it did not, or is not YAML), and every problem, cross-field rules included.
 */
export interface ConfigReading {
  readonly config: GatewayConfig | null;
  readonly problems: readonly ConfigProblem[];
}

/** Parses and validates configuration text, collecting every problem instead of throwing. */
export function readConfigText(text: string, file: string, opts: ParseOptions = {}): ConfigReading {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      config: null,
      problems: doc.errors.map((e) => ({ path: e.linePos ? `line ${e.linePos[0].line}:${e.linePos[0].col}` : '$', message: e.message.split('\n')[0] ?? e.code })),
    };
  }
  const raw: unknown = doc.toJS() ?? {};
  const validate = validator();
  if (!validate(raw)) return { config: null, problems: dedupe((validate.errors ?? []).map(describe)) };
  const cfg = { ...(raw as object), base_dir: dirname(resolve(file)) } as GatewayConfig;
  applyBodyLimitDefaults(cfg);
  return { config: cfg, problems: [...semanticProblems(cfg), ...serverProblems(cfg.server, opts.requireChannel ?? false)] };
}

/**
 * Parses and validates configuration text. Returns the typed config with defaults applied,
 * or throws a {@link ConfigError} listing every problem with its path.
 */
export function parseConfig(text: string, file: string, opts: ParseOptions = {}): GatewayConfig {
  const r = readConfigText(text, file, opts);
  if (!r.config || r.problems.length > 0) throw new ConfigError(file, r.problems);
  return r.config;
}

/**
 * Reads a configuration file as {@link loadConfig} does (the gRPC channel required), collecting
 * every problem instead of throwing: `portcullis check` goes on to check the files of a
 * configuration that passed the schema even when a cross-field rule failed.
 */
export function readConfig(file: string): ConfigReading {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { config: null, problems: [{ path: '$', message: `cannot read file (${(err as NodeJS.ErrnoException).code ?? 'error'})` }] };
  }
  return readConfigText(text, file, { requireChannel: true });
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
