import { Counter } from 'prom-client';
import { registry } from '../metrics.js';
import type { ToolConfig } from '../config/types.js';
import type { McpCall } from '../inspect/mcp.js';
import type { McpExchange } from './exchange.js';

/**
 * MCP metrics by JSON-RPC method and MCP tool. Labels stay bounded whatever agents send:
 * `method` is one of the methods of the MCP specification (else `_other`), `mcp_tool` is a
 * tool name declared in the gateway configuration for that server (else `_unlisted`, `_none`
 * for calls that name no tool), and `tool` is a configured logical tool.
 */

/** JSON-RPC methods of MCP 2025-11-25 that may appear as a label. */
const METHODS: ReadonlySet<string> = new Set([
  'initialize',
  'ping',
  'tools/list',
  'tools/call',
  'prompts/list',
  'prompts/get',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'completion/complete',
  'logging/setLevel',
  'tasks/get',
  'tasks/list',
  'tasks/result',
  'tasks/cancel',
  'notifications/initialized',
  'notifications/cancelled',
  'notifications/progress',
  'notifications/roots/list_changed',
]);

const calls = new Counter({
  name: 'portcullis_mcp_calls_total',
  help: 'MCP JSON-RPC calls decided by ext_authz, by logical tool, method, MCP tool and outcome',
  labelNames: ['tool', 'method', 'mcp_tool', 'outcome'] as const,
  registers: [registry],
});

const listItems = new Counter({
  name: 'portcullis_mcp_list_items_hidden_total',
  help: 'MCP list items removed from results by policy (would_hide: dry run), by logical tool and list method',
  labelNames: ['tool', 'method', 'mode'] as const,
  registers: [registry],
});

/** The method as a label: a specification method, or `_other`. */
export function methodLabel(method: string): string {
  return METHODS.has(method) ? method : '_other';
}

/** The MCP tool as a label: a name the configuration declares for this server, or a placeholder. */
export function mcpToolLabel(tool: ToolConfig | null, name: string | null): string {
  if (name === null) return '_none';
  return tool?.mcp && Object.hasOwn(tool.mcp.tools, name) ? name : '_unlisted';
}

/** Counts each call of an MCP request with the Check's outcome. */
export function countMcpCalls(tool: ToolConfig | null, mcp: readonly McpCall[], outcome: 'allow' | 'deny' | 'dry_run_allow'): void {
  if (!tool?.mcp) return;
  for (const c of mcp) calls.inc({ tool: tool.name, method: methodLabel(c.method), mcp_tool: mcpToolLabel(tool, c.tool), outcome });
}

/** Counts the list items one exchange hid (or would have hidden, in dry run). */
export function countHidden(tool: string, ex: McpExchange): void {
  for (const [method, n] of ex.byMethod) {
    if (n.hidden > 0) listItems.inc({ tool, method, mode: 'hidden' }, n.hidden);
    if (n.wouldHide > 0) listItems.inc({ tool, method, mode: 'would_hide' }, n.wouldHide);
  }
}
