import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { McpToolConfig, ToolConfig } from '../../../src/config/types.js';
import { GatewayError } from '../../../src/errors.js';
import { closeObjectSchemas, compileToolSchemas } from '../../../src/inspect/schema.js';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-schema-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: unknown): string {
  writeFileSync(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
  return name;
}

function tool(name: string, schema?: string, mcp?: Record<string, McpToolConfig>): ToolConfig {
  return {
    name,
    upstream: name,
    external: false,
    dry_run: false,
    credentials: [],
    request: { max_body_bytes: 1 << 20, injection: 'off', dlp: false, ...(schema ? { schema } : {}) },
    ...(mcp ? { mcp: { tools: mcp, on_change: 'block', poisoning: 'hide', pins: {}, refresh_s: 300, discovery_timeout_ms: 5000 } } : {}),
    response: { drop_fields: [], dlp: false, binary: 'inspect' },
  };
}

const forecast = file('forecast.json', {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  required: ['location'],
  properties: {
    location: {
      type: 'object',
      required: ['city'],
      properties: { city: { type: 'string', minLength: 1 }, days: { type: 'integer', minimum: 1, maximum: 14 } },
    },
    units: { enum: ['metric', 'imperial'] },
    when: { type: 'string', format: 'date' },
    tags: { type: 'object', additionalProperties: { type: 'string' } },
  },
});

const search = file('search.yaml', `
$schema: http://json-schema.org/draft-07/schema#
type: object
required: [query]
properties:
  query: { type: string, maxLength: 100 }
  limit: { type: integer }
`);

const composed = file('composed.json', {
  type: 'object',
  $defs: {
    base: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] },
    point: { type: 'object', properties: { x: { type: 'number' } } },
  },
  allOf: [{ $ref: '#/$defs/base' }, { type: 'object', properties: { note: { type: 'string' } } }],
  properties: { at: { $ref: '#/$defs/point' } },
});

const set = compileToolSchemas(
  [
    tool('weather', forecast),
    tool('docs', undefined, { search: { mutating: false, input_schema: search }, ping: { mutating: false } }),
    tool('records', composed),
    tool('open'),
  ],
  dir,
);

describe('validateBody', () => {
  it('accepts a body that matches', () => {
    expect(set.validateBody('weather', { location: { city: 'Paris', days: 3 }, units: 'metric', when: '2024-05-01' })).toEqual({ ok: true });
  });

  it('reports every problem with a JSON pointer', () => {
    const r = set.validateBody('weather', { location: { days: 30 }, units: 'kelvin', when: 'tomorrow' });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const paths = r.errors.map((e) => e.path).sort();
    expect(paths).toEqual(['/location/city', '/location/days', '/units', '/when']);
    expect(r.errors.find((e) => e.path === '/location/city')?.message).toBe('is required');
    expect(r.errors.find((e) => e.path === '/location/days')?.message).toMatch(/<= 14/);
  });

  it('rejects parameters outside the schema, at any depth', () => {
    const r = set.validateBody('weather', { location: { city: 'Paris', secret_flag: true }, debug: 1 });
    expect(r).toEqual({
      ok: false,
      errors: expect.arrayContaining([
        { path: '/debug', message: 'is not allowed by the schema' },
        { path: '/location/secret_flag', message: 'is not allowed by the schema' },
      ]),
    });
  });

  it('respects an explicit additionalProperties schema', () => {
    expect(set.validateBody('weather', { location: { city: 'x' }, tags: { a: 'b' } })).toEqual({ ok: true });
    expect(set.validateBody('weather', { location: { city: 'x' }, tags: { a: 1 } }).ok).toBe(false);
  });

  it('escapes property names in pointers', () => {
    const r = set.validateBody('weather', { location: { city: 'x' }, 'a/b~c': 1 });
    expect(r.ok === false && r.errors[0]?.path).toBe('/a~1b~0c');
  });

  it('closes composed objects without breaking composition', () => {
    expect(set.validateBody('records', { id: 'r1', note: 'n', at: { x: 1 } })).toEqual({ ok: true });
    const r = set.validateBody('records', { id: 'r1', extra: 1, at: { x: 1, y: 2 } });
    expect(r.ok === false && r.errors.map((e) => e.path).sort()).toEqual(['/at/y', '/extra']);
    expect(set.validateBody('records', { note: 'n' }).ok).toBe(false);
  });

  it('accepts anything for a tool without a schema', () => {
    expect(set.validateBody('open', { anything: [1, 2] })).toEqual({ ok: true });
  });
});

