import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/load.js';
import type { ToolConfig } from '../../../src/config/types.js';
import type { AuthzMetadata } from '../../../src/authz/check.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import type { PolicyInput } from '../../../src/policy/input.js';
import { compileFieldFilter } from '../../../src/extproc/fieldFilter.js';
import { compilePipeline, type TransformContext } from '../../../src/extproc/response/pipeline.js';
import { SseInspector } from '../../../src/extproc/response/sse.js';
import { newResponseState } from '../../../src/extproc/state.js';
import { scrubberFor } from '../../../src/credentials/scrub.js';
import { GatewayError } from '../../../src/errors.js';
import { parseJsonRpc } from '../../../src/inspect/mcp.js';
import { newMcpExchange, noteRequests, type McpExchange } from '../../../src/mcp/exchange.js';
import { ItemPolicy } from '../../../src/mcp/itemPolicy.js';
import type { McpListContext } from '../../../src/mcp/lists.js';
import { repoPath } from '../../helpers/paths.js';
import { buildBundle, copyShippedPolicy } from '../policy/helpers.js';

const demo = loadConfig(repoPath('scripts', 'demo', 'portcullis.yaml'));
const docs = demo.tools.find((t) => t.name === 'docs') as ToolConfig;
const DECISION = 'envoy/authz/allow';
let engine: PolicyEngine;

beforeAll(async () => {
  engine = await PolicyEngine.open({ bundlePath: buildBundle(copyShippedPolicy()).path, decision: DECISION, watch: false });
});
afterAll(() => engine.close());

function meta(agent: string, roles: string[], over: Partial<AuthzMetadata> = {}): AuthzMetadata {
  return {
    request_id: 'r-1', traceparent: null, method: 'POST', path: '/tools/docs/', tool: 'docs', agent, agent_version: null, user: 'alice', tenant: 'acme',
    auth_methods: ['jwt'], roles, auth_error: null, forwarded_recorded: false, allowed: true, dry_run: false, rule: 'allow.role', reason: null,
    policy_version: null, mcp_method: 'tools/list', mcp_tool: null, mcp_prompt: null, mcp_resource: null, mcp_session: null, mcp_protocol_version: null,
    proven_by: ['https://issuer.example'], jti: null, body_sha256: null, authz_ms: 1, mcp_decided_on: null, idempotency_key: null, idempotency_claim: null, fact_records: [], budget_records: [], ...over,
  };
}

const VIEWER = meta('reporter', ['viewer']);
const SUPPORT = meta('helpdesk', ['support']);

interface Exchange {
  readonly ctx: TransformContext;
  readonly ex: McpExchange;
  readonly run: (body: unknown) => unknown;
}

/** One exchange: the request body as ext_proc parsed it, and a pipeline for its response. */
function exchange(request: unknown, who: AuthzMetadata = VIEWER, opts: { dryRun?: boolean; policy?: PolicyEngine; status?: number; maxEvaluations?: number } = {}): Exchange {
  const ex = newMcpExchange();
  noteRequests(ex, parseJsonRpc(JSON.stringify(request))!.calls);
  const res = newResponseState();
  res.upstreamStatus = opts.status ?? 200;
  const mcp: McpListContext = {
    exchange: ex,
    items: new ItemPolicy(opts.policy ?? engine, docs, who, { method: 'POST', path: '/tools/docs/', headers: { 'content-type': 'application/json' } }, opts.maxEvaluations),
    dryRun: opts.dryRun ?? false,
    requestId: 'r-1',
  };
  const ctx: TransformContext = { tool: 'docs', jsonRpc: true, res, scanner: null, scrubber: scrubberFor([]), mcp };
  const pipeline = compilePipeline(compileFieldFilter([]), true);
  return { ctx, ex, run: (body) => JSON.parse(pipeline.apply(typeof body === 'string' ? body : JSON.stringify(body), ctx)) as unknown };
}

const TOOLS = [{ name: 'search_docs', inputSchema: { type: 'object' } }, { name: 'delete_doc', inputSchema: { type: 'object' } }];
const list = (id: unknown, method = 'tools/list', params: unknown = {}): unknown => ({ jsonrpc: '2.0', id, method, params });
const result = (id: unknown, r: unknown): Record<string, unknown> => ({ jsonrpc: '2.0', id, result: r });
const names = (doc: unknown, key = 'tools', field = 'name'): string[] => ((doc as { result: Record<string, { [k: string]: string }[]> }).result[key] ?? []).map((t) => t[field]!);

