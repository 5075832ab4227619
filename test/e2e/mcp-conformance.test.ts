import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pointCluster, readAuditFile, startStack, type Stack } from '../helpers/index.js';
import { startBearerForwarder, type Forwarder } from '../conformance/forwarder.js';
import { configureDocsTool, type ToolDefinitions } from '../conformance/gateway.js';
import { startConformanceServer, type ConformanceServer } from '../conformance/server.js';
import { listServerScenarios, runSuite, worsenedChecks, type ScenarioResult, type SuiteRun } from '../conformance/suite.js';
import { token as demoToken } from './authz-support.js';

/**
 * The official MCP conformance suite's server scenarios, run twice: directly against the
 * project's conformance target (an MCP server made with the official SDK), and through Envoy +
 * portcullis with the target standing in for the `docs` tool (identity required, the demo
 * policy with a read-only caller, response DLP). The gateway must not break what the server does right: every check a
 * scenario makes directly must come out as well through the gateway. The direct run must pass
 * every scenario, so a broken target cannot make the comparison vacuous.
 */

/** Server scenarios of @modelcontextprotocol/conformance 0.1.16 (active and pending). */
const EXPECTED_SCENARIOS = 32;
/**
 * Scenarios that pass directly on warnings alone, and why. server-sse-polling's raw POST
 * declares protocol version 2025-03-26, and the SDK sends SSE priming events (what the scenario
 * checks) only to clients of 2025-11-25 or later.
 */
const WARNING_ONLY: Readonly<Record<string, string>> = {
  'server-sse-polling': 'the scenario declares protocol 2025-03-26; the SDK primes SSE streams from 2025-11-25 on',
};
/**
 * Scenarios known to fail through the gateway, each with its cause (the suite's own
 * expected-failures idea). The test fails on any other scenario lost through the gateway, and on
 * a listed one that passes again, so the list only ever shrinks.
 */
const GATEWAY_BASELINE: Readonly<Record<string, string>> = {};
/** MCP methods the suite sends, each of which the gateway must have decided on and audited. */
const MEDIATED_METHODS = [
  'initialize',
  'notifications/initialized',
  'ping',
  'logging/setLevel',
  'completion/complete',
  'tools/list',
  'tools/call',
  'resources/list',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'prompts/list',
  'prompts/get',
];
/** How the gateway gets the target's tool definitions (see ../conformance/gateway.ts). */
const DEFINITIONS: ToolDefinitions = 'learned';
/**
 * Name Envoy's docs route rewrites `Host` to; the target must answer to it. Through the gateway
 * the suite's rebinding probe (a foreign Origin) is refused by portcullis' Origin allow-list.
 */
const DOCS_HOST = 'docs.tools.internal';

let target: ConformanceServer;
let stack: Stack;
let forwarder: Forwarder;
let schemaDir: string;

beforeAll(async () => {
  target = await startConformanceServer({ extraHostnames: [DOCS_HOST] });
  schemaDir = mkdtempSync(join(tmpdir(), 'mcp-conformance-schemas-'));
  // The suite calls the forwarder, which adds the token; started first so the gateway can be told
  // the one browser origin and host names that may call the tool (DNS-rebinding protection).
  let bearer = '';
  forwarder = await startBearerForwarder(() => stack.envoyUrl, () => bearer);
  stack = await startStack({
    editEnvoy: (cfg) => pointCluster(cfg, 'tool_docs', target.port),
    editConfig: (cfg) =>
      configureDocsTool(cfg, { definitions: DEFINITIONS, dir: schemaDir, serverUrl: target.url, allowedOrigins: [forwarder.url], allowedHosts: ['127.0.0.1', 'localhost'] }),
  });
  // A read-only role: every tools/call passes the policy only because its data says the tool changes nothing.
  bearer = await demoToken(stack, { roles: ['viewer'] });
});

afterAll(async () => {
  await forwarder?.close();
  await stack?.stop();
  await target?.close();
  if (schemaDir) rmSync(schemaDir, { recursive: true, force: true });
});

