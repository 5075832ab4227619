import type { AuthzMetadata } from '../authz/check.js';
import type { ProtoCheckRequest } from '../authz/request.js';
import type { ToolConfig } from '../config/types.js';
import type { AuthMethod, Principal } from '../identity/types.js';
import type { McpCall } from '../inspect/mcp.js';
import type { PolicyEngine } from '../policy/engine.js';
import { buildPolicyInput } from '../policy/input.js';
import { isMutating, toolView } from '../tools/registry.js';
import { log } from '../log.js';
import type { ListShape } from './exchange.js';

/**
 * Asks the policy whether one item of an MCP list may be shown: with the input the call that
 * uses it would have (`tools/call` of the tool, `prompts/get` of the prompt, `resources/read`
 * of the resource), the principal and request attributes of the list request. Each distinct
 * item is evaluated once per exchange; an evaluation error hides the item (fail closed).
 */

/** `input.mcp` of a list item: the call that would use it (`resource_template` for templates). */
export interface McpItemCall extends McpCall {
  /** `uriTemplate` of a resource template (a `resources/read` of a URI it expands to). */
  readonly resource_template: string | null;
}

/** The call each kind of item stands for. */
export function itemCall(kind: ListShape['kind'], value: string): McpItemCall {
  const base = { id: null, arguments: null, tool: null, prompt: null, resource: null, resource_template: null };
  switch (kind) {
    case 'tool':
      return { ...base, method: 'tools/call', tool: value };
    case 'prompt':
      return { ...base, method: 'prompts/get', prompt: value };
    case 'resource':
      return { ...base, method: 'resources/read', resource: value };
    case 'resource_template':
      return { ...base, method: 'resources/read', resource_template: value };
  }
}

const METHODS: ReadonlySet<string> = new Set<AuthMethod>(['jwt', 'mtls', 'api_key', 'signature']);

/**
 * The verified principal rebuilt from the signed hand-off; null when the request had none
 * (identity optional and no credential presented), as the Check's policy input had it.
 */
export function principalFromHandoff(m: AuthzMetadata): Principal | null {
  if (m.auth_methods.length === 0 && m.agent === null && m.user === null) return null;
  return {
    agent: m.agent,
    agent_version: m.agent_version,
    user: m.user,
    tenant: m.tenant,
    roles: [...m.roles],
    methods: m.auth_methods.filter((x): x is AuthMethod => METHODS.has(x)),
    proven_by: [...m.proven_by],
    jti: m.jti,
  };
}

/** What the list request looked like to ext_proc (the request attributes of every item input). */
export interface ListRequest {
  readonly method: string;
  readonly path: string;
  /** Request headers as forwarded, without those the gateway injected for the tool. */
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * Most distinct items evaluated in one exchange. Each evaluation is a policy run on the event
 * loop; a server listing more than this (no real list page does) would stall other streams, so
 * the items past it are hidden without evaluation (fail closed).
 */
export const MAX_ITEM_EVALUATIONS = 10_000;

/** Judges the items of one exchange's lists. */
export class ItemPolicy {
  private readonly cache = new Map<string, boolean>();
  private capped = false;
  private readonly request: ProtoCheckRequest;
  private readonly identity: Principal | null;

  constructor(
    private readonly policy: PolicyEngine,
    private readonly tool: ToolConfig,
    meta: AuthzMetadata,
    list: ListRequest,
    private readonly maxEvaluations = MAX_ITEM_EVALUATIONS,
  ) {
    this.identity = principalFromHandoff(meta);
    this.request = { attributes: { request: { http: { method: list.method, path: list.path, headers: { ...list.headers } } } } };
  }

  /** Whether the item may be shown (cached per exchange; false on any evaluation error). */
  allows(kind: ListShape['kind'], value: string): boolean {
    const key = `${kind}\u0000${value}`;
    const cached = this.cache.get(key);
    if (cached !== undefined) return cached;
    if (this.cache.size >= this.maxEvaluations) {
      if (!this.capped) log.warn({ tool: this.tool.name, limit: this.maxEvaluations }, 'MCP list has more distinct items than are evaluated per exchange; hiding the rest');
      this.capped = true;
      return false;
    }
    const allowed = this.evaluate(kind, value);
    this.cache.set(key, allowed);
    return allowed;
  }

  private evaluate(kind: ListShape['kind'], value: string): boolean {
    const mcp = itemCall(kind, value);
    // input.tool as the call itself would see it: a tool configured as mutating is mutating here too.
    const view = toolView(this.tool, isMutating(this.tool, 'POST', mcp.tool ? [mcp.tool] : []));
    try {
      const input = buildPolicyInput(this.request, { identity: this.identity, tool: view, mcp, body: null, parsedBody: null, truncated: false });
      return this.policy.evaluate(input).allowed;
    } catch (err) {
      log.warn({ tool: this.tool.name, kind, rule: (err as { rule?: string }).rule ?? null }, 'policy could not judge an MCP list item; hiding it');
      return false;
    }
  }
}
