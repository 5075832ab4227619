import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { status as grpcStatus } from '@grpc/grpc-js';
import { loadConfig } from '../../../src/config/load.js';
import type { GatewayConfig, ToolConfig } from '../../../src/config/types.js';
import { ToolRegistry } from '../../../src/tools/registry.js';
import { compileCatalog, type Scanner } from '../../../src/dlp/index.js';
import { compileInjectionRules } from '../../../src/inspect/injection.js';
import { compileToolSchemas } from '../../../src/inspect/schema.js';
import { AuditLogger, type AuditSink } from '../../../src/audit/sinks.js';
import type { AuditForwardedRecord, AuditLine, AuditRecord } from '../../../src/audit/record.js';
import { ExtprocService } from '../../../src/extproc/service.js';
import { compileResponses, type ExtprocDeps } from '../../../src/extproc/deps.js';
import { MemoryBudget } from '../../../src/extproc/response/budget.js';
import { CredentialInjector } from '../../../src/credentials/inject.js';
import { SecretStore } from '../../../src/credentials/secrets.js';
import { DlpAlerter } from '../../../src/extproc/alerts.js';
import type { ProcessingRequest, ProcessingResponse } from '../../../src/extproc/proto.js';
import { AUTHZ_METADATA_NAMESPACE, HandoffKey, handoffStruct, sealHandoff } from '../../../src/authz/handoff.js';
import type { AuthzMetadata } from '../../../src/authz/check.js';
import { repoPath } from '../../helpers/paths.js';
import { PolicyEngine } from '../../../src/policy/engine.js';

/**
 * The ext_proc stream loop driven without Envoy: a fake duplex call receives the messages Envoy
 * would send; the test reads what the service wrote back, whether it ended or failed the
 * stream, and the audit records it emitted.
 */

const AWS_KEY = 'AKIAIOSFODNN7EXAMPLF';
const demo = loadConfig(repoPath('scripts', 'demo', 'portcullis.yaml'));
/** The hand-off key shared by the Check that signs and the ext_proc under test. */
const KEY = new HandoffKey(() => 'unit-test-handoff-key-0123456789abcdef');

/** Dynamic metadata as Envoy forwards it: the hand-off Check signed. */
function forwarded(m: AuthzMetadata): NonNullable<ProcessingRequest['metadataContext']> {
  return { filterMetadata: { [AUTHZ_METADATA_NAMESPACE]: handoffStruct(sealHandoff(m, KEY)) } };
}

/** Audit sink that keeps records in memory. */
class MemorySink implements AuditSink {
  /** Completion records (one per exchange). */
  readonly records: AuditRecord[] = [];
  /** Forwarded records, written before a request is released to its tool. */
  readonly forwarded: AuditForwardedRecord[] = [];
  /** Every line in order, by type. */
  readonly order: string[] = [];
  write(r: AuditLine): void {
    this.order.push(r.record_type);
    if (r.record_type === 'forwarded') this.forwarded.push(r);
    else if (r.record_type === 'exchange') this.records.push(r);
  }
  async close(): Promise<void> {}
}

/** Lets the per-stream queue answer what was delivered (phases may await). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

/** Stand-in for a gRPC server duplex stream: Envoy's side is `send`/`finish`/`cancel`. */
class FakeCall extends EventEmitter {
  readonly written: ProcessingResponse[] = [];
  ended = false;
  destroyed: (Error & { code?: number }) | null = null;
  /** Error the service failed the call with (grpc-js turns it into the call's status). */
  failed: (Error & { code?: number }) | null = null;
  constructor() {
    super();
    this.on('error', (err: Error) => (this.failed = err));
  }
  write(r: ProcessingResponse): boolean {
    if (this.ended || this.destroyed || this.failed) throw new Error('write after the stream was closed');
    this.written.push(r);
    return true;
  }
  end(): void {
    this.ended = true;
  }
  destroy(err?: Error): this {
    this.destroyed = err ?? new Error('destroyed');
    return this;
  }
  /** Delivers messages as Envoy would and waits until the service has answered them. */
  async send(...msgs: ProcessingRequest[]): Promise<this> {
    for (const m of msgs) this.emit('data', m);
    await settle();
    return this;
  }
  async finish(): Promise<this> {
    this.emit('end');
    await settle();
    return this;
  }
}

