import { randomBytes } from 'node:crypto';
import type { Server as HttpServer } from 'node:http';
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { Counter } from 'prom-client';
import { loadConfig } from '../config/load.js';
import type { GatewayConfig } from '../config/types.js';
import { log, setLogLevel } from '../log.js';
import { registry } from '../metrics.js';
import { startTracing } from '../tracing/provider.js';
import { Authorizer, type AuthzDeps } from '../authz/check.js';
import { toCheckResponse, wellKnownResponse, type CheckResponseObject } from '../authz/response.js';
import { DropinGrpcError } from '../authz/dropin.js';
import { auditAnsweredAtCheck } from '../authz/checkRecord.js';
import { oauthResources } from '../mcp/oauth.js';
import type { ProtoCheckRequest } from '../authz/request.js';
import { IdentityVerifier } from '../identity/index.js';
import type { PolicyEngine } from '../policy/engine.js';
import { DecisionLogs, openPolicyEngine, policySettings } from '../policy/setup.js';
import { oneAtATime, watchPath } from '../files/watch.js';
import { ROUTE_BODY_EXTENSION, ToolRegistry } from '../tools/registry.js';
import { toGatewayError } from '../errors.js';
import { SecretStore } from '../credentials/secrets.js';
import { CredentialInjector } from '../credentials/inject.js';
import { RateLimiter } from '../limits/tokenBucket.js';
import { openStore, storeSettings } from '../limits/open.js';
import { prepareFacts } from '../limits/facts.js';
import { compileCatalog } from '../dlp/index.js';
import { compileInjectionRules } from '../inspect/injection.js';
import { compileToolSchemas } from '../inspect/schema.js';
import { AuditLogger } from '../audit/sinks.js';
import { redactPath } from '../audit/record.js';
import { addAccessLogFields } from '../audit/accessLog.js';
import { ExtprocService } from '../extproc/service.js';
import { compileResponses, type ExtprocDeps } from '../extproc/deps.js';
import { MemoryBudget } from '../extproc/response/budget.js';
import { DlpAlerter } from '../extproc/alerts.js';
import type { CheckOutcome } from '../authz/check.js';
import { auditFromAuthz } from '../authz/audit.js';
import { authorizationService, externalProcessorService, withRawRequests } from './protos.js';
import { startGrpcServer, INTERNAL, type GrpcServer, type ServiceBinding } from './grpc.js';
import { startAdminServer, type Readiness, type ReloadResult } from './admin.js';
import { grpcChannel, isLoopback } from '../config/server.js';
import { HANDOFF_MIN_KEY_BYTES, HandoffKey } from '../authz/handoff.js';
import { sessionBinder } from '../mcp/session.js';
import { transportGuard } from '../mcp/origin.js';
import { McpCatalog } from '../mcp/catalog.js';
import { mcpPinsAdmin } from '../mcp/admin.js';
import { IpcStore } from '../limits/ipcStore.js';
import { answerAdmin, countCalls, type WorkerLink } from './workerLink.js';

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
  /** Signs the decision Check hands to ext_proc (and verifies it there). */
  handoff: HandoffKey;
}

/** The server settings bound at start (ports, addresses, channel): a reload cannot change them. */
function listenerSettings(config: GatewayConfig): string {
  const { grpc_address, grpc_port, grpc_tls, grpc_socket_mode, grpc_plaintext, admin_address, admin_port } = config.server;
  return JSON.stringify([grpc_address, grpc_port, grpc_tls ?? null, grpc_socket_mode, grpc_plaintext, admin_address, admin_port]);
}

/** A token no client can present (a configured admin token that cannot be read denies everything). */
const UNMATCHABLE_TOKEN = randomBytes(32).toString('hex');

/** Process-wide key used when none is configured: hand-offs then verify only on this replica. */
let ephemeralHandoff: HandoffKey | null = null;

