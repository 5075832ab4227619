import { describe, expect, it } from 'vitest';
import type { AuthzMetadata } from '../../../src/authz/check.js';
import { GatewayError } from '../../../src/errors.js';
import { AUTHZ_METADATA_NAMESPACE, HandoffKey, handoffStruct, readHandoff, sealHandoff } from '../../../src/authz/handoff.js';
import { recordExchange, UsageMeter } from '../../../src/extproc/facts.js';
import { newResponseState, newStreamState, type ResponseState, type StreamState } from '../../../src/extproc/state.js';
import { budgetKey, parseFactRecord } from '../../../src/limits/facts.js';
import { MemoryStore, type Store } from '../../../src/limits/store.js';
import { registry } from '../../../src/metrics.js';

async function failedWrites(): Promise<number> {
  const m = (await registry.getSingleMetric('portcullis_fact_writes_total')?.get())?.values ?? [];
  return m.filter((v) => v.labels.outcome === 'error').reduce((n, v) => n + v.value, 0);
}

const SEEN = JSON.stringify(['seen', 60_000, 'fact:seen:g:paid:abc']);
const COUNT = JSON.stringify(['count', 60_000, 'fact:count:t:exports:n:def']);
const BUDGET = JSON.stringify(['tokens', 'budget:t:llm:tokens:xyz', 3_600_000, 'usage.total_tokens']);
const NOW = 3_600_000 * 100 + 5;

function meta(over: Partial<AuthzMetadata> = {}): AuthzMetadata {
  return { allowed: true, request_id: 'r1', fact_records: [SEEN, COUNT], budget_records: [BUDGET], ...over } as AuthzMetadata;
}

function exchange(m: AuthzMetadata | null, status: number | null, over: Partial<ResponseState> = {}): { st: StreamState; res: ResponseState } {
  const st = newStreamState();
  st.meta = m;
  const res = Object.assign(newResponseState(), { upstreamStatus: status, status, ...over });
  return { st, res };
}

/** Lets the fire-and-forget writes land. */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 10));

async function spent(store: Store): Promise<string | null> {
  return store.get(budgetKey('budget:t:llm:tokens:xyz', 3_600_000, NOW));
}

describe('UsageMeter', () => {
  const meter = (): UsageMeter => new UsageMeter(meta());

  it('reads whole, non-negative, bounded units from a JSON body; a batch is summed', () => {
    const m = meter();
    m.body('{"usage":{"total_tokens":42}}');
    expect(m.unitsAt('usage.total_tokens')).toEqual({ ok: true, units: 42 });
    const b = meter();
    b.body('[{"usage":{"total_tokens":2}},{"id":2},{"usage":{"total_tokens":3}}]');
    expect(b.unitsAt('usage.total_tokens')).toEqual({ ok: true, units: 5 });
    for (const bad of ['-1', '1.5', '"7"', '1e12', 'true', 'null']) {
      const x = meter();
      x.body(`{"usage":{"total_tokens":${bad}}}`);
      expect(x.unitsAt('usage.total_tokens'), bad).toMatchObject({ ok: false });
    }
    const none = meter();
    none.body('{"usage":{}}');
    expect(none.unitsAt('usage.total_tokens')).toEqual({ ok: false, reason: 'missing' });
    const text = meter();
    text.body('total_tokens: 5');
    expect(text.unitsAt('usage.total_tokens')).toEqual({ ok: false, reason: 'not_json' });
  });

  it('an event stream counts the last event that carries the path, across chunk boundaries and framings', () => {
    const m = meter();
    const stream = 'data: {"usage":{"total_tokens":10}}\n\n: comment\n\ndata: {"choices":[]}\r\n\r\ndata: {"usage":\ndata: {"total_tokens":25}}\n\ndata: [DONE]\n\n';
    for (let i = 0; i < stream.length; i += 7) m.sse(stream.slice(i, i + 7), false);
    m.sse('', true);
    expect(m.unitsAt('usage.total_tokens')).toEqual({ ok: true, units: 25 });
    // A last carrying event with a bad value is not replaced by an earlier good one.
    const bad = meter();
    bad.sse('data: {"usage":{"total_tokens":10}}\n\ndata: {"usage":{"total_tokens":-3}}', true);
    expect(bad.unitsAt('usage.total_tokens')).toMatchObject({ ok: false, reason: 'invalid' });
  });

  it('ignores hand-off records that are not budget records', () => {
    const m = new UsageMeter(meta({ budget_records: ['not json', '["x"]', JSON.stringify(['t', 'fact:x', 1, 'a'])] }));
    expect(m.records).toEqual([]);
  });
});

