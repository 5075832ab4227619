import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import type { GatewayConfig } from '../../../src/config/types.js';
import { GatewayError } from '../../../src/errors.js';
import type { Principal } from '../../../src/identity/types.js';
import type { McpCall } from '../../../src/inspect/mcp.js';
import { budgetKey, compileFacts, lookupFacts, MAX_STORE_KEY_BYTES, parseBudgetRecord, parseFactRecord, valueAt, type FactRequest } from '../../../src/limits/facts.js';
import { MemoryStore, type Store } from '../../../src/limits/store.js';
import { configProblems } from '../../helpers/config.js';

const BASE = `policy: { bundle: b.tar.gz }
facts:
  - { name: paid_counterparty, kind: seen, key: [agent, "arg:counterparty"], tools: [payments] }
tools:
  - name: payments
    upstream: tool_payments
    facts:
      - { name: transfers_last_hour, kind: count, key: [agent] }
      - { name: same_memo, kind: seen, key: [tenant, "arg:memo.lines.0"], ttl_s: 60 }
  - name: docs
    upstream: tool_docs
    mcp: {}
    facts:
      - { name: searched, kind: count, key: [user, mcp_tool, "arg:query"], window_s: 60 }
  - name: llm
    upstream: tool_llm
    budgets:
      - { name: tokens, per: [agent], limit: 100, window_s: 3600, units_from: usage.total_tokens }
`;

const cfg = (text = BASE): GatewayConfig => parseConfig(text, 'test.yaml');

function who(p: Partial<Principal>): Principal {
  return { agent: null, agent_version: null, user: null, tenant: null, roles: [], methods: [], proven_by: [], ...p } as unknown as Principal;
}

const A = who({ agent: 'agent-a', user: 'alice', tenant: 'acme' });
const B = who({ agent: 'agent-b', user: 'bob', tenant: 'acme' });

function req(c: GatewayConfig, tool: string, principal: Principal | null, body: unknown, calls: McpCall[] = []): FactRequest {
  return { tool: c.tools.find((t) => t.name === tool)!, principal, calls, body };
}

const call = (tool: string, args: unknown, id = 1): McpCall => ({ method: 'tools/call', id, tool, arguments: args, prompt: null, resource: null });

async function rejection(p: Promise<unknown>): Promise<GatewayError> {
  const r = await p.then(
    () => null,
    (e: unknown) => e,
  );
  if (!(r instanceof GatewayError)) throw new Error(`expected a GatewayError, got ${String(r)}`);
  return r;
}

/** Records what the hand-off says, as ext_proc would after a completed call. */
async function record(store: Store, records: readonly string[]): Promise<void> {
  for (const s of records) {
    const r = parseFactRecord(s);
    if (!r) throw new Error(`not a fact record: ${s}`);
    if (r.kind === 'seen') await store.set(r.key, '1', r.ms);
    else await store.increment(r.key, r.ms);
  }
}

