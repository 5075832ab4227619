import type { AuditLogger } from '../audit/sinks.js';
import type { ProtoCheckRequest } from './request.js';
import type { CheckOutcome } from './check.js';
import { auditFromAuthz } from './audit.js';

/**
 * The audit record of a call answered from the idempotency store: allowed (rule
 * `idempotency.replayed`), no upstream status (the tool was not called), the replayed status
 * as the response status. Nothing for any other outcome.
 */
export function auditReplay(audit: AuditLogger, req: ProtoCheckRequest, outcome: CheckOutcome): void {
  if (!outcome.allowed || !outcome.replay) return;
  const m = outcome.metadata;
  const headers = req.attributes?.request?.http?.headers ?? {};
  audit.record({
    ...auditFromAuthz(m),
    inspection: { size: Number(headers['content-length'] ?? 0) || 0, schema: 'skipped' },
    upstreamStatus: null,
    responseStatus: outcome.replay.status,
    latencyMs: { authz: m.authz_ms, total: m.authz_ms },
    error: null,
  });
}
