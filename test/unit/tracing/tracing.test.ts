import { afterEach, describe, expect, it } from 'vitest';
import { trace } from '@opentelemetry/api';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import type { TracingConfig } from '../../../src/config/types.js';
import type { AuthzMetadata } from '../../../src/authz/check.js';
import { GatewayError } from '../../../src/errors.js';
import { registry } from '../../../src/metrics.js';
import { startTracing, tracer, type Tracing } from '../../../src/tracing/provider.js';
import { callerLink, parentFromMetadata, parentFromTraceparent, type HeaderSource } from '../../../src/tracing/propagation.js';
import { CheckTrace, traceStage } from '../../../src/tracing/check.js';
import { MAX_PHASE_SPANS, StreamTrace } from '../../../src/tracing/extproc.js';
import { childSpan } from '../../../src/tracing/scope.js';
import { spanIdFrom, traceIdFrom } from '../../../src/audit/record.js';

const ENVOY_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const ENVOY_SPAN = '00f067aa0ba902b7';
const ENVOY_TP = `00-${ENVOY_TRACE}-${ENVOY_SPAN}-01`;
const CALLER_TRACE = '0af7651916cd43dd8448eb211c80319c';
const CALLER_SPAN = 'b7ad6b7169203331';
const CALLER_TP = `00-${CALLER_TRACE}-${CALLER_SPAN}-01`;

function config(over: Partial<TracingConfig> = {}): TracingConfig {
  return { enabled: true, otlp_endpoint: 'http://127.0.0.1:1/v1/traces', sample_ratio: 1, service_name: 'portcullis', headers: {}, timeout_s: 1, max_queue_spans: 2048, ...over };
}

function metadata(values: Record<string, string | string[]>): HeaderSource {
  return (name) => {
    const v = values[name];
    return v === undefined ? [] : Array.isArray(v) ? v : [v];
  };
}

function meta(over: Partial<AuthzMetadata> = {}): AuthzMetadata {
  return {
    request_id: 'req-1', traceparent: null, method: 'POST', path: '/tools/docs/', tool: 'docs', agent: 'a', agent_version: null, user: 'u', tenant: 't',
    auth_methods: ['jwt'], roles: [], auth_error: null, forwarded_recorded: false, allowed: true, dry_run: false, rule: null, reason: null, policy_version: null,
    mcp_method: 'tools/call', mcp_tool: 'search_docs', mcp_prompt: null, mcp_resource: null, mcp_session: 'sess-secret', mcp_protocol_version: '2025-11-25',
    proven_by: [], jti: null, body_sha256: null, authz_ms: 1, mcp_decided_on: null, idempotency_key: null, idempotency_claim: null, fact_records: [], budget_records: [],
    ...over,
  };
}

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return Number(v?.value ?? 0);
}

let running: Tracing | null = null;
afterEach(async () => {
  await running?.shutdown();
  running = null;
});

/** Tracing that exports to memory; `spans()` flushes (shuts down) first. */
function inMemory(over: Partial<TracingConfig> = {}): { spans: () => Promise<ReadableSpan[]> } {
  // The in-memory exporter forgets its spans at shutdown: keep them here.
  const kept: ReadableSpan[] = [];
  const exporter: SpanExporter = {
    export: (spans, done) => {
      kept.push(...spans);
      done({ code: 0 });
    },
    shutdown: () => Promise.resolve(),
  };
  const t = startTracing(config(over), { exporter });
  running = t;
  return {
    spans: async () => {
      await t.shutdown();
      running = null;
      return kept;
    },
  };
}

describe('trace context sources', () => {
  it("takes Envoy's traceparent from the gRPC metadata, and refuses repeated, malformed and all-zero ones", () => {
    expect(trace.getSpanContext(parentFromMetadata(metadata({ traceparent: ENVOY_TP })))?.spanId).toBe(ENVOY_SPAN);
    expect(trace.getSpanContext(parentFromMetadata(metadata({ traceparent: [ENVOY_TP, CALLER_TP] })))).toBeUndefined();
    for (const bad of ['garbage', `00-${'0'.repeat(32)}-${ENVOY_SPAN}-01`, `00-${ENVOY_TRACE}-${'0'.repeat(16)}-01`, `ff-${ENVOY_TRACE}-${ENVOY_SPAN}-01`]) {
      expect(trace.getSpanContext(parentFromMetadata(metadata({ traceparent: bad }))), bad).toBeUndefined();
    }
  });

  it('never keeps a tracestate, not even from the metadata', () => {
    const ctx = parentFromMetadata(metadata({ traceparent: ENVOY_TP, tracestate: 'evil=1' }));
    expect(trace.getSpanContext(ctx)?.traceState).toBeUndefined();
  });

  it("turns a caller's traceparent into a link only when it is valid", () => {
    expect(callerLink(CALLER_TP)?.context).toMatchObject({ traceId: CALLER_TRACE, spanId: CALLER_SPAN });
    expect(callerLink('00-zz-yy-01')).toBeNull();
    expect(callerLink(undefined)).toBeNull();
  });
});