function withTool(config: GatewayConfig, name: string, edit: (t: ToolConfig) => ToolConfig): GatewayConfig {
  return { ...config, tools: config.tools.map((t) => (t.name === name ? edit(t) : t)) };
}

function setup(opts: { config?: GatewayConfig; scanner?: Scanner; budget?: number; sink?: MemorySink } = {}): { service: ExtprocService; sink: MemorySink } {
  const config = opts.config ?? demo;
  const sink = opts.sink ?? new MemorySink();
  const scanner = opts.scanner ?? compileCatalog(config.dlp);
  const deps: ExtprocDeps = {
    config,
    tools: new ToolRegistry(config.tools),
    scanner,
    injection: compileInjectionRules(),
    schemas: compileToolSchemas(config.tools, config.base_dir),
    responses: compileResponses(config, scanner),
    credentials: new CredentialInjector(config.tools, new SecretStore(config.base_dir)),
    budget: new MemoryBudget(opts.budget ?? config.inspect.response_memory_budget_bytes),
    audit: new AuditLogger([sink], config.audit.payload),
    alerter: new DlpAlerter(config.alerting.dlp_threshold, config.alerting.window_s),
    handoff: KEY,
    // Never loaded: a decision ext_proc would have to make itself denies (fail closed).
    policy: new PolicyEngine({ bundlePath: config.policy.bundle, decision: config.policy.decision, watch: false }),
  };
  return { service: new ExtprocService(deps), sink };
}

function open(service: ExtprocService): FakeCall {
  const call = new FakeCall();
  service.process(call as unknown as Parameters<ExtprocService['process']>[0]);
  return call;
}

function meta(tool: string, over: Partial<AuthzMetadata> = {}): AuthzMetadata {
  return {
    request_id: 'req-1',
    traceparent: null,
    method: 'GET',
    path: '/tools/weather/forecast?city=Paris',
    tool,
    agent: 'helpdesk',
    agent_version: null,
    user: 'alice',
    tenant: 'acme',
    auth_methods: ['jwt'],
    roles: ['support'],
    auth_error: null,
    forwarded_recorded: false,
    allowed: true,
    dry_run: false,
    rule: 'allow.role',
    reason: null,
    policy_version: 'sha256:test',
    mcp_method: null,
    mcp_tool: null,
    mcp_prompt: null,
    mcp_resource: null,
    mcp_session: null,
    mcp_protocol_version: null,
    proven_by: [],
    jti: null,
    body_sha256: null,
    mcp_decided_on: null,
    idempotency_key: null,
    idempotency_claim: null,
    fact_records: [],
    budget_records: [],
    authz_ms: 1,
    ...over,
  };
}

function headers(map: Record<string, string>): { headers: { headers: { key: string; rawValue: Buffer }[] } } {
  return { headers: { headers: Object.entries(map).map(([key, v]) => ({ key, rawValue: Buffer.from(v) })) } };
}

