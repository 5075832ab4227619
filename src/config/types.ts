import type { DecisionLogConfig } from '../policy/decisionLogger.js';
import type { SigningConfig } from '../policy/signatures.js';
import type { DlpConfig, DlpRuleOverride } from '../dlp/index.js';

/**
 * Typed view of the gateway configuration (YAML, validated by `schema.ts` before it becomes
 * one of these). Field names follow the YAML file (snake_case) so errors point at what users wrote.
 */

/** Where a secret comes from: a mounted file (watched for rotation) or an environment variable. */
export type SecretRef = { readonly file: string } | { readonly env: string };

/** JWT issuer trusted for agent/user identity. */
export interface JwtIssuerConfig {
  readonly issuer: string;
  readonly audiences: readonly string[];
  /** Local JWKS file (watched) or remote JWKS URL (cached, refreshed on unknown `kid`). */
  readonly jwks_file?: string;
  readonly jwks_url?: string;
  /** Asymmetric algorithms accepted for this issuer; `none` and HS* are rejected by the schema. */
  readonly algorithms: readonly string[];
  readonly clock_skew_s: number;
  /** Claim names mapping the token to the principal. */
  readonly claims: {
    readonly user: string;
    readonly tenant: string;
    readonly roles: string;
    readonly agent: string;
    readonly agent_version: string;
  };
}

/** mTLS peer (Envoy's `source.principal`, usually a SPIFFE URI SAN) mapped to an agent. */
export interface MtlsAgentConfig {
  readonly principal: string;
  readonly agent: string;
  readonly agent_version?: string;
  readonly roles?: readonly string[];
  readonly tenant?: string;
}

/** API key, stored as the hex SHA-256 of the key; never the key itself. */
export interface ApiKeyConfig {
  readonly id: string;
  readonly sha256: string;
  readonly agent: string;
  readonly agent_version?: string;
  readonly roles?: readonly string[];
  readonly tenant?: string;
}

/** An HMAC-signed request (webhook) signer; see `SignatureScheme` in src/identity/signature/scheme.ts. */
export interface SignatureConfig {
  readonly id: string;
  /** The signing secret; `secrets` lists more while one is rotated (every one given is tried; at least one). */
  readonly secret?: SecretRef;
  readonly secrets?: readonly SecretRef[];
  /** Header names; each defaults to the scheme's documented one. */
  readonly signature_header?: string;
  readonly timestamp_header?: string;
  readonly id_header?: string;
  readonly max_skew_s: number;
  /**
   * Seconds a used signature (the message id, for `standard_webhooks`) stays refused. Default:
   * until its timestamp leaves `max_skew_s`; 86400 for `github`, which signs no timestamp.
   */
  readonly replay_window_s?: number;
  /** What is signed and how it is sent (default `slack`). */
  readonly scheme?: 'slack' | 'v1' | 'github' | 'stripe' | 'standard_webhooks';
  readonly agent: string;
  readonly roles?: readonly string[];
  readonly tenant?: string;
  /** Limit this signer to these tools (empty: any tool). */
  readonly tools?: readonly string[];
}

/** How callers prove who they are. */
export interface IdentityConfig {
  /** When false, unauthenticated requests reach policy with `input.identity = null`. */
  readonly required: boolean;
  readonly jwt: readonly JwtIssuerConfig[];
  /**
   * Verified JWTs remembered (by SHA-256, least recently used evicted) so a repeated token skips
   * signature verification; `exp`/`nbf` are re-checked on every use and a JWKS change forgets them.
   * 0 verifies every request. The schema defaults it to 10000.
   */
  readonly token_cache_size?: number;
  readonly mtls: readonly MtlsAgentConfig[];
  readonly api_keys: readonly ApiKeyConfig[];
  readonly api_key_header: string;
  readonly signatures: readonly SignatureConfig[];
}

/** One header the gateway sets on the upstream request from a secret. */
export interface CredentialConfig {
  /** Header name (lower case), e.g. `authorization` or `x-api-key`. */
  readonly header: string;
  /** Template with `{secret}`, e.g. `Bearer {secret}`. */
  readonly format: string;
  readonly secret: SecretRef;
  /** Per-user secrets; the user id of the verified principal selects one. */
  readonly per_user?: Readonly<Record<string, SecretRef>>;
  /** When true, a call without a per-user secret for its user is denied instead of using `secret`. */
  readonly require_per_user?: boolean;
}

