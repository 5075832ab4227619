import { forwardFileRecords } from '../audit/sinks.js';
import { flushStdout, log } from '../log.js';
import { serve } from './app.js';
import { auditForwarder } from './auditIpc.js';
import { primaryPeer } from './ipc.js';
import { ADMIN_MESSAGES, WORKER_SLOT_ENV } from './workerLink.js';

/**
 * A worker process of a gateway with `server.workers` > 1 (started by the primary through
 * `node:cluster`): the same gateway as a single process, on the shared gRPC port, with the
 * primary's store, audit file and admin port. It drains and exits on SIGTERM/SIGINT or when the
 * primary asks; if the primary is gone, cluster ends the process (its streams fail closed).
 */
export async function runWorker(configPath: string): Promise<void> {
  const slot = Number(process.env[WORKER_SLOT_ENV] ?? '0');
  const peer = primaryPeer();
  forwardFileRecords(auditForwarder(peer));
  const ephemeralHandoffKey = await peer.request(ADMIN_MESSAGES.handoffKey, null, 10_000);
  if (typeof ephemeralHandoffKey !== 'string') throw new Error('the primary sent no hand-off key');
  const app = await serve(configPath, { slot, peer, ephemeralHandoffKey });
  let stopping = false;
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ worker: slot, why }, 'worker draining in-flight calls');
    app.close().then(
      () => flushStdout().then(() => process.exit(0)),
      (err: unknown) => {
        log.error({ worker: slot, err: (err as Error)?.message }, 'worker shutdown failed');
        void flushStdout().then(() => process.exit(1));
      },
    );
  };
  peer.handle(ADMIN_MESSAGES.drain, () => stop('primary'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  peer.notify(ADMIN_MESSAGES.up, { pid: process.pid });
}
