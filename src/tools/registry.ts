import { GatewayError } from '../errors.js';
import type { ToolConfig } from '../config/types.js';

/** The part of a tool policies see as `input.tool`. */
export interface ToolView {
  readonly name: string;
  readonly upstream: string;
  readonly mutating: boolean;
  readonly external: boolean;
}

/** Route prefix under which every logical tool lives. */
export const TOOL_PREFIX = '/tools/';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Logical tool registry: maps a request path to a configured tool. Built once per config load;
 * lookups are a prefix check and a map get.
 */
export class ToolRegistry {
  private readonly byName: ReadonlyMap<string, ToolConfig>;

  constructor(tools: readonly ToolConfig[]) {
    this.byName = new Map(tools.map((t) => [t.name, t]));
  }

  /** All configured tools. */
  list(): readonly ToolConfig[] {
    return [...this.byName.values()];
  }

  /** Tool by name, if configured. */
  get(name: string): ToolConfig | undefined {
    return this.byName.get(name);
  }

  /**
   * Resolves `/tools/<name>[/...][?query]` to its tool. Anything else is not a tool call: agents
   * can only reach upstreams through a logical tool, never by host, absolute URL or other path.
   */
  resolve(path: string): ToolConfig {
    if (!path.startsWith(TOOL_PREFIX)) {
      if (/^[a-z][a-z0-9+.-]*:\/\//i.test(path) || path.startsWith('//')) {
        throw new GatewayError('invalid_request', 'absolute URLs are not accepted; call a logical tool as /tools/<name>/...', { rule: 'tool.direct_upstream' });
      }
      throw new GatewayError('unknown_tool', 'no tool at this path; tools are called as /tools/<name>/...', { rule: 'tool.unknown' });
    }
    const rest = path.slice(TOOL_PREFIX.length);
    const end = rest.search(/[/?#]/);
    const name = end === -1 ? rest : rest.slice(0, end);
    const tool = this.byName.get(name);
    if (!tool) {
      throw new GatewayError('unknown_tool', `unknown tool "${name.slice(0, 64)}"`, { rule: 'tool.unknown', details: { available: [...this.byName.keys()] } });
    }
    return tool;
  }
}

/**
 * Whether a call changes state: the tool's explicit setting wins, then the MCP tools being
 * called, then the HTTP method.
 */
export function isMutating(tool: ToolConfig, method: string, mcpTools: readonly string[]): boolean {
  if (tool.mutating !== undefined) return tool.mutating;
  if (tool.mcp && mcpTools.length > 0) return mcpTools.some((t) => tool.mcp?.tools[t]?.mutating ?? true);
  if (tool.mcp) return false;
  return !SAFE_METHODS.has(method.toUpperCase());
}

/** The policy view of a tool for one call. */
export function toolView(tool: ToolConfig, mutating: boolean): ToolView {
  return { name: tool.name, upstream: tool.upstream, mutating, external: tool.external };
}
