import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';
import { pointCluster, readAuditFile, send as sendRaw, startStack, type Reply, type Stack } from '../helpers/index.js';
import { freePort } from '../helpers/ports.js';
import { token } from './authz-support.js';

/**
 * Tracing through the real Envoy (the project's envoy.yaml, its OpenTelemetry tracer on) and
 * portcullis, both exporting OTLP/HTTP protobuf to a receiver in this file that decodes the
 * requests with the OTLP protobuf schema: Envoy's span is the parent of portcullis' Check and
 * ext_proc spans, stage and phase spans hang below them, the audit record names the trace, a
 * caller's traceparent is never portcullis' parent, and a collector that is down fails nothing.
 */

type Json = Record<string, any>;

// The messages of opentelemetry/proto (collector/trace/v1, trace/v1, common/v1, resource/v1)
// this test reads, with their field numbers; fields not declared are skipped by the decoder.
const OTLP = protobuf.Root.fromJSON({
  nested: {
    otlp: {
      nested: {
        ExportTraceServiceRequest: { fields: { resourceSpans: { rule: 'repeated', type: 'ResourceSpans', id: 1 } } },
        ResourceSpans: { fields: { resource: { type: 'Resource', id: 1 }, scopeSpans: { rule: 'repeated', type: 'ScopeSpans', id: 2 } } },
        Resource: { fields: { attributes: { rule: 'repeated', type: 'KeyValue', id: 1 } } },
        ScopeSpans: { fields: { spans: { rule: 'repeated', type: 'Span', id: 2 } } },
        Span: {
          fields: {
            traceId: { type: 'bytes', id: 1 },
            spanId: { type: 'bytes', id: 2 },
            parentSpanId: { type: 'bytes', id: 4 },
            name: { type: 'string', id: 5 },
            kind: { type: 'int32', id: 6 },
            attributes: { rule: 'repeated', type: 'KeyValue', id: 9 },
            links: { rule: 'repeated', type: 'Link', id: 13 },
            status: { type: 'Status', id: 15 },
          },
        },
        Link: { fields: { traceId: { type: 'bytes', id: 1 }, spanId: { type: 'bytes', id: 2 }, attributes: { rule: 'repeated', type: 'KeyValue', id: 4 } } },
        Status: { fields: { message: { type: 'string', id: 2 }, code: { type: 'int32', id: 3 } } },
        KeyValue: { fields: { key: { type: 'string', id: 1 }, value: { type: 'AnyValue', id: 2 } } },
        AnyValue: {
          oneofs: { value: { oneof: ['stringValue', 'boolValue', 'intValue', 'doubleValue'] } },
          fields: { stringValue: { type: 'string', id: 1 }, boolValue: { type: 'bool', id: 2 }, intValue: { type: 'int64', id: 3 }, doubleValue: { type: 'double', id: 4 } },
        },
      },
    },
  },
});
const ExportRequest = OTLP.lookupType('otlp.ExportTraceServiceRequest');

const SERVER = 2;
const STATUS_ERROR = 2;

/** One decoded span with the service that exported it. */
interface Span {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, string | number | boolean>;
  links: { traceId: string; spanId: string }[];
  status: { code: number; message: string };
}

const hex = (b: Uint8Array | undefined): string => (b ? Buffer.from(b).toString('hex') : '');

function attrs(list: Json[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const kv of list ?? []) {
    const v = kv.value ?? {};
    out[kv.key] = v.stringValue ?? v.boolValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.doubleValue);
  }
  return out;
}

/** An OTLP/HTTP receiver: decodes every export request and keeps its spans. */
class Receiver {
  readonly spans: Span[] = [];
  requests = 0;
  private server: Server | null = null;