/**
 * The unconfigured hand-off key of a worker process: the primary's random key, shared by its
 * workers, since a Check and the ext_proc stream of the same request may reach different workers.
 */
function useSharedEphemeralHandoff(value: string): void {
  ephemeralHandoff = new HandoffKey(() => value);
}

/**
 * The hand-off key of a configuration: the configured secret (read on every use, so a rotation
 * applies at once), or a per-process random key with a warning when none is configured.
 */
function handoffKey(config: GatewayConfig, secrets: SecretStore): HandoffKey {
  const ref = config.server.handoff_key;
  if (!ref) {
    if (!ephemeralHandoff) {
      log.warn('server.handoff_key is not set: using a per-process key; ext_proc streams served by another replica than their Check will be denied');
      ephemeralHandoff = HandoffKey.ephemeral();
    }
    return ephemeralHandoff;
  }
  const problem = secrets.prepare(ref);
  if (problem) throw new Error(`server.handoff_key (${SecretStore.describe(ref)}): ${problem}`);
  if (Buffer.byteLength(secrets.get(ref), 'utf8') < HANDOFF_MIN_KEY_BYTES) {
    throw new Error(`server.handoff_key (${SecretStore.describe(ref)}) is shorter than ${HANDOFF_MIN_KEY_BYTES} bytes`);
  }
  return new HandoffKey(() => secrets.get(ref));
}

function samePolicy(a: GatewayConfig, b: GatewayConfig): boolean {
  return policySettings(a) === policySettings(b);
}

/** Opens the policy engine for a configuration (from a file, the first load must succeed). */
export function openPolicy(config: GatewayConfig, watch: boolean): Promise<PolicyEngine> {
  return openPolicyEngine(config, watch);
}

/**
 * Builds every request-path collaborator from a configuration: compiled, opened and watched
 * here, so Check only evaluates. `policy` is reused when the policy settings did not change.
 */
export async function buildDeps(config: GatewayConfig, policy: PolicyEngine, limiter: RateLimiter, budget: MemoryBudget, mcp: McpCatalog = new McpCatalog()): Promise<Built> {
  const secrets = new SecretStore(config.base_dir);
  let audit: AuditLogger | null = null;
  try {
    // Compile everything the inspection path uses before opening anything that must be released.
    const scanner = compileCatalog(config.dlp);
    const schemas = compileToolSchemas(config.tools, config.base_dir);
    const injection = compileInjectionRules();
    const tools = new ToolRegistry(config.tools);
    // OAuth protected resources: checked (URLs, issuers) and compiled now, not on the first call.
    oauthResources(config);
    // MCP Origin / Host allow-lists: compiled now, so a bad entry refuses the configuration.
    for (const t of config.tools) if (t.mcp) transportGuard(t);
    // Rate limit names are checked now: a denial must name exactly one limit.
    limiter.prepare(config);
    prepareFacts(config);
    // Seen signatures live in the shared store: a replayed signature is refused by every replica.
    const identity = await IdentityVerifier.create(config.identity, config.base_dir, secrets, { replayStore: limiter.store });
    const credentials = new CredentialInjector(config.tools, secrets);
    for (const p of credentials.problems()) log.warn(p, 'upstream credential not available; calls to this tool will be denied until it is');
    const handoff = handoffKey(config, secrets);
    const adminToken = config.server.admin_token;
    const tokenProblem = adminToken ? secrets.prepare(adminToken) : null;
    if (adminToken && tokenProblem) throw new Error(`server.admin_token (${SecretStore.describe(adminToken)}): ${tokenProblem}`);
    audit = await AuditLogger.fromConfig(config.audit, config.base_dir, scanner);
    // Last: it switches the shared catalog to this configuration's MCP settings and pin files.
    mcp.configure(config, credentials);
    return {
      deps: { config, tools, identity, policy, credentials, limiter, scanner, sessions: sessionBinder(handoff), mcp },
      extproc: {
        config,
        tools,
        scanner,
        injection,
        schemas,
        responses: compileResponses(config, scanner, mcp),
        credentials,
        budget,
        audit,
        alerter: new DlpAlerter(config.alerting.dlp_threshold, config.alerting.window_s, limiter.store),
        handoff,
        policy,
        mcp,
        store: limiter.store,
      },
      secrets,
      handoff,
    };
  } catch (err) {
    secrets.close();
    await audit?.close();
    throw err;
  }
}

