import type { AuditDecision, AuditExchange, AuditForwarded, AuditMcp } from '../audit/record.js';
import type { AuthzMetadata } from './check.js';

/** The verified principal of a decision, as the audit record names it (roles included). */
export function auditIdentity(m: AuthzMetadata): NonNullable<AuditExchange['identity']> {
  return { agent: m.agent, agent_version: m.agent_version, user: m.user, tenant: m.tenant, auth_methods: m.auth_methods, roles: m.roles };
}

/** The decision itself, as the audit record carries it. */
export function auditDecision(m: AuthzMetadata): AuditDecision {
  return { allowed: m.allowed, rule: m.rule, reason: m.reason, policy_version: m.policy_version, dry_run: m.dry_run };
}

/** The MCP call of the request (first call of a batch) and its session headers, or null for none. */
export function auditMcp(m: AuthzMetadata): AuditMcp | null {
  if (m.mcp_method === null && m.mcp_tool === null) return null;
  return {
    method: m.mcp_method,
    tool: m.mcp_tool,
    prompt: m.mcp_prompt,
    resource: m.mcp_resource,
    session: m.mcp_session,
    protocol_version: m.mcp_protocol_version,
  };
}

/**
 * Every audit field ext_authz decided, for the forwarded record, the exchange record and a
 * denial's record alike: ids, identity (null when no credential verified), the failed
 * credential's rule, tool, method, path, MCP call and decision. Spread it into
 * `AuditLogger.forwarded` / `AuditLogger.record` and add what the caller measured.
 */
export function auditFromAuthz(m: AuthzMetadata): Required<Pick<AuditForwarded, 'requestId' | 'traceparent' | 'identity' | 'authError' | 'tool' | 'method' | 'path' | 'mcp' | 'decision'>> {
  return {
    requestId: m.request_id,
    traceparent: m.traceparent,
    identity: m.auth_methods.length > 0 || m.agent || m.user ? auditIdentity(m) : null,
    authError: m.auth_error,
    tool: m.tool,
    method: m.method,
    path: m.path,
    mcp: auditMcp(m),
    decision: auditDecision(m),
  };
}
