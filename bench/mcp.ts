import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configureDocsTool } from '../test/conformance/gateway.js';
import { startConformanceServer, type ConformanceServer } from '../test/conformance/server.js';
import type { BenchStack, McpUpstream } from './lib/stack.js';

/**
 * The MCP scenarios of the benchmark: JSON-RPC over streamable HTTP to an MCP server made with
 * the official SDK (the conformance target, stateless, JSON responses) standing in for the
 * demo's `docs` tool, through Envoy alone (the floor) and through Envoy + portcullis (identity,
 * MCP parsing, policy per call, argument schema, response DLP).
 *
 *   M0       Envoy -> MCP server, no filters: tools/call of test_simple_text
 *   M        the same through portcullis (added latency over M0)
 *   M0-list  Envoy -> MCP server, no filters: tools/list (14 tools, about 4 KB)
 *   M-list   the same through portcullis, which filters lists it is configured to filter
 */

/** Scenario ids, floors first. */
export type McpScenarioId = 'M0' | 'M' | 'M0-list' | 'M-list';

/** A scenario in the shape bench/run.ts measures. */
export interface McpScenario {
  id: McpScenarioId;
  title: string;
  kind: 'mcp';
  target(stack: BenchStack): { url: string; bodyFile: string; headers: Record<string, string>; pid: number | null };
}

/** Path of the docs tool on the agents listener. */
const MCP_PATH = '/tools/docs/';
/** Name Envoy's docs route rewrites `Host` to. */
const DOCS_HOST = 'docs.tools.internal';
const PROTOCOL_VERSION = '2025-11-25';

const CALL = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'test_simple_text', arguments: {} } };
const LIST = { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} };

/** The MCP server, the request bodies and the gateway hook of one benchmark run. */
export interface McpBench {
  server: ConformanceServer;
  /** For startBenchStack: the docs cluster and tool pointed at {@link McpBench.server}. */
  upstream: McpUpstream;
  scenarios: McpScenario[];
  close(): Promise<void>;
}

/** Starts the MCP server and writes the request bodies and tool schemas under `dir`. */
export async function startMcpBench(dir: string): Promise<McpBench> {
  mkdirSync(dir, { recursive: true });
  const server = await startConformanceServer({ stateless: true, extraHostnames: [DOCS_HOST] });
  const callBody = join(dir, 'mcp-call.json');
  const listBody = join(dir, 'mcp-list.json');
  writeFileSync(callBody, JSON.stringify(CALL));
  writeFileSync(listBody, JSON.stringify(LIST));
  const schemaDir = join(dir, 'mcp-schemas');

  const target =
    (variant: 'floor' | 'full', bodyFile: string, gateway: boolean) =>
    (s: BenchStack): ReturnType<McpScenario['target']> => ({
      url: `${s.envoys.get(variant)!.url}${MCP_PATH}`,
      bodyFile,
      headers: {
        authorization: `Bearer ${s.token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': PROTOCOL_VERSION,
      },
      pid: gateway ? (s.portcullis.child.pid ?? null) : null,
    });

  return {
    server,
    upstream: {
      cluster: 'tool_docs',
      port: server.port,
      configure: (cfg) => configureDocsTool(cfg, { definitions: 'configured', dir: schemaDir, serverUrl: server.url }),
    },
    scenarios: [
      { id: 'M0', title: 'Envoy -> MCP tools/call, no filters', kind: 'mcp', target: target('floor', callBody, false) },
      { id: 'M', title: '+ portcullis: MCP tools/call', kind: 'mcp', target: target('full', callBody, true) },
      { id: 'M0-list', title: 'Envoy -> MCP tools/list, no filters', kind: 'mcp', target: target('floor', listBody, false) },
      { id: 'M-list', title: '+ portcullis: MCP tools/list', kind: 'mcp', target: target('full', listBody, true) },
    ],
    close: () => server.close(),
  };
}

/** The floor each MCP scenario is compared with. */
export function mcpFloorOf(id: string): McpScenarioId | null {
  return id === 'M' ? 'M0' : id === 'M-list' ? 'M0-list' : null;
}

/** One request per selected MCP scenario before any load: each must answer its JSON-RPC result. */
export async function mcpSanityCheck(stack: BenchStack, list: readonly { id: string; kind: string }[], mcp: McpBench): Promise<void> {
  for (const sc of mcp.scenarios.filter((m) => list.some((l) => l.id === m.id))) {
    const t = sc.target(stack);
    const body = sc.id.endsWith('-list') ? LIST : CALL;
    const res = await fetch(t.url, { method: 'POST', headers: t.headers, body: JSON.stringify(body), signal: AbortSignal.timeout(5_000) });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`scenario ${sc.id}: POST ${t.url} answered ${res.status}: ${text.slice(0, 500)}`);
    const ok = sc.id.endsWith('-list') ? text.includes('"name":"test_simple_text"') : text.includes('This is a simple text response for testing.');
    if (!ok) throw new Error(`scenario ${sc.id}: unexpected JSON-RPC answer: ${text.slice(0, 300)}`);
  }
}
