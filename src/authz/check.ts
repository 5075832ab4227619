import { createHash, randomUUID } from 'node:crypto';
import { GatewayError, toGatewayError } from '../errors.js';
import { log } from '../log.js';
import type { GatewayConfig, ToolConfig } from '../config/types.js';
import type { Principal } from '../identity/types.js';
import type { IdentityVerifier } from '../identity/index.js';
import type { PolicyEngine } from '../policy/engine.js';
import type { Decision } from '../policy/result.js';
import { bodyTruncated, buildPolicyInput, parsedForm } from '../policy/input.js';
import type { McpCatalog } from '../mcp/catalog.js';
import { checkBatchSize, firstRpcId, jsonRpcFromValue, type JsonRpcBody, type McpCall } from '../inspect/mcp.js';
import { parseStrictJson } from '../inspect/strictJson.js';
import { isJsonTool, readRequestBody, requireJsonContentType, truncatedRequestBody } from '../inspect/requestBody.js';
import { scanOutsideBody } from '../inspect/exfiltration.js';
import type { Scanner } from '../dlp/index.js';
import { checkRouteBinding, checkRouteBody, injectedHeaders, isMutating, toolView, type ToolLookup, type ToolRegistry } from '../tools/registry.js';
import type { CredentialInjector, HeaderValue } from '../credentials/inject.js';
import { RateLimitedError, type RateLimiter } from '../limits/tokenBucket.js';
import { lookupFacts, type FactLookup } from '../limits/facts.js';
import type { ProtoCheckRequest } from './request.js';
import { HeaderHygiene, hasMethodOverrideParam, IDENTITY_HEADERS, METHOD_OVERRIDE_PARAM } from '../tools/headerHygiene.js';
import { stageTimer, recordDecision } from './metrics.js';
import { observeCheck } from './metrics.js';
import { challengeFor, oauthResources } from '../mcp/oauth.js';
import { headerToken } from '../mcp/exchange.js';
import { countMcpCalls } from '../mcp/metrics.js';
import { transportGuard } from '../mcp/origin.js';
import { resolveSession, sessionIdentity, SESSION_HEADER, type SessionBinder } from '../mcp/session.js';
import { callFromHeaders, checkHeadersAgree, hasStandardHeaders, readStandardHeaders, type StandardHeaders } from '../mcp/headers.js';
import { claimIdempotency, releaseClaim, type ReplayedResponse } from '../limits/idempotency.js';
import { decideOpaEnvoy, dropinSelected, type DropinAnswer } from './dropin.js';
import { CheckTrace } from '../tracing/check.js';
import type { HeaderSource } from '../tracing/propagation.js';

/** Prefix of headers the gateway itself sets upstream; a caller can never supply them. */
export const GATEWAY_HEADER_PREFIX = 'x-portcullis-';

/** What ext_authz learned, handed to ext_proc and the audit log through dynamic metadata. */
export interface AuthzMetadata {
  request_id: string | null;
  /** W3C trace context of the request, for the audit record when ext_proc skips request headers. */
  traceparent: string | null;
  method: string;
  path: string;
  tool: string | null;
  agent: string | null;
  agent_version: string | null;
  user: string | null;
  tenant: string | null;
  auth_methods: string[];
  /** Roles of the verified principal. */
  roles: string[];
  /**
   * Rule of the error a presented credential failed verification with (`identity.*`), null when
   * none failed; the identity fields are then null.
   */
  auth_error: string | null;
  /**
   * The Check already wrote the forwarded audit record (routes whose ext_proc sees no request
   * phase, `route_request_body: none`); ext_proc then writes only the completion record.
   */
  forwarded_recorded: boolean;
  allowed: boolean;
  dry_run: boolean;
  rule: string | null;
  reason: string | null;
  policy_version: string | null;
  mcp_method: string | null;
  mcp_tool: string | null;
  /** Prompt named by the first call (`prompts/get`, prompt completion), null otherwise. */
  mcp_prompt: string | null;
  /** Resource URI named by the first call (`resources/read`, ...), null otherwise. */
  mcp_resource: string | null;
  /** `mcp-session-id` request header (printable, bounded), null when absent. */
  mcp_session: string | null;
  /** `mcp-protocol-version` request header (printable, bounded), null when absent. */
  mcp_protocol_version: string | null;
  /** How the principal was proven (issuers, key ids; never a secret), for ext_proc's policy input. */
  proven_by: string[];
  /** The bearer token's `jti`, for ext_proc's policy input. */
  jti: string | null;
  /**
   * SHA-256 (hex) of the whole body a JSON tool's decision was made on, `null` when there was
   * none; ext_proc refuses to forward a body that differs.
   */
  body_sha256: string | null;
  authz_ms: number;
  /**
   * `"headers"` when the decision was made on the MCP standard headers without the body (a
   * route that does not send it to the Check); ext_proc then checks the body against them and
   * decides again on the body. `null` otherwise.
   */
  mcp_decided_on: string | null;
  /**
   * Store key of the call's idempotency entry (src/limits/idempotency.ts), null when untracked.
   * With {@link idempotency_claim}: ext_proc settles the claim; without: a replay from the store.
   */
  idempotency_key: string | null;
  /** The pending marker this call holds, exactly as stored (ext_proc swaps it); null otherwise. */
  idempotency_claim: string | null;
  /** Facts to record once the call completed (encoded records of limits/facts.ts; keys hashed). */
  fact_records: string[];
  /** Budgets the response's units are added to (encoded records of limits/facts.ts). */
  budget_records: string[];
}