/** Per-tool request signing. */
export interface RequestSigningConfig {
  /** HMAC-SHA256 key shared with the tool. */
  readonly secret: SecretRef;
  /** Header carrying the signature (default `x-portcullis-signature`). */
  readonly header: string;
}

/** Token-bucket limit applied per principal for a tool. */
export interface RateLimitConfig {
  /** Sustained requests per second. */
  readonly rps: number;
  /** Bucket size (burst). */
  readonly burst: number;
  /** What the bucket is keyed by. */
  readonly key: 'agent' | 'user' | 'tenant';
}

/** A request attribute a rate limit can be keyed by. */
export type RateLimitDimension = 'tenant' | 'user' | 'agent' | 'agent_version' | 'tool' | 'mcp_tool' | 'method';

/**
 * A token bucket per combination of the `per` values of a call (`rate_limits` entries): `burst`
 * calls at once, refilled at `rps`. A denial names it (`rule: limits.<name>`).
 */
export interface RateLimitRule {
  /** Unique within its list; the denial's rule is `limits.<name>`. */
  readonly name: string;
  /** What the buckets are keyed by (empty: one bucket). `method` is the JSON-RPC method of an MCP call, else the HTTP method. */
  readonly per: readonly RateLimitDimension[];
  readonly rps: number;
  readonly burst: number;
  /**
   * When the shared store cannot answer: `deny`, or `allow_local` (an in-process bucket of this
   * replica). Absent: deny mutating calls, fall back for read-only ones.
   */
  readonly on_store_error?: 'deny' | 'allow_local';
}

/**
 * `tools[].idempotency`: a retried mutating call with the same key is answered from the shared
 * store instead of running twice (src/limits/idempotency.ts, src/extproc/idempotency.ts).
 */
export interface IdempotencyConfig {
  /** Request header carrying the key (lower case; default `idempotency-key`). */
  readonly header: string;
  /**
   * Dotted paths into the JSON body whose values make the key (all present: they are the key,
   * the header is then not read); absent: the header only.
   */
  readonly key_from?: readonly string[];
  /** How long a completed call's response is replayed (default 86400 s). */
  readonly ttl_s: number;
  /** How long a call in progress holds its key (default 300 s; above the route timeouts). */
  readonly in_flight_ttl_s: number;
  /** Largest response body stored for replay (default 1 MiB); larger ones release the key. */
  readonly max_stored_bytes: number;
  /** A mutating call without a key is refused (400 `idempotency.key_required`); default false. */
  readonly required: boolean;
}

/** What a fact's key is made of: a principal or call attribute, or `arg:<dotted path>` into the call's arguments (JSON body). */
export type FactKeyPart = 'tenant' | 'user' | 'agent' | 'agent_version' | 'tool' | 'mcp_tool' | `arg:${string}`;

/**
 * Something policy remembers (`input.facts.<name>`): `seen` (a boolean: a call with this key
 * completed within `ttl_s`) or `count` (the calls with this key completed in the current
 * `window_s` window). Recorded after an allowed call whose tool answered 2xx.
 */
export interface FactConfig {
  /** `input.facts.<name>`; unique among the facts of a tool. */
  readonly name: string;
  readonly kind: 'seen' | 'count';
  /** The values that make one fact; a call lacking one of them has no value for the fact. */
  readonly key: readonly FactKeyPart[];
  /** count: the window in seconds (default 3600), starting at the first recorded call. */
  readonly window_s: number;
  /** seen: how long a recorded fact is remembered, in seconds (default 90 days). */
  readonly ttl_s: number;
  /** When it is recorded: `on_success` (an allowed call whose tool answered 2xx). */
  readonly record: 'on_success';
}

/** A top-level fact, shared by the tools it names (one value across them). */
export interface GlobalFactConfig extends FactConfig {
  readonly tools: readonly string[];
}