describe('facts: lookup before policy', () => {
  it('a fact is false/0 until recorded, then true/counted; keyed by the agent and the argument', async () => {
    const c = cfg();
    const store = new MemoryStore();
    const first = await lookupFacts(store, c, req(c, 'payments', A, { counterparty: 'acme-supplies', amount: 10 }));
    expect(first?.perCall).toEqual([{ paid_counterparty: false, transfers_last_hour: 0 }]);
    await record(store, first!.factRecords);
    const again = await lookupFacts(store, c, req(c, 'payments', A, { counterparty: 'acme-supplies', amount: 99 }));
    expect(again?.perCall).toEqual([{ paid_counterparty: true, transfers_last_hour: 1 }]);
    // Another counterparty, another agent: not this fact.
    expect((await lookupFacts(store, c, req(c, 'payments', A, { counterparty: 'globex' })))?.perCall[0]?.paid_counterparty).toBe(false);
    expect((await lookupFacts(store, c, req(c, 'payments', B, { counterparty: 'acme-supplies' })))?.perCall[0]).toEqual({ paid_counterparty: false, transfers_last_hour: 0 });
    // The type of the value is part of the key: 7 is not "7".
    await record(store, (await lookupFacts(store, c, req(c, 'payments', A, { counterparty: 7 })))!.factRecords);
    expect((await lookupFacts(store, c, req(c, 'payments', A, { counterparty: '7' })))?.perCall[0]?.paid_counterparty).toBe(false);
    expect((await lookupFacts(store, c, req(c, 'payments', A, { counterparty: 7 })))?.perCall[0]?.paid_counterparty).toBe(true);
  });

  it('a missing or non-scalar argument, or a missing principal value, makes the fact absent, never a key of a placeholder', async () => {
    const c = cfg();
    const store = new MemoryStore();
    for (const body of [{}, { counterparty: null }, { counterparty: { name: 'x' } }, { counterparty: ['x'] }, null, 'counterparty', [{ counterparty: 'x' }]]) {
      const r = await lookupFacts(store, c, req(c, 'payments', A, body));
      expect(r?.perCall, JSON.stringify(body)).toEqual([{ transfers_last_hour: 0 }]);
      expect(r?.factRecords.map((s) => parseFactRecord(s)?.kind)).toEqual(['count']);
    }
    // No agent: neither fact that names the agent exists.
    const anon = await lookupFacts(store, c, req(c, 'payments', who({ tenant: 'acme' }), { counterparty: 'x', memo: { lines: ['hi'] } }));
    expect(anon?.perCall).toEqual([{ same_memo: false }]);
    expect(anon?.factRecords).toHaveLength(1);
    // A placeholder never matches either: recording "undefined" as a counterparty cannot help a later call.
    await store.set('fact:seen:g:paid_counterparty:undefined', '1', 60_000);
    expect((await lookupFacts(store, c, req(c, 'payments', A, { counterparty: 'undefined' })))?.perCall[0]?.paid_counterparty).toBe(false);
  });

  it('paths read own keys and array indexes only', () => {
    expect(valueAt({ a: { b: [{ c: 'x' }] } }, ['a', 'b', '0', 'c'])).toBe('x');
    expect(valueAt({ a: [1, 2] }, ['a', '01'])).toBeUndefined();
    expect(valueAt({}, ['constructor'])).toBeUndefined();
    expect(valueAt({}, ['__proto__'])).toBeUndefined();
    expect(valueAt(JSON.parse('{"__proto__": "p"}'), ['__proto__'])).toBe('p');
    expect(valueAt({ a: Number.NaN }, ['a'])).toBeUndefined();
    expect(valueAt({ a: true }, ['a'])).toBe(true);
  });

  it('each call of a JSON-RPC batch gets its own facts, read in one round trip', async () => {
    const c = cfg();
    const store = new MemoryStore();
    let trips = 0;
    const counting: Store = Object.assign(Object.create(store) as Store, {
      getMany: (keys: readonly string[]) => {
        trips++;
        return store.getMany(keys);
      },
    });
    const one = await lookupFacts(counting, c, req(c, 'docs', A, null, [call('search_docs', { query: 'vpn' })]));
    await record(store, one!.factRecords);
    await record(store, one!.factRecords);
    trips = 0;
    const batch = await lookupFacts(counting, c, req(c, 'docs', A, null, [call('search_docs', { query: 'vpn' }, 1), call('search_docs', { query: 'other' }, 2), call('delete_doc', { query: 'vpn' }, 3), { method: 'tools/list', id: 4, tool: null, arguments: null, prompt: null, resource: null }]));
    expect(trips).toBe(1);
    expect(batch?.perCall).toEqual([{ searched: 2 }, { searched: 0 }, { searched: 0 }, {}]);
    // The same key in two calls is read and recorded once.
    const twice = await lookupFacts(store, c, req(c, 'docs', A, null, [call('search_docs', { query: 'vpn' }, 1), call('search_docs', { query: 'vpn' }, 2)]));
    expect(twice?.perCall).toEqual([{ searched: 2 }, { searched: 2 }]);
    expect(twice?.factRecords).toHaveLength(1);
  });

  it('keys are hashed and bounded, whatever the argument', async () => {
    const c = cfg();
    const huge = 'x'.repeat(60_000);
    const r = await lookupFacts(new MemoryStore(), c, req(c, 'payments', A, { counterparty: huge }));
    for (const s of r!.factRecords) {
      const key = parseFactRecord(s)!.key;
      expect(Buffer.byteLength(key)).toBeLessThanOrEqual(MAX_STORE_KEY_BYTES);
      expect(key).not.toContain('xxxx');
      expect(key).not.toContain('agent-a');
    }
  });

  it('a store that cannot answer denies (503 unavailable, facts.store_unavailable)', async () => {
    const c = cfg();
    const broken: Store = Object.assign(Object.create(new MemoryStore()) as Store, { getMany: () => Promise.reject(new Error('ECONNREFUSED')) });
    const err = await rejection(lookupFacts(broken, c, req(c, 'payments', A, { counterparty: 'x' })));
    expect(err.code).toBe('unavailable');
    expect(err.httpStatus).toBe(503);
    expect(err.rule).toBe('facts.store_unavailable');
    // A counter that is not a number is not trusted either.
    const store = new MemoryStore();
    const first = await lookupFacts(store, c, req(c, 'payments', A, {}));
    await store.set(parseFactRecord(first!.factRecords[0]!)!.key, 'lots', 60_000);
    expect((await rejection(lookupFacts(store, c, req(c, 'payments', A, {})))).rule).toBe('facts.store_unavailable');
  });

  it('a tool without facts or budgets costs nothing', async () => {
    const c = parseConfig('policy: { bundle: b }\ntools:\n  - { name: weather, upstream: tool_weather }\n', 'test.yaml');
    const never: Store = Object.assign(Object.create(new MemoryStore()) as Store, { getMany: () => Promise.reject(new Error('must not be called')) });
    expect(await lookupFacts(never, c, req(c, 'weather', A, null))).toBeNull();
  });
});

