import type { RateLimitDimension } from '../config/types.js';
import type { Principal } from '../identity/types.js';

/** What a limit, budget or fact key can be kept per, besides the HTTP method of rate limits. */
export type CallDimension = Exclude<RateLimitDimension, 'method'>;

/**
 * The value of one dimension for a call: a verified principal attribute, the tool, or the MCP
 * tool the call names; null when the call has none (no principal, no user, not a tool call).
 * One reading for rate limits, budgets and facts, so a key means the same everywhere.
 */
export function dimensionValue(dim: CallDimension, tool: string, principal: Principal | null, mcpTool: string | null): string | null {
  switch (dim) {
    case 'tenant':
      return principal?.tenant ?? null;
    case 'user':
      return principal?.user ?? null;
    case 'agent':
      return principal?.agent ?? null;
    case 'agent_version':
      return principal?.agent_version ?? null;
    case 'tool':
      return tool;
    case 'mcp_tool':
      return mcpTool;
  }
}
