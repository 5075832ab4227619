import { auditFromAuthz } from '../authz/audit.js';
import { redactPath } from '../audit/record.js';
import type { AuditDecision } from '../audit/record.js';
import type { ExtprocDeps } from './deps.js';
import type { RequestState, ResponseState, StreamState } from './state.js';
import { countFindings, countInjections } from './metrics.js';
import { observeExchange } from './metrics.js';
import { exchangeMcp } from '../mcp/audit.js';
import { countHidden } from '../mcp/metrics.js';
import { definitionEventsOf } from '../mcp/definitionEvents.js';

function ms(fromNs: bigint): number {
  return Math.round(Number(process.hrtime.bigint() - fromNs) / 1e3) / 1e3;
}

/** The decision of an exchange that never joined a verified ext_authz decision: none, denied. */
function noDecision(st: StreamState): AuditDecision {
  return {
    allowed: false,
    rule: st.error?.rule ?? 'handoff.absent',
    reason: 'no verified authorization decision reached ext_proc; the exchange was denied',
    policy_version: null,
    dry_run: false,
  };
}

/** The forwarded record of a request about to reach its tool: what ext_authz decided and what ext_proc found. */
export function forwardedRecord(deps: ExtprocDeps, st: StreamState, req: RequestState): Parameters<ExtprocDeps['audit']['forwarded']>[0] {
  const meta = st.meta!;
  return {
    ...auditFromAuthz(meta),
    requestId: req.requestId ?? meta.request_id,
    traceparent: req.traceparent,
    method: req.method,
    path: req.path,
    redactedPath: auditPath(deps, req),
    inspection: { size: req.size, schema: req.schema, errors: req.schemaErrors, injection: req.injection },
    dlpRequest: req.dlp,
  };
}

/** The request path as audit records carry it, redacted once per exchange (the audit logger's scanner is the gateway's). */
function auditPath(deps: ExtprocDeps, req: RequestState): string {
  req.auditPath ??= redactPath(req.path, deps.scanner);
  return req.auditPath;
}

/**
 * Ends one exchange: exactly one audit record (joined with the ext_authz decision carried in
 * the metadata), DLP and injection metrics, and the per-principal DLP alert window.
 */
export function finishExchange(deps: ExtprocDeps, st: StreamState, req: RequestState, res: ResponseState): void {
  const meta = st.meta;
  const tool = st.tool?.name ?? meta?.tool ?? null;
  if (tool) {
    countFindings('request', req.dlp.rules, req.dlp.action);
    countFindings('response', res.dlp.rules, res.dlp.action);
    if (req.injection.length > 0) countInjections(tool, req.injection.map((i) => i.rule));
    const principal = meta?.user ?? meta?.agent ?? null;
    const dlpEvents = req.dlp.count + res.dlp.count + res.scrubbed;
    const acted = req.dlp.action === 'redacted' || req.dlp.action === 'blocked' || res.dlp.action === 'redacted' || res.dlp.action === 'blocked' || res.scrubbed > 0;
    // Counted on the shared store, off the reply path; note() never rejects.
    if (principal && acted) void deps.alerter.note(principal, tool, dlpEvents, Date.now());
    countHidden(tool, req.mcp);
    observeExchange(tool, st.error?.code ?? 'none', ms(st.startedNs) / 1000);
  }
  const authzMs = meta?.authz_ms ?? null;
  const authz = meta ? auditFromAuthz(meta) : null;
  deps.audit.record({
    ...(authz ?? { identity: null, decision: noDecision(st) }),
    mcp: authz ? exchangeMcp(authz.mcp, req.mcp, meta?.dry_run === true || deps.config.policy.dry_run || st.tool?.dry_run === true) : null,
    requestId: req.requestId ?? meta?.request_id ?? null,
    traceparent: req.traceparent,
    tool,
    method: req.method,
    path: req.path,
    redactedPath: auditPath(deps, req),
    inspection: { size: req.size, schema: req.schema, errors: req.schemaErrors, injection: req.injection },
    dlpRequest: req.dlp,
    dlpResponse: responseDlp(res),
    responseInspection: res.upstreamStatus === null ? null : { mode: res.mode === 'none' && res.notInspected === null ? 'headers' : res.mode, view: res.view, notInspected: res.notInspected },
    upstreamStatus: res.upstreamStatus,
    responseStatus: res.status,
    latencyMs: {
      authz: authzMs,
      requestInspect: req.inspectMs,
      responseInspect: res.inspectMs,
      total: ms(st.startedNs) + (authzMs ?? 0),
    },
    error: st.error ? { code: st.error.code, rule: st.error.rule } : null,
    payload: req.payload !== null || res.payload !== null ? { request: req.payload, response: res.payload } : undefined,
    mcpDefinitions: definitionEventsOf(req, res),
  });
}

/** The response DLP outcome, the injected-credential scrub counted as a redaction. */
function responseDlp(res: ResponseState): ResponseState['dlp'] {
  if (res.scrubbed === 0) return res.dlp;
  const rules = new Set(res.dlp.rules);
  rules.add('portcullis.injected_credential');
  return { action: res.dlp.action === 'blocked' ? 'blocked' : 'redacted', rules, count: res.dlp.count + res.scrubbed };
}