function reqHeaders(tool: string, h: Record<string, string>, endOfStream: boolean, m: AuthzMetadata | null = meta(tool)): ProcessingRequest {
  return {
    request: 'requestHeaders',
    requestHeaders: { ...headers({ 'x-request-id': 'req-1', ...h }), endOfStream },
    ...(m ? { metadataContext: forwarded(m) } : {}),
  };
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function reqBody(body: string): ProcessingRequest {
  return { request: 'requestBody', requestBody: { body: Buffer.from(body), endOfStream: true } };
}

function respHeaders(h: Record<string, string>, endOfStream = false, m: AuthzMetadata | null = null): ProcessingRequest {
  return {
    request: 'responseHeaders',
    responseHeaders: { ...headers(h), endOfStream },
    ...(m ? { metadataContext: forwarded(m) } : {}),
  };
}

function respBody(body: string, endOfStream: boolean): ProcessingRequest {
  return { request: 'responseBody', responseBody: { body: Buffer.from(body), endOfStream } };
}

const GET_WEATHER = { ':method': 'GET', ':path': '/tools/weather/forecast?city=Paris' };

/** Which phase each reply answers, in order. */
function kinds(call: FakeCall): string[] {
  return call.written.map((r) => Object.keys(r).filter((k) => k !== 'modeOverride').join('+'));
}

function bodyOf(r: ProcessingResponse | undefined): string {
  const m = (r?.responseBody ?? r?.requestBody)?.response.bodyMutation;
  return m && 'body' in m ? m.body.toString('utf8') : '';
}

describe('ExtprocService stream loop', () => {
  it('answers every message in arrival order and writes one audit record when the response ends', async () => {
    const { service, sink } = setup();
    const call = await open(service).send(
      reqHeaders('weather', GET_WEATHER, true),
      respHeaders({ ':status': '200', 'content-type': 'application/json', 'content-length': '100' }),
      respBody(JSON.stringify({ key: AWS_KEY }), true),
    );
    expect(kinds(call)).toEqual(['requestHeaders', 'responseHeaders', 'responseBody']);
    expect(sink.records).toHaveLength(1);
    await call.finish();
    expect(call.ended).toBe(true);
    expect(call.failed).toBeNull();
    expect(sink.records).toHaveLength(1);
    const rec = sink.records[0]!;
    expect(rec).toMatchObject({ request_id: 'req-1', tool: 'weather', user_id: 'alice', upstream_status: 200, response_status: 200, error: null });
    expect(rec.dlp.response).toEqual({ action: 'redacted', rules: ['aws.access_key_id'], count: 1 });
  });

  it('asks for an identity-encoded upstream response and no request body on a bodiless GET', async () => {
    const { service } = setup();
    const call = await open(service).send(reqHeaders('weather', GET_WEATHER, true));
    const r = call.written[0]!;
    expect(r.requestHeaders?.response.headerMutation?.setHeaders?.map((h) => [h.header.key, h.header.rawValue.toString()])).toEqual([['accept-encoding', 'identity']]);
    expect(r.modeOverride).toMatchObject({ requestBodyMode: 'NONE', responseBodyMode: 'NONE' });
  });

  it('asks for the request body (BUFFERED) when the tool validates it', async () => {
    const { service } = setup();
    const call = await open(service).send(reqHeaders('tickets', { ':method': 'POST', ':path': '/tools/tickets/tenants/acme/tickets' }, false));
    expect(call.written[0]!.modeOverride?.requestBodyMode).toBe('BUFFERED');
  });

  it('chooses BUFFERED for bodies of every type, STREAMED for SSE, and NONE only when the tool inspects nothing or passes binary', async () => {
    const mode = async (service: ExtprocService, ct: string): Promise<ProcessingResponse> => {
      const call = await open(service).send(reqHeaders('weather', GET_WEATHER, true), respHeaders({ ':status': '200', 'content-type': ct, 'content-length': '10' }));
      return call.written[1]!;
    };
    const { service } = setup();
    expect((await mode(service, 'application/json')).modeOverride?.responseBodyMode).toBe('BUFFERED');
    expect((await mode(service, 'text/plain; charset=utf-8')).modeOverride?.responseBodyMode).toBe('BUFFERED');
    const sse = await mode(service, 'text/event-stream');
    expect(sse.modeOverride?.responseBodyMode).toBe('STREAMED');
    expect(sse.responseHeaders?.response.headerMutation?.removeHeaders).toEqual(['content-length']);
    // A binary body is inspected byte for byte unless the tool says otherwise.
    expect((await mode(service, 'image/png')).modeOverride?.responseBodyMode).toBe('BUFFERED');
    expect((await mode(service, 'application/octet-stream')).modeOverride?.responseBodyMode).toBe('BUFFERED');
    const pass = setup({ config: withTool(demo, 'weather', (t) => ({ ...t, response: { ...t.response, binary: 'pass' } })) });
    expect((await mode(pass.service, 'application/octet-stream')).modeOverride?.responseBodyMode).toBe('NONE');
    expect((await mode(pass.service, 'application/json')).modeOverride?.responseBodyMode).toBe('BUFFERED');

    // Without DLP the injected credential is still scrubbed: the body is still read.
    process.env.PORTCULLIS_UNIT_WEATHER_KEY = 'unit-weather-key-0123456789';
    const credentials = [{ header: 'x-api-key', format: '{secret}', secret: { env: 'PORTCULLIS_UNIT_WEATHER_KEY' } }];
    const noDlp = setup({ config: withTool(demo, 'weather', (t) => ({ ...t, credentials, response: { ...t.response, dlp: false } })) });
    expect((await mode(noDlp.service, 'application/json')).modeOverride?.responseBodyMode).toBe('BUFFERED');
    const nothing = setup({ config: withTool(demo, 'weather', (t) => ({ ...t, credentials: [], response: { ...t.response, dlp: false } })) });
    expect((await mode(nothing.service, 'application/json')).modeOverride?.responseBodyMode).toBe('NONE');
    expect((await mode(nothing.service, 'text/event-stream')).modeOverride?.responseBodyMode).toBe('NONE');
  });

  it('holds a JSON body of unknown or too large length in portcullis (STREAMED, answered empty until the end)', async () => {
    const { service, sink } = setup();
    for (const h of [{}, { 'content-length': String(2 * 1024 * 1024) }] as Record<string, string>[]) {
      const call = await open(service).send(reqHeaders('weather', GET_WEATHER, true), respHeaders({ ':status': '200', 'content-type': 'application/json', ...h }));
      expect(call.written[1]!.modeOverride?.responseBodyMode).toBe('STREAMED');
      expect(call.written[1]!.responseHeaders?.response.headerMutation?.removeHeaders).toEqual(['content-length']);
      await call.send(respBody('{"a":"key ', false), respBody(`${AWS_KEY}"}`, true));
      expect(call.written.slice(2).map(bodyOf)).toEqual(['', '{"a":"key [REDACTED:aws.access_key_id]"}']);
    }
    expect(sink.records).toHaveLength(2);
  });

  it('streams SSE chunk by chunk: releases each finished event at once and never half a secret', async () => {
    const { service, sink } = setup();
    const call = await open(service).send(
      reqHeaders('weather', GET_WEATHER, true),
      respHeaders({ ':status': '200', 'content-type': 'text/event-stream' }),
      respBody('data: first\n\n', false),
      respBody('data: key AKIAIOSFOD', false),
      respBody('NN7EXAMPLF more\n', false),
      respBody('\n', true),
    );
    expect(kinds(call)).toEqual(['requestHeaders', 'responseHeaders', 'responseBody', 'responseBody', 'responseBody', 'responseBody']);
    const bodies = call.written.slice(2).map(bodyOf);
    expect(bodies[0]).toBe('data: first\n\n');
    for (const b of bodies) expect(b).not.toMatch(/AKIA|IOSFOD|NN7|EXAMPLF/);
    expect(bodies.join('')).toBe('data: first\n\ndata: key [REDACTED:aws.access_key_id] more\n\n');
    // An event leaves whole, with the chunk that brings its blank line (split across the last two).
    expect(bodies.slice(1, 3)).toEqual(['', '']);
    expect(bodies[3]).toBe('data: key [REDACTED:aws.access_key_id] more\n\n');
    expect(sink.records).toHaveLength(1);
    expect(sink.records[0]!.dlp.response).toEqual({ action: 'redacted', rules: ['aws.access_key_id'], count: 1 });
  });

  it('keeps a multi-byte character split across chunks intact', async () => {
    const { service } = setup();
    const euro = Buffer.from('data: 5 €\n\n');
    const cut = euro.indexOf(0xe2) + 1;
    const call = await open(service).send(reqHeaders('weather', GET_WEATHER, true), respHeaders({ ':status': '200', 'content-type': 'text/event-stream' }));
    await call.send({ request: 'responseBody', responseBody: { body: euro.subarray(0, cut), endOfStream: false } });
    await call.send({ request: 'responseBody', responseBody: { body: euro.subarray(cut), endOfStream: true } });
    expect(call.written.slice(2).map(bodyOf).join('')).toBe('data: 5 €\n\n');
  });

  it('answers a schema-invalid body with an immediate 400 and ignores what follows', async () => {
    const { service, sink } = setup();
    const ticket = JSON.stringify({ title: 'x', priority: 'urgent' });
    const call = await open(service).send(
      reqHeaders('tickets', { ':method': 'POST', ':path': '/tools/tickets/tenants/acme/tickets' }, false, meta('tickets', { body_sha256: sha256(ticket) })),
      reqBody(ticket),
      respHeaders({ ':status': '201', 'content-type': 'application/json' }),
    );
    expect(kinds(call)).toEqual(['requestHeaders', 'immediateResponse']);
    const imm = call.written[1]!.immediateResponse!;
    expect(imm.status.code).toBe(400);
    expect(JSON.parse(imm.body!.toString())).toMatchObject({ error: { type: 'invalid_request', rule: 'inspect.schema', request_id: 'req-1' } });
    await call.finish();
    expect(sink.records).toHaveLength(1);
    expect(sink.records[0]).toMatchObject({ response_status: 400, upstream_status: null, error: { type: 'invalid_request', rule: 'inspect.schema' } });
  });

  it('refuses to forward a JSON body other than the one the Check decided on (or when the Check saw none)', async () => {
    const ticket = JSON.stringify({ title: 'x', priority: 'low' });
    for (const decided of [sha256(JSON.stringify({ title: 'y', priority: 'low' })), null]) {
      const { service } = setup();
      const call = await open(service).send(
        reqHeaders('tickets', { ':method': 'POST', ':path': '/tools/tickets/tenants/acme/tickets' }, false, meta('tickets', { body_sha256: decided })),
        reqBody(ticket),
      );
      const imm = call.written[1]!.immediateResponse!;
      expect(imm.status.code).toBe(400);
      expect(JSON.parse(imm.body!.toString())).toMatchObject({ error: { type: 'invalid_request', rule: 'inspect.body_mismatch' } });
    }
  });

  it('answers an MCP batch error with one JSON-RPC error per call id', async () => {
    const { service } = setup();
    const batch = [
      { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'a', tenant: 'acme' } } },
      { jsonrpc: '2.0', method: 'notifications/progress' },
      { jsonrpc: '2.0', id: 'two', method: 'tools/call', params: { name: 'search_docs', arguments: { tenant: 'acme' } } },
    ];
    const text = JSON.stringify(batch);
    const call = await open(service).send(reqHeaders('docs', { ':method': 'POST', ':path': '/tools/docs/' }, false, meta('docs', { body_sha256: sha256(text) })), reqBody(text));
    const body = JSON.parse(call.written[1]!.immediateResponse!.body!.toString()) as { id: unknown; error: { code: number; message: string } }[];
    expect(body.map((b) => b.id)).toEqual([1, 'two']);
    expect(body.every((b) => b.error.code === -32602)).toBe(true);
    expect(body[0]!.error.message).toMatch(/^not executed: call "two" of the same batch was rejected/);
    expect(body[1]!.error.message).toMatch(/^arguments of MCP tool "search_docs"/);
  });

  it('answers a blocked buffered response with an immediate 403 (the response has not started)', async () => {
    const { service, sink } = setup();
    const call = await open(service).send(
      reqHeaders('weather', GET_WEATHER, true),
      respHeaders({ ':status': '200', 'content-type': 'application/json', 'content-length': '100' }),
      respBody(JSON.stringify({ k: '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----' }), true),
    );
    expect(kinds(call)).toEqual(['requestHeaders', 'responseHeaders', 'immediateResponse']);
    expect(call.written[2]!.immediateResponse!.status.code).toBe(403);
    expect(call.written[2]!.immediateResponse!.body!.toString()).not.toContain('MIIEvQ');
    expect(call.failed).toBeNull();
    expect(sink.records).toHaveLength(1);
    expect(sink.records[0]).toMatchObject({ upstream_status: 200, response_status: 403, error: { type: 'blocked_content', rule: 'dlp.response' } });
  });

  it('answers a blocked held body with an immediate 403 too (nothing of it was released)', async () => {
    const { service, sink } = setup();
    const call = await open(service).send(reqHeaders('weather', GET_WEATHER, true), respHeaders({ ':status': '200', 'content-type': 'application/json' }));
    await call.send(respBody('{"k":"-----BEGIN PRIVATE KEY-----\\nMIIEvQ', false), respBody('IBADANBg\\n-----END PRIVATE KEY-----"}', true));
    expect(kinds(call)).toEqual(['requestHeaders', 'responseHeaders', 'responseBody', 'immediateResponse']);
    expect(bodyOf(call.written[2])).toBe('');
    expect(call.written[3]!.immediateResponse!.status.code).toBe(403);
    expect(call.failed).toBeNull();
    expect(sink.records).toHaveLength(1);
  });

  it('fails the gRPC stream (so Envoy resets the downstream) on an error after a streamed response started', async () => {
    const failing: Scanner = {
      ruleCount: 1,
      scan: (text) => {
        if (text.includes('explode')) throw new Error('scanner exploded');
        return [];
      },
    };
    const { service, sink } = setup({ scanner: failing });
    const call = await open(service).send(reqHeaders('weather', GET_WEATHER, true), respHeaders({ ':status': '200', 'content-type': 'text/event-stream' }), respBody('data: explode\n\n', false));
    expect(kinds(call)).toEqual(['requestHeaders', 'responseHeaders']);
    expect(call.failed).not.toBeNull();
    expect(call.failed!.code).toBe(grpcStatus.INTERNAL);
    expect(call.destroyed).toBeNull();
    // Nothing more is answered on a failed stream.
    await call.send(respBody(`data: ${AWS_KEY}\n\n`, true));
    expect(call.written).toHaveLength(2);
    expect(sink.records).toHaveLength(1);
    expect(sink.records[0]!.error).toEqual({ type: 'internal', rule: null });
  });

  it('denies with an immediate 503 when the ext_authz context is missing (fail closed)', async () => {
    const { service, sink } = setup();
    const call = await open(service).send(reqHeaders('weather', GET_WEATHER, false, null));
    expect(kinds(call)).toEqual(['immediateResponse']);
    const imm = call.written[0]!.immediateResponse!;
    expect(imm.status.code).toBe(503);
    expect(JSON.parse(imm.body!.toString())).toMatchObject({ error: { type: 'unavailable', rule: 'handoff.absent' } });
    expect(sink.records).toHaveLength(1);
    expect(sink.records[0]).toMatchObject({ agent_id: null, user_id: null, tool: null, decision: { allowed: false, rule: 'handoff.absent' } });
  });

  it('passes a local reply of an earlier filter through and leaves its audit record to ext_authz', async () => {
    const { service, sink } = setup();
    const call = await open(service).send(respHeaders({ ':status': '401', 'content-type': 'application/json' }));
    expect(kinds(call)).toEqual(['responseHeaders']);
    expect(call.written[0]!.responseHeaders!.response.status).toBe('CONTINUE');
    await call.finish();
    expect(sink.records).toHaveLength(0);
  });

  it('starts at the response on routes that skip request headers, joining the forwarded decision', async () => {
    const { service, sink } = setup();
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const m = meta('weather', { request_id: 'req-9', traceparent, method: 'GET', path: '/tools/weather/leak?city=Oslo' });
    const call = await open(service).send(
      respHeaders({ ':status': '200', 'content-type': 'application/json', 'content-length': '40' }, false, m),
      respBody(JSON.stringify({ key: AWS_KEY }), true),
    );
    expect(kinds(call)).toEqual(['responseHeaders', 'responseBody']);
    expect(call.written[0]!.modeOverride?.responseBodyMode).toBe('BUFFERED');
    expect(bodyOf(call.written[1])).toBe(JSON.stringify({ key: '[REDACTED:aws.access_key_id]' }));
    expect(sink.records).toHaveLength(1);
    expect(sink.records[0]).toMatchObject({
      request_id: 'req-9',
      trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
      method: 'GET',
      path: '/tools/weather/leak?city=[redacted]',
      tool: 'weather',
      upstream_status: 200,
    });
  });

  it('passes a denial reply through untouched when the forwarded decision says denied', async () => {
    const { service, sink } = setup();
    const call = await open(service).send(respHeaders({ ':status': '403', 'content-type': 'application/json' }, false, meta('tickets', { allowed: false })));
    expect(kinds(call)).toEqual(['responseHeaders']);
    expect(call.written[0]!.modeOverride).toBeUndefined();
    await call.finish();
    expect(sink.records).toHaveLength(0);
  });

  it('writes one record when Envoy cancels the stream mid-exchange', async () => {
    const { service, sink } = setup();
    const call = await open(service).send(reqHeaders('weather', GET_WEATHER, true), respHeaders({ ':status': '200', 'content-type': 'text/event-stream' }), respBody('data: a', false));
    call.emit('error', new Error('cancelled'));
    await call.finish();
    expect(sink.records).toHaveLength(1);
    expect(sink.records[0]).toMatchObject({ upstream_status: 200, error: { type: 'unavailable', rule: 'extproc.cancelled' } });
  });
});

