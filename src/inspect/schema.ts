import { readFileSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { ErrorObject, Options, ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { parse as parseYaml } from 'yaml';
import type { ToolConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';

/**
 * JSON Schema validation of request bodies and MCP `tools/call` arguments. Every schema file is
 * read and compiled once, when the configuration is loaded; requests only run the compiled
 * validators.
 *
 * Dialects: `$schema` 2020-12 (also the default when `$schema` is absent), 2019-09 and draft-07.
 * Files may be JSON or YAML (`.yaml`/`.yml`). ajv runs in strict mode (unknown keywords or
 * formats and keywords without the `type` they apply to are compile errors) and reports all
 * errors, not just the first. References
 * must stay inside the file (`#/$defs/...`).
 *
 * Closed by default: parameters outside the schema are rejected, not passed. Every object
 * schema (`type: object`) that says nothing about extra properties gets
 * `additionalProperties: false`, or `unevaluatedProperties: false` when it combines subschemas
 * (`allOf`, `$ref`, ...), which then sees the properties those subschemas declare. Parts that are
 * only pieces of a larger object (branches of `allOf`/`if`/`then`/`else`/`not`/
 * `dependentSchemas`, `anyOf`/`oneOf` branches of an object schema, and `$defs` used as such a
 * piece or extended by a `$ref` with sibling keywords) are left open, since the object that
 * combines them is closed. Objects that only an untyped node combines (`{allOf: [...]}` without
 * `type: object`) stay open. To accept extra properties somewhere, write
 * `additionalProperties: true` (or a schema) there.
 */

/** One validation problem: JSON pointer into the validated value (root is `""`) and a message. */
export interface SchemaProblem {
  readonly path: string;
  readonly message: string;
}

/** Outcome of validating one value. */
export type SchemaResult = { readonly ok: true } | { readonly ok: false; readonly errors: SchemaProblem[] };

/** Compiled validators of every tool; built by {@link compileToolSchemas}. */
export interface SchemaSet {
  /** Validates a plain JSON request body; tools without a `request.schema` accept any body. */
  validateBody(tool: string, body: unknown): SchemaResult;
  /**
   * Validates MCP `tools/call` arguments. An MCP tool name not configured for the tool is an
   * error; a configured MCP tool without `input_schema` accepts any arguments.
   */
  validateMcpArguments(tool: string, mcpTool: string, args: unknown): SchemaResult;
}

const OK: SchemaResult = { ok: true };
/** Error lists are cut here; a hostile body must not make the gateway build huge answers. */
const MAX_ERRORS = 50;

type Dialect = '2020-12' | '2019-09' | 'draft-07';

const DIALECTS: Readonly<Record<string, Dialect>> = {
  'https://json-schema.org/draft/2020-12/schema': '2020-12',
  'https://json-schema.org/draft/2019-09/schema': '2019-09',
  'http://json-schema.org/draft-07/schema': 'draft-07',
};

function dialectOf(schema: Record<string, unknown>): Dialect {
  const id = schema.$schema;
  if (id === undefined) return '2020-12';
  if (typeof id !== 'string') throw new Error('"$schema" must be a string');
  const dialect = DIALECTS[id.replace(/#$/, '')];
  if (!dialect) throw new Error(`unsupported "$schema" ${JSON.stringify(id)} (use 2020-12, 2019-09 or draft-07)`);
  return dialect;
}

type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

function isObjectTyped(s: Json): boolean {
  return s.type === 'object' || (Array.isArray(s.type) && s.type.includes('object'));
}

/** Keywords whose subschemas are pieces of the object they sit in. */
const PARTIAL_LISTS = ['allOf'] as const;
const PARTIAL_SINGLE = ['if', 'then', 'else', 'not'] as const;
const ALTERNATIVES = ['anyOf', 'oneOf'] as const;
const COMBINERS = ['allOf', 'anyOf', 'oneOf', 'if', 'then', 'else', 'not', 'dependentSchemas', '$ref', '$dynamicRef', '$recursiveRef'];
/** Keywords holding a map of subschemas that are whole values. */
const WHOLE_MAPS = ['properties', 'patternProperties'] as const;
/** Keywords holding one subschema that is a whole value. */
const WHOLE_SINGLE = ['items', 'additionalItems', 'additionalProperties', 'unevaluatedItems', 'unevaluatedProperties', 'contains', 'propertyNames'] as const;
const DEF_MAPS = ['$defs', 'definitions'] as const;

/** Keywords that do not change what a `$ref` beside them means. */
const ANNOTATIONS = new Set(['$ref', '$comment', 'title', 'description', 'default', 'examples', 'deprecated', 'readOnly', 'writeOnly']);

/**
 * `$defs`/`definitions` entries referenced from a partial position (`#/$defs/name`): from a
 * piece of a combination, or from a `$ref` with sibling keywords, which extends the target.
 */
function partialDefs(root: Json): Set<string> {
  const found = new Set<string>();
  const noteRef = (s: unknown): void => {
    if (isObj(s) && typeof s.$ref === 'string' && s.$ref.startsWith('#/')) found.add(s.$ref);
  };
  const walk = (s: unknown): void => {
    if (Array.isArray(s)) return s.forEach(walk);
    if (!isObj(s)) return;
    if (Object.keys(s).some((k) => !ANNOTATIONS.has(k))) noteRef(s);
    for (const k of PARTIAL_LISTS) if (Array.isArray(s[k])) (s[k] as unknown[]).forEach(noteRef);
    for (const k of PARTIAL_SINGLE) noteRef(s[k]);
    if (isObj(s.dependentSchemas)) Object.values(s.dependentSchemas).forEach(noteRef);
    if (isObjectTyped(s)) for (const k of ALTERNATIVES) if (Array.isArray(s[k])) (s[k] as unknown[]).forEach(noteRef);
    for (const v of Object.values(s)) if (v !== null && typeof v === 'object') walk(v);
  };
  walk(root);
  return found;
}

/**
 * Returns a copy of the schema with object schemas closed (see the module comment).
 * Keywords like `const`, `enum`, `default` and `examples` hold data, not schemas, and are copied as is.
 */
export function closeObjectSchemas(schema: unknown): unknown {
  if (!isObj(schema)) return schema;
  const partial = partialDefs(schema);

  const close = (s: unknown, closable: boolean): unknown => {
    if (!isObj(s)) return s;
    const out: Json = { ...s };
    const typed = isObjectTyped(s);
    for (const k of WHOLE_MAPS) {
      if (isObj(s[k])) out[k] = mapValues(s[k], (v) => close(v, true));
    }
    for (const k of WHOLE_SINGLE) {
      if (k in s) out[k] = Array.isArray(s[k]) ? (s[k] as unknown[]).map((v) => close(v, true)) : close(s[k], true);
    }
    if (Array.isArray(s.prefixItems)) out.prefixItems = s.prefixItems.map((v) => close(v, true));
    for (const k of PARTIAL_LISTS) if (Array.isArray(s[k])) out[k] = (s[k] as unknown[]).map((v) => close(v, false));
    for (const k of PARTIAL_SINGLE) if (k in s) out[k] = close(s[k], false);
    if (isObj(s.dependentSchemas)) out.dependentSchemas = mapValues(s.dependentSchemas, (v) => close(v, false));
    for (const k of ALTERNATIVES) if (Array.isArray(s[k])) out[k] = (s[k] as unknown[]).map((v) => close(v, !typed));
    for (const k of DEF_MAPS) {
      if (isObj(s[k])) out[k] = Object.fromEntries(Object.entries(s[k]).map(([name, v]) => [name, close(v, !partial.has(`#/${k}/${name}`))]));
    }
    if (closable && typed && !('additionalProperties' in s) && !('unevaluatedProperties' in s)) {
      if (COMBINERS.some((k) => k in s)) out.unevaluatedProperties = false;
      else out.additionalProperties = false;
    }
    return out;
  };
  return close(schema, true);
}

function mapValues(obj: Json, fn: (v: unknown) => unknown): Json {
  return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, fn(v)]));
}

function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** Turns ajv errors into pointer + message pairs, pointing at the offending property itself. */
function problems(errors: readonly ErrorObject[] | null | undefined): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  for (const e of errors ?? []) {
    if (out.length >= MAX_ERRORS) break;
    const p = e.params as Record<string, unknown>;
    switch (e.keyword) {
      case 'additionalProperties':
        out.push({ path: `${e.instancePath}/${escapePointer(String(p.additionalProperty))}`, message: 'is not allowed by the schema' });
        break;
      case 'unevaluatedProperties':
        out.push({ path: `${e.instancePath}/${escapePointer(String(p.unevaluatedProperty))}`, message: 'is not allowed by the schema' });
        break;
      case 'required':
        out.push({ path: `${e.instancePath}/${escapePointer(String(p.missingProperty))}`, message: 'is required' });
        break;
      default:
        out.push({ path: e.instancePath, message: e.message ?? `fails "${e.keyword}"` });
    }
  }
  return out;
}

function readSchemaFile(file: string): unknown {
  const text = readFileSync(file, 'utf8');
  const ext = extname(file).toLowerCase();
  return ext === '.yaml' || ext === '.yml' ? parseYaml(text) : JSON.parse(text);
}

/** Compiles schema files with the right dialect, once per file. */
class SchemaCompiler {
  private readonly engines = new Map<Dialect, Ajv2019 | Ajv2020>();
  private readonly byFile = new Map<string, ValidateFunction>();

  private engine(dialect: Dialect): Ajv2019 | Ajv2020 {
    let ajv = this.engines.get(dialect);
    if (!ajv) {
      // strictRequired stays off: `required` inside `oneOf`/`anyOf` branches naming the parent's
      // properties is a common, correct pattern that it would reject.
      ajv = newEngine(dialect, { strict: true, strictRequired: false, allErrors: true, allowUnionTypes: true, validateFormats: true });
      this.engines.set(dialect, ajv);
    }
    return ajv;
  }

  compile(file: string): ValidateFunction {
    const cached = this.byFile.get(file);
    if (cached) return cached;
    const raw = readSchemaFile(file);
    if (!isObj(raw) && typeof raw !== 'boolean') throw new Error('a schema must be a JSON object or boolean');
    const schema = closeObjectSchemas(raw);
    const ajv = this.engine(isObj(raw) ? dialectOf(raw) : '2020-12');
    const validate = ajv.compile(schema as Json | boolean);
    this.byFile.set(file, validate);
    return validate;
  }
}

function draft07MetaSchema(): Json {
  const require = createRequire(import.meta.url);
  return require('ajv/dist/refs/json-schema-draft-07.json') as Json;
}

function run(validate: ValidateFunction | undefined, value: unknown): SchemaResult {
  if (!validate || validate(value)) return OK;
  return { ok: false, errors: problems(validate.errors) };
}

/**
 * Compiles every tool's `request.schema` and every MCP tool's `input_schema` (paths relative to
 * `baseDir`). Throws one GatewayError listing every unreadable or invalid file with its tool.
 */
export function compileToolSchemas(tools: readonly ToolConfig[], baseDir: string): SchemaSet {
  const compiler = new SchemaCompiler();
  const bodies = new Map<string, ValidateFunction>();
  const mcp = new Map<string, Map<string, ValidateFunction | undefined>>();
  const failures: string[] = [];

  const compile = (where: string, file: string): ValidateFunction | undefined => {
    try {
      return compiler.compile(resolve(baseDir, file));
    } catch (err) {
      failures.push(`${where}: schema file ${file}: ${(err as Error).message}`);
      return undefined;
    }
  };

  for (const tool of tools) {
    if (tool.request.schema) {
      const v = compile(`tool "${tool.name}" request.schema`, tool.request.schema);
      if (v) bodies.set(tool.name, v);
    }
    if (tool.mcp) {
      const perTool = new Map<string, ValidateFunction | undefined>();
      for (const [name, cfg] of Object.entries(tool.mcp.tools)) {
        perTool.set(name, cfg.input_schema ? compile(`tool "${tool.name}" mcp tool "${name}" input_schema`, cfg.input_schema) : undefined);
      }
      mcp.set(tool.name, perTool);
    }
  }

  if (failures.length > 0) {
    throw new GatewayError('internal', `${failures.length} schema problem(s):\n  ${failures.join('\n  ')}`, {
      rule: 'config.schema',
      details: { problems: failures },
    });
  }

  return {
    validateBody: (tool, body) => run(bodies.get(tool), body),
    validateMcpArguments: (tool, mcpTool, args) => {
      const perTool = mcp.get(tool);
      if (!perTool || !perTool.has(mcpTool)) {
        return { ok: false, errors: [{ path: '', message: `MCP tool "${mcpTool}" is not configured for tool "${tool}"` }] };
      }
      return run(perTool.get(mcpTool), args);
    },
  };
}

/** A compiled validator of one learned MCP `inputSchema`. */
export type ArgumentValidator = (value: unknown) => SchemaResult;

/** An ajv instance for one dialect, with the formats; draft-07 gets its meta-schema. */
function newEngine(dialect: Dialect, opts: Options): Ajv2019 | Ajv2020 {
  let ajv: Ajv2019 | Ajv2020;
  if (dialect === '2020-12') {
    ajv = new Ajv2020(opts);
  } else {
    ajv = new Ajv2019(opts);
    if (dialect === 'draft-07') ajv.addMetaSchema(draft07MetaSchema());
  }
  addFormats.default(ajv);
  return ajv;
}

/**
 * Engines for schemas a server advertises (MCP `inputSchema`). Not strict: a server's schema
 * may carry keywords or formats this gateway does not know, which are ignored rather than
 * refused. Closed like configured schemas. Each compiled schema is removed from the engine
 * once compiled, so the engines hold nothing per schema (the caller bounds its own cache).
 */
const learnedEngines = new Map<Dialect, Ajv2019 | Ajv2020>();

function learnedEngine(dialect: Dialect): Ajv2019 | Ajv2020 {
  let ajv = learnedEngines.get(dialect);
  if (!ajv) {
    ajv = newEngine(dialect, { strict: false, allErrors: true, allowUnionTypes: true, validateFormats: true, logger: false });
    learnedEngines.set(dialect, ajv);
  }
  return ajv;
}

/**
 * Compiles a server-advertised JSON Schema (an MCP tool's `inputSchema`), closed to unknown
 * properties (see the module comment). Throws an Error saying why a schema cannot be used
 * (unsupported `$schema`, invalid schema, a reference outside the document).
 */
export function compileLearnedSchema(schema: Readonly<Record<string, unknown>>): ArgumentValidator {
  const closed = closeObjectSchemas(schema) as Json;
  const ajv = learnedEngine(dialectOf(schema as Json));
  let validate: ValidateFunction;
  try {
    validate = ajv.compile(closed);
  } finally {
    ajv.removeSchema(closed);
  }
  return (value) => run(validate, value);
}