describe('the Check span', () => {
  it("is the child of Envoy's span, never of the caller's, and the tool gets its context without any tracestate", async () => {
    const mem = inMemory();
    const t = new CheckTrace(metadata({ traceparent: ENVOY_TP }), { traceparent: CALLER_TP, tracestate: 'evil=1' }, 'dec-1');
    await t.run(async () => {
      const end = traceStage('policy');
      await Promise.resolve();
      end();
    });
    const up = t.upstream();
    t.end(meta({ traceparent: t.traceparent }), null, 7);
    expect(traceIdFrom(t.traceparent)).toBe(ENVOY_TRACE);
    expect(up.set).toEqual([{ key: 'traceparent', value: t.traceparent }]);
    expect(up.remove).toEqual(['tracestate']);
    const spans = await mem.spans();
    const check = spans.find((s) => s.name === 'ext_authz Check')!;
    expect(check.parentSpanContext?.spanId).toBe(ENVOY_SPAN);
    expect(check.links).toHaveLength(0);
    expect(check.attributes).toMatchObject({ 'gen_ai.tool.name': 'search_docs', 'gen_ai.operation.name': 'execute_tool', 'mcp.method.name': 'tools/call', 'jsonrpc.request.id': '7', 'portcullis.decision_id': 'dec-1' });
    // The session id is a credential-like value: never an attribute.
    expect(JSON.stringify(check.attributes)).not.toContain('sess-secret');
    const stage = spans.find((s) => s.name === 'ext_authz policy')!;
    expect(stage.parentSpanContext?.spanId).toBe(check.spanContext().spanId);
  });

  it("starts a trace when Envoy sent none, linked to the caller's; a denial is an error span with the code", async () => {
    const mem = inMemory();
    const t = new CheckTrace(metadata({}), { traceparent: CALLER_TP }, 'dec-2');
    const error = new GatewayError('forbidden', 'no', { rule: 'policy.deny' });
    t.end(meta({ allowed: false, rule: 'policy.deny' }), error, null);
    const [check] = await mem.spans();
    expect(check!.parentSpanContext).toBeUndefined();
    expect(check!.spanContext().traceId).not.toBe(CALLER_TRACE);
    expect(check!.links.map((l) => l.context.spanId)).toEqual([CALLER_SPAN]);
    expect(check!.status).toEqual({ code: 2, message: 'forbidden' });
    expect(check!.attributes).toMatchObject({ 'error.type': 'forbidden', 'portcullis.decision': 'deny', 'portcullis.rule': 'policy.deny', 'http.response.status_code': 403 });
  });

  it('tracing off: nothing is exported, yet every Check has ids for the audit record and the tool', () => {
    running = startTracing(undefined);
    const a = new CheckTrace(null, {}, 'x');
    const b = new CheckTrace(metadata({ traceparent: ENVOY_TP }), {}, 'y');
    expect(a.span.isRecording()).toBe(false);
    expect(traceIdFrom(a.traceparent)).toMatch(/^[0-9a-f]{32}$/);
    expect(spanIdFrom(a.traceparent)).toMatch(/^[0-9a-f]{16}$/);
    expect(traceIdFrom(b.traceparent)).toBe(ENVOY_TRACE);
    expect(traceIdFrom(a.traceparent)).not.toBe(traceIdFrom(new CheckTrace(null, {}, 'z').traceparent));
  });

  it("follows a parent's sampling decision and samples new traces by sample_ratio", async () => {
    const mem = inMemory({ sample_ratio: 0 });
    new CheckTrace(metadata({}), {}, 'new').end(meta(), null, null);
    new CheckTrace(metadata({ traceparent: ENVOY_TP }), {}, 'sampled-parent').end(meta(), null, null);
    new CheckTrace(metadata({ traceparent: ENVOY_TP.replace(/01$/, '00') }), {}, 'unsampled-parent').end(meta(), null, null);
    const ids = (await mem.spans()).map((s) => s.attributes['portcullis.decision_id']);
    expect(ids).toEqual(['sampled-parent']);
  });
});

