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
   * Throws the error of {@link lookup}.
   */
  resolve(path: string): ToolConfig {
    const found = this.lookup(path);
    if (found.error) throw found.error;
    return found.tool as ToolConfig;
  }

  /**
   * {@link resolve} without throwing, so the caller can authenticate before it answers anything
   * that says which tools exist. Error bodies never list the configured tools.
   */
  lookup(path: string): ToolLookup {
    if (!path.startsWith(TOOL_PREFIX)) {
      if (/^[a-z][a-z0-9+.-]*:\/\//i.test(path) || path.startsWith('//')) {
        return { tool: null, error: new GatewayError('invalid_request', 'absolute URLs are not accepted; call a logical tool as /tools/<name>/...', { rule: 'tool.direct_upstream' }) };
      }
      return { tool: null, error: new GatewayError('unknown_tool', 'no tool at this path; tools are called as /tools/<name>/...', { rule: 'tool.unknown' }) };
    }
    const rest = path.slice(TOOL_PREFIX.length);
    const end = rest.search(/[/?#]/);
    const name = end === -1 ? rest : rest.slice(0, end);
    const tool = this.byName.get(name);
    if (!tool) return { tool: null, error: new GatewayError('unknown_tool', `unknown tool "${name.slice(0, 64)}"`, { rule: 'tool.unknown' }) };
    return { tool, error: null };
  }
}

/** Outcome of {@link ToolRegistry.lookup}: the tool, or the error a request for it gets. */
export type ToolLookup = { readonly tool: ToolConfig; readonly error: null } | { readonly tool: null; readonly error: GatewayError };

/** Context extension Envoy routes send with the Check to name the tool they route to. */
export const ROUTE_TOOL_EXTENSION = 'route_tool';

/**
 * Route binding: the Envoy route that carries a request names its tool (`route_tool` context
 * extension), and it must be the tool the path resolves to. A route that names another tool, or
 * none (unless `required` is false), is a mis-edited Envoy config that would send one tool's
 * credentials to another upstream: denied.
 */
export function checkRouteBinding(tool: ToolConfig, contextExtensions: Readonly<Record<string, string>> | undefined, required = true): void {
  const routed = contextExtensions?.[ROUTE_TOOL_EXTENSION];
  if (routed === tool.name || (!required && routed === undefined)) return;
  const says = routed === undefined || routed === '' ? 'names no tool' : `is bound to tool "${routed.slice(0, 64)}"`;
  throw new GatewayError('forbidden', `the gateway route for this request ${says}, not "${tool.name}"; the call was denied`, {
    rule: 'tool.route_mismatch',
  });
}

/** Context extension of a route that skips ext_proc's request phase: `none` means it takes no body. */
export const ROUTE_BODY_EXTENSION = 'route_request_body';

/**
 * Complete mediation on routes that skip ext_proc's request phase (`route_request_body: none`):
 * nothing there would inspect a body, so a request carrying one (bytes, a non-zero
 * content-length, or chunked framing) is refused instead of forwarded uninspected.
 */
export function checkRouteBody(contextExtensions: Readonly<Record<string, string>> | undefined, headers: Readonly<Record<string, string>>, bodyBytes: number): void {
  if (contextExtensions?.[ROUTE_BODY_EXTENSION] !== 'none') return;
  const length = headers['content-length'];
  const framed = (length !== undefined && length.trim() !== '0') || headers['transfer-encoding'] !== undefined;
  if (bodyBytes > 0 || framed) {
    throw new GatewayError('invalid_request', 'this route takes no request body', { rule: 'request.unexpected_body' });
  }
}

/**
 * Whether a call changes state: the tool's explicit setting wins, then the MCP tools being
 * called (`learned` answers from the definitions catalog, configured overrides first; an MCP
 * tool nothing says anything about is mutating), then the HTTP method.
 */
export function isMutating(tool: ToolConfig, method: string, mcpTools: readonly string[], learned?: (mcpTool: string) => boolean | undefined): boolean {
  if (tool.mutating !== undefined) return tool.mutating;
  if (tool.mcp && mcpTools.length > 0) return mcpTools.some((t) => learned?.(t) ?? tool.mcp?.tools[t]?.mutating ?? true);
  if (tool.mcp) return false;
  return !SAFE_METHODS.has(method.toUpperCase());
}

/** The policy view of a tool for one call. */
export function toolView(tool: ToolConfig, mutating: boolean): ToolView {
  return { name: tool.name, upstream: tool.upstream, mutating, external: tool.external };
}

/** Headers each tool's credential injection sets, per tool config (built once per config load). */
const injected = new WeakMap<ToolConfig, ReadonlySet<string>>();

/**
 * The (lower-case) header names a tool's credential injection sets upstream: a caller's value
 * of one never reaches the tool, and none of them is the caller's to show to policy.
 */
export function injectedHeaders(tool: ToolConfig): ReadonlySet<string> {
  let names = injected.get(tool);
  if (!names) {
    names = new Set(tool.credentials.map((c) => c.header.toLowerCase()));
    injected.set(tool, names);
  }
  return names;
}
