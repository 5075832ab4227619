import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import type { Server as HttpServer } from 'node:http';
import type { Readable } from 'node:stream';
import { Counter, Gauge } from 'prom-client';
import { loadConfig } from '../config/load.js';
import { grpcChannel, isLoopback, workerCount } from '../config/server.js';
import type { GatewayConfig } from '../config/types.js';
import { openFileSink, type AuditSink } from '../audit/sinks.js';
import { SecretStore } from '../credentials/secrets.js';
import { oneAtATime, watchPath } from '../files/watch.js';
import { serveStoreOp, STORE_MESSAGE } from '../limits/ipcStore.js';
import { MemoryStore } from '../limits/store.js';
import { flushStdout, log, setLogLevel, stdout } from '../log.js';
import { registry } from '../metrics.js';
import type { PinsReply } from '../mcp/admin.js';
import { startAdminServer, type Readiness, type ReloadResult } from './admin.js';
import { aggregate, PRIMARY_WORKER_LABEL } from './aggregate.js';
import type { MetricFamily } from './exposition.js';
import { serveAudit } from './auditIpc.js';
import { IpcPeer } from './ipc.js';
import { prepareSharedSocket } from './listener.js';
import { relayLines } from './relay.js';
import { ADMIN_MESSAGES, WORKER_SLOT_ENV } from './workerLink.js';

/**
 * The primary process of a gateway with `server.workers` > 1. It serves no gRPC call itself:
 * it forks the workers (which share the gRPC port through `node:cluster`: the primary accepts
 * and hands each connection to the next worker), and owns what must be one per gateway process:
 *  - the in-memory store (workers reach it over IPC, see limits/ipcStore.ts), so a limit holds
 *    across workers; with Redis each worker connects itself;
 *  - the audit file: one writer, one hash chain (workers forward their records, see auditIpc.ts);
 *  - the admin port: it outlives any one worker, and answers for all of them (aggregated
 *    metrics, readiness of every worker, reload and MCP pin approval fanned out to each).
 * A worker that dies is restarted with backoff; SIGTERM drains every worker, then the audit
 * file is flushed and the primary exits 0.
 */

const restarts = new Counter({
  name: 'portcullis_worker_restarts_total',
  help: 'Worker processes restarted after they exited unexpectedly',
  registers: [registry],
});

const liveWorkers = new Gauge({
  name: 'portcullis_workers',
  help: 'Worker processes serving now',
  registers: [registry],
});

/** Backoff before restarting a worker: doubles per quick failure, from this... */
const RESTART_MIN_MS = 200;
/** ...up to this. */
const RESTART_MAX_MS = 10_000;
/** A worker that ran this long before exiting restarts with the shortest backoff. */
const STABLE_MS = 30_000;
/** Time a worker has to answer a status or metrics request. */
const STATUS_TIMEOUT_MS = 2_000;
/** Time a worker has to apply a reload (configuration, policy, data). */
const RELOAD_TIMEOUT_MS = 60_000;
/** Beyond the shutdown grace, the time workers get to exit before they are killed. */
const EXIT_MARGIN_MS = 5_000;

/** One worker position: a restarted worker takes the place (and slot number) of the one that died. */
interface Slot {
  readonly slot: number;
  worker: Worker | null;
  peer: IpcPeer | null;
  up: boolean;
  startedAt: number;
  quickFailures: number;
}

const UNMATCHABLE_TOKEN = randomBytes(32).toString('hex');

const STATUS_RANK: Record<string, number> = { invalid: 4, poisoned: 3, changed: 2, ok: 1, not_seen: 0 };

interface PinEntry {
  readonly tool: string;
  readonly name: string;
  readonly status: string;
}

/** The pins of every worker as one list: per MCP tool, the most telling status any worker saw. */
function mergePins(replies: readonly PinsReply[]): PinsReply {
  const merged = new Map<string, PinEntry>();
  for (const r of replies) {
    const pins = (r.body as { pins?: PinEntry[] } | null)?.pins ?? [];
    for (const p of pins) {
      const key = JSON.stringify([p.tool, p.name]);
      const seen = merged.get(key);
      if (!seen || (STATUS_RANK[p.status] ?? 0) > (STATUS_RANK[seen.status] ?? 0)) merged.set(key, p);
    }
  }
  const pins = [...merged.values()].sort((a, b) => (a.tool === b.tool ? (a.name < b.name ? -1 : 1) : a.tool < b.tool ? -1 : 1));
  return { status: 200, body: { pins } };
}