/** A request attribute a budget can be kept per. */
export type BudgetDimension = 'tenant' | 'user' | 'agent' | 'agent_version' | 'tool' | 'mcp_tool';

/**
 * Units a metered tool reports in its responses (`units_from`, e.g. `usage.total_tokens`),
 * summed per combination of `per` values in fixed windows of `window_s`; a principal whose
 * spend reached `limit` is refused (429, rule `budgets.<name>`) until the window ends.
 */
export interface BudgetConfig {
  readonly name: string;
  readonly per: readonly BudgetDimension[];
  readonly limit: number;
  readonly window_s: number;
  /** Dotted path in the JSON response (or, for an event stream, in the last event carrying it). */
  readonly units_from: string;
}

/** Where shared state lives (`store`). */
export interface StoreConfig {
  /** `memory` (one replica, the default) or `redis` (shared by every replica). */
  readonly kind: 'memory' | 'redis';
  readonly redis?: {
    readonly url: string;
    /** Default `portcullis:`. */
    readonly key_prefix: string;
    /** Command timeout (default 200 ms). */
    readonly timeout_ms: number;
    /** Connection timeout (default 2000 ms). */
    readonly connect_timeout_ms: number;
    /** Retries of one command across reconnects (default 1). */
    readonly max_retries: number;
  };
}

/** OpenTelemetry tracing (`tracing`): spans exported over OTLP/HTTP protobuf. */
export interface TracingConfig {
  /** Off by default: spans are then neither recorded nor exported (ids are still made). */
  readonly enabled: boolean;
  /** OTLP/HTTP traces URL (`.../v1/traces`); required when enabled. */
  readonly otlp_endpoint?: string;
  /** Share of new traces sampled (default 1); parent-based: a sampled parent keeps its decision. */
  readonly sample_ratio: number;
  /** `service.name` of the spans (default `portcullis`). */
  readonly service_name: string;
  /** Extra HTTP headers sent to the collector. */
  readonly headers: Readonly<Record<string, string>>;
  /** Export request timeout in seconds (default 10). */
  readonly timeout_s: number;
  /** Spans queued for export at most (default 2048); more are dropped and counted. */
  readonly max_queue_spans: number;
}

/** An MCP tool exposed behind a logical tool (for `tools/call`). */
export interface McpToolConfig {
  /** Overrides the learned `readOnlyHint` (absent: from the server's annotations; unknown: mutating). */
  readonly mutating?: boolean;
  /** JSON Schema file for the tool's `arguments`; overrides the server's `inputSchema`. */
  readonly input_schema?: string;
}

/** What happens to a tool whose definition differs from its pin, or whose description is poisoned. */
export type McpDefinitionAction = 'flag' | 'hide' | 'block';

/** A logical tool that is an MCP server: how its tool definitions are learned, pinned and checked. */
export interface McpConfig {
  /** Operator overrides per MCP tool name (optional: definitions are learned from the server). */
  readonly tools: Readonly<Record<string, McpToolConfig>>;
  /** URL of the MCP endpoint the gateway asks for `tools/list` when a call names a tool it does not know yet. */
  readonly server_url?: string;
  /** A definition differing from its pin: flag (use it, re-pin), hide (unlisted, uncallable), block (calls refused until approved). */
  readonly on_change: McpDefinitionAction;
  /** Injection patterns in a tool description: flag (audit), hide (unlisted, uncallable), block (the list is refused). */
  readonly poisoning: McpDefinitionAction;
  /** Definition hashes pinned by the operator (MCP tool name -> sha256 hex); these cannot be approved away. */
  readonly pins: Readonly<Record<string, string>>;
  /** JSON file of pins and approvals (shared by replicas, watched; written atomically). */
  readonly pins_file?: string;
  /** Seconds after which a learned list is fetched again from `server_url` (in the background). */
  readonly refresh_s: number;
  /** Time one fetch of the server's tool list may take (default 1500; below Envoy's ext_proc message_timeout). */
  readonly discovery_timeout_ms: number;
  /**
   * Browser origins (`scheme://host[:port]`, or `*`) allowed to call this MCP server. A request
   * without `Origin` passes; one with an origin not listed is refused (403). Default: none.
   */
  readonly allowed_origins?: readonly string[];
  /**
   * Host names (`name`, `name:port`, `*.suffix`, `*`) the server may be called under (the
   * request's Host / `:authority`). Absent: any host (Envoy's virtual host domains decide).
   */
  readonly allowed_hosts?: readonly string[];
}