describe('budgets', () => {
  it('allows while the spend is under the limit, then 429 naming the budget with the time left in the window', async () => {
    const c = cfg();
    const store = new MemoryStore();
    const now = 3_600_000 * 1000 + 600_000; // ten minutes into a window
    const r = await lookupFacts(store, c, { ...req(c, 'llm', A, { prompt: 'hi' }), nowMs: now });
    expect(r?.perCall).toEqual([{}]);
    expect(r?.budgetRecords).toHaveLength(1);
    const b = parseBudgetRecord(r!.budgetRecords[0]!)!;
    expect(b).toMatchObject({ name: 'tokens', windowMs: 3_600_000, unitsFrom: 'usage.total_tokens' });
    await store.increment(budgetKey(b.base, b.windowMs, now), b.windowMs, 99);
    await lookupFacts(store, c, { ...req(c, 'llm', A, {}), nowMs: now });
    await store.increment(budgetKey(b.base, b.windowMs, now), b.windowMs, 5);
    const err = await rejection(lookupFacts(store, c, { ...req(c, 'llm', A, {}), nowMs: now }));
    expect(err.code).toBe('rate_limited');
    expect(err.httpStatus).toBe(429);
    expect(err.rule).toBe('budgets.tokens');
    expect(err.retryAfterS).toBe(3000);
    expect(err.message).toContain('"tokens"');
    expect(err.details).toMatchObject({ budget: 'tokens', limit: 100, spent: 104 });
    // Another agent has its own budget; the next window starts afresh.
    expect(await lookupFacts(store, c, { ...req(c, 'llm', B, {}), nowMs: now })).not.toBeNull();
    expect(await lookupFacts(store, c, { ...req(c, 'llm', A, {}), nowMs: now + 3_000_000 })).not.toBeNull();
  });
});

describe('facts configuration', () => {
  it('refuses unknown keys, bad names, bad key parts and bad paths', () => {
    const bad = (fact: string): string[] => configProblems(`policy: { bundle: b }\ntools:\n  - name: t\n    upstream: u\n    facts: [${fact}]\n`);
    expect(bad('{ name: Paid, kind: seen, key: [agent] }').join('\n')).toMatch(/facts\[0\]\.name/);
    expect(bad('{ name: paid, kind: maybe, key: [agent] }').join('\n')).toMatch(/kind/);
    expect(bad('{ name: paid, kind: seen, key: [session] }').join('\n')).toMatch(/key\[0\]/);
    expect(bad('{ name: paid, kind: seen, key: ["arg:"] }').join('\n')).toMatch(/key\[0\]/);
    expect(bad('{ name: paid, kind: seen, key: ["arg:a..b"] }').join('\n')).toMatch(/key\[0\]/);
    expect(bad('{ name: paid, kind: seen, key: [] }').join('\n')).toMatch(/key/);
    expect(bad('{ name: paid, kind: seen, key: [agent], record: always }').join('\n')).toMatch(/record/);
    expect(bad('{ name: paid, kind: seen, key: [agent], ttl: 5 }').join('\n')).toMatch(/unknown key "ttl"/);
    expect(configProblems('policy: { bundle: b }\nfacts: [{ name: paid, kind: seen, key: [agent] }]\ntools:\n  - { name: t, upstream: u }\n').join('\n')).toMatch(/missing required key "tools"/);
  });

  it('defaults: a count window of one hour, a seen fact kept 90 days, recorded on success', () => {
    const c = cfg();
    const own = c.tools[0]!.facts!;
    expect(own[0]).toMatchObject({ window_s: 3600, record: 'on_success' });
    expect(c.facts![0]).toMatchObject({ ttl_s: 90 * 86400, record: 'on_success' });
  });

  it('refuses facts that cannot be told apart and facts of unknown tools', () => {
    expect(() => compileFacts(cfg(BASE.replace('transfers_last_hour', 'paid_counterparty')))).toThrow(/used twice/);
    expect(() => compileFacts(cfg(BASE.replace('tools: [payments]', 'tools: [payroll]')))).toThrow(/unknown tool "payroll"/);
    expect(() => compileFacts(cfg(BASE.replace('units_from: usage.total_tokens }', 'units_from: usage.total_tokens }\n      - { name: tokens, limit: 1, window_s: 1, units_from: x }')))).toThrow(/budget name "tokens" is used twice/);
    // A budget needs the response bodies read.
    expect(() => compileFacts(cfg(BASE.replace('    upstream: tool_llm\n', '    upstream: tool_llm\n    response: { dlp: false }\n')))).toThrow(/response.dlp/);
  });
});