/** Allowed: what Envoy must change on the upstream request. */
export interface CheckAllowed {
  readonly allowed: true;
  readonly setHeaders: readonly HeaderValue[];
  readonly removeHeaders: readonly string[];
  readonly responseHeadersToAdd: readonly HeaderValue[];
  readonly metadata: AuthzMetadata;
  readonly policyMetadata: Readonly<Record<string, unknown>> | null;
  /** Answered from the idempotency store: rendered as this response, the tool is not called. */
  readonly replay?: ReplayedResponse;
  /** OPA-Envoy drop-in mode: rendered exactly as this answer (src/authz/dropin.ts). */
  readonly dropin?: DropinAnswer;
}

/** Denied: the error and how to render it. */
export interface CheckDenied {
  readonly allowed: false;
  readonly error: GatewayError;
  /** JSON-RPC id when the request was JSON-RPC, so the denial is a JSON-RPC error. */
  readonly rpcId: string | number | null;
  readonly isJsonRpc: boolean;
  /** Ids of every call of a JSON-RPC batch (each gets an error entry); null for one message. */
  readonly batchIds: readonly (string | number)[] | null;
  /** Policy-supplied body and headers (OPA-Envoy compatible) take precedence when present. */
  readonly policyBody: string | null;
  readonly policyHeaders: readonly HeaderValue[];
  readonly metadata: AuthzMetadata;
  /** `WWW-Authenticate` of a 401 for an OAuth protected resource (src/mcp/oauth.ts); absent otherwise. */
  readonly challenge?: string | null;
  /** `RateLimit-Policy` / `RateLimit` of a rate limited call; absent otherwise. */
  readonly rateLimitHeaders?: readonly HeaderValue[];
  /** OPA-Envoy drop-in mode: rendered exactly as this answer (src/authz/dropin.ts). */
  readonly dropin?: DropinAnswer;
}

/** Result of one Check. */
export type CheckOutcome = CheckAllowed | CheckDenied;

/** Everything Check needs; swapped as a whole on config reload. */
export interface AuthzDeps {
  readonly config: GatewayConfig;
  readonly tools: ToolRegistry;
  readonly identity: IdentityVerifier;
  readonly policy: PolicyEngine;
  readonly credentials: CredentialInjector;
  readonly limiter: RateLimiter;
  /** DLP scanner (compiled at load) for what leaves besides the body: URL and headers. */
  readonly scanner: Scanner;
  /** Verifies MCP session bindings; without it every presented session id is refused (404). */
  readonly sessions?: SessionBinder;
  /** MCP tool definitions learned by this process (whether an MCP tool is read-only). */
  readonly mcp?: McpCatalog;
}

interface Ctx {
  readonly req: ProtoCheckRequest;
  readonly headers: Readonly<Record<string, string>>;
  readonly method: string;
  readonly path: string;
  readonly requestId: string | null;
  /** Identifies this Check's policy decision (OPA's `decision_id`: decision logs, drop-in metadata). */
  readonly decisionId: string;
  readonly rawBody: Buffer | undefined;
  /** The body as text, read once (see inspect/requestBody.ts). */
  bodyText: string | null;
  /** `parsed_body` for the policy: the same value the schema check and MCP parsing see. */
  parsedBody: unknown;
  /** SHA-256 (hex) of a JSON tool's body the decision was made on. */
  bodySha256: string | null;
  /** Identity verification passed (a principal, or none needed). */
  authenticated: boolean;
  /** Identity verification ran (passed or not), so a denial knows whether to try it for the audit record. */
  identityTried: boolean;
  /** Rule of the presented credential's failed verification. */
  authError: string | null;
  /** The message of each call of a JSON-RPC batch (same order as `mcp`); null for one message. */
  batchMessages: readonly unknown[] | null;
  readonly truncated: boolean;
  readonly started: bigint;
  tool: ToolConfig | null;
  principal: Principal | null;
  mcp: McpCall[];
  isJsonRpc: boolean;
  rpcId: string | number | null;
  batchIds: (string | number)[] | null;
  decision: Decision | null;
  dryRun: boolean;
  /** MCP standard headers (`Mcp-Method`, `Mcp-Name`) of a request to an MCP tool. */
  mcpHeaders: StandardHeaders | null;
  /** The server's own MCP session id, sent upstream in place of the binding the agent presented. */
  upstreamSession: string | null;
  /** Decided on the MCP standard headers: the route did not send the body to the Check. */
  headerDecided: boolean;
  /** `RateLimit-Policy` / `RateLimit` of the allowed call (the tightest limit). */
  rateLimitHeaders: readonly HeaderValue[];
  /** Idempotency claim held by this call (released if a later stage denies), or the replay key. */
  idempotency: { readonly key: string; readonly claim: string | null } | null;
  /** The stored answer of an idempotent retry. */
  replay: ReplayedResponse | null;
  /** Facts of each call and what to record after it (null: the tool has none). */
  facts: FactLookup | null;
  /** The Check's span: its context is the decision's trace context (audit, upstream `traceparent`). */
  readonly trace: CheckTrace;
}