/**
 * A tool published as an OAuth 2.0 protected resource (RFC 9728) for MCP clients: the gateway
 * serves its metadata document, names it in every 401, and accepts for the tool only JWTs whose
 * `aud` contains `resource` (RFC 8707), issued by one of `authorization_servers`.
 */
export interface ToolOAuthConfig {
  /** Canonical URI of the endpoint as clients call it (https, or http on loopback; no query or fragment). */
  readonly resource: string;
  /** Issuer identifiers of the authorization servers; each must be a configured `identity.jwt` issuer. */
  readonly authorization_servers: readonly string[];
  /** Scopes advertised (`scopes_supported`, and `scope` in the 401 challenge); default none. */
  readonly scopes: readonly string[];
  /** Human-readable name shown by clients (`resource_name`). */
  readonly resource_name?: string;
}

/** A logical tool agents call as `/tools/<name>/...`. */
export interface ToolConfig {
  readonly name: string;
  readonly description?: string;
  /** Envoy cluster that serves it (documentation and cross-checks; Envoy routes). */
  readonly upstream: string;
  /** Whether calls change state; default inferred from the HTTP method. */
  readonly mutating?: boolean;
  /** Data sent to this tool leaves the organisation (enables exfiltration DLP). */
  readonly external: boolean;
  /** Log would-deny decisions for this tool and allow them. */
  readonly dry_run: boolean;
  /** Overrides `identity.required` for this tool. */
  readonly identity_required?: boolean;
  readonly credentials: readonly CredentialConfig[];
  /**
   * Sign every allowed call (method, path, body digest, time, agent, request id) with an HMAC
   * key, in one header the tool can verify (see src/credentials/signing.ts, envoy/README.md).
   */
  readonly request_signing?: RequestSigningConfig;
  readonly rate_limit?: RateLimitConfig;
  /** Idempotency keys for this tool's mutating calls (see {@link IdempotencyConfig}). */
  readonly idempotency?: IdempotencyConfig;
  /** Rate limits by descriptor for this tool (buckets are per tool). */
  readonly rate_limits?: readonly RateLimitRule[];
  /** Facts of this tool's calls for policy (`input.facts`); see {@link FactConfig}. */
  readonly facts?: readonly FactConfig[];
  /** Spend budgets read from this tool's responses; see {@link BudgetConfig}. */
  readonly budgets?: readonly BudgetConfig[];
  readonly request: {
    /**
     * Largest request body. Default: `inspect.check_body_bytes` for JSON tools (request schema or
     * MCP), which may not exceed it; 1 MiB for other tools.
     */
    readonly max_body_bytes: number;
    /** JSON Schema file for plain JSON request bodies. */
    readonly schema?: string;
    /** Prompt-injection patterns in arguments: record only, deny, or skip. */
    readonly injection: 'off' | 'flag' | 'block';
    /** Exfiltration DLP on bodies sent to external tools (rule actions apply). */
    readonly dlp: boolean;
  };
  readonly mcp?: McpConfig;
  /** OAuth protected resource metadata and audience binding for MCP clients (see {@link ToolOAuthConfig}). */
  readonly oauth?: ToolOAuthConfig;
  readonly response: {
    /** JSON field paths (dot-separated, `*` for any key/index) dropped before DLP. */
    readonly drop_fields: readonly string[];
    /** DLP on response bodies (buffered and streamed) and headers. */
    readonly dlp: boolean;
    /** Rule overrides for this tool's responses, over the global `dlp.overrides`. */
    readonly dlp_overrides?: Readonly<Record<string, DlpRuleOverride>>;
    /** What to do with a body that is not text: inspect byte for byte, block, or pass (recorded as not inspected). */
    readonly binary: 'inspect' | 'block' | 'pass';
  };
}

