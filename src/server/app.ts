import { unwatchFile, watchFile } from 'node:fs';
import { resolve } from 'node:path';
import type { Server as HttpServer } from 'node:http';
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { Counter } from 'prom-client';
import { loadConfig } from '../config/load.js';
import type { GatewayConfig } from '../config/types.js';
import { log, setLogLevel } from '../log.js';
import { registry } from '../metrics.js';
import { Authorizer, type AuthzDeps } from '../authz/check.js';
import { toCheckResponse, type CheckResponseObject } from '../authz/response.js';
import type { ProtoCheckRequest } from '../authz/request.js';
import { IdentityVerifier } from '../identity/index.js';
import { PolicyEngine } from '../policy/engine.js';
import { ToolRegistry } from '../tools/registry.js';
import { SecretStore } from '../credentials/secrets.js';
import { CredentialInjector } from '../credentials/inject.js';
import { RateLimiter } from '../limits/tokenBucket.js';
import { compileCatalog } from '../dlp/index.js';
import { compileInjectionRules } from '../inspect/injection.js';
import { compileToolSchemas } from '../inspect/schema.js';
import { AuditLogger } from '../audit/sinks.js';
import { ExtprocService } from '../extproc/service.js';
import { compileFilters, type ExtprocDeps } from '../extproc/deps.js';
import { DlpAlerter } from '../extproc/alerts.js';
import type { CheckOutcome } from '../authz/check.js';
import { auditDecision, auditIdentity } from '../authz/audit.js';
import { authorizationService, externalProcessorService } from './protos.js';
import { startGrpcServer, INTERNAL, type GrpcServer } from './grpc.js';
import { startAdminServer } from './admin.js';

const reloads = new Counter({
  name: 'portcullis_config_reloads_total',
  help: 'Configuration reloads by result',
  labelNames: ['result'] as const,
  registers: [registry],
});

/** Collaborators built from one configuration, with what must be released when replaced. */
interface Built {
  deps: AuthzDeps;
  extproc: ExtprocDeps;
  secrets: SecretStore;
}

function samePolicy(a: GatewayConfig, b: GatewayConfig): boolean {
  const pa = a.policy;
  const pb = b.policy;
  return (
    resolve(a.base_dir, pa.bundle) === resolve(b.base_dir, pb.bundle) &&
    (pa.data ? resolve(a.base_dir, pa.data) : null) === (pb.data ? resolve(b.base_dir, pb.data) : null) &&
    pa.decision === pb.decision
  );
}

/** Opens the policy engine for a configuration (first load must succeed). */
export function openPolicy(config: GatewayConfig, watch: boolean): Promise<PolicyEngine> {
  const p = config.policy;
  return PolicyEngine.open({
    bundlePath: resolve(config.base_dir, p.bundle),
    dataPath: p.data ? resolve(config.base_dir, p.data) : undefined,
    decision: p.decision,
    watch,
  });
}

/**
 * Builds every request-path collaborator from a configuration: compiled, opened and watched
 * here, so Check only evaluates. `policy` is reused when the policy settings did not change.
 */
export async function buildDeps(config: GatewayConfig, policy: PolicyEngine, limiter: RateLimiter): Promise<Built> {
  const secrets = new SecretStore(config.base_dir);
  let audit: AuditLogger | null = null;
  try {
    // Compile everything the inspection path uses before opening anything that must be released.
    const scanner = compileCatalog(config.dlp);
    const schemas = compileToolSchemas(config.tools, config.base_dir);
    const injection = compileInjectionRules();
    const tools = new ToolRegistry(config.tools);
    const identity = await IdentityVerifier.create(config.identity, config.base_dir, secrets);
    const credentials = new CredentialInjector(config.tools, secrets);
    for (const p of credentials.problems()) log.warn(p, 'upstream credential not available; calls to this tool will be denied until it is');
    audit = await AuditLogger.fromConfig(config.audit, config.base_dir);
    return {
      deps: { config, tools, identity, policy, credentials, limiter, scanner },
      extproc: {
        config,
        tools,
        scanner,
        injection,
        schemas,
        filters: compileFilters(config),
        audit,
        alerter: new DlpAlerter(config.alerting.dlp_threshold, config.alerting.window_s),
      },
      secrets,
    };
  } catch (err) {
    secrets.close();
    await audit?.close();
    throw err;
  }
}

/** One audit record for a request ext_authz denied (ext_proc never sees it). */
function auditDenial(audit: AuditLogger, req: ProtoCheckRequest, outcome: CheckOutcome): void {
  if (outcome.allowed) return;
  const m = outcome.metadata;
  const headers = req.attributes?.request?.http?.headers ?? {};
  audit.record({
    requestId: m.request_id,
    traceparent: m.traceparent,
    identity: m.agent || m.user ? auditIdentity(m) : null,
    tool: m.tool,
    method: m.method,
    path: m.path,
    decision: auditDecision(m),
    inspection: { size: Number(headers['content-length'] ?? 0) || 0, schema: 'skipped' },
    upstreamStatus: null,
    responseStatus: outcome.error.httpStatus,
    latencyMs: { authz: m.authz_ms, total: m.authz_ms },
    error: { code: outcome.error.code, rule: outcome.error.rule },
  });
}

