/**
 * Micro-benchmarks of policy facts and budgets, in-process (memory store, so the numbers are the
 * gateway's own cost without the store's round trip), operations per second of:
 *   - the fact lookup of one transfer (two facts: key building, hashing, one getMany),
 *   - the lookup of a 16-call JSON-RPC batch (a fact and a budget per call),
 *   - reading the units of a completion response (whole body) and of a 64-event stream.
 *
 *   npx vite-node bench/facts.bench.ts [--ms 1000]
 */
import { parseArgs } from 'node:util';
import { parseConfig } from '../src/config/load.js';
import type { Principal } from '../src/identity/types.js';
import type { McpCall } from '../src/inspect/mcp.js';
import { lookupFacts } from '../src/limits/facts.js';
import { MemoryStore } from '../src/limits/store.js';
import { UsageMeter } from '../src/extproc/facts.js';
import type { AuthzMetadata } from '../src/authz/check.js';
import { setLogLevel } from '../src/log.js';

async function opsPerSec(ms: number, fn: () => unknown | Promise<unknown>): Promise<number> {
  let best = 0;
  for (let round = 0; round < 3; round++) {
    let n = 0;
    const t0 = process.hrtime.bigint();
    const end = t0 + BigInt(ms) * 1_000_000n;
    let now = t0;
    while (now < end) {
      for (let i = 0; i < 50; i++) await fn();
      n += 50;
      now = process.hrtime.bigint();
    }
    best = Math.max(best, n / (Number(now - t0) / 1e9));
  }
  return best;
}

async function main(): Promise<void> {
  setLogLevel('error');
  const { values } = parseArgs({ options: { ms: { type: 'string', default: '1000' } }, strict: false });
  const ms = Number(values.ms);
  const config = parseConfig(
    `policy: { bundle: b }
facts: [{ name: paid_counterparty, kind: seen, key: [agent, "arg:counterparty"], tools: [payments] }]
tools:
  - { name: payments, upstream: tool_payments, facts: [{ name: transfers, kind: count, key: [agent] }] }
  - name: docs
    upstream: tool_docs
    mcp: {}
    facts: [{ name: searched, kind: seen, key: [agent, "arg:query"] }]
    budgets: [{ name: units, per: [tenant, mcp_tool], limit: 1000, window_s: 3600, units_from: result.usage.total }]
`,
    'bench.yaml',
  );
  const store = new MemoryStore();
  const principal = { agent: 'treasury', agent_version: null, user: 'u', tenant: 'acme', roles: [], methods: ['jwt'], proven_by: [] } as unknown as Principal;
  const payments = config.tools[0]!;
  const docs = config.tools[1]!;
  const calls: McpCall[] = Array.from({ length: 16 }, (_, i) => ({ method: 'tools/call', id: i, tool: 'search_docs', arguments: { query: `q${i}` }, prompt: null, resource: null }));
  const meta = { fact_records: [], budget_records: [JSON.stringify(['units', 'budget:t:docs:units:x', 3_600_000, 'usage.total_tokens'])] } as unknown as AuthzMetadata;
  const body = JSON.stringify({ choices: [{ text: 'x'.repeat(2000) }], usage: { prompt_tokens: 10, completion_tokens: 400, total_tokens: 410 } });
  const events = `${Array.from({ length: 63 }, (_, i) => `data: ${JSON.stringify({ choices: [{ delta: `word${i} ` }] })}\n\n`).join('')}data: ${JSON.stringify({ usage: { total_tokens: 410 } })}\n\ndata: [DONE]\n\n`;

  const rows: [string, number][] = [
    ['lookup: one transfer (2 facts)', await opsPerSec(ms, () => lookupFacts(store, config, { tool: payments, principal, calls: [], body: { counterparty: 'initech', amount: 1 } }))],
    ['lookup: 16-call batch (fact + budget)', await opsPerSec(ms, () => lookupFacts(store, config, { tool: docs, principal, calls, body: null }))],
    ['units: whole body (2 KB)', await opsPerSec(ms, () => new UsageMeter(meta).body(body))],
    ['units: 64-event stream', await opsPerSec(ms, () => new UsageMeter(meta).sse(events, true))],
  ];
  for (const [name, ops] of rows) process.stdout.write(`${name.padEnd(40)} ${Math.round(ops).toLocaleString('en-US').padStart(12)} ops/s\n`);
}

void main();