describe('MCP list filtering', () => {
  it('shows each principal the tools its roles may call: the viewer loses delete_doc, support keeps it', () => {
    const v = exchange(list(1));
    expect(names(v.run(result(1, { tools: TOOLS })))).toEqual(['search_docs']);
    expect(v.ex.hidden).toBe(1);
    const s = exchange(list(1), SUPPORT);
    expect(names(s.run(result(1, { tools: TOOLS })))).toEqual(['search_docs', 'delete_doc']);
    expect(s.ex.hidden).toBe(0);
  });

  it('filters prompts, resources and templates by the same policy', () => {
    const p = exchange(list('p', 'prompts/list'));
    expect(names(p.run(result('p', { prompts: [{ name: 'summarize_doc' }, { name: 'draft_reply' }, { name: 'export_all' }] })), 'prompts')).toEqual(['summarize_doc']);
    const r = exchange(list('r', 'resources/list'));
    const resources = [{ uri: 'docs://public/a.md', name: 'a' }, { uri: 'docs://internal/b.md', name: 'b' }, { uri: 'docs://public/../internal/b.md', name: 'c' }];
    expect(names(r.run(result('r', { resources })), 'resources', 'uri')).toEqual(['docs://public/a.md']);
    const t = exchange(list('t', 'resources/templates/list'));
    const templates = [{ uriTemplate: 'docs://public/{path}', name: 'p' }, { uriTemplate: 'docs://{section}/{path}', name: 'any' }];
    expect(names(t.run(result('t', { resourceTemplates: templates })), 'resourceTemplates', 'uriTemplate')).toEqual(['docs://public/{path}']);
    const ts = exchange(list('t', 'resources/templates/list'), SUPPORT);
    expect(names(ts.run(result('t', { resourceTemplates: [...templates, { uriTemplate: 'docs://internal/{id}', name: 'i' }] })), 'resourceTemplates', 'uriTemplate')).toEqual(['docs://public/{path}', 'docs://internal/{id}']);
  });

  it('keeps nextCursor and every other member, also on a page filtering emptied', () => {
    const e = exchange(list(7, 'resources/list', { cursor: 'page-2' }));
    const out = e.run(result(7, { resources: [{ uri: 'docs://internal/x', name: 'x' }, { uri: 'docs://secret/y', name: 'y' }], nextCursor: 'page-4', _meta: { a: 1 } }));
    expect(out).toEqual({ jsonrpc: '2.0', id: 7, result: { resources: [], nextCursor: 'page-4', _meta: { a: 1 } } });
    expect(e.ex.hidden).toBe(2);
  });

  it('in a batch, filters only the response to the list request; a call result listing tools is left alone', () => {
    const e = exchange([list(1), { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'search_docs', arguments: {} } }]);
    const callResult = { content: [], structuredContent: { tools: TOOLS } };
    const out = e.run([result(2, { tools: TOOLS, ...callResult }), result(1, { tools: TOOLS })]) as Record<string, unknown>[];
    expect(names(out[0])).toEqual(['search_docs', 'delete_doc']);
    expect(names(out[1])).toEqual(['search_docs']);
  });

  it('recognises a list answer whose id a lenient client would match: "1" or 1.0 for 1, "0x1" is not', () => {
    for (const id of ['1', 1.0, ' 1', [1]]) {
      const e = exchange(list(1));
      expect(names(e.run(result(id, { tools: TOOLS }))), JSON.stringify(id)).toEqual(['search_docs']);
    }
    const s = exchange(list('1'));
    expect(names(s.run(result(1, { tools: TOOLS })))).toEqual(['search_docs']);
    const z = exchange(list(0));
    expect(names(z.run(result(null, { tools: TOOLS })))).toEqual(['search_docs']);
  });

  it('filters a result that answers no request of the exchange (a replayed list) by its shape', () => {
    const e = exchange({ jsonrpc: '2.0', id: 1, method: 'ping' });
    const out = e.run([result(1, {}), result(99, { tools: TOOLS })]) as Record<string, any>[];
    expect(out[0]).toEqual(result(1, {}));
    // Read by its shape: the item array is filtered as the list it looks like.
    expect(names(out[1])).toEqual(['search_docs']);
    // A stream resumed with Last-Event-ID replays earlier answers: lists are filtered by shape,
    // every item array of a result, and other results pass as they are.
    const get = exchange({ jsonrpc: '2.0', method: 'notifications/initialized' });
    const both = get.run(result('x', { tools: TOOLS, resources: [{ uri: 'docs://internal/salaries.md' }, { uri: 'docs://public/faq.md' }] })) as Record<string, any>;
    expect(names(both)).toEqual(['search_docs']);
    expect(both.result.resources).toEqual([{ uri: 'docs://public/faq.md' }]);
    const call = result('y', { content: [{ type: 'text', text: 'ok' }] });
    expect(get.run(call)).toEqual(call);
  });

  it('leaves a JSON-RPC error answering a list request as it is', () => {
    const e = exchange(list(1));
    const err = { jsonrpc: '2.0', id: 1, error: { code: -32602, message: 'invalid cursor' } };
    expect(e.run(err)).toEqual(err);
  });

  it('replaces a list result not shaped as one with a JSON-RPC error; hides items without a string name', () => {
    for (const bad of [{ tools: { name: 'delete_doc' } }, null, [TOOLS], { prompts: [] }, 'tools']) {
      const e = exchange(list(3));
      const out = e.run(result(3, bad)) as Record<string, any>;
      expect(out, JSON.stringify(bad)).toMatchObject({ jsonrpc: '2.0', id: 3, error: { data: { type: 'unavailable', rule: 'mcp.list_malformed' } } });
      expect(out.result).toBeUndefined();
      expect(out.error.message).toMatch(/tools\/list result of tool "docs" could not be checked/);
    }
    const e = exchange(list(4));
    const out = e.run(result(4, { tools: [{ name: 'search_docs' }, { name: ['delete_doc'] }, 'delete_doc', null, { title: 'delete_doc' }] }));
    expect(names(out)).toEqual(['search_docs']);
    expect(e.ex.hidden).toBe(4);
  });

  it('judges the document that leaves: a duplicate result key cannot carry a second, unjudged list', () => {
    const e = exchange(list(1), SUPPORT);
    const text = '{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete_doc"}]},"result":{"tools":[{"name":"search_docs"}]}}';
    const out = compilePipeline(compileFieldFilter([]), true).apply(text, e.ctx);
    expect(out).toBe('{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"search_docs"}]}}');
  });

  it('refuses a successful list answer that is not JSON (a BOM, bad JSON, plain text); error statuses pass', () => {
    for (const text of ['\ufeff{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}', '{"jsonrpc":"2.0","id":1,"result":', 'tools: delete_doc']) {
      const e = exchange(list(1));
      expect(() => compilePipeline(compileFieldFilter([]), true).apply(text, e.ctx)).toThrow(GatewayError);
    }
    const failed = exchange(list(1), VIEWER, { status: 503 });
    expect(compilePipeline(compileFieldFilter([]), true).apply('upstream connect error', failed.ctx)).toBe('upstream connect error');
    const noList = exchange({ jsonrpc: '2.0', id: 1, method: 'ping' });
    expect(compilePipeline(compileFieldFilter([]), true).apply('not json', noList.ctx)).toBe('not json');
    const bin = exchange(list(1));
    expect(() => compilePipeline(compileFieldFilter([]), true).unparsed(null, bin.ctx)).toThrow(/not JSON/);
  });

  it('filters a list sent as an SSE event, and ends the stream on an event that is not JSON', () => {
    const e = exchange(list(5));
    const sse = new SseInspector(compilePipeline(compileFieldFilter([]), true), e.ctx, 'r-1');
    const r = sse.push(Buffer.from(`id: 1\nevent: message\ndata: ${JSON.stringify(result(5, { tools: TOOLS }))}\n\n`), false);
    expect(r.error).toBeNull();
    const data = r.text.split('\n').find((l) => l.startsWith('data: '))!.slice(6);
    expect(names(JSON.parse(data))).toEqual(['search_docs']);
    expect(r.text).not.toContain('delete_doc');
    expect(r.text).toContain('id: 1');
    const priming = sse.push(Buffer.from('id: 2\ndata: \n\n'), false);
    expect(priming.error).toBeNull();
    const bad = sse.push(Buffer.from('data: {"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"delete_doc"}]}\n\n'), true);
    expect(bad.error?.rule).toBe('mcp.list_unreadable');
    expect(bad.text).not.toContain('delete_doc');
  });

  it('dry run: hides nothing and counts what it would have hidden', () => {
    const e = exchange(list(1), VIEWER, { dryRun: true });
    expect(names(e.run(result(1, { tools: TOOLS })))).toEqual(['search_docs', 'delete_doc']);
    expect(e.ex).toMatchObject({ hidden: 0, wouldHide: 1 });
  });

  it('hides every item when the policy cannot evaluate (fail closed)', () => {
    const unloaded = new PolicyEngine({ bundlePath: 'missing.tar.gz', decision: DECISION, watch: false });
    const e = exchange(list(1), SUPPORT, { policy: unloaded });
    expect(names(e.run(result(1, { tools: TOOLS })))).toEqual([]);
    expect(e.ex.hidden).toBe(2);
  });

  it('hides the items past the evaluation bound without evaluating them (a server cannot stall the gateway)', () => {
    const e = exchange(list(1), SUPPORT, { maxEvaluations: 2 });
    const many = ['search_docs', 'delete_doc', 'search_docs', 'other_1', 'other_2'].map((name) => ({ name }));
    expect(names(e.run(result(1, { tools: many })))).toEqual(['search_docs', 'delete_doc', 'search_docs']);
    expect(e.ex.hidden).toBe(2);
  });

  it('evaluates each distinct item once per exchange, with the input of the call that would use it', () => {
    const inputs: PolicyInput[] = [];
    const counting = Object.create(engine) as PolicyEngine;
    counting.evaluate = (input) => {
      inputs.push(input);
      return engine.evaluate(input);
    };
    const e = exchange([list(1), list(2)], VIEWER, { policy: counting });
    e.run([result(1, { tools: TOOLS }), result(2, { tools: [...TOOLS, TOOLS[0]] })]);
    expect(inputs.map((i) => i.mcp?.tool)).toEqual(['search_docs', 'delete_doc']);
    expect(inputs[0]).toMatchObject({
      mcp: { method: 'tools/call', tool: 'search_docs', arguments: null, id: null },
      identity: { agent: 'reporter', user: 'alice', tenant: 'acme', roles: ['viewer'], methods: ['jwt'], proven_by: ['https://issuer.example'] },
      tool: { name: 'docs', mutating: false },
      attributes: { request: { http: { method: 'POST', path: '/tools/docs/' } } },
      parsed_body: null,
    });
    // delete_doc is configured as mutating: the item's input.tool says so, as the call's would.
    expect(inputs[1]!.tool).toMatchObject({ mutating: true });
  });
});

