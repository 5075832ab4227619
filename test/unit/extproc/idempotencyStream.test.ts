import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/load.js';
import type { GatewayConfig } from '../../../src/config/types.js';
import { ToolRegistry } from '../../../src/tools/registry.js';
import { compileCatalog } from '../../../src/dlp/index.js';
import { compileInjectionRules } from '../../../src/inspect/injection.js';
import { compileToolSchemas } from '../../../src/inspect/schema.js';
import { AuditLogger, type AuditSink } from '../../../src/audit/sinks.js';
import type { AuditLine } from '../../../src/audit/record.js';
import { ExtprocService } from '../../../src/extproc/service.js';
import { compileResponses, type ExtprocDeps } from '../../../src/extproc/deps.js';
import { MemoryBudget } from '../../../src/extproc/response/budget.js';
import { CredentialInjector } from '../../../src/credentials/inject.js';
import { SecretStore } from '../../../src/credentials/secrets.js';
import { DlpAlerter } from '../../../src/extproc/alerts.js';
import type { ProcessingRequest, ProcessingResponse } from '../../../src/extproc/proto.js';
import { AUTHZ_METADATA_NAMESPACE, HandoffKey, handoffStruct, sealHandoff } from '../../../src/authz/handoff.js';
import type { AuthzMetadata } from '../../../src/authz/check.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { MemoryStore } from '../../../src/limits/store.js';
import { parseEntry, pendingMarker } from '../../../src/limits/idempotency.js';
import { repoPath } from '../../helpers/paths.js';

/**
 * The ext_proc side of idempotency driven through the stream loop (no Envoy): a call holding a
 * claim has its response seen whole and stored as delivered, a replay's local reply is passed
 * through untouched, and a cancelled exchange gives its key back.
 */

const AWS_KEY = 'AKIAIOSFODNN7EXAMPLF';
const KEY = new HandoffKey(() => 'unit-test-handoff-key-0123456789abcdef');
const STORE_KEY = 'idem:test';
const demo = loadConfig(repoPath('scripts', 'demo', 'portcullis.yaml'));
/** weather as a tool that inspects nothing (no DLP, no filter, no injected credential), with idempotency. */
const plain: GatewayConfig = {
  ...demo,
  tools: demo.tools.map((t) =>
    t.name === 'weather' ? { ...t, credentials: [], response: { ...t.response, dlp: false, drop_fields: [] }, idempotency: { header: 'idempotency-key', ttl_s: 60, in_flight_ttl_s: 5, max_stored_bytes: 1024, required: false } } : t,
  ),
};

class Sink implements AuditSink {
  readonly lines: AuditLine[] = [];
  write(r: AuditLine): void {
    this.lines.push(r);
  }
  async close(): Promise<void> {}
}

class FakeCall extends EventEmitter {
  readonly written: ProcessingResponse[] = [];
  constructor() {
    super();
    this.on('error', () => undefined);
  }
  write(r: ProcessingResponse): boolean {
    this.written.push(r);
    return true;
  }
  end(): void {}
  async send(...msgs: ProcessingRequest[]): Promise<this> {
    for (const m of msgs) this.emit('data', m);
    for (let i = 0; i < 8; i++) await new Promise((r) => setImmediate(r));
    return this;
  }
}

function setup(config: GatewayConfig): { service: ExtprocService; store: MemoryStore; sink: Sink } {
  const scanner = compileCatalog(config.dlp);
  const store = new MemoryStore();
  const sink = new Sink();
  const deps: ExtprocDeps = {
    config,
    tools: new ToolRegistry(config.tools),
    scanner,
    injection: compileInjectionRules(),
    schemas: compileToolSchemas(config.tools, config.base_dir),
    responses: compileResponses(config, scanner),
    credentials: new CredentialInjector(config.tools, new SecretStore(config.base_dir)),
    budget: new MemoryBudget(config.inspect.response_memory_budget_bytes),
    audit: new AuditLogger([sink], config.audit.payload),
    alerter: new DlpAlerter(config.alerting.dlp_threshold, config.alerting.window_s),
    handoff: KEY,
    policy: new PolicyEngine({ bundlePath: config.policy.bundle, decision: config.policy.decision, watch: false }),
    store,
  };
  return { service: new ExtprocService(deps), store, sink };
}

function open(service: ExtprocService): FakeCall {
  const call = new FakeCall();
  service.process(call as unknown as Parameters<ExtprocService['process']>[0]);
  return call;
}

function meta(over: Partial<AuthzMetadata> = {}): AuthzMetadata {
  return {
    request_id: 'req-1', traceparent: null, method: 'POST', path: '/tools/weather/forecast', tool: 'weather', agent: 'helpdesk', agent_version: null, user: 'alice', tenant: 'acme',
    auth_methods: ['jwt'], roles: ['support'], auth_error: null, forwarded_recorded: false, allowed: true, dry_run: false, rule: 'allow.role', reason: null, policy_version: 'sha256:test',
    mcp_method: null, mcp_tool: null, mcp_prompt: null, mcp_resource: null, mcp_session: null, mcp_protocol_version: null, proven_by: [], jti: null, body_sha256: null, mcp_decided_on: null,
    idempotency_key: null, idempotency_claim: null, fact_records: [], budget_records: [], authz_ms: 1,
    ...over,
  };
}

