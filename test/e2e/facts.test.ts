import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack, spreadOverReplicas } from '../helpers/index.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { call, eventually, expectDenial, metricValue, token, type Reply } from './authz-support.js';

/**
 * Policy facts and metered budgets through the real Envoy, with the demo policy, on two
 * portcullis replicas sharing one real redis-server: a first transfer to a new counterparty
 * needs an approval, a completed one is remembered (for that agent only, and by both replicas),
 * a failed one is not; the 21st export in the hour is refused; token budgets are spent from the
 * tool's responses (JSON and SSE) and then refuse with 429 naming the budget.
 */

type Json = Record<string, any>;

const TOKEN_LIMIT = 100;
const SEARCH_LIMIT = 10;
const dataDir = mkdtempSync(join(tmpdir(), 'portcullis-facts-data-'));
const dataFile = join(dataDir, 'approvals.json');

let redis: RedisServer;
let stack: Stack;

function approvals(treasury: string[]): void {
  writeFileSync(dataFile, JSON.stringify({ portcullis: { approvals: { treasury } } }));
}

beforeAll(async () => {
  approvals(['initech', 'soylent', 'cyberdyne', 'tyrell']);
  redis = await startRedis();
  stack = await startStack({
    replica: true,
    editEnvoy: spreadOverReplicas,
    editConfig: (cfg) => {
      cfg.store = { kind: 'redis', redis: { url: redis.url, key_prefix: 'facts-e2e:', timeout_ms: 500 } };
      (cfg.policy as Json).data = dataFile;
      const llm = (cfg.tools as Json[]).find((t) => t.name === 'llm');
      if (!llm) throw new Error('demo config lacks the llm tool');
      llm.budgets = [{ name: 'tokens', per: ['tenant', 'agent'], limit: TOKEN_LIMIT, window_s: 3600, units_from: 'usage.total_tokens' }];
      // The sample docs server echoes a call's arguments: its `limit` stands in for metered units.
      const docs = (cfg.tools as Json[]).find((t) => t.name === 'docs');
      if (!docs) throw new Error('demo config lacks the docs tool');
      docs.budgets = [{ name: 'searches', per: ['tenant', 'mcp_tool'], limit: SEARCH_LIMIT, window_s: 3600, units_from: 'result.structuredContent.arguments.limit' }];
    },
  });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await redis?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const admins = (): string[] => [stack.adminUrl, stack.replicaAdminUrl as string];

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  let total = 0;
  for (const url of admins()) total += metricValue((await call(`${url}/metrics`)).text, name, labels);
  return total;
}

/** Facts and budget units are written after the reply: wait until `n` more writes of `what` landed. */
async function writesAfter(what: 'fact' | 'budget', before: number, n: number): Promise<void> {
  const done = await eventually(async () => (await metric('portcullis_fact_writes_total', { what, outcome: 'ok' })) >= before + n, 10_000);
  expect(done, `${n} ${what} write(s) after the exchange`).toBe(true);
}

const writes = (what: 'fact' | 'budget'): Promise<number> => metric('portcullis_fact_writes_total', { what, outcome: 'ok' });

function transfer(bearer: string, body: unknown, opts: { method?: string; raw?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return call(`${stack.envoyUrl}/tools/payments/transfers`, {
    method: opts.method ?? 'POST',
    headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json', ...opts.headers },
    body: opts.raw ?? JSON.stringify(body),
  });
}

/** A completed transfer, waited for until its fact is written. */
async function paid(bearer: string, counterparty: string): Promise<void> {
  const before = await writes('fact');
  const r = await transfer(bearer, { counterparty, amount: 10 });
  expect(r.status, r.text).toBe(201);
  expect(JSON.parse(r.text).transfer).toMatchObject({ counterparty, status: 'sent' });
  await writesAfter('fact', before, 1);
}

/** Replaces the approvals and waits until both replicas decide with them. */
async function withdrawApprovals(): Promise<void> {
  const loaded = async (): Promise<(string | null)[]> => Promise.all(admins().map(async (u) => (JSON.parse((await call(`${u}/readyz`)).text) as Json).policy?.loadedAt ?? null));
  const before = await loaded();
  approvals([]);
  const reloaded = await eventually(async () => (await loaded()).every((v, i) => v !== before[i]), 15_000);
  expect(reloaded, 'both replicas reloaded the policy data').toBe(true);
}

describe('payments: a new counterparty needs an approval, a paid one is remembered', () => {
  let treasury: string;
  let helpdesk: string;

  beforeAll(async () => {
    treasury = await token(stack, { agent: 'treasury', user: 'tess', tenant: 'acme', roles: ['support'] });
    helpdesk = await token(stack, { agent: 'helpdesk', user: 'hal', tenant: 'acme', roles: ['support'] });
  });

  it('the first transfer to a counterparty never paid is refused with a reason that says what to do', async () => {
    const r = await transfer(treasury, { counterparty: 'globex', amount: 10 });
    const body = expectDenial(r, 403, 'forbidden', 'payments.new_counterparty');
    expect(body.error.message).toContain('"treasury"');
    expect(body.error.message).toContain('"globex"');
    expect(body.error.message).toMatch(/approv/);
    // Nothing reached the tool.
    expect(stack.tool.received.some((q) => q.path.startsWith('/payments/') && q.body.includes('globex'))).toBe(false);
  });

  it('approved counterparties are paid; a failed (5xx) transfer is not remembered; after approvals are withdrawn only completed ones pass', async () => {
    await paid(treasury, 'initech');
    // The tool fails the transfer to soylent: the call is allowed (approved) but did not complete.
    const restore = stack.tool.handle('/payments/transfers', (_req, res) => {
      res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"ledger unavailable"}');
    });
    try {
      const failed = await transfer(treasury, { counterparty: 'soylent', amount: 10 });
      expect(failed.status, failed.text).toBe(500);
    } finally {
      restore();
    }
    // A transfer blocked on the way in (schema: negative amount) never completed either.
    const refused = await transfer(treasury, { counterparty: 'cyberdyne', amount: -5 });
    expect(refused.status, refused.text).toBe(400);
    // Writes land in exchange order: once a later completed transfer is recorded, the failed ones had their chance.
    await paid(treasury, 'tyrell');

    await withdrawApprovals();
    // Paid before: allowed with no approval, by whichever replica decides.
    for (const cp of ['initech', 'tyrell']) {
      const r = await transfer(treasury, { counterparty: cp, amount: 3 });
      expect(r.status, `${cp}: ${r.text}`).toBe(201);
    }
    // Approved once but never completed: now refused.
    for (const cp of ['soylent', 'cyberdyne']) expectDenial(await transfer(treasury, { counterparty: cp, amount: 3 }), 403, 'forbidden', 'payments.new_counterparty');
  });

  it('the fact of another agent is not this agent’s, whatever headers claim', async () => {
    // treasury paid initech; helpdesk never did and has no approval for it.
    expectDenial(await transfer(helpdesk, { counterparty: 'initech', amount: 1 }), 403, 'forbidden', 'payments.new_counterparty');
    const spoofed = await transfer(helpdesk, { counterparty: 'initech', amount: 1 }, { headers: { 'x-portcullis-agent': 'treasury', 'x-agent-id': 'treasury', 'X-Portcullis-User': 'tess' } });
    expectDenial(spoofed, 403, 'forbidden', 'payments.new_counterparty');
    // Its own approval (policies/data.json) still works for it.
    await paid(helpdesk, 'acme-supplies');
  });

  it('another spelling is another counterparty; an escape is the same one; other methods and body shapes cannot skip the check', async () => {
    // The same string, JSON-escaped: the same counterparty for the policy, the fact and the tool.
    const escaped = JSON.stringify({ counterparty: 'initech', amount: 2 }).replace('initech', '\\u0069nitech');
    expect(escaped).toContain('\\u0069nitech');
    const same = await transfer(treasury, null, { raw: escaped });
    expect(same.status, same.text).toBe(201);
    expectDenial(await transfer(treasury, { counterparty: 'Initech', amount: 2 }), 403, 'forbidden', 'payments.new_counterparty');
    expectDenial(await transfer(treasury, { counterparty: 'initech ', amount: 2 }), 403, 'forbidden', 'payments.new_counterparty');
    // Any state-changing method is a transfer.
    expectDenial(await transfer(treasury, { counterparty: 'globex', amount: 2 }, { method: 'PUT' }), 403, 'forbidden', 'payments.new_counterparty');
    // The argument missing, or not a string: no fact, and the policy refuses.
    for (const body of [{ amount: 2 }, { counterparty: { name: 'initech' }, amount: 2 }, { counterparty: ['initech'], amount: 2 }, [{ counterparty: 'initech', amount: 2 }]]) {
      expectDenial(await transfer(treasury, body), 403, 'forbidden', 'payments.counterparty_missing');
    }
    // Two counterparties in one body: not JSON the gateway reads one way only.
    const dup = await transfer(treasury, null, { raw: '{"counterparty":"globex","counterparty":"initech","amount":2}' });
    expectDenial(dup, 400, 'invalid_request', 'inspect.json');
  });

  it('two replicas on one Redis: a fact recorded through one is seen by the other', async () => {
    const allows = async (url: string): Promise<number> => metricValue((await call(`${url}/metrics`)).text, 'portcullis_authz_decisions_total', { tool: 'payments', outcome: 'allow' });
    const a0 = await allows(stack.adminUrl);
    const b0 = await allows(stack.replicaAdminUrl as string);
    // treasury's approvals are withdrawn (above): an approved but never paid counterparty is refused.
    expectDenial(await transfer(treasury, { counterparty: 'cyberdyne', amount: 1 }), 403, 'forbidden', 'payments.new_counterparty');
    // treasury's approvals are withdrawn: every one of these passes only on the remembered fact.
    const statuses: number[] = [];
    for (let i = 0; i < 16; i++) statuses.push((await transfer(treasury, { counterparty: 'tyrell', amount: 1 })).status);
    expect(statuses).toEqual(Array(16).fill(201));
    // Both replicas decided some of them (the fact was recorded by one of them, once).
    expect(await allows(stack.adminUrl)).toBeGreaterThan(a0);
    expect(await allows(stack.replicaAdminUrl as string)).toBeGreaterThan(b0);
  });
});

describe('exports: at most 20 per agent per hour', () => {
  it('20 exports pass, the 21st is refused (429) with a reason to wait; another agent still exports', async () => {
    const bearer = await token(stack, { agent: 'treasury', user: 'erin', tenant: 'acme', roles: ['support'] });
    const exportCall = (b: string): Promise<Reply> => call(`${stack.envoyUrl}/tools/exports/transactions`, { headers: { authorization: `Bearer ${b}` } });
    const before = await writes('fact');
    for (let i = 0; i < 20; i++) {
      const r = await exportCall(bearer);
      expect(r.status, `export ${i + 1}: ${r.text}`).toBe(200);
    }
    await writesAfter('fact', before, 20);
    const denied = await exportCall(bearer);
    const body = expectDenial(denied, 429, 'forbidden', 'exports.hourly_limit');
    expect(body.error.message).toContain('20 exports');
    expect(body.error.message).toMatch(/wait/);
    // The count is the agent's (treasury), not the user's: another user of the same agent is counted with it.
    const sameAgent = await token(stack, { agent: 'treasury', user: 'frank', tenant: 'acme', roles: ['support'] });
    expectDenial(await exportCall(sameAgent), 429, 'forbidden', 'exports.hourly_limit');
    const other = await token(stack, { agent: 'helpdesk', user: 'erin', tenant: 'acme', roles: ['support'] });
    expect((await exportCall(other)).status).toBe(200);
  });

  it('exports sent all at once cannot get past the cap: the rate limit takes them at the Check', async () => {
    // helpdesk has made 1 export: 30 in parallel see a count of (at most) 1, and the bucket stops them.
    const bearer = await token(stack, { agent: 'helpdesk', user: 'pat', tenant: 'acme', roles: ['support'] });
    const replies = await Promise.all(Array.from({ length: 30 }, () => call(`${stack.envoyUrl}/tools/exports/transactions`, { headers: { authorization: `Bearer ${bearer}` } })));
    const ok = replies.filter((r) => r.status === 200).length;
    expect(ok).toBeLessThanOrEqual(19);
    expect(ok).toBeGreaterThan(0);
    for (const r of replies.filter((x) => x.status !== 200)) expectDenial(r, 429, r.text.includes('"rate_limited"') ? 'rate_limited' : 'forbidden', /^(limits\.exports-per-agent|exports\.hourly_limit)$/);
  });
});

describe('budgets of a metered tool', () => {
  function complete(bearer: string, body: Json): Promise<Reply> {
    return call(`${stack.envoyUrl}/tools/llm/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  }

  it('spends the tokens each response reports until the budget is used, then 429 naming the budget, with the time left', async () => {
    const bearer = await token(stack, { agent: 'helpdesk', user: 'gus', tenant: 'budget-json', roles: ['support'] });
    // 2 prompt words + 40 completion tokens = 42 a call: 42, 84 (both under 100), then 126.
    for (let i = 0; i < 3; i++) {
      const before = await writes('budget');
      const r = await complete(bearer, { prompt: 'hello there', max_tokens: 40 });
      expect(r.status, `call ${i + 1}: ${r.text}`).toBe(200);
      expect(JSON.parse(r.text).usage.total_tokens).toBe(42);
      await writesAfter('budget', before, 1);
    }
    const denied = await complete(bearer, { prompt: 'one more', max_tokens: 1 });
    const body = expectDenial(denied, 429, 'rate_limited', 'budgets.tokens');
    expect(body.error.message).toContain('"tokens"');
    expect(body.error.retryable).toBe(true);
    expect(body.error.details).toMatchObject({ budget: 'tokens', limit: TOKEN_LIMIT, spent: 126 });
    const retry = body.error.retry_after_s as number;
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(3600);
    expect(denied.headers.get('retry-after')).toBe(String(retry));
    // The budget is the tenant's agent's: another tenant's calls are their own.
    const other = await token(stack, { agent: 'helpdesk', user: 'gus', tenant: 'budget-other', roles: ['support'] });
    expect((await complete(other, { prompt: 'hi', max_tokens: 1 })).status).toBe(200);
  });

  it('an event stream is counted from its last event carrying the units', async () => {
    const bearer = await token(stack, { agent: 'helpdesk', user: 'sam', tenant: 'budget-sse', roles: ['support'] });
    const before = await writes('budget');
    const r = await complete(bearer, { prompt: 'stream me', max_tokens: 99, stream: true });
    expect(r.status, r.text).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(r.text).toContain('"total_tokens":101');
    await writesAfter('budget', before, 1);
    const body = expectDenial(await complete(bearer, { prompt: 'again', max_tokens: 1 }), 429, 'rate_limited', 'budgets.tokens');
    expect(body.error.details).toMatchObject({ spent: 101 });
  });

  it('units that are not a whole, non-negative, bounded number are ignored and counted', async () => {
    const bearer = await token(stack, { agent: 'helpdesk', user: 'liz', tenant: 'budget-bad', roles: ['support'] });
    const ignored0 = await metric('portcullis_budget_units_ignored_total', { budget: 'tokens', reason: 'invalid' });
    const values: unknown[] = [-500, 1.5, '99', 1e12];
    let next = 0;
    const restore = stack.tool.handle('/llm/completions', (_req, res) => {
      const text = JSON.stringify({ choices: [], usage: { total_tokens: values[next++] } });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
    });
    try {
      for (let i = 0; i < values.length; i++) expect((await complete(bearer, { prompt: 'x' })).status).toBe(200);
    } finally {
      restore();
    }
    const counted = await eventually(async () => (await metric('portcullis_budget_units_ignored_total', { budget: 'tokens', reason: 'invalid' })) >= ignored0 + values.length, 10_000);
    expect(counted).toBe(true);
    // A negative amount did not buy room: the budget is untouched, and real spending still counts.
    const before = await writes('budget');
    expect((await complete(bearer, { prompt: 'real', max_tokens: 99 })).status).toBe(200);
    await writesAfter('budget', before, 1);
    const body = expectDenial(await complete(bearer, { prompt: 'x', max_tokens: 1 }), 429, 'rate_limited', 'budgets.tokens');
    expect(body.error.details).toMatchObject({ spent: 100 });
  });
});

describe('budgets of an MCP tool: per call, batches summed, JSON-RPC errors with the ids', () => {
  const search = (id: number, limit: number, tenant = 'budget-mcp'): Json => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'vpn', tenant, limit } } });

  function docs(bearer: string, body: unknown): Promise<Reply> {
    return call(`${stack.envoyUrl}/tools/docs/`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' },
      body: JSON.stringify(body),
    });
  }

  it('spends what each answer reports, a batch as the sum of its answers, then refuses every id of a call or batch', async () => {
    const bearer = await token(stack, { agent: 'helpdesk', user: 'mia', tenant: 'budget-mcp', roles: ['support'] });
    let before = await writes('budget');
    expect((await docs(bearer, search(1, 4))).status).toBe(200);
    await writesAfter('budget', before, 1);
    before = await writes('budget');
    const batch = await docs(bearer, [search(2, 3), search(3, 2)]);
    expect(batch.status, batch.text).toBe(200);
    expect((JSON.parse(batch.text) as Json[]).map((m) => m.id)).toEqual([2, 3]);
    await writesAfter('budget', before, 1);
    // 9 of 10 spent: one more call passes (enforced on the next call), whatever it costs.
    before = await writes('budget');
    expect((await docs(bearer, search(4, 5))).status).toBe(200);
    await writesAfter('budget', before, 1);
    const denied = await docs(bearer, search(5, 1));
    expect(denied.status, denied.text).toBe(429);
    const err = JSON.parse(denied.text) as Json;
    expect(err).toMatchObject({ jsonrpc: '2.0', id: 5, error: { code: -32029, data: { type: 'rate_limited', rule: 'budgets.searches', details: { spent: 14, limit: SEARCH_LIMIT } } } });
    expect(err.error.message).toContain('"searches"');
    const deniedBatch = await docs(bearer, [search(6, 1), search(7, 1)]);
    expect(deniedBatch.status).toBe(429);
    expect((JSON.parse(deniedBatch.text) as Json[]).map((e) => [e.id, e.error.data.rule])).toEqual([
      [6, 'budgets.searches'],
      [7, 'budgets.searches'],
    ]);
    // Another MCP method is another key of the budget (per mcp_tool): not refused.
    expect((await docs(bearer, { jsonrpc: '2.0', id: 8, method: 'tools/list', params: {} })).status).toBe(200);
  });
});

describe('when the store cannot answer', () => {
  it('a call whose policy reads facts is refused (503 facts.store_unavailable), a tool without facts is not; back without a restart', async () => {
    const bearer = await token(stack, { agent: 'treasury', user: 'tess', tenant: 'acme', roles: ['support'] });
    await redis.stop();
    try {
      const r = await transfer(bearer, { counterparty: 'tyrell', amount: 1 });
      const body = expectDenial(r, 503, 'unavailable', 'facts.store_unavailable');
      expect(body.error.retryable).toBe(true);
      expect(body.error.message).toMatch(/store/);
      // The weather tool reads no facts (its read-only rate limit falls back to a local bucket).
      const weather = await call(`${stack.envoyUrl}/tools/weather/forecast?city=Rome`, { headers: { authorization: `Bearer ${bearer}` } });
      expect(weather.status, weather.text).not.toBe(503);
    } finally {
      await redis.start();
    }
    // The test's Redis keeps nothing across a restart: the fact is gone, and the policy decides on that.
    let last: Reply | null = null;
    const back = await eventually(async () => (last = await transfer(bearer, { counterparty: 'tyrell', amount: 1 })).status !== 503, 20_000, 250);
    expect(back, 'facts are read again once Redis is back').toBe(true);
    expectDenial(last as unknown as Reply, 403, 'forbidden', 'payments.new_counterparty');
  });
});
