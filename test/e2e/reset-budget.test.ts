import { afterAll, beforeAll, expect, it } from 'vitest';
import { Agent, request } from 'node:http';
import { startStack, type Stack } from '../helpers/index.js';
import { token as demoToken } from './authz-support.js';

/**
 * Envoy ends every ext_proc stream with a RST_STREAM (graceful close is off, see
 * long-exchange.test.ts). Node's HTTP/2 stack closes a connection after ~1000 resets in a burst
 * (33/s sustained) as a rapid-reset attack, failing every call on it with a 503. The shipped
 * envoy.yaml retires each connection to portcullis after a bounded number of streams, so a steady
 * stream of calls well past that budget must see no failure at all.
 */

/** Several times the per-connection reset budget, sent faster than it refills. */
const CALLS = 2_400;
const CONCURRENCY = 16;

let stack: Stack;
let token: string;

beforeAll(async () => {
  stack = await startStack();
  token = await demoToken(stack);
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

function get(agent: Agent, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request(new URL(path, stack.envoyUrl), { agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(-1));
    });
    req.on('error', () => resolve(-1));
    req.end();
  });
}

it(`${CALLS} inspected calls in a row: no connection to portcullis is closed as a rapid-reset attack`, async () => {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const statuses = new Map<number, number>();
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < CALLS) {
        next += 1;
        const status = await get(agent, '/tools/tickets/tenants/acme/tickets');
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }),
  );
  agent.destroy();
  const seconds = (performance.now() - t0) / 1000;
  // Sent faster than the 33/s refill, or the test would prove nothing.
  expect(CALLS / seconds).toBeGreaterThan(100);
  expect(Object.fromEntries(statuses)).toEqual({ 200: CALLS });
  // Envoy opened several connections to portcullis rather than one.
  const stats = await fetch(`${stack.envoyAdminUrl}/stats?filter=^cluster\\.portcullis\\.upstream_cx_total$`).then((r) => r.text());
  const opened = Number(/upstream_cx_total: (\d+)/.exec(stats)?.[1] ?? 0);
  expect(opened).toBeGreaterThan(2);
}, 180_000);