const headers = (map: Record<string, string>): { headers: { headers: { key: string; rawValue: Buffer }[] } } => ({ headers: { headers: Object.entries(map).map(([key, v]) => ({ key, rawValue: Buffer.from(v) })) } });
const md = (m: AuthzMetadata): NonNullable<ProcessingRequest['metadataContext']> => ({ filterMetadata: { [AUTHZ_METADATA_NAMESPACE]: handoffStruct(sealHandoff(m, KEY)) } });
const reqHeaders = (m: AuthzMetadata): ProcessingRequest => ({ request: 'requestHeaders', requestHeaders: { ...headers({ ':method': 'POST', ':path': m.path, 'x-request-id': 'req-1' }), endOfStream: true }, metadataContext: md(m) });
const respHeaders = (h: Record<string, string>, endOfStream = false, m?: AuthzMetadata): ProcessingRequest => ({ request: 'responseHeaders', responseHeaders: { ...headers(h), endOfStream }, ...(m ? { metadataContext: md(m) } : {}) });
const respBody = (body: string): ProcessingRequest => ({ request: 'responseBody', responseBody: { body: Buffer.from(body), endOfStream: true } });

async function claimed(store: MemoryStore): Promise<AuthzMetadata> {
  const claim = pendingMarker('b'.repeat(64), 1);
  expect(await store.setIfAbsent(STORE_KEY, 5_000, claim)).toBe(true);
  return meta({ idempotency_key: STORE_KEY, idempotency_claim: claim });
}

describe('ext_proc with an idempotency claim', () => {
  it('reads the body of a tool that inspects nothing (BUFFERED, not NONE) and stores it', async () => {
    const { service, store } = setup(plain);
    const control = await open(service).send(reqHeaders(meta()), respHeaders({ ':status': '200', 'content-type': 'application/json', 'content-length': '2' }));
    expect(control.written[1]?.modeOverride?.responseBodyMode).toBe('NONE');
    const m = await claimed(store);
    const call = await open(service).send(reqHeaders(m), respHeaders({ ':status': '201', 'content-type': 'application/json', 'content-length': '11', 'set-cookie': 's=1' }));
    expect(call.written[1]?.modeOverride?.responseBodyMode).toBe('BUFFERED');
    await call.send(respBody('{"id":"T1"}'));
    const entry = parseEntry((await store.get(STORE_KEY)) as string);
    expect(entry).toMatchObject({ state: 'done', status: 201, headers: [['content-type', 'application/json']] });
    expect(Buffer.from((entry as { body: string }).body, 'base64').toString()).toBe('{"id":"T1"}');
  });

  it('stores the body as delivered: what DLP redacted is redacted in the store', async () => {
    // weather as configured (response DLP on), with idempotency.
    const withIdem: GatewayConfig = { ...demo, tools: demo.tools.map((t) => (t.name === 'weather' ? { ...t, idempotency: { header: 'idempotency-key', ttl_s: 60, in_flight_ttl_s: 5, max_stored_bytes: 1024, required: false } } : t)) };
    const s = setup(withIdem);
    const m = await claimed(s.store);
    const call = await open(s.service).send(reqHeaders(m), respHeaders({ ':status': '200', 'content-type': 'application/json', 'content-length': '40' }), respBody(JSON.stringify({ key: AWS_KEY })));
    const delivered = call.written[2]?.responseBody?.response.bodyMutation;
    const text = delivered && 'body' in delivered ? delivered.body.toString() : '';
    expect(text).not.toContain(AWS_KEY);
    const entry = parseEntry((await s.store.get(STORE_KEY)) as string) as { body: string };
    expect(Buffer.from(entry.body, 'base64').toString()).toBe(text);
  });

  it('a tool cannot claim its answer was replayed: its idempotent-replayed header is removed', async () => {
    const { service, store } = setup(plain);
    const m = await claimed(store);
    const call = await open(service).send(reqHeaders(m), respHeaders({ ':status': '201', 'content-type': 'application/json', 'content-length': '2', 'idempotent-replayed': 'true' }));
    expect(call.written[1]?.responseHeaders?.response.headerMutation?.removeHeaders).toContain('idempotent-replayed');
    await call.send(respBody('{}'));
    const entry = parseEntry((await store.get(STORE_KEY)) as string) as { headers: readonly (readonly [string, string])[] };
    expect(entry.headers.map(([k]) => k)).not.toContain('idempotent-replayed');
  });

  it('a bodiless answer (end of stream on the headers) is stored with an empty body', async () => {
    const { service, store } = setup(plain);
    const m = await claimed(store);
    await open(service).send(reqHeaders(m), respHeaders({ ':status': '204' }, true));
    expect(parseEntry((await store.get(STORE_KEY)) as string)).toMatchObject({ state: 'done', status: 204, body: '' });
  });

  it('a cancelled exchange (Envoy reset) releases the key', async () => {
    const { service, store } = setup(plain);
    const m = await claimed(store);
    const call = await open(service).send(reqHeaders(m), respHeaders({ ':status': '200', 'content-type': 'application/json', 'content-length': '10' }));
    call.emit('error', new Error('cancelled'));
    await call.send();
    expect(await store.get(STORE_KEY)).toBeNull();
  });

  it('a replay (the Check answered from the store) is a local reply: passed through, nothing stored or audited', async () => {
    const { service, store, sink } = setup(plain);
    await store.set(STORE_KEY, 'done-value', 60_000);
    const replay = meta({ idempotency_key: STORE_KEY, idempotency_claim: null, rule: 'idempotency.replayed' });
    const call = await open(service).send(respHeaders({ ':status': '201', 'content-type': 'application/json' }, false, replay), respBody('{"id":"T1"}'));
    expect(call.written[0]?.responseHeaders?.response.headerMutation).toBeUndefined();
    expect(call.written[0]?.modeOverride).toBeUndefined();
    expect(await store.get(STORE_KEY)).toBe('done-value');
    call.emit('end');
    await call.send();
    expect(sink.lines.filter((l) => l.record_type === 'exchange')).toHaveLength(0);
  });
});