function headerList(obj: Readonly<Record<string, string | readonly string[]>> | null | undefined): HeaderValue[] {
  if (!obj) return [];
  const out: HeaderValue[] = [];
  for (const [key, v] of Object.entries(obj)) {
    for (const value of typeof v === 'string' ? [v] : v) out.push({ key: key.toLowerCase(), value });
  }
  return out;
}

/** Remembers a JSON-RPC body's calls, so denials answer each id. */
function noteJsonRpc(ctx: Ctx, rpc: JsonRpcBody): void {
  ctx.isJsonRpc = true;
  ctx.mcp = rpc.calls;
  ctx.rpcId = rpc.calls[0]?.id ?? null;
  if (rpc.batch) ctx.batchIds = rpc.calls.flatMap((c) => (c.id === null || c.id === undefined ? [] : [c.id]));
}

/**
 * Reads a whole body only to see whether it is JSON-RPC; never throws, never decides anything.
 * With `mcpTool`, a body that is not readable JSON-RPC is answered as JSON-RPC anyway, with the
 * id found near its start (or null).
 */
function peekJsonRpc(ctx: Ctx, mcpTool: boolean): void {
  if (!ctx.rawBody) return;
  const r = ctx.truncated ? null : parseStrictJson(ctx.rawBody);
  const rpc = r?.ok ? jsonRpcFromValue(r.value) : null;
  if (rpc) noteJsonRpc(ctx, rpc);
  else if (mcpTool) {
    ctx.isJsonRpc = true;
    ctx.rpcId = firstRpcId(ctx.rawBody.toString('utf8'));
  }
}


function headerHygiene(deps: AuthzDeps): HeaderHygiene {
  const c = deps.config;
  return new HeaderHygiene({ strip: c.strip_headers, stripPrefixes: c.inspect.strip_header_prefixes, forward: c.inspect.forward_headers, credentials: deps.identity.credentialHeaders });
}

/**
 * ext_authz Check: request -> tool -> body shape -> identity -> policy -> limits -> credentials.
 * Each stage either enriches the context or throws a GatewayError; any other exception denies.
 */
export class Authorizer {
  /** Headers removed upstream for the current deps; built once per (re)load, not per call. */
  private hygiene: HeaderHygiene;

  constructor(private deps: AuthzDeps) {
    this.hygiene = headerHygiene(deps);
  }

  /** Replaces configuration and collaborators atomically (reload). */
  swap(deps: AuthzDeps): void {
    this.hygiene = headerHygiene(deps);
    this.deps = deps;
  }

  /** Current dependencies (for status and shutdown). */
  get current(): AuthzDeps {
    return this.deps;
  }

  /**
   * Decides one request. Never throws: failures become denials (fail closed). `traceSource`
   * reads the call's gRPC metadata (Envoy's trace context), never the request's headers.
   */
  async check(req: ProtoCheckRequest, traceSource: HeaderSource | null = null): Promise<CheckOutcome> {
    const deps = this.deps;
    const hygiene = this.hygiene;
    const ctx = this.context(deps, req, traceSource);
    const outcome = await ctx.trace.run(() => this.decide(deps, hygiene, ctx));
    ctx.trace.end(outcome.metadata, outcome.allowed ? null : outcome.error, ctx.rpcId, ctx.batchIds === null ? null : ctx.mcp.length);
    return outcome;
  }