  async start(port: number): Promise<void> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.method !== 'POST' || req.url !== '/v1/traces') {
          res.writeHead(404).end();
          return;
        }
        this.requests += 1;
        const msg = ExportRequest.toObject(ExportRequest.decode(Buffer.concat(chunks)), { longs: String, defaults: false }) as Json;
        for (const rs of msg.resourceSpans ?? []) {
          const service = String(attrs(rs.resource?.attributes)['service.name'] ?? '');
          for (const ss of rs.scopeSpans ?? []) {
            for (const s of ss.spans ?? []) {
              this.spans.push({
                service,
                traceId: hex(s.traceId),
                spanId: hex(s.spanId),
                parentSpanId: hex(s.parentSpanId),
                name: s.name ?? '',
                kind: s.kind ?? 0,
                attributes: attrs(s.attributes),
                links: (s.links ?? []).map((l: Json) => ({ traceId: hex(l.traceId), spanId: hex(l.spanId) })),
                status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' },
              });
            }
          }
        }
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
    this.server = server;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Waits for spans matching `pred` until `enough` holds (spans arrive in batches, about a second apart). */
  async waitFor(pred: (s: Span) => boolean, enough: (found: Span[]) => boolean = (f) => f.length > 0): Promise<Span[]> {
    for (let i = 0; i < 150; i++) {
      const found = this.spans.filter(pred);
      if (enough(found)) return found;
      await sleep(100);
    }
    throw new Error(`spans not received; have: ${this.spans.map((s) => `${s.service}:${s.name}`).join(', ')}`);
  }

  trace(traceId: string): Span[] {
    return this.spans.filter((s) => s.traceId === traceId);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const VERSION = '2025-11-25';
const rpc = (id: number | string, method: string, params: Json = {}): Json => ({ jsonrpc: '2.0', id, method, params });

function mcp(stack: Stack, bearer: string | null, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return sendRaw(stack, '/tools/docs/', { headers: { accept: 'application/json, text/event-stream', 'mcp-protocol-version': VERSION, ...headers }, bearer, body: JSON.stringify(body) });
}

function requestId(r: Reply): string {
  const id = r.headers['x-request-id'];
  if (typeof id !== 'string') throw new Error('no x-request-id in the reply');
  return id;
}

/** The exchange record (ext_proc's, or the Check's for a denial) of a request. */
async function exchangeRecord(stack: Stack, id: string): Promise<Json> {
  const file = join(dirname(stack.configPath), 'audit.log');
  for (let i = 0; i < 100; i++) {
    const found = readAuditFile(file).filter((r) => r.request_id === id && r.record_type === 'exchange');
    if (found.length > 0) return found[0] as Json;
    await sleep(50);
  }
  throw new Error(`no exchange record for ${id}`);
}

/** The upstream request the sample tool received for a request id. */
function upstreamOf(stack: Stack, id: string): Json {
  const r = stack.tool.received.find((x) => x.headers['x-request-id'] === id);
  if (!r) throw new Error(`the tool did not receive ${id}`);
  return r as unknown as Json;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/;
const CALLER_TRACE = '0af7651916cd43dd8448eb211c80319c';
const CALLER_SPAN = 'b7ad6b7169203331';
const CALLER_TRACEPARENT = `00-${CALLER_TRACE}-${CALLER_SPAN}-01`;

function tracingConfig(port: number): (cfg: Record<string, unknown>) => void {
  return (cfg) => {
    cfg.tracing = { enabled: true, otlp_endpoint: `http://127.0.0.1:${port}/v1/traces`, timeout_s: 1 };
  };
}

describe('tracing joined to Envoy (shipped envoy.yaml, Envoy tracing on)', () => {
  let stack: Stack;
  const receiver = new Receiver();
  let viewer: string;

  beforeAll(async () => {
    const port = await freePort();
    await receiver.start(port);
    stack = await startStack({ editConfig: tracingConfig(port), editEnvoy: (cfg) => pointCluster(cfg, 'otel_collector', port) });
    viewer = await token(stack, { agent: 'reporter', user: 'vera', roles: ['viewer'] });
  }, 90_000);
  afterAll(async () => {
    await stack?.stop();
    await receiver.stop();
  });

  it('an MCP tools/call: Envoy, Check and ext_proc spans share one trace, with stage and phase children, GenAI/MCP attributes and the audit record on it', async () => {
    const r = await mcp(stack, viewer, rpc(41, 'tools/call', { name: 'search_docs', arguments: { query: 'vpn', tenant: 'acme' } }));
    expect(r.status, r.text).toBe(200);
    const id = requestId(r);
    const [check] = await receiver.waitFor((s) => s.name === 'ext_authz Check' && s.attributes['portcullis.request_id'] === id);
    const traceId = check!.traceId;
    // Everything of the exchange has arrived: Envoy's request span, ext_proc's, and their children.
    const spans = await receiver.waitFor(
      (s) => s.traceId === traceId,
      (f) => f.some((s) => s.name === 'ext_proc Process') && f.some((s) => s.name === 'audit record') && f.filter((s) => s.service === 'portcullis-edge').length >= 3,
    );
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const envoySpans = spans.filter((s) => s.service === 'portcullis-edge');
    const ingress = envoySpans.find((s) => s.kind === SERVER);
    expect(ingress, JSON.stringify(envoySpans.map((s) => s.name))).toBeDefined();

    // The Check: a server span whose parent is Envoy's span for the ext_authz call.
    expect(check!.service).toBe('portcullis');
    expect(check!.kind).toBe(SERVER);
    const checkParent = byId.get(check!.parentSpanId);
    expect(checkParent?.service).toBe('portcullis-edge');
    expect(check!.attributes).toMatchObject({
      'rpc.system.name': 'grpc',
      'rpc.method': 'envoy.service.auth.v3.Authorization/Check',
      'http.request.method': 'POST',
      'gen_ai.operation.name': 'execute_tool',
      'gen_ai.tool.name': 'search_docs',
      'mcp.method.name': 'tools/call',
      'mcp.protocol.version': VERSION,
      'jsonrpc.request.id': '41',
      'portcullis.decision': 'allow',
      'portcullis.tool': 'docs',
    });
    expect(check!.status.code).not.toBe(STATUS_ERROR);
    // One child span per stage, under the Check.
    const stages = spans.filter((s) => s.parentSpanId === check!.spanId).map((s) => s.name);
    expect(stages).toEqual(expect.arrayContaining(['ext_authz tool', 'ext_authz identity', 'ext_authz policy', 'ext_authz limits', 'ext_authz credentials']));

    // ext_proc: the stream's server span, parented on Envoy's span for the ext_proc stream.
    const streams = spans.filter((s) => s.name === 'ext_proc Process');
    expect(streams).toHaveLength(1);
    const stream = streams[0]!;
    expect(byId.get(stream.parentSpanId)?.service).toBe('portcullis-edge');
    expect(stream.attributes).toMatchObject({ 'gen_ai.tool.name': 'search_docs', 'mcp.method.name': 'tools/call', 'portcullis.decision': 'allow', 'http.response.status_code': 200 });
    const phases = spans.filter((s) => s.parentSpanId === stream.spanId).map((s) => s.name);
    expect(phases).toEqual(expect.arrayContaining(['ext_proc requestHeaders', 'ext_proc requestBody', 'ext_proc responseHeaders', 'ext_proc responseBody', 'audit record']));
    // DLP runs as a child of the phase that inspects the body.
    const dlp = spans.filter((s) => s.name === 'dlp response');
    expect(dlp.length).toBeGreaterThan(0);
    expect(byId.get(dlp[0]!.parentSpanId)?.name).toBe('ext_proc responseBody');

    // The audit record names the trace and the deciding span.
    const rec = await exchangeRecord(stack, id);
    expect(rec.trace_id).toBe(traceId);
    expect(rec.span_id).toBe(check!.spanId);
    // The tool receives the same trace (Envoy's router span as its parent).
    const tp = TRACEPARENT.exec(String(upstreamOf(stack, id).headers.traceparent));
    expect(tp?.[1]).toBe(traceId);

    // No attribute carries the token or the arguments.
    const everything = JSON.stringify(spans.filter((s) => s.service === 'portcullis'));
    expect(everything).not.toContain(viewer);
    expect(everything).not.toContain('vpn');
  });

  it('a denied call is an error span carrying the error code, and is still audited on the trace', async () => {
    const r = await mcp(stack, viewer, rpc(7, 'tools/call', { name: 'delete_doc', arguments: { doc_id: 'd1', tenant: 'acme' } }));
    expect(r.status).toBe(403);
    expect((r.json as Json).error).toBeDefined();
    const id = requestId(r);
    const [check] = await receiver.waitFor((s) => s.name === 'ext_authz Check' && s.attributes['portcullis.request_id'] === id);
    expect(check!.status).toEqual({ code: STATUS_ERROR, message: 'forbidden' });
    expect(check!.attributes).toMatchObject({ 'error.type': 'forbidden', 'portcullis.decision': 'deny', 'gen_ai.tool.name': 'delete_doc', 'mcp.method.name': 'tools/call' });
    expect(typeof check!.attributes['portcullis.rule']).toBe('string');
    const rec = await exchangeRecord(stack, id);
    expect(rec.trace_id).toBe(check!.traceId);
    expect(rec.span_id).toBe(check!.spanId);

    const anonymous = await mcp(stack, null, rpc(8, 'tools/list'));
    expect(anonymous.status).toBe(401);
    const [unauth] = await receiver.waitFor((s) => s.name === 'ext_authz Check' && s.attributes['portcullis.request_id'] === requestId(anonymous));
    expect(unauth!.status).toEqual({ code: STATUS_ERROR, message: 'unauthenticated' });
  });

  it("a caller's traceparent is never portcullis' parent: the Check's parent is Envoy's span, and the decision is the same", async () => {
    const r = await mcp(stack, viewer, rpc(42, 'tools/call', { name: 'search_docs', arguments: { query: 'wifi', tenant: 'acme' } }), {
      traceparent: CALLER_TRACEPARENT,
      tracestate: 'evil=1',
    });
    expect(r.status, r.text).toBe(200);
    const id = requestId(r);
    const [check] = await receiver.waitFor((s) => s.name === 'ext_authz Check' && s.attributes['portcullis.request_id'] === id);
    expect(check!.parentSpanId).not.toBe(CALLER_SPAN);
    // Envoy continued the agent's trace (its span is the agent's child); portcullis is Envoy's.
    expect(check!.traceId).toBe(CALLER_TRACE);
    const spans = await receiver.waitFor((s) => s.traceId === check!.traceId, (f) => f.some((s) => s.spanId === check!.parentSpanId));
    expect(spans.find((s) => s.spanId === check!.parentSpanId)?.service).toBe('portcullis-edge');
    expect(check!.attributes['portcullis.decision']).toBe('allow');
    // The caller's tracestate reaches neither the tool nor portcullis' spans.
    expect(upstreamOf(stack, id).headers.tracestate ?? '').not.toContain('evil');
  });

  it('a JSON-RPC batch names no single call on its spans, only how many it holds', async () => {
    const r = await mcp(stack, viewer, [rpc(1, 'tools/list'), rpc(2, 'tools/call', { name: 'search_docs', arguments: { query: 'vpn', tenant: 'acme' } })]);
    expect(r.status, r.text).toBe(200);
    const id = requestId(r);
    const [check] = await receiver.waitFor((s) => s.name === 'ext_authz Check' && s.attributes['portcullis.request_id'] === id);
    expect(check!.attributes['portcullis.mcp.batch_size']).toBe(2);
    for (const key of ['mcp.method.name', 'gen_ai.tool.name', 'gen_ai.operation.name', 'jsonrpc.request.id']) expect(check!.attributes[key], key).toBeUndefined();
    const [stream] = await receiver.waitFor((s) => s.name === 'ext_proc Process' && s.traceId === check!.traceId);
    expect(stream!.attributes['mcp.method.name']).toBeUndefined();
  });

  it('a route whose ext_proc starts at the response (GET weather) is traced too, and no query value reaches a span', async () => {
    const helpdesk = await token(stack, { agent: 'helpdesk', user: 'alice', tenant: 'acme', roles: ['support'] });
    const r = await sendRaw(stack, '/tools/weather/forecast?city=Reykjavik', { method: 'GET', bearer: helpdesk });
    expect(r.status, r.text).toBe(200);
    const id = requestId(r);
    const [check] = await receiver.waitFor((s) => s.name === 'ext_authz Check' && s.attributes['portcullis.request_id'] === id);
    expect(check!.attributes).toMatchObject({ 'http.request.method': 'GET', 'portcullis.tool': 'weather', 'portcullis.decision': 'allow' });
    const spans = await receiver.waitFor((s) => s.traceId === check!.traceId, (f) => f.some((s) => s.name === 'ext_proc Process') && f.some((s) => s.name === 'audit record'));
    const stream = spans.find((s) => s.name === 'ext_proc Process')!;
    expect(spans.find((s) => s.spanId === stream.parentSpanId)?.service).toBe('portcullis-edge');
    const phases = spans.filter((s) => s.parentSpanId === stream.spanId).map((s) => s.name);
    expect(phases).toContain('ext_proc responseHeaders');
    expect(phases).not.toContain('ext_proc requestHeaders');
    expect(JSON.stringify(spans.filter((s) => s.service === 'portcullis'))).not.toContain('Reykjavik');
    expect((await exchangeRecord(stack, id)).trace_id).toBe(check!.traceId);
  });

  it('a collector that is down fails no call (Envoy and portcullis drop their spans)', async () => {
    await receiver.stop();
    for (let i = 0; i < 5; i++) {
      const r = await mcp(stack, viewer, rpc(50 + i, 'tools/call', { name: 'search_docs', arguments: { query: 'printer', tenant: 'acme' } }));
      expect(r.status, r.text).toBe(200);
      expect((r.json as Json).result).toBeDefined();
    }
    // The lost spans are counted.
    let metrics = '';
    for (let i = 0; i < 100 && !/portcullis_tracing_spans_dropped_total\{reason="export_failed"\} [1-9]/.test(metrics); i++) {
      await sleep(200);
      metrics = await (await fetch(`${stack.adminUrl}/metrics`)).text();
    }
    expect(metrics).toMatch(/portcullis_tracing_spans_dropped_total\{reason="export_failed"\} [1-9]/);
  });
});

describe('tracing without Envoy tracing (portcullis starts the trace)', () => {
  let stack: Stack;
  const receiver = new Receiver();
  let viewer: string;

  beforeAll(async () => {
    const port = await freePort();
    await receiver.start(port);
    stack = await startStack({
      editConfig: tracingConfig(port),
      editEnvoy: (cfg) => {
        const hcm = (cfg.static_resources as Json).listeners[0].filter_chains[0].filters[0].typed_config as Json;
        delete hcm.tracing;
      },
    });
    viewer = await token(stack, { agent: 'reporter', user: 'vera', roles: ['viewer'] });
  }, 90_000);
  afterAll(async () => {
    await stack?.stop();
    await receiver.stop();
  });

  it('no traceparent: the Check is a root span, ext_proc joins it through the hand-off, the tool and the audit record get its context', async () => {
    const r = await mcp(stack, viewer, rpc(1, 'tools/call', { name: 'search_docs', arguments: { query: 'vpn', tenant: 'acme' } }));
    expect(r.status, r.text).toBe(200);
    const id = requestId(r);
    const [check] = await receiver.waitFor((s) => s.name === 'ext_authz Check' && s.attributes['portcullis.request_id'] === id);
    expect(check!.parentSpanId).toBe('');
    expect(check!.links).toEqual([]);
    const spans = await receiver.waitFor((s) => s.traceId === check!.traceId, (f) => f.some((s) => s.name === 'ext_proc Process'));
    expect(spans.every((s) => s.service === 'portcullis')).toBe(true);
    expect(spans.find((s) => s.name === 'ext_proc Process')!.parentSpanId).toBe(check!.spanId);
    const tp = TRACEPARENT.exec(String(upstreamOf(stack, id).headers.traceparent));
    expect(tp?.[1]).toBe(check!.traceId);
    expect(tp?.[2]).toBe(check!.spanId);
    const rec = await exchangeRecord(stack, id);
    expect(rec.trace_id).toBe(check!.traceId);
    expect(rec.span_id).toBe(check!.spanId);
  });

  it("a caller's traceparent and tracestate: only a link; the tool and the audit record get portcullis' trace, never the caller's", async () => {
    const r = await mcp(stack, viewer, rpc(2, 'tools/call', { name: 'search_docs', arguments: { query: 'vpn', tenant: 'acme' } }), {
      traceparent: CALLER_TRACEPARENT,
      tracestate: 'evil=1',
    });
    expect(r.status, r.text).toBe(200);
    const id = requestId(r);
    const [check] = await receiver.waitFor((s) => s.name === 'ext_authz Check' && s.attributes['portcullis.request_id'] === id);
    expect(check!.traceId).not.toBe(CALLER_TRACE);
    expect(check!.parentSpanId).toBe('');
    expect(check!.links).toEqual([{ traceId: CALLER_TRACE, spanId: CALLER_SPAN }]);
    const up = upstreamOf(stack, id).headers;
    expect(TRACEPARENT.exec(String(up.traceparent))?.[1]).toBe(check!.traceId);
    expect(up.tracestate).toBeUndefined();
    const rec = await exchangeRecord(stack, id);
    expect(rec.trace_id).toBe(check!.traceId);
  });

  it('a malformed caller traceparent changes nothing: a fresh trace, no link', async () => {
    for (const bad of ['00-00000000000000000000000000000000-b7ad6b7169203331-01', 'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'garbage']) {
      const r = await mcp(stack, viewer, rpc(3, 'tools/call', { name: 'search_docs', arguments: { query: 'vpn', tenant: 'acme' } }), { traceparent: bad });
      expect(r.status, r.text).toBe(200);
      const id = requestId(r);
      const [check] = await receiver.waitFor((s) => s.name === 'ext_authz Check' && s.attributes['portcullis.request_id'] === id);
      expect(check!.links).toEqual([]);
      expect(TRACEPARENT.exec(String(upstreamOf(stack, id).headers.traceparent))?.[1]).toBe(check!.traceId);
    }
  });
});
