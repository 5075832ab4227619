import type { AuditLogger } from '../audit/sinks.js';
import type { ProtoCheckRequest } from './request.js';
import type { CheckOutcome } from './check.js';
import { auditFromAuthz } from './audit.js';

/**
 * The audit record of an exchange the Check itself answered, which ext_proc never sees: a
 * denial, or a call answered from the idempotency store (allowed, rule `idempotency.replayed`,
 * the replayed status as the response status). No upstream status: the tool was not called.
 * Nothing for a call that goes on to its tool (ext_proc records that one).
 */
export function auditAnsweredAtCheck(audit: AuditLogger, req: ProtoCheckRequest, outcome: CheckOutcome): void {
  if (outcome.allowed && !outcome.replay) return;
  const m = outcome.metadata;
  const headers = req.attributes?.request?.http?.headers ?? {};
  audit.record({
    ...auditFromAuthz(m),
    inspection: { size: Number(headers['content-length'] ?? 0) || 0, schema: 'skipped' },
    upstreamStatus: null,
    responseStatus: outcome.allowed ? (outcome.replay?.status ?? null) : outcome.error.httpStatus,
    latencyMs: { authz: m.authz_ms, total: m.authz_ms },
    error: outcome.allowed ? null : { code: outcome.error.code, rule: outcome.error.rule },
  });
}