  private async decide(deps: AuthzDeps, hygiene: HeaderHygiene, ctx: Ctx): Promise<CheckOutcome> {
    try {
      // OPA-Envoy drop-in mode: a route that opts in and a request that names no tool.
      if (dropinSelected(deps.config, ctx.req, deps.tools, ctx.path)) return await this.dropin(deps, ctx);
      const lookup = this.resolveTool(deps, ctx);
      ctx.tool = lookup.tool;
      // Nothing that tells which tools exist (404, limits, content types) comes before identity.
      await this.authenticate(deps, ctx, lookup.tool);
      if (lookup.error) throw lookup.error;
      checkRouteBinding(lookup.tool, ctx.req.attributes?.contextExtensions, deps.config.inspect.require_route_tool);
      checkRouteBody(ctx.req.attributes?.contextExtensions, ctx.headers, ctx.rawBody?.length ?? 0);
      if (hasMethodOverrideParam(ctx.path)) {
        throw new GatewayError('invalid_request', `the "${METHOD_OVERRIDE_PARAM}" query parameter is not accepted: send the HTTP method itself`, { rule: 'request.method_override' });
      }
      this.mcpTransport(deps, ctx);
      this.inspectBody(deps, ctx);
      // A policy or data file just changed (e.g. a revocation): decide with the new one.
      const settling = deps.policy.settled();
      if (settling) await settling;
      await this.readFacts(deps, ctx);
      this.authorize(deps, ctx);
      this.exfiltration(deps, ctx, hygiene);
      await this.limit(deps, ctx);
      await this.idempotency(deps, ctx);
      const outcome = ctx.replay ? this.replayed(deps, ctx, ctx.replay) : this.allow(deps, ctx, hygiene);
      recordDecision(outcome.metadata.dry_run ? 'dry_run_allow' : 'allow', 'none', ctx.tool?.name ?? null, outcome.metadata.rule);
      countMcpCalls(ctx.tool, ctx.mcp, outcome.metadata.dry_run ? 'dry_run_allow' : 'allow');
      observeCheck(ctx.started, ctx.tool?.name ?? null, outcome.metadata.dry_run ? 'dry_run_allow' : 'allow');
      return outcome;
    } catch (err) {
      const error = toGatewayError(err, 'the gateway could not decide');
      // A denied call runs nowhere: its claim is released so a retry may run.
      if (ctx.idempotency?.claim) releaseClaim(deps.limiter.store, ctx.idempotency.key, ctx.idempotency.claim, ctx.tool?.name ?? '_none');
      ctx.idempotency = null;
      // Denied before identity was established: learn who asked, for the audit record only.
      if (!ctx.identityTried) await this.identifyForAudit(deps, ctx);
      // A JSON-RPC caller gets a JSON-RPC error, also when denied before its body was read, or
      // (once authenticated) when an MCP tool's body could not be read as JSON-RPC at all.
      if (!ctx.isJsonRpc) peekJsonRpc(ctx, ctx.authenticated && ctx.tool?.mcp !== undefined);
      if (error.code === 'internal') log.error({ err: (err as Error)?.message, request_id: ctx.requestId }, 'check failed; denying');
      recordDecision('deny', error.code, ctx.tool?.name ?? null, error.rule ?? null);
      countMcpCalls(ctx.tool, ctx.mcp, 'deny');
      observeCheck(ctx.started, ctx.tool?.name ?? null, 'deny');
      return {
        allowed: false,
        error,
        rpcId: ctx.rpcId,
        isJsonRpc: ctx.isJsonRpc,
        batchIds: ctx.batchIds,
        policyBody: ctx.decision && !ctx.decision.allowed ? ctx.decision.body : null,
        policyHeaders: ctx.decision && !ctx.decision.allowed ? headerList(ctx.decision.headers) : [],
        metadata: this.metadata(deps, ctx, false, error.rule ?? null, error.message),
        challenge: error.code === 'unauthenticated' ? challengeFor(deps.config, ctx.tool?.name, ctx.authError === 'identity.jwt') : null,
        rateLimitHeaders: err instanceof RateLimitedError ? err.headers : [],
      };
    }
  }

  /**
   * OPA-Envoy drop-in mode (src/authz/dropin.ts): no tool stages, the reference's input and
   * answer. A verified credential is offered as `input.identity` (a missing or failing one is
   * null: the policy decides, as an OPA-Envoy policy that reads its own tokens expects).
   */
  private async dropin(deps: AuthzDeps, ctx: Ctx): Promise<CheckOutcome> {
    const mode = deps.config.opa_envoy;
    if (!mode) throw new GatewayError('internal', 'OPA-Envoy drop-in mode is not configured', { rule: 'opa_envoy.disabled' });
    if (mode.identity === 'offer') {
      try {
        ctx.principal = await this.verifyIdentity(deps, ctx, null);
      } catch {
        ctx.principal = null;
      }
    }
    ctx.authenticated = true;
    // A policy or data file just changed: decide with the new one, as tool calls do.
    const settling = deps.policy.settled();
    if (settling) await settling;
    // Caller-supplied identity and the gateway's own headers never reach the upstream.
    const removeHeaders = Object.keys(ctx.headers).filter((h) => h.startsWith(GATEWAY_HEADER_PREFIX) || IDENTITY_HEADERS.includes(h) || deps.config.strip_headers.includes(h));
    const answer = decideOpaEnvoy(ctx.req, { policy: deps.policy, mode, dryRun: deps.config.policy.dry_run, identity: ctx.principal, decisionId: ctx.decisionId, removeHeaders });
    ctx.dryRun = answer.rule === 'opa_envoy.dry_run_deny';
    if (answer.kind === 'response' && answer.allowed) {
      recordDecision(ctx.dryRun ? 'dry_run_allow' : 'allow', 'none', null, answer.rule);
      const metadata = this.metadata(deps, ctx, true, answer.rule, null);
      return { allowed: true, setHeaders: [], removeHeaders: [], responseHeadersToAdd: [], metadata, policyMetadata: null, dropin: answer };
    }
    const reason = answer.kind === 'error' ? answer.message : 'the OPA-Envoy policy denied the request';
    // A gRPC error is answered by Envoy with its status_on_error (503 in envoy/envoy.yaml).
    const error = new GatewayError(answer.kind === 'error' ? 'internal' : 'forbidden', reason, { rule: answer.rule, httpStatus: answer.kind === 'error' ? 503 : (answer.httpStatus ?? 403) });
    recordDecision('deny', error.code, null, answer.rule);
    return { allowed: false, error, rpcId: null, isJsonRpc: false, batchIds: null, policyBody: null, policyHeaders: [], metadata: this.metadata(deps, ctx, false, answer.rule, reason), dropin: answer };
  }