describe('validateMcpArguments', () => {
  it('validates against the MCP tool input schema (draft-07, YAML)', () => {
    expect(set.validateMcpArguments('docs', 'search', { query: 'q', limit: 3 })).toEqual({ ok: true });
    const r = set.validateMcpArguments('docs', 'search', { query: 5, other: true });
    expect(r.ok === false && r.errors.map((e) => e.path).sort()).toEqual(['/other', '/query']);
  });

  it('accepts any arguments for a configured MCP tool without input_schema', () => {
    expect(set.validateMcpArguments('docs', 'ping', { x: 1 })).toEqual({ ok: true });
  });

  it('rejects an MCP tool name that is not configured, with a clear message', () => {
    const r = set.validateMcpArguments('docs', 'delete_everything', {});
    expect(r).toEqual({ ok: false, errors: [{ path: '', message: 'MCP tool "delete_everything" is not configured for tool "docs"' }] });
    expect(set.validateMcpArguments('weather', 'search', {}).ok).toBe(false);
  });
});

describe('compileToolSchemas errors', () => {
  it('lists every unreadable or invalid file with its tool in one error', () => {
    file('bad-json.json', '{ "type": ');
    file('bad-keyword.json', { type: 'object', propertees: {} });
    file('bad-dialect.json', { $schema: 'http://example.com/custom', type: 'object' });
    let err: unknown;
    try {
      compileToolSchemas(
        [
          tool('a', 'missing.json'),
          tool('b', 'bad-json.json'),
          tool('c', undefined, { x: { mutating: true, input_schema: 'bad-keyword.json' } }),
          tool('d', 'bad-dialect.json'),
          tool('ok', forecast),
        ],
        dir,
      );
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GatewayError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/^4 schema problem\(s\)/);
    expect(msg).toContain('tool "a" request.schema: schema file missing.json');
    expect(msg).toContain('tool "b" request.schema: schema file bad-json.json');
    expect(msg).toMatch(/tool "c" mcp tool "x" input_schema: schema file bad-keyword.json: .*propertees/);
    expect(msg).toMatch(/tool "d" .*unsupported "\$schema"/);
    expect(msg).not.toContain('"ok"');
  });
});

describe('closeObjectSchemas', () => {
  it('adds additionalProperties: false only where nothing was said', () => {
    const out = closeObjectSchemas({
      type: 'object',
      properties: { a: { type: 'object' }, b: { type: 'object', additionalProperties: true } },
      const: { type: 'object' },
    }) as Record<string, any>;
    expect(out.additionalProperties).toBe(false);
    expect(out.properties.a.additionalProperties).toBe(false);
    expect(out.properties.b.additionalProperties).toBe(true);
    expect(out.const).toEqual({ type: 'object' });
  });

  it('leaves a definition open when a $ref with siblings extends it', () => {
    const out = closeObjectSchemas({
      type: 'object',
      $defs: { base: { type: 'object', properties: { id: { type: 'string' } } } },
      properties: { item: { type: 'object', $ref: '#/$defs/base', properties: { n: { type: 'number' } } } },
    }) as Record<string, any>;
    expect(out.$defs.base.additionalProperties).toBeUndefined();
    expect(out.properties.item.unevaluatedProperties).toBe(false);
  });

  it('closes alternatives of an untyped node but not allOf pieces', () => {
    const out = closeObjectSchemas({
      oneOf: [{ type: 'object', properties: { a: { type: 'string' } } }],
      allOf: [{ type: 'object', properties: { b: { type: 'string' } } }],
    }) as Record<string, any>;
    expect(out.oneOf[0].additionalProperties).toBe(false);
    expect(out.allOf[0].additionalProperties).toBeUndefined();
  });
});