/** A running gateway process. */
export interface App {
  readonly grpcPort: number;
  readonly adminPort: number;
  readonly authorizer: Authorizer;
  /** Drains and stops (graceful shutdown). */
  close(): Promise<void>;
}

/** Loads the configuration, starts gRPC (ext_authz + health) and admin HTTP, and watches for changes. */
export async function serve(configPath: string): Promise<App> {
  const config = loadConfig(configPath);
  setLogLevel(config.server.log_level);
  let policy = await openPolicy(config, true);
  // Buckets outlive reloads: a config change must not hand every caller a fresh burst.
  const limiter = new RateLimiter();
  let built = await buildDeps(config, policy, limiter);
  const authorizer = new Authorizer(built.deps);
  const extproc = new ExtprocService(built.extproc);
  let draining = false;
  let lastReloadError: string | null = null;

  const check = (call: ServerUnaryCall<ProtoCheckRequest, CheckResponseObject>, cb: sendUnaryData<CheckResponseObject>): void => {
    const audit = built.extproc.audit;
    authorizer
      .check(call.request)
      .then((outcome) => {
        auditDenial(audit, call.request, outcome);
        cb(null, toCheckResponse(outcome));
      })
      .catch((err: unknown) => {
        // Check itself never throws; reaching here means rendering failed. Envoy denies on error.
        log.error({ err: (err as Error)?.message }, 'failed to render CheckResponse');
        cb({ code: INTERNAL, details: 'portcullis failed to render a decision' });
      });
  };

  const grpc: GrpcServer = await startGrpcServer(config.server.grpc_address, config.server.grpc_port, [
    { definition: authorizationService(), impl: { Check: check } },
    { definition: externalProcessorService(), impl: { Process: extproc.process } },
  ]);

  const isReady = (): boolean => !draining && policy.status().ready;
  const syncHealth = (): void => grpc.health.setStatus('', isReady() ? 'SERVING' : 'NOT_SERVING');
  policy.onReload(syncHealth);
  syncHealth();

  const admin: HttpServer = await startAdminServer(config.server.admin_address, config.server.admin_port, () => ({
    ready: isReady(),
    detail: { draining, policy: policy.status(), config_reload_error: lastReloadError },
  }));

  const reload = async (): Promise<void> => {
    try {
      const next = loadConfig(configPath);
      const current = authorizer.current.config;
      const nextPolicy = samePolicy(current, next) ? policy : await openPolicy(next, true);
      let nextBuilt: Built;
      try {
        nextBuilt = await buildDeps(next, nextPolicy, limiter);
      } catch (err) {
        if (nextPolicy !== policy) nextPolicy.close();
        throw err;
      }
      const old = built;
      authorizer.swap(nextBuilt.deps);
      extproc.swap(nextBuilt.extproc);
      built = nextBuilt;
      if (nextPolicy !== policy) {
        policy.close();
        policy = nextPolicy;
        policy.onReload(syncHealth);
      }
      old.deps.identity.close();
      old.secrets.close();
      // Streams in flight hold the old logger; the file sink is shared and reference counted.
      void old.extproc.audit.close();
      setLogLevel(next.server.log_level);
      lastReloadError = null;
      syncHealth();
      reloads.inc({ result: 'ok' });
      log.info({ config: configPath }, 'configuration reloaded');
    } catch (err) {
      lastReloadError = (err as Error).message;
      reloads.inc({ result: 'error' });
      log.error({ config: configPath, reason: lastReloadError }, 'configuration reload failed; keeping the last good configuration');
    }
  };
  let reloading = Promise.resolve();
  watchFile(configPath, { interval: 300, persistent: false }, (cur, prev) => {
    if (cur.mtimeMs !== prev.mtimeMs || cur.size !== prev.size) reloading = reloading.then(reload);
  });

  const adminAddr = admin.address();
  const adminPort = typeof adminAddr === 'object' && adminAddr ? adminAddr.port : config.server.admin_port;
  log.info({ grpc_port: grpc.port, admin_port: adminPort, policy: policy.status().version, tools: config.tools.map((t) => t.name) }, 'portcullis serving');

  return {
    grpcPort: grpc.port,
    adminPort,
    authorizer,
    async close(): Promise<void> {
      draining = true;
      unwatchFile(configPath);
      syncHealth();
      await grpc.shutdown(authorizer.current.config.server.shutdown_grace_ms);
      await new Promise<void>((r) => admin.close(() => r()));
      policy.close();
      built.deps.identity.close();
      built.secrets.close();
      await built.extproc.audit.close();
    },
  };
}
