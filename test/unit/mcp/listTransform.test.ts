import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { GatewayConfig, McpConfig, ToolConfig } from '../../../src/config/types.js';
import { CredentialInjector } from '../../../src/credentials/inject.js';
import { SecretStore } from '../../../src/credentials/secrets.js';
import { compileFieldFilter } from '../../../src/extproc/fieldFilter.js';
import { ResponsePipeline, fieldFilterTransform, type TransformContext } from '../../../src/extproc/response/pipeline.js';
import { newResponseState } from '../../../src/extproc/state.js';
import { scrubberFor } from '../../../src/credentials/scrub.js';
import { GatewayError } from '../../../src/errors.js';
import { compileToolSchemas } from '../../../src/inspect/schema.js';
import { definitionEventsOf } from '../../../src/mcp/definitionEvents.js';
import { McpCatalog, MAX_TOOLS_PER_SERVER } from '../../../src/mcp/catalog.js';
import { definitionsTransform } from '../../../src/mcp/listTransform.js';
import { POISONED_DESCRIPTION } from '../../helpers/mcpServer.js';

/** The definitions transform inside the response pipeline: whole bodies, batches, framing, order. */

const dir = mkdtempSync(join(tmpdir(), 'mcp-transform-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function tool(mcp: Partial<McpConfig> = {}): ToolConfig {
  return {
    name: 'docs',
    upstream: 'tool_docs',
    external: false,
    dry_run: false,
    credentials: [],
    request: { max_body_bytes: 65536, injection: 'flag', dlp: false },
    mcp: { tools: {}, on_change: 'block', poisoning: 'hide', pins: {}, refresh_s: 300, discovery_timeout_ms: 3000, ...mcp },
    response: { drop_fields: [], dlp: false, binary: 'inspect' },
  };
}

function setup(mcp: Partial<McpConfig> = {}, dropFields: string[] = []): { catalog: McpCatalog; pipeline: ResponsePipeline; ctx: () => TransformContext } {
  const t = tool(mcp);
  const catalog = new McpCatalog();
  catalog.configure({ tools: [t], base_dir: dir } as unknown as GatewayConfig, new CredentialInjector([t], new SecretStore(dir)));
  const filter = compileFieldFilter(dropFields);
  const pipeline = new ResponsePipeline(filter.empty ? [definitionsTransform(catalog)] : [definitionsTransform(catalog), fieldFilterTransform(filter)]);
  const ctx = (): TransformContext => ({ tool: 'docs', jsonRpc: true, res: newResponseState(), scanner: null, scrubber: scrubberFor([]) });
  return { catalog, pipeline, ctx };
}

const add = { name: 'add', description: 'Adds two numbers.', inputSchema: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } } } };
const poisoned = { name: 'poisoned', description: POISONED_DESCRIPTION, inputSchema: { type: 'object' } };
const list = (id: number, tools: unknown[]): Record<string, unknown> => ({ jsonrpc: '2.0', id, result: { tools } });

describe('definitions transform', () => {
  it('removes a poisoned tool from every list of a batch and records the finding for the audit record', () => {
    const { pipeline, ctx } = setup();
    const c = ctx();
    const out = JSON.parse(pipeline.applyJson(JSON.stringify([list(1, [add, poisoned]), list(2, [poisoned])]), c)) as { result: { tools: { name: string }[] } }[];
    expect(out.map((m) => m.result.tools.map((t) => t.name))).toEqual([['add'], []]);
    expect(definitionEventsOf(c.res)).toContainEqual(expect.objectContaining({ name: 'poisoned', event: 'poisoned', action: 'hide' }));
  });

  it('learns from one SSE event data the same way (the pipeline runs per event)', () => {
    const { catalog, pipeline, ctx } = setup();
    const text = pipeline.applyJson(JSON.stringify(list(7, [add, poisoned])), ctx());
    expect(text).not.toContain('id_rsa');
    expect(catalog.validateCall(tool(), 'add', { a: 1, b: 2 }, compileToolSchemas([], dir)).ok).toBe(true);
  });

  it('leaves a response that is not a tool list untouched, and does not learn from it', () => {
    const { catalog, pipeline, ctx } = setup();
    const body = JSON.stringify({ jsonrpc: '2.0', id: 3, result: { content: [{ type: 'text', text: 'tools: add' }] } });
    expect(pipeline.applyJson(body, ctx())).toBe(body);
    expect(catalog.pins()).toEqual([]);
  });

  it('sends the list it judged: a duplicate "result" key cannot show a first-wins parser another list', () => {
    const { pipeline, ctx } = setup();
    const text = `{"jsonrpc":"2.0","id":1,"result":${JSON.stringify({ tools: [poisoned] })},"result":${JSON.stringify({ tools: [add] })}}`;
    const out = pipeline.applyJson(text, ctx());
    expect(out).not.toContain('id_rsa');
    expect(JSON.parse(out)).toEqual(list(1, [add]));
  });

  it('refuses the whole list in poisoning block mode', () => {
    const { pipeline, ctx } = setup({ poisoning: 'block' });
    expect(() => pipeline.applyJson(JSON.stringify(list(1, [add, poisoned])), ctx())).toThrow(GatewayError);
  });

  it('runs before the field filter, which then sees the list the agent receives', () => {
    const { pipeline, ctx } = setup({}, ['result.tools.*.description']);
    const out = JSON.parse(pipeline.applyJson(JSON.stringify(list(1, [add, poisoned])), ctx())) as { result: { tools: Record<string, unknown>[] } };
    expect(out.result.tools).toEqual([{ name: 'add', inputSchema: add.inputSchema }]);
  });

  it('names are exact: a case variant of a learned tool is another, unknown tool', () => {
    const { catalog, pipeline, ctx } = setup();
    pipeline.applyJson(JSON.stringify(list(1, [add])), ctx());
    expect(() => catalog.validateCall(tool(), 'ADD', { a: 1, b: 2 }, compileToolSchemas([], dir))).toThrow(/is not offered by the MCP server/);
  });

  it('keeps memory bounded when a server lists a huge number of tools', () => {
    const { catalog, pipeline, ctx } = setup();
    const many = Array.from({ length: MAX_TOOLS_PER_SERVER + 3 }, (_, i) => ({ name: `t${i}`, inputSchema: { type: 'object' } }));
    const out = JSON.parse(pipeline.applyJson(JSON.stringify(list(1, many)), ctx())) as { result: { tools: unknown[] } };
    expect(out.result.tools).toHaveLength(MAX_TOOLS_PER_SERVER);
    expect(() => catalog.validateCall(tool(), `t${MAX_TOOLS_PER_SERVER + 1}`, {}, compileToolSchemas([], dir))).toThrow(/more than 2000 tools/);
  });
});
