import { Counter, type Registry } from 'prom-client';
import { registry } from '../metrics.js';
import type { McpPinsAdmin } from '../mcp/admin.js';
import type { Readiness, ReloadResult } from './admin.js';
import type { ServiceBinding } from './grpc.js';
import type { IpcPeer } from './ipc.js';

/**
 * What a worker process of a gateway with `server.workers` > 1 adds to {@link serve}: its slot,
 * its channel to the primary, and the admin requests it answers there (the primary serves the
 * admin port for all workers).
 */

/** Environment variable that gives a worker its slot (0 .. workers-1; a restarted worker keeps it). */
export const WORKER_SLOT_ENV = 'PORTCULLIS_WORKER_SLOT';

/** Message types of the admin fan-out (primary → worker). */
export const ADMIN_MESSAGES = {
  status: 'admin.status',
  reload: 'admin.reload',
  metrics: 'admin.metrics',
  pinsList: 'admin.pins.list',
  pinsApprove: 'admin.pins.approve',
  drain: 'drain',
  up: 'up',
  handoffKey: 'handoff.ephemeral',
} as const;

/** A worker's link to its primary. */
export interface WorkerLink {
  readonly slot: number;
  readonly peer: IpcPeer;
  /** The primary's random hand-off key, used when `server.handoff_key` is not configured. */
  readonly ephemeralHandoffKey: string;
}

/** What a worker answers to the primary's admin requests. */
export interface WorkerAdmin {
  readonly readiness: () => Readiness;
  readonly reload: () => Promise<ReloadResult>;
  readonly mcpPins: McpPinsAdmin;
}

/** A worker's metrics as sent to the primary (prom-client's JSON form). */
export type WorkerMetrics = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/** Answers the primary's admin requests on `link`. */
export function answerAdmin(link: WorkerLink, admin: WorkerAdmin): void {
  const { peer } = link;
  peer.handle(ADMIN_MESSAGES.status, () => ({ pid: process.pid, ...admin.readiness() }));
  peer.handle(ADMIN_MESSAGES.reload, () => admin.reload());
  peer.handle(ADMIN_MESSAGES.metrics, () => registry.getMetricsAsJSON());
  peer.handle(ADMIN_MESSAGES.pinsList, () => admin.mcpPins.list());
  peer.handle(ADMIN_MESSAGES.pinsApprove, (body) => admin.mcpPins.approve(typeof body === 'string' ? body : ''));
}

let calls: Counter<'worker' | 'method'> | null = null;

/**
 * Counts the gRPC calls each worker serves (`portcullis_worker_grpc_calls_total{worker, method}`),
 * so how evenly connections spread over workers is visible. Wraps every handler of `services`.
 */
export function countCalls(services: readonly ServiceBinding[], slot: number): ServiceBinding[] {
  calls ??= new Counter({
    name: 'portcullis_worker_grpc_calls_total',
    help: 'gRPC calls (Check calls and ext_proc streams) served, by worker slot',
    labelNames: ['worker', 'method'] as const,
    registers: [registry],
  });
  const counter = calls;
  const worker = String(slot);
  return services.map((s) => {
    const impl: Record<string, unknown> = {};
    for (const [method, fn] of Object.entries(s.impl)) {
      impl[method] =
        typeof fn === 'function'
          ? (...args: unknown[]) => {
              counter.inc({ worker, method });
              return (fn as (...a: unknown[]) => unknown)(...args);
            }
          : fn;
    }
    return { definition: s.definition, impl: impl as ServiceBinding['impl'] };
  });
}