  private context(deps: AuthzDeps, req: ProtoCheckRequest, traceSource: HeaderSource | null): Ctx {
    const http = req.attributes?.request?.http ?? {};
    const headers = http.headers ?? {};
    const rawBody = http.rawBody && http.rawBody.length > 0 ? http.rawBody : http.body ? Buffer.from(http.body, 'utf8') : undefined;
    const decisionId = randomUUID();
    return {
      trace: new CheckTrace(traceSource, headers, decisionId),
      req,
      headers,
      method: http.method ?? headers[':method'] ?? 'GET',
      path: http.path ?? headers[':path'] ?? '/',
      requestId: headers['x-request-id'] ?? http.id ?? null,
      decisionId,
      rawBody,
      bodyText: null,
      parsedBody: null,
      bodySha256: null,
      batchMessages: null,
      authenticated: false,
      identityTried: false,
      authError: null,
      truncated: bodyTruncated(headers, rawBody?.length ?? 0, deps.config.inspect.check_body_bytes),
      started: process.hrtime.bigint(),
      tool: null,
      principal: null,
      mcp: [],
      isJsonRpc: false,
      rpcId: null,
      batchIds: null,
      decision: null,
      dryRun: false,
      mcpHeaders: null,
      upstreamSession: null,
      headerDecided: false,
      rateLimitHeaders: [],
      idempotency: null,
      replay: null,
      facts: null,
    };
  }

  /** Finds the tool; only errors that reveal nothing about the inventory are thrown here. */
  private resolveTool(deps: AuthzDeps, ctx: Ctx): ToolLookup {
    const t = stageTimer('tool');
    try {
      for (const name of Object.keys(ctx.headers)) {
        // Envoy's original-destination headers could steer a request to an arbitrary host.
        if (name.startsWith('x-envoy-original-dst')) {
          throw new GatewayError('invalid_request', 'requests cannot choose their upstream host', { rule: 'tool.direct_upstream' });
        }
      }
      const lookup = deps.tools.lookup(ctx.path);
      if (lookup.error?.code === 'invalid_request') throw lookup.error;
      return lookup;
    } finally {
      t();
    }
  }

  private inspectBody(deps: AuthzDeps, ctx: Ctx): void {
    const tool = ctx.tool as ToolConfig;
    const declared = Number(ctx.headers['content-length'] ?? NaN);
    const seen = ctx.rawBody?.length ?? 0;
    // Envoy cut the body: the request holds at least one byte more than it forwarded.
    const cut = ctx.headers['x-envoy-auth-partial-body'] === 'true';
    const size = Math.max(Number.isFinite(declared) ? declared : 0, cut ? seen + 1 : seen);
    if (size > tool.request.max_body_bytes) {
      const shown = Number.isFinite(declared) || !cut ? `${size} bytes` : `more than ${seen} bytes`;
      throw new GatewayError('payload_too_large', `request body of ${shown} exceeds the ${tool.request.max_body_bytes}-byte limit of tool "${tool.name}"`, {
        rule: 'inspect.body_size',
        details: { limit_bytes: tool.request.max_body_bytes },
      });
    }
    // A body is announced (length, chunked framing) even when the Check was not sent its bytes.
    const announced = (Number.isFinite(declared) && declared > 0) || ctx.headers['transfer-encoding'] !== undefined;
    if (!ctx.rawBody && !announced) return;
    const contentType = ctx.headers['content-type'];
    requireJsonContentType(tool, contentType);
    if (isJsonTool(tool)) {
      // A route that does not send the body: decide on the MCP standard headers; ext_proc reads
      // the whole body, checks it agrees with them and decides again on it.
      if (!ctx.rawBody && tool.mcp && ctx.mcpHeaders && hasStandardHeaders(ctx.mcpHeaders)) {
        ctx.headerDecided = true;
        ctx.isJsonRpc = true;
        ctx.mcp = [callFromHeaders(ctx.mcpHeaders)];
        return;
      }
      // Never decide on part of a JSON body (or on none of it): the policy, the schema and the
      // tool read it whole.
      if (ctx.truncated || !ctx.rawBody) {
        const window = deps.config.inspect.check_body_bytes;
        throw new GatewayError('payload_too_large', `tool "${tool.name}" takes JSON bodies the gateway can read whole before deciding: at most ${window} bytes`, {
          rule: 'inspect.body_window',
          details: { limit_bytes: Math.min(window, tool.request.max_body_bytes) },
        });
      }
      // ext_proc checks that the body it inspects and forwards is the one decided on here.
      ctx.bodySha256 = createHash('sha256').update(ctx.rawBody).digest('hex');
    }
    if (!ctx.rawBody) return;
    // A cut body is only ever seen as text: the policy gets parsed_body null and truncated_body true.
    const body = ctx.truncated ? truncatedRequestBody(ctx.rawBody) : readRequestBody(ctx.rawBody, contentType, tool);
    ctx.bodyText = body.text;
    ctx.parsedBody = body.json ? body.value : ctx.truncated ? null : parsedForm(contentType, body.text);
    const rpc = body.rpc;
    if (rpc) {
      noteJsonRpc(ctx, rpc);
      checkBatchSize(rpc, deps.config.inspect.max_batch_calls);
      if (rpc.batch) ctx.batchMessages = rpc.messages;
      // The policy decides on the body; headers that say something else must not reach the tool.
      if (tool.mcp && ctx.mcpHeaders && !ctx.truncated) checkHeadersAgree(ctx.mcpHeaders, rpc);
    }
    if (tool.mcp && !ctx.truncated && !rpc) {
      throw new GatewayError('invalid_request', `tool "${tool.name}" is an MCP server and expects a JSON-RPC 2.0 body`, { rule: 'inspect.jsonrpc' });
    }
  }