describe('the ext_proc stream spans', () => {
  it("without Envoy's context, joins the Check's trace from the hand-off, back-dating the stream to its first message", async () => {
    const mem = inMemory();
    const checkTp = `00-${'ab'.repeat(16)}-${'cd'.repeat(8)}-01`;
    const s = new StreamTrace(metadata({}));
    const first = s.begin('requestHeaders');
    await s.run(first, async () => childSpan('not traced before the stream span exists')());
    s.end(first, meta({ traceparent: checkTp }), null);
    const body = s.begin('responseBody');
    await s.run(body, async () => childSpan('dlp response')('blocked_content'));
    s.end(body, meta({ traceparent: checkTp }), new GatewayError('blocked_content', 'x', { rule: 'dlp.response' }));
    s.audit(() => undefined);
    s.finish(meta({ traceparent: checkTp }), new GatewayError('blocked_content', 'x', { rule: 'dlp.response' }), 403, 3);
    const spans = await mem.spans();
    const stream = spans.find((x) => x.name === 'ext_proc Process')!;
    expect(stream.spanContext().traceId).toBe('ab'.repeat(16));
    expect(stream.parentSpanContext?.spanId).toBe('cd'.repeat(8));
    const names = spans.filter((x) => x.parentSpanContext?.spanId === stream.spanContext().spanId).map((x) => x.name);
    expect(names.sort()).toEqual(['audit record', 'ext_proc requestHeaders', 'ext_proc responseBody']);
    expect(spans.find((x) => x.name === 'ext_proc requestHeaders')!.startTime).toEqual(stream.startTime);
    expect(spans.find((x) => x.name === 'dlp response')!.status.code).toBe(2);
    expect(stream.status).toEqual({ code: 2, message: 'blocked_content' });
    expect(stream.attributes).toMatchObject({ 'portcullis.rule': 'dlp.response', 'http.response.status_code': 403, 'jsonrpc.request.id': '3' });
  });

  it('a long event stream records a bounded number of phase spans and counts the rest', async () => {
    const mem = inMemory();
    const s = new StreamTrace(metadata({ traceparent: ENVOY_TP }));
    for (let i = 0; i < MAX_PHASE_SPANS + 100; i++) {
      const p = s.begin('responseBody');
      await s.run(p, async () => childSpan('dlp response')());
      s.end(p, meta(), null);
    }
    s.finish(meta(), null, 200, null);
    const spans = await mem.spans();
    expect(spans.filter((x) => x.name === 'ext_proc responseBody')).toHaveLength(MAX_PHASE_SPANS);
    expect(spans.filter((x) => x.name === 'dlp response')).toHaveLength(MAX_PHASE_SPANS);
    expect(spans.find((x) => x.name === 'ext_proc Process')!.attributes['portcullis.phases_not_traced']).toBe(100);
  });

  it('a hand-off traceparent is only read from the signed decision; a missing one starts a new trace', () => {
    expect(trace.getSpanContext(parentFromTraceparent(null))).toBeUndefined();
    expect(trace.getSpanContext(parentFromTraceparent(ENVOY_TP))?.traceId).toBe(ENVOY_TRACE);
  });
});

describe('export', () => {
  it('a collector that never answers costs a span nothing but a counted drop once the queue is full', async () => {
    const stalled: SpanExporter = { export: () => undefined, shutdown: () => Promise.resolve() };
    const before = await metric('portcullis_tracing_spans_dropped_total', { reason: 'queue_full' });
    running = startTracing(config({ max_queue_spans: 16 }), { exporter: stalled });
    for (let i = 0; i < 1000; i++) tracer().startSpan('s').end();
    const after = await metric('portcullis_tracing_spans_dropped_total', { reason: 'queue_full' });
    // At most one queue's worth (plus one batch handed to the stalled exporter) was kept.
    expect(after - before).toBeGreaterThanOrEqual(1000 - 32);
  });

  it('a collector that refuses counts the lost spans', async () => {
    const refusing: SpanExporter = { export: (spans, done) => done({ code: 1, error: new Error('refused') }), shutdown: () => Promise.resolve() };
    const before = await metric('portcullis_tracing_spans_dropped_total', { reason: 'export_failed' });
    const t = startTracing(config(), { exporter: refusing });
    for (let i = 0; i < 5; i++) tracer().startSpan('s').end();
    await t.shutdown();
    expect((await metric('portcullis_tracing_spans_dropped_total', { reason: 'export_failed' })) - before).toBe(5);
  });
});
