import { auditDecision, auditIdentity } from '../authz/audit.js';
import type { AuditDecision } from '../audit/record.js';
import type { ExtprocDeps } from './deps.js';
import type { Exchange } from './exchange.js';
import { countFindings, countInjections } from './metrics.js';

function ms(fromNs: bigint): number {
  return Math.round(Number(process.hrtime.bigint() - fromNs) / 1e3) / 1e3;
}

/** The decision of an exchange that never joined a verified ext_authz decision: none, denied. */
function noDecision(ex: Exchange): AuditDecision {
  return {
    allowed: false,
    rule: ex.error?.rule ?? 'handoff.absent',
    reason: 'no verified authorization decision reached ext_proc; the exchange was denied',
    policy_version: null,
    dry_run: false,
  };
}

/**
 * Ends one exchange: exactly one audit record (joined with the ext_authz decision carried in
 * the metadata), DLP and injection metrics, and the per-principal DLP alert window.
 */
export function finishExchange(deps: ExtprocDeps, ex: Exchange): void {
  const meta = ex.meta;
  const tool = ex.tool?.name ?? meta?.tool ?? null;
  if (tool) {
    countFindings('request', ex.dlpRequest.rules, ex.dlpRequest.action);
    countFindings('response', ex.dlpResponse.rules, ex.dlpResponse.action);
    if (ex.injection.length > 0) countInjections(tool, ex.injection.map((i) => i.rule));
    const principal = meta?.user ?? meta?.agent ?? null;
    const dlpEvents = ex.dlpRequest.count + ex.dlpResponse.count;
    const acted = ex.dlpRequest.action === 'redacted' || ex.dlpRequest.action === 'blocked' || ex.dlpResponse.action === 'redacted' || ex.dlpResponse.action === 'blocked';
    if (principal && acted) deps.alerter.note(principal, tool, dlpEvents, Date.now());
  }
  const authzMs = meta?.authz_ms ?? null;
  deps.audit.record({
    requestId: ex.requestId ?? meta?.request_id ?? null,
    traceparent: ex.traceparent,
    identity: meta ? auditIdentity(meta) : null,
    tool,
    method: ex.method,
    path: ex.path,
    decision: meta ? auditDecision(meta) : noDecision(ex),
    inspection: { size: ex.requestSize, schema: ex.schema, errors: ex.schemaErrors, injection: ex.injection },
    dlpRequest: ex.dlpRequest,
    dlpResponse: ex.dlpResponse,
    upstreamStatus: ex.upstreamStatus,
    responseStatus: ex.responseStatus,
    latencyMs: {
      authz: authzMs,
      requestInspect: ex.requestInspectMs,
      responseInspect: ex.responseInspectMs,
      total: ms(ex.startedNs) + (authzMs ?? 0),
    },
    error: ex.error ? { code: ex.error.code, rule: ex.error.rule } : null,
    payload: ex.requestPayload !== null || ex.responsePayload !== null ? { request: ex.requestPayload, response: ex.responsePayload } : undefined,
  });
}