  /**
   * MCP transport rules, before policy: the Origin / Host allow-list, the session binding (the
   * id must be one the gateway issued to this principal for this tool), and the standard
   * headers read once for the body check and header-decided routes.
   */
  private mcpTransport(deps: AuthzDeps, ctx: Ctx): void {
    const tool = ctx.tool as ToolConfig;
    if (!tool.mcp) return;
    transportGuard(tool).check(ctx.headers, ctx.req.attributes?.request?.http?.host);
    const presented = ctx.headers[SESSION_HEADER];
    if (presented !== undefined) {
      if (!deps.sessions) throw new GatewayError('invalid_request', 'MCP session not found: this gateway issues no sessions', { rule: 'mcp.session_invalid', httpStatus: 404 });
      ctx.upstreamSession = resolveSession(deps.sessions, sessionIdentity(ctx.principal), tool.name, presented);
    }
    ctx.mcpHeaders = readStandardHeaders(ctx.headers);
  }

  /**
   * Verifies every presented credential. Runs before the tool is known to exist: an unknown path
   * asks for identity exactly as a real tool does (global `identity.required`), so a caller
   * without credentials learns nothing about the inventory.
   */
  private async authenticate(deps: AuthzDeps, ctx: Ctx, tool: ToolConfig | null): Promise<void> {
    const t = stageTimer('identity');
    try {
      ctx.principal = await this.verifyIdentity(deps, ctx, tool);
    } finally {
      t();
    }
    const required = tool?.identity_required ?? deps.config.identity.required;
    if (!ctx.principal && required) {
      throw new GatewayError('unauthenticated', 'a verified identity is required: send a bearer token, API key, client certificate or signed request', {
        rule: 'identity.required',
      });
    }
    ctx.authenticated = true;
  }

  /** Verifies the presented credentials; a failure is remembered (rule) for the audit record and rethrown. */
  private async verifyIdentity(deps: AuthzDeps, ctx: Ctx, tool: ToolConfig | null): Promise<Principal | null> {
    ctx.identityTried = true;
    try {
      return await deps.identity.verify({
        headers: ctx.headers,
        sourcePrincipal: ctx.req.attributes?.source?.principal || undefined,
        rawBody: ctx.rawBody,
        bodyTruncated: ctx.truncated,
        toolName: tool?.name ?? null,
        // A protected resource accepts only JWTs issued for it (RFC 8707).
        resource: oauthResources(deps.config).forTool(tool?.name)?.binding ?? null,
        nowMs: Date.now(),
        method: ctx.method,
        path: ctx.path,
      });
    } catch (err) {
      ctx.authError = toGatewayError(err, 'credential verification failed').rule ?? 'identity.invalid';
      throw err;
    }
  }

  /**
   * For a request denied before identity was established: verifies what was presented so the
   * audit record names the caller. The denial, its status and its body stay as they are; the
   * request is not marked authenticated.
   */
  private async identifyForAudit(deps: AuthzDeps, ctx: Ctx): Promise<void> {
    try {
      ctx.principal = await this.verifyIdentity(deps, ctx, ctx.tool);
    } catch {
      // verifyIdentity noted the rule; the record carries no identity.
      ctx.principal = null;
    }
  }

  /**
   * Policy facts and budgets of the call, read in one store round trip before policy (the wasm
   * evaluation stays synchronous). A spent budget or an unreachable store denies here.
   */
  private async readFacts(deps: AuthzDeps, ctx: Ctx): Promise<void> {
    const t = stageTimer('facts');
    try {
      ctx.facts = await lookupFacts(deps.limiter.store, deps.config, { tool: ctx.tool as ToolConfig, principal: ctx.principal, calls: ctx.mcp, body: ctx.parsedBody });
    } finally {
      t();
    }
  }