/** OPA policy bundle. */
export interface PolicyConfig extends BundlePolicyConfig {
  /** Bundle built with `opa build -t wasm` (tar.gz with policy.wasm and data.json); absent with `bundle_service`. */
  readonly bundle?: string;
  /** Optional data document (JSON or YAML) merged over the bundle's data; watched. */
  readonly data?: string;
  /** Decision path, OPA-Envoy default `envoy/authz/allow`. */
  readonly decision: string;
  /** Global dry run: log would-deny and allow. */
  readonly dry_run: boolean;
}

/** mTLS on the gRPC port: Envoy's client certificate must chain to `ca` and carry an allowed SAN. */
export interface GrpcTlsConfig {
  /** CA bundle (PEM file) the client (Envoy) certificate must chain to. */
  readonly ca: string;
  /** portcullis' certificate chain (PEM file). */
  readonly cert: string;
  /** Its private key (PEM file). */
  readonly key: string;
  /** Subject alternative names (URI, DNS, IP or email value, exact) of which the client certificate must carry one. */
  readonly client_sans: readonly string[];
}

/** Ports and process settings. */
export interface ServerConfig {
  /** Address of the gRPC port (a host), or `unix:///path/to.sock` for a unix socket. */
  readonly grpc_address: string;
  readonly grpc_port: number;
  /** mTLS for the gRPC port (TCP addresses). */
  readonly grpc_tls?: GrpcTlsConfig;
  /** File mode of the unix socket (octal string), default `0600`. */
  readonly grpc_socket_mode: string;
  /** Plaintext gRPC over TCP: only when set, and only on a loopback address. */
  readonly grpc_plaintext: boolean;
  /** HMAC key signing the ext_authz → ext_proc hand-off; shared by every replica. */
  readonly handoff_key?: SecretRef;
  readonly admin_address: string;
  readonly admin_port: number;
  /** Bearer token the admin port requires (for everything but `/healthz` and `/readyz`); required off loopback. */
  readonly admin_token?: SecretRef;
  readonly shutdown_grace_ms: number;
  readonly log_level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  /**
   * Worker processes serving the gRPC port, with shared limits, one audit chain and one admin
   * port; `auto` is one per available core. 1 runs a single process with no primary.
   */
  readonly workers: number | 'auto';
}

/** Audit sinks. */
export interface AuditConfig {
  readonly stdout: boolean;
  /** Append-only hash-chained file; omitted: no file sink. */
  readonly file?: string;
  /** Payload capture: off, or truncated (after redaction) to `max_bytes`. */
  readonly payload: { readonly mode: 'off' | 'truncated'; readonly max_bytes: number };
  /**
   * fdatasync the file after each append before a forwarded record counts as written (default
   * false: written means handed to the OS, which survives a process crash but not power loss).
   */
  readonly fsync: boolean;
  /** Signed checkpoints in the file; omitted: none. Needs `file`. */
  readonly checkpoint?: {
    /** Ed25519 private key, PEM PKCS8 (`portcullis audit keygen`). */
    readonly key: SecretRef;
    /** A checkpoint after this many records (default 1000). */
    readonly every_records: number;
    /** A checkpoint this often (seconds) when records were written since the last (default 60). */
    readonly every_seconds: number;
    /** A second file that receives only the checkpoint lines, to anchor the main file elsewhere. */
    readonly anchor_file?: string;
  };
}

/** Alert when one principal triggers many DLP blocks/redactions. */
export interface AlertingConfig {
  readonly dlp_threshold: number;
  readonly window_s: number;
}