describe('ExtprocService: the ext_authz hand-off', () => {
  /** Request headers carrying a hand-off struct built by `edit` from a correctly sealed one. */
  function tampered(edit: (fields: Record<string, unknown>) => void, m: AuthzMetadata = meta('weather')): ProcessingRequest {
    const struct = handoffStruct(sealHandoff(m, KEY)) as unknown as { fields: { portcullis: { structValue: { fields: Record<string, unknown> } } } };
    edit(struct.fields.portcullis.structValue.fields);
    return {
      request: 'requestHeaders',
      requestHeaders: { ...headers({ 'x-request-id': 'req-1', ...GET_WEATHER }), endOfStream: true },
      metadataContext: { filterMetadata: { [AUTHZ_METADATA_NAMESPACE]: struct } },
    };
  }

  async function deniedWithRecord(msg: ProcessingRequest, rule: string): Promise<void> {
    const { service, sink } = setup();
    const call = await open(service).send(msg);
    expect(kinds(call)).toEqual(['immediateResponse']);
    expect(call.written[0]!.immediateResponse!.status.code).toBe(503);
    await call.finish();
    expect(sink.records).toHaveLength(1);
    // The record claims nothing from the unverified metadata and says there was no decision.
    expect(sink.records[0]).toMatchObject({ agent_id: null, user_id: null, tenant_id: null, tool: null, decision: { allowed: false, rule }, error: { type: 'internal', rule } });
  }

  it('accepts a hand-off sealed with the shared key', async () => {
    const { service, sink } = setup();
    const call = await open(service).send(reqHeaders('weather', GET_WEATHER, true));
    expect(kinds(call)).toEqual(['requestHeaders']);
    expect(sink.records).toHaveLength(0);
  });

  it('denies an unsigned hand-off (the struct without iat and sig) and records no decision', async () => {
    await deniedWithRecord(tampered((f) => {
      delete f.sig;
      delete f.iat;
    }), 'handoff.unsigned');
  });

  it('denies a hand-off whose signed field was changed (another agent)', async () => {
    await deniedWithRecord(tampered((f) => (f.agent = { stringValue: 'admin' })), 'handoff.forged');
  });

  it('denies a hand-off signed with another key', async () => {
    const other = new HandoffKey(() => 'another-key-that-is-long-enough-0123456789');
    const struct = handoffStruct(sealHandoff(meta('weather'), other));
    await deniedWithRecord(
      { request: 'requestHeaders', requestHeaders: { ...headers({ 'x-request-id': 'req-1', ...GET_WEATHER }), endOfStream: true }, metadataContext: { filterMetadata: { [AUTHZ_METADATA_NAMESPACE]: struct } } },
      'handoff.forged',
    );
  });

  it('denies wrongly typed fields without throwing: path as a number, allowed as a string, a list of numbers', async () => {
    await deniedWithRecord(tampered((f) => (f.path = { numberValue: 42 })), 'handoff.malformed');
    await deniedWithRecord(tampered((f) => (f.allowed = { stringValue: 'true' })), 'handoff.malformed');
    await deniedWithRecord(tampered((f) => (f.auth_methods = { listValue: { values: [{ numberValue: 1 }] } })), 'handoff.malformed');
    await deniedWithRecord(tampered((f) => (f.sig = { numberValue: 1 })), 'handoff.malformed');
  });

  it('denies a stale hand-off (replayed long after it was signed)', async () => {
    const struct = handoffStruct(sealHandoff(meta('weather'), KEY, Date.now() - 60 * 60 * 1000));
    await deniedWithRecord(
      { request: 'requestHeaders', requestHeaders: { ...headers({ 'x-request-id': 'req-1', ...GET_WEATHER }), endOfStream: true }, metadataContext: { filterMetadata: { [AUTHZ_METADATA_NAMESPACE]: struct } } },
      'handoff.expired',
    );
  });

  it("denies a valid hand-off of another request (Envoy's request id differs)", async () => {
    await deniedWithRecord(reqHeaders('weather', { ...GET_WEATHER, 'x-request-id': 'req-2' }, true), 'handoff.other_request');
  });

  it('denies a body or response body before any verified decision, and messages out of order', async () => {
    await deniedWithRecord(reqBody('{}'), 'handoff.absent');
    await deniedWithRecord(respBody('x', true), 'handoff.absent');
    const { service } = setup();
    const call = await open(service).send(respHeaders({ ':status': '200' }, false, meta('weather')), reqHeaders('weather', GET_WEATHER, true));
    expect(kinds(call)).toEqual(['responseHeaders', 'immediateResponse']);
    expect(JSON.parse(call.written[1]!.immediateResponse!.body!.toString())).toMatchObject({ error: { rule: 'extproc.protocol' } });
  });

  it('writes no audit record for a stream that carried no message', async () => {
    const { service, sink } = setup();
    for (let i = 0; i < 20; i++) await open(service).finish();
    const cancelled = open(service);
    cancelled.emit('error', new Error('cancelled'));
    expect(sink.records).toHaveLength(0);
  });

  it('a forged response-phase hand-off fails the stream instead of passing as a local reply', async () => {
    const { service, sink } = setup();
    const m = respHeaders({ ':status': '200', 'content-type': 'application/json' }, false, meta('weather'));
    const fields = (m.metadataContext!.filterMetadata![AUTHZ_METADATA_NAMESPACE] as { fields: { portcullis: { structValue: { fields: Record<string, unknown> } } } }).fields.portcullis.structValue.fields;
    fields.tool = { stringValue: 'tickets' };
    const call = await open(service).send(m);
    expect(kinds(call)).toEqual(['immediateResponse']);
    await call.finish();
    expect(sink.records[0]).toMatchObject({ decision: { allowed: false, rule: 'handoff.forged' } });
  });
});

