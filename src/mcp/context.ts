import type { ToolConfig } from '../config/types.js';
import type { ExtprocDeps } from '../extproc/deps.js';
import type { RequestState, StreamState } from '../extproc/state.js';
import { ItemPolicy } from './itemPolicy.js';
import type { McpListContext } from './lists.js';

/**
 * The list filtering context of one exchange with an MCP tool: its requests, the principal
 * rebuilt from the verified hand-off, and the request as ext_proc saw it. Null for other tools.
 */
export function mcpListContext(deps: ExtprocDeps, tool: ToolConfig, st: StreamState, req: RequestState): McpListContext | null {
  if (!tool.mcp || !st.meta) return null;
  const dryRun = st.meta.dry_run || deps.config.policy.dry_run || tool.dry_run;
  const headers = req.mcp.headers ?? {};
  return {
    exchange: req.mcp,
    items: new ItemPolicy(deps.policy, tool, st.meta, { method: req.method, path: req.path, headers }),
    dryRun,
    requestId: req.requestId,
  };
}