/**
 * On a route whose ext_proc sees no request phase (`route_request_body: none`), and on an
 * OPA-Envoy drop-in route (ext_authz only), the request goes upstream straight after the Check:
 * the forwarded record is written, durably, here.
 * A sink that cannot take it turns the decision into a denial (fail closed), recorded as such.
 */
async function recordForwardedAtCheck(audit: AuditLogger, req: ProtoCheckRequest, outcome: CheckOutcome, redactedPath: string): Promise<CheckOutcome> {
  if (!outcome.allowed || outcome.replay || (req.attributes?.contextExtensions?.[ROUTE_BODY_EXTENSION] !== 'none' && !outcome.dropin)) return outcome;
  try {
    await audit.forwarded({ ...auditFromAuthz(outcome.metadata), redactedPath, inspection: { size: 0, schema: 'skipped' } });
    outcome.metadata.forwarded_recorded = true;
    return outcome;
  } catch (err) {
    const error = toGatewayError(err, 'the audit trail cannot take records');
    const metadata = { ...outcome.metadata, allowed: false, rule: error.rule ?? 'audit.unavailable', reason: error.message };
    const denied: CheckOutcome = { allowed: false, error, rpcId: null, isJsonRpc: false, batchIds: null, policyBody: null, policyHeaders: [], metadata };
    auditAnsweredAtCheck(audit, req, denied);
    return denied;
  }
}

/** A running gateway process. */
export interface App {
  readonly grpcPort: number;
  readonly adminPort: number;
  readonly authorizer: Authorizer;
  /** Drains and stops (graceful shutdown). */
  close(): Promise<void>;
}

/**
 * Loads the configuration, starts gRPC (ext_authz + health) and admin HTTP, and watches for
 * changes. As a worker process (`worker`), the gRPC port is shared with the other workers, the
 * in-memory store and the audit file are the primary's, and the primary serves the admin port
 * (this process answers its requests over the link).
 */