  private authorize(deps: AuthzDeps, ctx: Ctx): void {
    const t = stageTimer('policy');
    const tool = ctx.tool as ToolConfig;
    try {
      const calls: (McpCall | null)[] = ctx.mcp.length > 0 ? ctx.mcp : [null];
      ctx.dryRun = deps.config.policy.dry_run || tool.dry_run;
      const budgetNs = BigInt(deps.config.inspect.policy_budget_ms) * 1_000_000n;
      const started = process.hrtime.bigint();
      // A batch is allowed only if every call in it is; the first denial is reported.
      for (let i = 0; i < calls.length; i++) {
        const call = calls[i] ?? null;
        if (i > 0 && process.hrtime.bigint() - started > budgetNs) {
          throw new GatewayError('payload_too_large', `authorizing this batch took longer than the ${deps.config.inspect.policy_budget_ms} ms one request may use; send fewer calls per request`, {
            rule: 'authz.budget',
          });
        }
        const mcpTools = call?.tool ? [call.tool] : [];
        const view = toolView(tool, isMutating(tool, ctx.method, mcpTools, deps.mcp ? (t) => deps.mcp?.mutating(tool.name, t) : undefined));
        // Each call of a batch is judged on its own message, not on the whole batch: the input
        // stays small and the same call reads the same wherever it sits in a batch.
        const message = ctx.batchMessages?.[i];
        const input = buildPolicyInput(ctx.req, {
          identity: ctx.principal,
          tool: view,
          mcp: call,
          body: message === undefined ? ctx.bodyText : JSON.stringify(message),
          parsedBody: message === undefined ? ctx.parsedBody : message,
          truncated: message === undefined ? ctx.truncated : false,
          facts: ctx.facts?.perCall[i],
        });
        // One decision id per policy decision (log pipelines key events on it): the Check's for
        // the first call, a fresh one for each further call of a batch.
        const decision = deps.policy.evaluate(input, i === 0 ? ctx.decisionId : randomUUID());
        ctx.decision = decision;
        if (call?.id !== undefined && call.id !== null) ctx.rpcId = call.id;
        if (!decision.allowed) {
          const err = new GatewayError(
            ctx.principal ? 'forbidden' : 'unauthenticated',
            decision.reason ?? `policy denied the call to tool "${tool.name}"`,
            { rule: decision.rule ?? 'policy.deny', httpStatus: decision.httpStatus ?? undefined },
          );
          if (!ctx.dryRun) throw err;
          log.warn({ request_id: ctx.requestId, tool: tool.name, rule: err.rule, reason: err.message }, 'dry run: policy would deny; allowing');
          ctx.decision = { ...decision, allowed: true };
          return;
        }
      }
    } finally {
      t();
    }
  }

  /**
   * Exfiltration DLP on the URL and the headers that reach an external tool (ext_proc covers
   * the body). A finding that would be redacted or blocked denies: a URL or header cannot be
   * rewritten reliably, and some routes skip ext_proc's request phase entirely.
   */
  private exfiltration(deps: AuthzDeps, ctx: Ctx, hygiene: HeaderHygiene): void {
    const tool = ctx.tool as ToolConfig;
    if (!tool.external || !tool.request.dlp) return;
    const t = stageTimer('dlp');
    try {
      // The caller's value of an injected header never reaches the tool: not scanned.
      const replaced = injectedHeaders(tool);
      const findings = scanOutsideBody(deps.scanner, {
        path: ctx.path,
        headers: ctx.headers,
        // A verified session binding is replaced by the tool's own session id: it never leaves.
        skipHeader: (name) => hygiene.strips(name) || replaced.has(name) || name.startsWith(GATEWAY_HEADER_PREFIX) || (name === SESSION_HEADER && ctx.upstreamSession !== null),
      });
      const refused = findings.filter((f) => f.action === 'redact' || f.action === 'block');
      if (refused.length > 0) {
        throw new GatewayError('blocked_content', `the request URL or headers carry data that must not be sent to external tool "${tool.name}"`, {
          rule: 'dlp.request',
          details: { rules: [...new Set(refused.map((f) => f.rule))] },
        });
      }
    } finally {
      t();
    }
  }

  /** Rate limits by descriptor, on the shared store (see limits/tokenBucket.ts). */
  private async limit(deps: AuthzDeps, ctx: Ctx): Promise<void> {
    const t = stageTimer('limits');
    const tool = ctx.tool as ToolConfig;
    try {
      const mcpTools = ctx.mcp.flatMap((c) => (c.tool ? [c.tool] : []));
      const mutating = isMutating(tool, ctx.method, mcpTools, deps.mcp ? (n) => deps.mcp?.mutating(tool.name, n) : undefined);
      const r = await deps.limiter.check(deps.config, { tool, principal: ctx.principal, httpMethod: ctx.method, calls: ctx.mcp, mutating });
      ctx.rateLimitHeaders = r.headers;
    } finally {
      t();
    }
  }

  /**
   * Idempotency keys of mutating calls, after every stage that may deny (a replay is authorized
   * like any call; a denied call holds no claim): claim the key, or answer from the store.
   */
  private async idempotency(deps: AuthzDeps, ctx: Ctx): Promise<void> {
    const tool = ctx.tool as ToolConfig;
    if (!tool.idempotency) return;
    const t = stageTimer('idempotency');
    try {
      const mcpTools = ctx.mcp.flatMap((c) => (c.tool ? [c.tool] : []));
      // A body announced by its length that the Check was not sent cannot be fingerprinted.
      const announced = Number(ctx.headers['content-length'] ?? 0) > 0;
      const r = await claimIdempotency(deps.limiter.store, {
        tool,
        principal: ctx.principal,
        method: ctx.method,
        path: ctx.path,
        headers: ctx.headers,
        rawBody: ctx.rawBody,
        incomplete: ctx.truncated || (!ctx.rawBody && announced),
        parsedBody: ctx.parsedBody,
        rpcSingle: ctx.isJsonRpc && ctx.batchIds === null && !Array.isArray(ctx.parsedBody),
        rpcId: ctx.rpcId,
        mcpTool: ctx.mcp[0]?.tool ?? null,
        mutating: isMutating(tool, ctx.method, mcpTools, deps.mcp ? (n) => deps.mcp?.mutating(tool.name, n) : undefined),
      });
      if (r.kind === 'claimed') ctx.idempotency = { key: r.key, claim: r.claim };
      else if (r.kind === 'replay') {
        ctx.idempotency = { key: r.key, claim: null };
        ctx.replay = r.response;
      }
    } finally {
      t();
    }
  }