/** Runs the primary for `count` workers until SIGTERM/SIGINT; exits the process. */
export async function runPrimary(configPath: string, initial: GatewayConfig, count: number): Promise<void> {
  setLogLevel(initial.server.log_level);
  let config = initial;
  let secrets = new SecretStore(config.base_dir);
  let fileSink: AuditSink | null = await openFileSink(config.audit, config.base_dir, secrets);
  const store = config.store?.kind === 'redis' ? null : new MemoryStore();
  const channel = grpcChannel(config.server, config.base_dir);
  if (channel.kind === 'unix') await prepareSharedSocket(channel);

  // Used by the workers only when server.handoff_key is not configured (they warn then).
  const ephemeralHandoffKey = randomBytes(32).toString('base64url');
  let stopping = false;
  let started = false;
  const slots: Slot[] = Array.from({ length: count }, (_, slot) => ({ slot, worker: null, peer: null, up: false, startedAt: 0, quickFailures: 0 }));
  const live = (): Slot[] => slots.filter((s) => s.worker !== null && s.peer !== null && s.up);
  let onAllExited: (() => void) | null = null;
  let startup: { resolve: () => void; reject: (err: Error) => void } | null = null;

  // The socket file is bound by this process when the first worker listens: until its mode is
  // applied, only the owner may connect (see listener.ts).
  const tightUmask = channel.kind === 'unix';
  let pendingBinds = 0;
  let savedUmask: number | null = null;
  const bindStarted = (): void => {
    if (!tightUmask) return;
    if (pendingBinds++ === 0) savedUmask = process.umask(0o177);
  };
  const bindDone = (): void => {
    if (!tightUmask || pendingBinds === 0) return;
    if (--pendingBinds === 0 && savedUmask !== null) {
      process.umask(savedUmask);
      savedUmask = null;
    }
  };

  // Worker output comes through this process, whole lines at a time (see relay.ts).
  cluster.setupPrimary({ silent: true });
  const relays = new Set<Promise<void>>();
  const relay = (from: Readable | null, write: (text: string) => void): void => {
    if (!from) return;
    const done = relayLines(from, write);
    relays.add(done);
    void done.then(() => relays.delete(done));
  };

  const fork = (s: Slot): void => {
    bindStarted();
    const worker = cluster.fork({ [WORKER_SLOT_ENV]: String(s.slot) });
    relay(worker.process.stdout, (text) => stdout.write(text));
    relay(worker.process.stderr, (text) => process.stderr.write(text));
    const peer = new IpcPeer((m) => {
      if (!worker.isConnected()) return false;
      worker.send(m);
      return true;
    });
    s.worker = worker;
    s.peer = peer;
    s.up = false;
    s.startedAt = Date.now();
    if (store) peer.handle(STORE_MESSAGE, (body) => serveStoreOp(store, body));
    serveAudit(peer, () => fileSink);
    peer.handle(ADMIN_MESSAGES.handoffKey, () => ephemeralHandoffKey);
    peer.handle(ADMIN_MESSAGES.up, () => {
      s.up = true;
      bindDone();
      liveWorkers.set(live().length);
      log.info({ worker: s.slot, pid: worker.process.pid }, 'worker serving');
      if (!started && slots.every((x) => x.up)) {
        started = true;
        startup?.resolve();
      }
    });
    worker.on('message', (m: unknown) => peer.receive(m));
    worker.on('exit', (code: number | null, signal: string | null) => {
      peer.close('the worker exited');
      if (!s.up) bindDone();
      s.worker = null;
      s.peer = null;
      s.up = false;
      liveWorkers.set(live().length);
      if (stopping) {
        if (slots.every((x) => x.worker === null)) onAllExited?.();
        return;
      }
      if (!started) {
        startup?.reject(new Error(`worker ${s.slot} exited while starting (code ${code}, signal ${signal}); see its log above`));
        return;
      }
      const ranMs = Date.now() - s.startedAt;
      s.quickFailures = ranMs >= STABLE_MS ? 0 : s.quickFailures + 1;
      const delay = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** Math.max(0, s.quickFailures - 1));
      restarts.inc();
      log.error({ worker: s.slot, pid: worker.process.pid, code, signal, ran_ms: ranMs, restart_in_ms: delay }, 'worker exited unexpectedly; its in-flight calls failed; restarting it');
      setTimeout(() => {
        if (!stopping) fork(s);
      }, delay).unref();
    });
  };

  /** Asks every serving worker; one answer per worker that answered (errors logged, not thrown). */
  const askAll = async (t: string, body: unknown, timeoutMs: number): Promise<{ slot: Slot; value: unknown }[]> => {
    const asked = live();
    const results = await Promise.allSettled(asked.map((s) => (s.peer as IpcPeer).request(t, body, timeoutMs)));
    const out: { slot: Slot; value: unknown }[] = [];
    results.forEach((r, i) => {
      const s = asked[i] as Slot;
      if (r.status === 'fulfilled') out.push({ slot: s, value: r.value });
      else log.warn({ worker: s.slot, request: t, err: (r.reason as Error)?.message }, 'worker did not answer');
    });
    return out;
  };

  /** Applies the configuration file to what the primary owns (audit file, admin token, log level). */
  const reloadOwn = async (): Promise<string | null> => {
    try {
      const next = loadConfig(configPath);
      if (workerCount(next.server) !== count) log.warn({ config: configPath, workers: count }, 'server.workers changed: it applies at the next restart');
      const nextSecrets = new SecretStore(next.base_dir);
      let nextSink: AuditSink | null;
      try {
        nextSink = await openFileSink(next.audit, next.base_dir, nextSecrets);
      } catch (err) {
        nextSecrets.close();
        throw err;
      }
      const oldSink = fileSink;
      const oldSecrets = secrets;
      fileSink = nextSink;
      secrets = nextSecrets;
      config = next;
      setLogLevel(next.server.log_level);
      // The same file keeps its one writer (shared and reference counted); the old handle goes.
      void oldSink?.close();
      oldSecrets.close();
      return null;
    } catch (err) {
      const reason = (err as Error).message;
      log.error({ config: configPath, reason }, 'configuration reload failed in the primary; keeping the last good configuration');
      return reason;
    }
  };
  const queueOwnReload = oneAtATime(reloadOwn);
  const configWatch = watchPath(configPath, () => void queueOwnReload());

  /** `POST /reload`: the primary's part, then every worker; refused if any refuses. */
  const reloadAll = async (): Promise<ReloadResult> => {
    const own = await queueOwnReload();
    const expected = slots.length;
    const answers = await askAll(ADMIN_MESSAGES.reload, null, RELOAD_TIMEOUT_MS);
    const results = answers.map((a) => ({ slot: a.slot.slot, r: a.value as ReloadResult }));
    const policyVersion = results[0]?.r.policyVersion ?? null;
    if (own !== null) return { ok: false, reason: `configuration: ${own}`, policyVersion };
    const refused = results.find((x) => !x.r.ok);
    if (refused) return { ok: false, reason: refused.r.reason, policyVersion };
    if (results.length < expected) return { ok: false, reason: `only ${results.length} of ${expected} workers applied the reload (the others are restarting or did not answer)`, policyVersion };
    return { ok: true, reason: null, policyVersion };
  };

  const readiness = async (): Promise<Readiness> => {
    const answers = await askAll(ADMIN_MESSAGES.status, null, STATUS_TIMEOUT_MS);
    const workers = answers.map((a) => ({ worker: a.slot.slot, ...(a.value as Readiness & { pid: number }) }));
    const ready = !stopping && workers.length === slots.length && workers.every((w) => w.ready);
    const first = workers[0]?.detail ?? {};
    return {
      ready,
      detail: {
        ...first,
        draining: stopping,
        ...(store ? { store: store.status() } : {}),
        workers: workers.map((w) => ({ worker: w.worker, pid: w.pid, ready: w.ready, ...w.detail })),
      },
    };
  };

  // Every worker's metrics and the primary's own as one set (see aggregate.ts for how).
  const metrics = async (): Promise<MetricFamily[]> => {
    const answers = await askAll(ADMIN_MESSAGES.metrics, null, STATUS_TIMEOUT_MS);
    const own = { worker: PRIMARY_WORKER_LABEL, families: (await registry.getMetricsAsJSON()) as unknown as MetricFamily[] };
    return aggregate([...answers.map((a) => ({ worker: String(a.slot.slot), families: a.value as MetricFamily[] })), own]);
  };

  const mcpPins = {
    list: async (): Promise<PinsReply> => mergePins((await askAll(ADMIN_MESSAGES.pinsList, null, STATUS_TIMEOUT_MS)).map((a) => a.value as PinsReply)),
    // One worker after the other: each records the pin in memory and in the shared pin file.
    approve: async (body: string): Promise<PinsReply> => {
      let first: PinsReply | null = null;
      for (const s of live()) {
        const r = (await (s.peer as IpcPeer).request(ADMIN_MESSAGES.pinsApprove, body, STATUS_TIMEOUT_MS)) as PinsReply;
        if (r.status !== 200) return r;
        first ??= r;
      }
      return first ?? { status: 503, body: { approved: false, error: 'no worker is serving' } };
    },
  };

  const adminOnLoopback = isLoopback(config.server.admin_address);
  const token = (): string | null => {
    const ref = config.server.admin_token;
    if (!ref) return adminOnLoopback ? null : UNMATCHABLE_TOKEN;
    try {
      return secrets.get(ref);
    } catch {
      return UNMATCHABLE_TOKEN;
    }
  };
  if (config.server.admin_token) {
    const problem = secrets.prepare(config.server.admin_token);
    if (problem) throw new Error(`server.admin_token (${SecretStore.describe(config.server.admin_token)}): ${problem}`);
  }

  const admin: HttpServer = await startAdminServer({
    host: config.server.admin_address,
    port: config.server.admin_port,
    readiness,
    reload: reloadAll,
    token,
    mcpPins,
    metrics,
  });

  const ready = new Promise<void>((resolve, reject) => {
    startup = { resolve, reject };
  });
  if (!config.server.handoff_key) {
    log.warn('server.handoff_key is not set: the workers share a random key of this process; ext_proc streams served by another replica than their Check will be denied');
  }
  for (const s of slots) fork(s);

  const shutdown = async (code: number): Promise<never> => {
    stopping = true;
    configWatch.close();
    const running = slots.filter((s) => s.worker !== null);
    if (running.length > 0) {
      const allExited = new Promise<void>((resolve) => {
        onAllExited = resolve;
      });
      for (const s of running) {
        // A worker still starting has no drain handler yet: SIGTERM ends it.
        if (!s.up || !s.peer?.notify(ADMIN_MESSAGES.drain, null)) s.worker?.process.kill('SIGTERM');
      }
      const killTimer = setTimeout(() => {
        for (const s of slots) {
          if (s.worker) {
            log.error({ worker: s.slot }, 'worker did not exit within the shutdown grace; killing it');
            s.worker.process.kill('SIGKILL');
          }
        }
      }, config.server.shutdown_grace_ms + EXIT_MARGIN_MS);
      await allExited;
      clearTimeout(killTimer);
      // The last lines of every worker, read to the end of its output.
      await Promise.race([Promise.all([...relays]), new Promise((r) => setTimeout(r, EXIT_MARGIN_MS).unref())]);
    }
    await new Promise<void>((r) => admin.close(() => r()));
    await fileSink?.close();
    secrets.close();
    await store?.close();
    await flushStdout();
    process.exit(code);
  };

  let signalled = false;
  const onSignal = (signal: string): void => {
    if (signalled) return;
    signalled = true;
    log.info({ signal, workers: slots.filter((s) => s.worker).length }, 'shutting down: draining every worker');
    void shutdown(0);
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));

  try {
    await ready;
  } catch (err) {
    log.error({ err: (err as Error).message }, 'a worker failed to start; stopping');
    await shutdown(1);
  }
  const addr = admin.address();
  log.info({ workers: count, grpc: channel.kind === 'unix' ? channel.path : `${config.server.grpc_address}:${config.server.grpc_port}`, admin_port: typeof addr === 'object' && addr ? addr.port : config.server.admin_port }, 'portcullis serving with worker processes');
}