/** How requests are read before they are decided. */
export interface InspectConfig {
  /**
   * Bytes of request body Envoy's ext_authz forwards to the Check
   * (`with_request_body.max_request_bytes` in envoy.yaml); keep the two equal. A JSON tool's
   * policy decision needs its whole body, so its `max_body_bytes` may not exceed this, and a body
   * the Check sees cut is refused (413) for such a tool.
   */
  readonly check_body_bytes: number;
  /**
   * Most elements a JSON-RPC batch may hold (default 16). A larger batch is refused whole, with a
   * JSON-RPC error for each id, before any policy runs.
   */
  readonly max_batch_calls: number;
  /**
   * Policy evaluation time one request may use (default 50 ms): a batch whose calls together
   * take longer is refused, so one agent cannot hold the evaluator from the others.
   */
  readonly policy_budget_ms: number;
  /**
   * Whether every Check must carry the route's `route_tool` context extension (default true). A
   * route naming another tool is denied either way; false only tolerates its absence, for
   * front proxies that cannot send per-route context extensions (e.g. an Istio CUSTOM provider).
   */
  readonly require_route_tool: boolean;
  /** Header name prefixes removed from every upstream request, besides the built-in ones. */
  readonly strip_header_prefixes: readonly string[];
  /**
   * Names or prefixes of the built-in removal list (identity, method-override and routing
   * headers) to forward after all, for a tool that really needs one. Credentials are never forwarded.
   */
  readonly forward_headers: readonly string[];
  /** Largest response body portcullis holds for inspection (default 32 MiB). */
  readonly max_response_bytes: number;
  /**
   * Response body bytes held for inspection across all streams (default 128 MiB); a response
   * that would exceed it is refused with a retryable 503.
   */
  readonly response_memory_budget_bytes: number;
}

// --- Policy bundles (signing keys, bundle service) and OPA decision logs -------------------

/** Bundle signing, bundle service and bundle naming settings of `policy`. */
export interface BundlePolicyConfig {
  /** Name of the bundle in decision log events (`bundles.<name>.revision`); default `authz`. */
  readonly bundle_name: string;
  /** Verification keys: every bundle must carry a valid OPA `.signatures.json`. */
  readonly signing?: SigningConfig;
  /** Fetch the bundle from an HTTP bundle service (OPA's bundle protocol). */
  readonly bundle_service?: {
    readonly url: string;
    readonly headers: Readonly<Record<string, string>>;
    readonly timeout_s: number;
    readonly polling: { readonly min_delay_seconds: number; readonly max_delay_seconds: number; readonly long_polling_timeout_seconds?: number };
  };
}

// --- end of policy bundles and decision logs -----------------------------------------------

/**
 * OPA-Envoy drop-in mode: a request that names no logical tool, on an Envoy route whose
 * ext_authz context extensions say `portcullis_mode: opa-envoy` or under one of `path_prefixes`,
 * is decided by the policy at `path` with OPA-Envoy's input and answered as opa-envoy-plugin
 * answers (src/authz/dropin.ts). Off unless `enabled`.
 */
export interface OpaEnvoyConfig {
  readonly enabled: boolean;
  /** Decision path of the OPA-Envoy policy (OPA-Envoy's default `envoy/authz/allow`). */
  readonly path: string;
  /** Request path prefixes decided in drop-in mode without a route extension. */
  readonly path_prefixes: readonly string[];
  /** `offer`: a verified credential becomes `input.identity` (else null); `off`: always null. */
  readonly identity: 'offer' | 'off';
}

/** The whole gateway configuration. */
export interface GatewayConfig {
  /** OPA-compatible decision logs (sinks, masking, labels). */
  readonly decision_logs?: DecisionLogConfig;
  readonly dlp: DlpConfig | undefined;
  readonly alerting: AlertingConfig;
  readonly server: ServerConfig;
  readonly identity: IdentityConfig;
  readonly policy: PolicyConfig;
  readonly tools: readonly ToolConfig[];
  readonly audit: AuditConfig;
  readonly inspect: InspectConfig;
  /** Shared state (rate limit buckets, one-time values). */
  readonly store?: StoreConfig;
  /** OpenTelemetry tracing (off by default). */
  readonly tracing?: TracingConfig;
  /** Rate limits by descriptor across every tool. */
  readonly rate_limits?: readonly RateLimitRule[];
  /** Facts shared by the tools each names (`input.facts`). */
  readonly facts?: readonly GlobalFactConfig[];
  /** OPA-Envoy drop-in mode (see {@link OpaEnvoyConfig}). */
  readonly opa_envoy?: OpaEnvoyConfig;
  /** Header names always removed from the upstream request, besides the built-in list (caller-supplied identity). */
  readonly strip_headers: readonly string[];
  /** Directory relative paths in the file are resolved against (the config file's folder). */
  readonly base_dir: string;
}
