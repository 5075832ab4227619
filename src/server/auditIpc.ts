import { GatewayError } from '../errors.js';
import type { AuditForwarder, AuditSink } from '../audit/sinks.js';
import type { AuditLine } from '../audit/record.js';
import type { IpcPeer } from './ipc.js';

/**
 * Audit records of the hash-chained file across processes: workers build and redact their
 * records and send them to the primary, the file's one writer, which seals them into its chain
 * in the order each worker sent them (one channel, handled in order). A forwarded record is
 * acknowledged only once the primary's sink has it durable.
 */

const WRITE = 'audit.write';
const DURABLE = 'audit.durable';
const FLUSH = 'audit.flush';

/** How long a worker waits for the primary to make a record durable before refusing the call. */
export const AUDIT_IPC_TIMEOUT_MS = 5_000;

function unavailable(): GatewayError {
  return new GatewayError('unavailable', 'the audit trail cannot take records (the primary process does not answer)', { rule: 'audit.unavailable' });
}

/** The worker side: records go to the primary over `peer`. */
export function auditForwarder(peer: IpcPeer, timeoutMs = AUDIT_IPC_TIMEOUT_MS): AuditForwarder {
  return {
    write: (r) => peer.notify(WRITE, r),
    durable: (r) =>
      peer.request(DURABLE, r, timeoutMs).then(
        () => undefined,
        (err: unknown) => {
          throw err instanceof GatewayError ? err : unavailable();
        },
      ),
    flush: () => peer.request(FLUSH, null, timeoutMs).then(() => undefined),
  };
}

/**
 * The primary side: records from the worker behind `peer` go to the current file sink
 * (`sink()`, replaced on reload); with none configured they are dropped, and durable ones refused.
 */
export function serveAudit(peer: IpcPeer, sink: () => AuditSink | null): void {
  peer.handle(WRITE, (r) => sink()?.write(r as AuditLine));
  peer.handle(DURABLE, (r) => {
    const s = sink();
    if (!s) throw unavailable();
    if (s.durable) return s.durable(r as AuditLine);
    s.write(r as AuditLine);
    return null;
  });
  peer.handle(FLUSH, () => sink()?.flush?.() ?? null);
}