  /** An idempotent retry answered from the store: allowed, nothing reaches the tool. */
  private replayed(deps: AuthzDeps, ctx: Ctx, replay: ReplayedResponse): CheckAllowed {
    return {
      allowed: true,
      setHeaders: [],
      removeHeaders: [],
      responseHeadersToAdd: [],
      metadata: this.metadata(deps, ctx, true, 'idempotency.replayed', 'answered from the idempotency store; the tool was not called again'),
      policyMetadata: null,
      replay,
    };
  }

  private allow(deps: AuthzDeps, ctx: Ctx, hygiene: HeaderHygiene): CheckAllowed {
    const t = stageTimer('credentials');
    const tool = ctx.tool as ToolConfig;
    try {
      const decision = ctx.decision;
      const set: HeaderValue[] = [
        ...deps.credentials.headersFor(tool.name, ctx.principal, {
          method: ctx.method,
          path: ctx.path,
          agent: ctx.principal?.agent ?? null,
          requestId: ctx.requestId,
          body: ctx.rawBody,
          bodyComplete: !ctx.truncated,
          nowMs: Date.now(),
        }),
      ];
      const p = ctx.principal;
      const identityHeaders: [string, string | null][] = [
        ['x-portcullis-agent', p?.agent ?? null],
        ['x-portcullis-user', p?.user ?? null],
        ['x-portcullis-tenant', p?.tenant ?? null],
      ];
      for (const [key, value] of identityHeaders) if (value) set.push({ key, value });
      // The tool gets its own session id back, never the binding the agent holds.
      if (ctx.upstreamSession !== null) set.push({ key: SESSION_HEADER, value: ctx.upstreamSession });
      // The tool joins the decision's trace; a caller's trace context is not forwarded as sent.
      const traced = ctx.trace.upstream();
      set.push(...traced.set);
      // An uncompressed response can be inspected without decoding it first.
      if (tool.response.dlp || tool.response.drop_fields.length > 0) set.push({ key: 'accept-encoding', value: 'identity' });
      // Policy headers never override credentials the gateway injects.
      const setNames = new Set(set.map((h) => h.key));
      for (const h of headerList(decision?.headers)) if (!setNames.has(h.key)) set.push(h);
      for (const h of set) setNames.add(h.key);

      const remove = new Set<string>(hygiene.removals(ctx.headers));
      for (const name of decision?.requestHeadersToRemove ?? []) remove.add(name);
      for (const name of traced.remove) remove.add(name);
      for (const name of Object.keys(ctx.headers)) if (name.startsWith(GATEWAY_HEADER_PREFIX)) remove.add(name);
      // Envoy applies removals after sets: never remove what we just set.
      for (const name of setNames) remove.delete(name);

      return {
        allowed: true,
        setHeaders: set,
        removeHeaders: [...remove],
        responseHeadersToAdd: [...headerList(decision?.responseHeadersToAdd), ...ctx.rateLimitHeaders],
        metadata: this.metadata(deps, ctx, true, decision?.rule ?? null, decision?.reason ?? null),
        policyMetadata: decision?.dynamicMetadata ?? null,
      };
    } finally {
      t();
    }
  }

  private metadata(deps: AuthzDeps, ctx: Ctx, allowed: boolean, rule: string | null, reason: string | null): AuthzMetadata {
    const p = ctx.principal;
    const firstCall = ctx.mcp[0];
    return {
      request_id: ctx.requestId,
      // The Check span's context, never the caller's header: audit records join the trace on it.
      traceparent: ctx.trace.traceparent,
      method: ctx.method,
      path: ctx.path,
      tool: ctx.tool?.name ?? null,
      agent: p?.agent ?? null,
      agent_version: p?.agent_version ?? null,
      user: p?.user ?? null,
      tenant: p?.tenant ?? null,
      auth_methods: p ? [...p.methods] : [],
      roles: p ? [...p.roles] : [],
      auth_error: ctx.authError,
      forwarded_recorded: false,
      allowed,
      dry_run: ctx.dryRun,
      rule,
      reason,
      policy_version: deps.policy.status().version,
      mcp_method: firstCall?.method ?? null,
      mcp_tool: firstCall?.tool ?? null,
      mcp_prompt: firstCall?.prompt ?? null,
      mcp_resource: firstCall?.resource ?? null,
      // The tool's own session id once the binding verified (what its logs name), else what was presented.
      mcp_session: ctx.upstreamSession ?? headerToken(ctx.headers['mcp-session-id']),
      mcp_protocol_version: headerToken(ctx.headers['mcp-protocol-version']),
      proven_by: p ? [...p.proven_by] : [],
      jti: p?.jti ?? null,
      body_sha256: ctx.bodySha256,
      authz_ms: Number(process.hrtime.bigint() - ctx.started) / 1e6,
      mcp_decided_on: ctx.headerDecided ? 'headers' : null,
      idempotency_key: ctx.idempotency?.key ?? null,
      idempotency_claim: ctx.idempotency?.claim ?? null,
      fact_records: ctx.facts ? [...ctx.facts.factRecords] : [],
      budget_records: ctx.facts ? [...ctx.facts.budgetRecords] : [],
    };
  }
}
