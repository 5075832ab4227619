import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../helpers/index.js';
import { auditRecords, call, eventually, expectDenial, metricValue, token } from './authz-support.js';

/**
 * Configured modes through the real Envoy: global policy dry run (would-deny calls pass, and say
 * so in logs, audit and metrics) and per-tool rate limits (429 with a retry hint).
 */

const RPS = 0.1;
const BURST = 3;

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    editConfig: (cfg) => {
      (cfg.policy as Record<string, unknown>).dry_run = true;
      const tools = cfg.tools as { name: string; rate_limit?: unknown }[];
      const weather = tools.find((t) => t.name === 'weather');
      if (!weather) throw new Error('demo config has no weather tool');
      weather.rate_limit = { rps: RPS, burst: BURST, key: 'agent' };
    },
  });
});

afterAll(async () => {
  await stack?.stop();
});

describe('policy dry run', () => {
  it('a call the policy would deny is allowed, reaches the tool, and is recorded as a dry-run denial', async () => {
    const reporter = await token(stack, { agent: 'reporter', user: 'rita', roles: ['support'] });
    const before = stack.tool.received.length;
    const metric = async (): Promise<number> =>
      metricValue((await call(`${stack.adminUrl}/metrics`)).text, 'portcullis_authz_decisions_total', { outcome: 'dry_run_allow', tool: 'tickets' });
    const m0 = await metric();

    // Without dry run this is 403 agent.not_bound (see authz-decisions).
    const r = await call(`${stack.envoyUrl}/tools/tickets/tenants/acme/tickets`, { headers: { authorization: `Bearer ${reporter}` } });
    expect(r.status, r.text).toBe(200);
    expect(stack.tool.received.length).toBe(before + 1);
    expect(await metric()).toBe(m0 + 1);
    // Logs are written asynchronously in small batches: wait (bounded) for the line.
    expect(await eventually(async () => /dry run: policy would deny; allowing/.test(stack.logs()), 5_000), stack.logs()).toBe(true);

    const id = r.headers.get('x-request-id');
    expect(id).toBeTruthy();
    const found = await eventually(async () => auditRecords(stack).some((rec) => rec.request_id === id), 5_000);
    expect(found, 'audit record of the dry-run call').toBe(true);
    const rec = auditRecords(stack).find((x) => x.request_id === id) as { decision: { allowed: boolean; dry_run: boolean; rule: string | null } };
    expect(rec.decision).toMatchObject({ allowed: true, dry_run: true, rule: 'agent.not_bound' });
  });

  it('dry run relaxes policy only: a missing identity is still refused', async () => {
    expectDenial(await call(`${stack.envoyUrl}/tools/tickets/tenants/acme/tickets`), 401, 'unauthenticated', 'identity.required');
    // An unknown path asks for identity like any tool: the inventory is not revealed.
    expectDenial(await call(`${stack.envoyUrl}/tools/nope/x`), 401, 'unauthenticated', 'identity.required');
  });
});

describe('rate limits', () => {
  it('calls over the burst get 429 with retry_after_s and Retry-After; other agents are not affected', async () => {
    const helpdesk = await token(stack);
    const url = `${stack.envoyUrl}/tools/weather/forecast?city=Rome`;
    const before = stack.tool.received.length;
    const replies = [];
    for (let i = 0; i < BURST + 2; i++) replies.push(await call(url, { headers: { authorization: `Bearer ${helpdesk}` } }));
    const statuses = replies.map((r) => r.status);
    expect(statuses.slice(0, BURST)).toEqual(Array(BURST).fill(200));
    expect(statuses.slice(BURST)).toEqual([429, 429]);
    // Only the admitted calls reached the tool.
    expect(stack.tool.received.length).toBe(before + BURST);

    const limited = replies[BURST];
    if (!limited) throw new Error('no limited reply');
    const body = expectDenial(limited, 429, 'rate_limited', 'limits.rate');
    expect(body.error.retryable).toBe(true);
    expect(body.error.retry_after_s).toBeGreaterThanOrEqual(1);
    expect(body.error.retry_after_s).toBeLessThanOrEqual(Math.ceil(1 / RPS));
    expect(limited.headers.get('retry-after')).toBe(String(body.error.retry_after_s));
    expect(body.error.message).toMatch(/weather/);

    // The bucket is per agent: reporter (API key) still has its own burst.
    const other = await call(url, { headers: { 'x-api-key': 'demo-reporter-key' } });
    expect(other.status, other.text).toBe(200);
  });
});