describe('MCP call parsing for policy', () => {
  it('names the prompt and resource of prompts/get, resources/read, subscribe and completions', () => {
    const calls = parseJsonRpc(JSON.stringify([
      { jsonrpc: '2.0', id: 1, method: 'prompts/get', params: { name: 'draft_reply' } },
      { jsonrpc: '2.0', id: 2, method: 'resources/read', params: { uri: 'docs://internal/x' } },
      { jsonrpc: '2.0', id: 3, method: 'resources/subscribe', params: { uri: 'docs://internal/y' } },
      { jsonrpc: '2.0', id: 4, method: 'completion/complete', params: { ref: { type: 'ref/prompt', name: 'export_all' }, argument: { name: 'a', value: '' } } },
      { jsonrpc: '2.0', id: 5, method: 'completion/complete', params: { ref: { type: 'ref/resource', uri: 'docs://{section}/x' }, argument: { name: 'section', value: '' } } },
      { jsonrpc: '2.0', id: 6, method: 'prompts/get', params: { name: ['draft_reply'] } },
      { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'search_docs', arguments: {} } },
    ]))!.calls;
    expect(calls.map((c) => [c.prompt, c.resource, c.tool])).toEqual([
      ['draft_reply', null, null],
      [null, 'docs://internal/x', null],
      [null, 'docs://internal/y', null],
      ['export_all', null, null],
      [null, 'docs://{section}/x', null],
      [null, null, null],
      [null, null, 'search_docs'],
    ]);
  });
});