/** MCP methods of the docs tool's exchange records, once every expected one is there (the file sink appends asynchronously). */
async function auditedMethods(): Promise<Set<string>> {
  const file = join(dirname(stack.configPath), 'audit.log');
  let seen = new Set<string>();
  for (let i = 0; i < 50; i++) {
    seen = new Set(
      readAuditFile(file)
        .filter((r) => r.tool === 'docs')
        .map((r) => (r.mcp as { method?: unknown } | null)?.method)
        .filter((m): m is string => typeof m === 'string'),
    );
    if (MEDIATED_METHODS.every((m) => seen.has(m))) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return seen;
}

function verdict(r: ScenarioResult): string {
  if (!r.passed && r.scenario in GATEWAY_BASELINE) return `FAIL  (baseline) ${r.failures.join('; ')}`;
  if (!r.passed) return `FAIL  ${r.failures.join('; ')}`;
  return r.succeeded.length > 0 ? `pass  (${r.succeeded.length} checks)` : 'pass  (warnings only)';
}

/** scenario -> direct / gateway verdicts, one line each. */
function tally(direct: SuiteRun, gateway: SuiteRun): string {
  const width = Math.max(...direct.results.map((r) => r.scenario.length));
  const lines = direct.results.map((d, i) => {
    const g = gateway.results[i] as ScenarioResult;
    return `${d.scenario.padEnd(width)}  direct: ${verdict(d).padEnd(26)}  gateway: ${verdict(g)}`;
  });
  const count = (run: SuiteRun): number => run.results.filter((r) => r.passed).length;
  lines.push(
    `direct ${count(direct)}/${direct.results.length} passed in ${direct.durationMs} ms; through the gateway ${count(gateway)}/${gateway.results.length} passed in ${gateway.durationMs} ms`,
  );
  return lines.join('\n');
}

/** What a scenario lost through the gateway: a failed scenario, or checks that came out worse or not at all. */
function regression(d: ScenarioResult, g: ScenarioResult): string | null {
  if (!d.passed) return null;
  if (!g.passed) return g.failures.join('; ');
  const worse = worsenedChecks(d.checks, g.checks);
  return worse.length > 0 ? `checks worse than directly: ${worse.join(', ')}` : null;
}

describe('MCP conformance suite', () => {
  it('passes every server scenario directly, and loses none of them through Envoy + portcullis', async () => {
    const scenarios = await listServerScenarios();
    expect(scenarios.length).toBeGreaterThanOrEqual(EXPECTED_SCENARIOS);

    const [direct, gateway] = await Promise.all([runSuite(target.url, scenarios), runSuite(`${forwarder.url}/tools/docs/`, scenarios)]);
    console.log(`MCP conformance (${DEFINITIONS} tool definitions)\n${tally(direct, gateway)}`);

    const directFailures = direct.results.filter((r) => !r.passed).map((r) => `${r.scenario}: ${r.failures.join('; ')}`);
    expect(directFailures, `the target fails scenarios directly:\n${direct.output}`).toEqual([]);
    const vacuous = direct.results.filter((r) => r.succeeded.length === 0 && !(r.scenario in WARNING_ONLY)).map((r) => r.scenario);
    expect(vacuous, 'scenarios that passed directly without a single successful check').toEqual([]);

    const lost = new Map(
      direct.results.flatMap((d, i) => {
        const why = regression(d, gateway.results[i] as ScenarioResult);
        return why ? [[d.scenario, why] as const] : [];
      }),
    );
    const unexpected = [...lost].filter(([s]) => !(s in GATEWAY_BASELINE)).map(([s, why]) => `${s}: ${why}`);
    expect(unexpected, `scenarios that pass directly but not through the gateway:\n${stack.logs().slice(-6000)}`).toEqual([]);
    // The gateway run went through the gateway: it decided on and audited every kind of call.
    const audited = await auditedMethods();
    expect(MEDIATED_METHODS.filter((m) => !audited.has(m)), 'MCP methods the gateway never audited').toEqual([]);
    // The rebinding probe was refused by the gateway itself, before it reached the target.
    const refused = readAuditFile(join(dirname(stack.configPath), 'audit.log')).filter((r) => (r.decision as { rule?: unknown } | undefined)?.rule === 'mcp.origin');
    expect(refused.length, 'the gateway refused no foreign Origin').toBeGreaterThan(0);

    const fixed = Object.keys(GATEWAY_BASELINE).filter((s) => !lost.has(s));
    expect(fixed, 'baseline scenarios that now pass through the gateway: remove them from GATEWAY_BASELINE').toEqual([]);
  }, 240_000);
});
