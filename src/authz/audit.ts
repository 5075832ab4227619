import type { AuditDecision, AuditExchange } from '../audit/record.js';
import type { AuthzMetadata } from './check.js';

/** The verified principal of a decision, as the audit record names it. */
export function auditIdentity(m: AuthzMetadata): NonNullable<AuditExchange['identity']> {
  return { agent: m.agent, agent_version: m.agent_version, user: m.user, tenant: m.tenant, auth_methods: m.auth_methods };
}

/** The decision itself, as the audit record carries it. */
export function auditDecision(m: AuthzMetadata): AuditDecision {
  return { allowed: m.allowed, rule: m.rule, reason: m.reason, policy_version: m.policy_version, dry_run: m.dry_run };
}