describe('recordExchange', () => {
  it('records facts and units after an allowed exchange the tool answered 2xx', async () => {
    const store = new MemoryStore(undefined, () => NOW);
    const { st, res } = exchange(meta(), 201);
    const usage = new UsageMeter(st.meta);
    usage.body('{"usage":{"total_tokens":7}}');
    recordExchange(store, st, res, usage, NOW);
    await settle();
    expect(await store.get(parseFactRecord(SEEN)!.key)).toBe('1');
    expect(await store.get(parseFactRecord(COUNT)!.key)).toBe('1');
    expect(await spent(store)).toBe('7');
    recordExchange(store, st, res, usage, NOW);
    await settle();
    expect(await store.get(parseFactRecord(COUNT)!.key)).toBe('2');
    expect(await spent(store)).toBe('14');
  });

  it('records no fact for a 5xx, a 4xx, a blocked or failed response, a denial or no response; units still count when reported', async () => {
    const cases: [string, ReturnType<typeof exchange>][] = [
      ['5xx', exchange(meta(), 502)],
      ['4xx', exchange(meta(), 404)],
      ['3xx', exchange(meta(), 302)],
      ['blocked', exchange(meta(), 200, { dlp: { action: 'blocked', rules: new Set(['x']), count: 1 } })],
      ['no response', exchange(meta(), null)],
      ['denied', exchange(meta({ allowed: false }), 200)],
    ];
    const failed = exchange(meta(), 200);
    failed.st.error = new GatewayError('blocked_content', 'x');
    cases.push(['failed', failed]);
    for (const [what, { st, res }] of cases) {
      const store = new MemoryStore(undefined, () => NOW);
      const usage = new UsageMeter(st.meta);
      usage.body('{"usage":{"total_tokens":3}}');
      recordExchange(store, st, res, usage, NOW);
      await settle();
      expect(await store.get(parseFactRecord(SEEN)!.key), what).toBeNull();
      expect(await store.get(parseFactRecord(COUNT)!.key), what).toBeNull();
      // Units the response reported were spent whatever the status (not for a denial).
      expect(await spent(store), what).toBe(what === 'denied' ? null : '3');
    }
  });

  it('records no fact when a JSON-RPC answer failed (an error, or a tool result with isError), in a body, a batch or an event', async () => {
    const failures: [string, (u: UsageMeter) => void][] = [
      ['error', (u) => u.body('{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"ledger down"}}')],
      ['isError', (u) => u.body('{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}')],
      ['batch', (u) => u.body('[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"x"}}]')],
      ['event', (u) => u.sse('event: message\ndata: {"jsonrpc":"2.0","id":1,"result":{"isError":true}}\n\n', true)],
    ];
    for (const [what, feed] of failures) {
      const store = new MemoryStore(undefined, () => NOW);
      const { st, res } = exchange(meta(), 200);
      const usage = new UsageMeter(st.meta);
      feed(usage);
      recordExchange(store, st, res, usage, NOW);
      await settle();
      expect(await store.get(parseFactRecord(SEEN)!.key), what).toBeNull();
    }
    const store = new MemoryStore(undefined, () => NOW);
    const { st, res } = exchange(meta(), 200);
    const usage = new UsageMeter(st.meta);
    usage.body('{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":false}}');
    recordExchange(store, st, res, usage, NOW);
    await settle();
    expect(await store.get(parseFactRecord(SEEN)!.key)).toBe('1');
  });

  it('never throws, also when the store fails or is absent', async () => {
    const broken: Store = Object.assign(Object.create(new MemoryStore()) as Store, {
      set: () => Promise.reject(new Error('down')),
      increment: () => {
        throw new Error('down');
      },
    });
    const errors0 = await failedWrites();
    const { st, res } = exchange(meta(), 200);
    const usage = new UsageMeter(st.meta);
    usage.body('{"usage":{"total_tokens":3}}');
    expect(() => recordExchange(broken, st, res, usage, NOW)).not.toThrow();
    await settle();
    // Two facts (set rejects) and one budget (increment throws): each failure counted.
    expect((await failedWrites()) - errors0).toBe(3);
    expect(() => recordExchange(undefined, st, res, usage, NOW)).not.toThrow();
    expect(() => recordExchange(broken, exchange(null, 200).st, res, null, NOW)).not.toThrow();
    await settle();
  });
});

describe('the records travel signed', () => {
  const full = (over: Partial<AuthzMetadata>): AuthzMetadata =>
    ({
      request_id: 'r', traceparent: null, method: 'POST', path: '/tools/payments/transfers', tool: 'payments', agent: 'treasury', agent_version: null, user: 'u', tenant: 't',
      auth_methods: ['jwt'], roles: [], auth_error: null, forwarded_recorded: false, allowed: true, dry_run: false, rule: null, reason: null, policy_version: null,
      mcp_method: null, mcp_tool: null, mcp_prompt: null, mcp_resource: null, mcp_session: null, mcp_protocol_version: null, proven_by: [], jti: null,
      body_sha256: null, authz_ms: 1, mcp_decided_on: null, idempotency_key: null, idempotency_claim: null, fact_records: [SEEN], budget_records: [BUDGET], ...over,
    }) as AuthzMetadata;

  it('a hand-off whose records were changed on the way is forged', () => {
    const key = HandoffKey.ephemeral();
    const struct = handoffStruct(sealHandoff(full({}), key)) as unknown as { fields: { portcullis: { structValue: { fields: Record<string, unknown> } } } };
    const ok = readHandoff({ [AUTHZ_METADATA_NAMESPACE]: struct }, key);
    expect(ok.ok && ok.meta.fact_records).toEqual([SEEN]);
    expect(ok.ok && ok.meta.budget_records).toEqual([BUDGET]);
    const fields = struct.fields.portcullis.structValue.fields;
    fields.fact_records = { listValue: { values: [{ stringValue: JSON.stringify(['seen', 60_000, 'fact:seen:g:paid:other-agent']) }] } };
    expect(readHandoff({ [AUTHZ_METADATA_NAMESPACE]: struct }, key)).toEqual({ ok: false, problem: 'forged' });
  });
});