describe('ExtprocService: the forwarded record', () => {
  it('is written before the request leaves: at the body reply when the body is inspected, naming the MCP call', async () => {
    const { service, sink } = setup();
    const text = JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'vpn', tenant: 'acme' } } });
    const m = meta('docs', { body_sha256: sha256(text), mcp_method: 'tools/call', mcp_tool: 'search_docs', method: 'POST', path: '/tools/docs/' });
    const call = await open(service).send(reqHeaders('docs', { ':method': 'POST', ':path': '/tools/docs/' }, false, m));
    expect(sink.forwarded).toHaveLength(0); // the body is still to be inspected
    await call.send(reqBody(text));
    expect(kinds(call)).toEqual(['requestHeaders', 'requestBody']);
    expect(sink.forwarded).toHaveLength(1);
    expect(sink.forwarded[0]).toMatchObject({ request_id: 'req-1', tool: 'docs', mcp: { method: 'tools/call', tool: 'search_docs' }, inspection: { request: { schema: 'valid' } } });
    await call.send(respHeaders({ ':status': '200', 'content-type': 'application/json', 'content-length': '2' }), respBody('{}', true));
    expect(sink.order).toEqual(['forwarded', 'exchange']);
    expect(sink.records[0]).toMatchObject({ request_id: 'req-1', mcp: { method: 'tools/call', tool: 'search_docs' }, response_inspection: { mode: 'buffered', view: 'utf-8', not_inspected: null } });
  });

  it('is written at the request headers when no body phase follows, and not at all when the Check wrote it', async () => {
    const { service, sink } = setup();
    await open(service).send(reqHeaders('weather', GET_WEATHER, true));
    expect(sink.forwarded).toHaveLength(1);
    // A route without a request phase: the Check already recorded the forwarding.
    await open(service).send(respHeaders({ ':status': '200', 'content-type': 'application/json' }, true, meta('weather', { forwarded_recorded: true })));
    expect(sink.forwarded).toHaveLength(1);
    expect(sink.records).toHaveLength(1);
  });

  it('denies the call (503, nothing forwarded) when the audit trail cannot make the record durable', async () => {
    class BrokenSink extends MemorySink {
      durable(): Promise<void> {
        return Promise.reject(new Error('disk full'));
      }
    }
    const sink = new BrokenSink();
    const { service } = setup({ sink });
    const call = await open(service).send(reqHeaders('weather', GET_WEATHER, true));
    expect(kinds(call)).toEqual(['immediateResponse']);
    expect(call.written[0]!.immediateResponse!.status.code).toBe(503);
  });
});