export async function serve(configPath: string, worker?: WorkerLink): Promise<App> {
  const config = loadConfig(configPath);
  setLogLevel(config.server.log_level);
  // Each process (every worker too) exports its own spans; `tracing` applies at the next restart.
  const tracing = startTracing(config.tracing, { worker: worker?.slot });
  if (worker) useSharedEphemeralHandoff(worker.ephemeralHandoffKey);
  let policy = await openPolicy(config, true);
  const decisionLogs = new DecisionLogs();
  decisionLogs.apply(config, policy);
  // The store and its buckets outlive reloads: a config change must not hand every caller a fresh burst.
  // Workers share the primary's memory store, so a limit holds across them; Redis each opens itself.
  const store = worker && config.store?.kind !== 'redis' ? new IpcStore(worker.peer) : openStore(config.store);
  const limiter = new RateLimiter(store);
  // Like the buckets, the response memory budget spans reloads: streams in flight keep holding it.
  const budget = new MemoryBudget(config.inspect.response_memory_budget_bytes);
  // Learned MCP definitions and pins outlive reloads too: one catalog for the Check and ext_proc.
  const mcp = new McpCatalog();
  let built = await buildDeps(config, policy, limiter, budget, mcp);
  const authorizer = new Authorizer(built.deps);
  const processBinding = withRawRequests(externalProcessorService(), 'Process');
  const extproc = new ExtprocService(built.extproc, processBinding.decode);
  let draining = false;
  let lastReloadError: string | null = null;

  const check = (call: ServerUnaryCall<ProtoCheckRequest, CheckResponseObject>, cb: sendUnaryData<CheckResponseObject>): void => {
    const { audit, scanner } = built.extproc;
    const { handoff } = built;
    // OAuth protected resource metadata is public: answered before identity and every other stage.
    let metadata: CheckResponseObject | null;
    try {
      metadata = wellKnownResponse(call.request, oauthResources(authorizer.current.config));
      if (metadata) addAccessLogFields(metadata.dynamicMetadata, { path: redactPath(call.request.attributes?.request?.http?.path ?? '/', scanner) });
    } catch (err) {
      log.error({ err: (err as Error)?.message }, 'failed to answer the OAuth metadata path');
      cb({ code: INTERNAL, details: 'portcullis failed to render a decision' });
      return;
    }
    if (metadata) {
      cb(null, metadata);
      return;
    }
    authorizer
      // Envoy's trace context travels in the call's gRPC metadata (the request headers are the agent's).
      .check(call.request, (name) => call.metadata.get(name))
      .then(async (outcome) => {
        auditAnsweredAtCheck(audit, call.request, outcome);
        // Redacted once, for the access log and the forwarded record alike.
        const path = redactPath(outcome.metadata.path, scanner);
        const decided = await recordForwardedAtCheck(audit, call.request, outcome, path);
        const response = toCheckResponse(decided, handoff);
        addAccessLogFields(response.dynamicMetadata, { path });
        cb(null, response);
      })
      .catch((err: unknown) => {
        // OPA-Envoy drop-in mode answers some decisions with a gRPC error, as the reference does.
        if (err instanceof DropinGrpcError) {
          cb({ code: err.code, details: err.message });
          return;
        }
        // Check itself never throws; reaching here means rendering failed. Envoy denies on error.
        log.error({ err: (err as Error)?.message }, 'failed to render CheckResponse');
        cb({ code: INTERNAL, details: 'portcullis failed to render a decision' });
      });
  };

  const services: ServiceBinding[] = [
    { definition: authorizationService(), impl: { Check: check } },
    { definition: processBinding.definition, impl: { Process: extproc.process } },
  ];
  const grpc: GrpcServer = await startGrpcServer(grpcChannel(config.server, config.base_dir), worker ? countCalls(services, worker.slot) : services, {
    shared: worker !== undefined,
  });

  const isReady = (): boolean => !draining && policy.status().ready;
  const syncHealth = (): void => grpc.health.setStatus('', isReady() ? 'SERVING' : 'NOT_SERVING');
  policy.onReload(syncHealth);
  syncHealth();

  /** Applies the configuration file now; resolves with why it was refused, or null. */
  const reload = async (): Promise<string | null> => {
    try {
      const next = loadConfig(configPath);
      const current = authorizer.current.config;
      if (listenerSettings(next) !== listenerSettings(config)) {
        log.warn({ config: configPath }, 'server ports, addresses or the gRPC channel changed: they apply at the next restart; the rest applies now');
      }
      if (storeSettings(next.store) !== storeSettings(config.store)) {
        log.warn({ config: configPath }, 'the store section changed: it applies at the next restart; the rest applies now');
      }
      const nextPolicy = samePolicy(current, next) ? policy : await openPolicy(next, true);
      let nextBuilt: Built;
      try {
        nextBuilt = await buildDeps(next, nextPolicy, limiter, budget, mcp);
      } catch (err) {
        if (nextPolicy !== policy) nextPolicy.close();
        throw err;
      }
      const old = built;
      authorizer.swap(nextBuilt.deps);
      extproc.swap(nextBuilt.extproc);
      budget.resize(next.inspect.response_memory_budget_bytes);
      built = nextBuilt;
      if (nextPolicy !== policy) {
        policy.close();
        policy = nextPolicy;
        policy.onReload(syncHealth);
      }
      decisionLogs.apply(next, policy);
      old.deps.identity.close();
      old.secrets.close();
      // Streams in flight hold the old logger; the file sink is shared and reference counted.
      void old.extproc.audit.close();
      setLogLevel(next.server.log_level);
      lastReloadError = null;
      syncHealth();
      reloads.inc({ result: 'success' });
      log.info({ config: configPath }, 'configuration reloaded');
      return null;
    } catch (err) {
      lastReloadError = (err as Error).message;
      reloads.inc({ result: 'failure' });
      log.error({ config: configPath, reason: lastReloadError }, 'configuration reload failed; keeping the last good configuration');
      return lastReloadError;
    }
  };
  // Reloads run one at a time, in the order they were asked for.
  const queueReload = oneAtATime(reload);
  const configWatch = watchPath(configPath, () => void queueReload());

  /** `POST /reload`: configuration now, then policy bundle and data now (a pipeline pushed them). */
  const reloadNow = async (): Promise<ReloadResult> => {
    const configError = await queueReload();
    if (configError !== null) return { ok: false, reason: `configuration: ${configError}`, policyVersion: policy.status().version };
    const status = await policy.reload();
    if (status.lastError !== null) return { ok: false, reason: `policy: ${status.lastError}`, policyVersion: status.version };
    return { ok: true, reason: null, policyVersion: status.version };
  };

  // The admin port's address is fixed at start: off loopback it stays token-protected even if a
  // reload drops the token (an unreadable token matches nothing).
  const adminOnLoopback = isLoopback(config.server.admin_address);
  const adminToken = (): string | null => {
    const ref = authorizer.current.config.server.admin_token;
    if (!ref) return adminOnLoopback ? null : UNMATCHABLE_TOKEN;
    try {
      return built.secrets.get(ref);
    } catch {
      return UNMATCHABLE_TOKEN;
    }
  };
  // The store's state is shown, not required: each limit says what an unreachable store means.
  const readiness = (): Readiness => ({ ready: isReady(), detail: { draining, policy: policy.status(), config_reload_error: lastReloadError, store: store.status() } });
  let admin: HttpServer | null = null;
  if (worker) answerAdmin(worker, { readiness, reload: reloadNow, mcpPins: mcpPinsAdmin(mcp) });
  else {
    admin = await startAdminServer({
      host: config.server.admin_address,
      port: config.server.admin_port,
      readiness,
      reload: reloadNow,
      token: adminToken,
      mcpPins: mcpPinsAdmin(mcp),
    });
  }

  // Each worker would otherwise load the MCP client SDK cold on its first discovery, inside a
  // call's ext_proc time budget; a worker of a gateway that asks MCP servers loads it now.
  if (worker && config.tools.some((t) => t.mcp?.server_url)) {
    void Promise.all([import('@modelcontextprotocol/sdk/client/index.js'), import('@modelcontextprotocol/sdk/client/streamableHttp.js'), import('zod')]).catch(() => undefined);
  }

  const adminAddr = admin?.address();
  const adminPort = typeof adminAddr === 'object' && adminAddr ? adminAddr.port : config.server.admin_port;
  log.info({ grpc: grpc.address, ...(worker ? { worker: worker.slot } : { admin_port: adminPort }), policy: policy.status().version, tools: config.tools.map((t) => t.name) }, 'portcullis serving');

  return {
    grpcPort: grpc.port,
    adminPort,
    authorizer,
    async close(): Promise<void> {
      draining = true;
      configWatch.close();
      syncHealth();
      await grpc.shutdown(authorizer.current.config.server.shutdown_grace_ms);
      const adminServer = admin;
      if (adminServer) await new Promise<void>((r) => adminServer.close(() => r()));
      policy.close();
      await decisionLogs.close();
      mcp.close();
      built.deps.identity.close();
      built.secrets.close();
      await built.extproc.audit.close();
      await store.close();
      // Last: the spans of the calls that just drained are exported before the process goes.
      await tracing.shutdown();
    },
  };
}
