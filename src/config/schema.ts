/**
 * JSON Schema of the gateway configuration file. Every object is closed (`additionalProperties:
 * false`) so a misspelt key is an error with its path instead of a silently ignored setting.
 * Defaults live here, in one place, and are applied by ajv while validating.
 */

import { dlpConfigSchema } from '../dlp/config.js';

const secretRef = {
  type: 'object',
  oneOf: [
    { required: ['file'], properties: { file: { type: 'string', minLength: 1 } }, additionalProperties: false },
    { required: ['env'], properties: { env: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' } }, additionalProperties: false },
  ],
} as const;

const headerName = { type: 'string', pattern: '^[a-z0-9!#$%&\'*+.^_`|~-]+$' } as const;
const roles = { type: 'array', items: { type: 'string', minLength: 1 }, uniqueItems: true } as const;
const name = { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' } as const;

/** One rate limit by descriptor (`rate_limits` entries, global and per tool). */
const rateLimitRule = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'rps'],
  properties: {
    name,
    per: {
      type: 'array',
      items: { enum: ['tenant', 'user', 'agent', 'agent_version', 'tool', 'mcp_tool', 'method'] },
      uniqueItems: true,
      maxItems: 7,
      default: [],
    },
    rps: { type: 'number', exclusiveMinimum: 0 },
    burst: { type: 'integer', minimum: 1, maximum: 1000000, default: 10 },
    // No schema default: deny for mutating calls, allow_local for read-only ones (limits/limiter.ts).
    on_store_error: { enum: ['deny', 'allow_local'] },
  },
} as const;

const rateLimitRules = { type: 'array', items: rateLimitRule, maxItems: 32, default: [] } as const;

/** What a fact or budget key part may name: a principal or call attribute, or `arg:<dotted path>` into the call's arguments. */
const factKeyPart = {
  anyOf: [{ enum: ['tenant', 'user', 'agent', 'agent_version', 'tool', 'mcp_tool'] }, { type: 'string', pattern: '^arg:[^.\\s]{1,64}(\\.[^.\\s]{1,64}){0,15}$' }],
} as const;

/** A fact policy can read (`input.facts.<name>`), recorded after allowed, completed calls (limits/facts.ts). */
const factProperties = {
  // A Rego identifier: `input.facts.<name>` without quoting.
  name: { type: 'string', pattern: '^[a-z][a-z0-9_]{0,62}$' },
  kind: { enum: ['seen', 'count'] },
  key: { type: 'array', items: factKeyPart, minItems: 1, maxItems: 8, uniqueItems: true },
  // count: the fixed window (starting at the first recorded call) the number covers.
  window_s: { type: 'integer', minimum: 1, maximum: 31536000, default: 3600 },
  // seen: how long a recorded fact is remembered (default 90 days).
  ttl_s: { type: 'integer', minimum: 1, maximum: 315360000, default: 7776000 },
  record: { enum: ['on_success'], default: 'on_success' },
} as const;

const toolFact = { type: 'object', additionalProperties: false, required: ['name', 'kind', 'key'], properties: factProperties } as const;

/** A top-level fact names the tools it applies to. */
const globalFact = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'kind', 'key', 'tools'],
  properties: { ...factProperties, tools: { type: 'array', items: name, minItems: 1, uniqueItems: true } },
} as const;

/** A spend budget of a metered tool: units read from its responses, enforced on the next call. */
const budget = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'limit', 'window_s', 'units_from'],
  properties: {
    name,
    per: { type: 'array', items: { enum: ['tenant', 'user', 'agent', 'agent_version', 'tool', 'mcp_tool'] }, uniqueItems: true, maxItems: 6, default: [] },
    limit: { type: 'integer', minimum: 1, maximum: 1000000000000 },
    window_s: { type: 'integer', minimum: 1, maximum: 31536000 },
    units_from: { type: 'string', pattern: '^[^.\\s]{1,64}(\\.[^.\\s]{1,64}){0,15}$' },
  },
} as const;

/** Asymmetric JWS algorithms; `none` and HMAC are not accepted for JWKS-verified issuers. */
export const ASYMMETRIC_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

// --- Policy bundles (signing keys, bundle service) and OPA decision logs -------------------

const httpHeaders = { type: 'object', additionalProperties: { type: 'string' }, default: {} } as const;

/** `policy.signing`, `policy.bundle_service`, `policy.bundle_name` (OPA's bundle plugin settings). */
const bundlePolicyProperties = {
  bundle_name: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$', default: 'authz' },
  signing: {
    type: 'object',
    additionalProperties: false,
    required: ['keys'],
    properties: {
      keys: {
        type: 'object',
        minProperties: 1,
        additionalProperties: {
          type: 'object',
          additionalProperties: false,
          required: ['algorithm'],
          oneOf: [{ required: ['key'] }, { required: ['key_file'] }],
          properties: {
            algorithm: { enum: ['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'] },
            key: { type: 'string', minLength: 1 },
            key_file: { type: 'string', minLength: 1 },
          },
        },
      },
      keyid: { type: 'string', minLength: 1 },
      scope: { type: 'string', minLength: 1 },
      exclude_files: { type: 'array', items: { type: 'string', minLength: 1 }, default: [] },
    },
  },
  bundle_service: {
    type: 'object',
    additionalProperties: false,
    required: ['url'],
    properties: {
      url: { type: 'string', pattern: '^https?://' },
      headers: httpHeaders,
      timeout_s: { type: 'number', exclusiveMinimum: 0, maximum: 600, default: 10 },
      polling: {
        type: 'object',
        additionalProperties: false,
        default: {},
        properties: {
          min_delay_seconds: { type: 'number', minimum: 0, default: 60 },
          max_delay_seconds: { type: 'number', minimum: 0, default: 120 },
          long_polling_timeout_seconds: { type: 'integer', minimum: 1, maximum: 3600 },
        },
      },
    },
  },
} as const;

/** `decision_logs`: OPA-compatible decision log sinks and masking. */
const decisionLogsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    console: { type: 'boolean', default: false },
    file: { type: 'string', minLength: 1 },
    service: {
      type: 'object',
      additionalProperties: false,
      required: ['url'],
      properties: {
        url: { type: 'string', pattern: '^https?://' },
        resource: { type: 'string', default: '/logs' },
        headers: httpHeaders,
        timeout_s: { type: 'number', exclusiveMinimum: 0, maximum: 600, default: 10 },
        max_batch_bytes: { type: 'integer', minimum: 1024, default: 32768 },
        max_buffer_bytes: { type: 'integer', minimum: 1024, default: 10485760 },
        interval_s: { type: 'number', exclusiveMinimum: 0, default: 5 },
      },
    },
    mask: {
      type: 'array',
      default: [],
      items: {
        anyOf: [
          { type: 'string', pattern: '^/(input|result)(/|$)' },
          {
            type: 'object',
            additionalProperties: false,
            required: ['path'],
            properties: { op: { enum: ['remove', 'upsert'] }, path: { type: 'string', pattern: '^/(input|result)(/|$)' }, value: {} },
          },
        ],
      },
    },
    mask_defaults: { type: 'boolean', default: true },
    labels: { type: 'object', additionalProperties: { type: 'string' }, default: {} },
  },
} as const;

// --- end of policy bundles and decision logs -----------------------------------------------

/** The configuration schema (draft 2020-12 subset understood by ajv). */
export const configSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['policy', 'tools'],
  properties: {
    server: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // The channel from Envoy (see config/server.ts): mTLS, a unix socket, or explicit loopback plaintext.
        grpc_address: { type: 'string', minLength: 1, default: '127.0.0.1' },
        grpc_port: { type: 'integer', minimum: 0, maximum: 65535, default: 9191 },
        grpc_tls: {
          type: 'object',
          additionalProperties: false,
          required: ['ca', 'cert', 'key', 'client_sans'],
          properties: {
            ca: { type: 'string', minLength: 1 },
            cert: { type: 'string', minLength: 1 },
            key: { type: 'string', minLength: 1 },
            client_sans: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', minLength: 1 } },
          },
        },
        grpc_socket_mode: { type: 'string', pattern: '^0?[0-7]{3}$', default: '0600' },
        grpc_plaintext: { type: 'boolean', default: false },
        handoff_key: secretRef,
        admin_address: { type: 'string', minLength: 1, default: '127.0.0.1' },
        admin_port: { type: 'integer', minimum: 0, maximum: 65535, default: 9464 },
        admin_token: secretRef,
        shutdown_grace_ms: { type: 'integer', minimum: 0, maximum: 600000, default: 10000 },
        log_level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace'], default: 'info' },
        // Worker processes sharing the gRPC port (see server/primary.ts); auto: one per core.
        workers: { oneOf: [{ type: 'integer', minimum: 1, maximum: 256 }, { const: 'auto' }], default: 'auto' },
      },
    },
    identity: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        required: { type: 'boolean', default: true },
        api_key_header: { ...headerName, default: 'x-api-key' },
        // Bounded so a flood of distinct valid tokens cannot grow memory without limit.
        token_cache_size: { type: 'integer', minimum: 0, maximum: 1000000, default: 10000 },
        jwt: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['issuer', 'audiences', 'algorithms'],
            oneOf: [{ required: ['jwks_file'] }, { required: ['jwks_url'] }],
            properties: {
              issuer: { type: 'string', minLength: 1 },
              audiences: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
              jwks_file: { type: 'string', minLength: 1 },
              jwks_url: { type: 'string', pattern: '^https?://' },
              algorithms: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: [...ASYMMETRIC_ALGS] } },
              clock_skew_s: { type: 'integer', minimum: 0, maximum: 300, default: 30 },
              claims: {
                type: 'object',
                additionalProperties: false,
                default: {},
                properties: {
                  user: { type: 'string', default: 'sub' },
                  tenant: { type: 'string', default: 'tenant' },
                  roles: { type: 'string', default: 'roles' },
                  agent: { type: 'string', default: 'azp' },
                  agent_version: { type: 'string', default: 'agent_version' },
                },
              },
            },
          },
        },
        mtls: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['principal', 'agent'],
            properties: {
              principal: { type: 'string', minLength: 1 },
              agent: name,
              agent_version: { type: 'string' },
              roles,
              tenant: { type: 'string' },
            },
          },
        },
        api_keys: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['id', 'sha256', 'agent'],
            properties: {
              id: { type: 'string', minLength: 1 },
              sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
              agent: name,
              agent_version: { type: 'string' },
              roles,
              tenant: { type: 'string' },
            },
          },
        },
        signatures: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['id', 'agent'],
            // A secret, or several while one is rotated (every one given is tried).
            anyOf: [{ required: ['secret'] }, { required: ['secrets'] }],
            properties: {
              id: { type: 'string', minLength: 1 },
              secret: secretRef,
              secrets: { type: 'array', minItems: 1, maxItems: 8, items: secretRef },
              // Header names default to the scheme's documented ones (see SCHEMES in src/identity/signature/).
              signature_header: headerName,
              timestamp_header: headerName,
              id_header: headerName,
              max_skew_s: { type: 'integer', minimum: 1, maximum: 3600, default: 300 },
              // How long a used signature (message id for standard_webhooks) stays refused; default:
              // until its timestamp leaves max_skew_s, or 86400 for github (no timestamp is signed).
              replay_window_s: { type: 'integer', minimum: 1, maximum: 2592000 },
              scheme: { enum: ['slack', 'v1', 'github', 'stripe', 'standard_webhooks'], default: 'slack' },
              agent: name,
              roles,
              tenant: { type: 'string' },
              tools: { type: 'array', items: name },
            },
          },
        },
      },
    },
    policy: {
      type: 'object',
      additionalProperties: false,
      // A bundle file, or a bundle service to fetch it from.
      anyOf: [{ required: ['bundle'] }, { required: ['bundle_service'] }],
      properties: {
        bundle: { type: 'string', minLength: 1 },
        data: { type: 'string', minLength: 1 },
        decision: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$', default: 'envoy/authz/allow' },
        dry_run: { type: 'boolean', default: false },
        ...bundlePolicyProperties,
      },
    },
    decision_logs: decisionLogsSchema,
    tools: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'upstream'],
        properties: {
          name,
          description: { type: 'string' },
          upstream: { type: 'string', minLength: 1 },
          mutating: { type: 'boolean' },
          external: { type: 'boolean', default: false },
          dry_run: { type: 'boolean', default: false },
          identity_required: { type: 'boolean' },
          credentials: {
            type: 'array',
            default: [],
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['header', 'secret'],
              properties: {
                header: headerName,
                format: { type: 'string', pattern: '\\{secret\\}', default: '{secret}' },
                secret: secretRef,
                per_user: { type: 'object', additionalProperties: secretRef },
                require_per_user: { type: 'boolean', default: false },
              },
            },
          },
          request_signing: {
            type: 'object',
            additionalProperties: false,
            required: ['secret'],
            properties: {
              secret: secretRef,
              header: { ...headerName, default: 'x-portcullis-signature' },
            },
          },
          // Idempotency keys for mutating calls (src/limits/idempotency.ts).
          idempotency: {
            type: 'object',
            additionalProperties: false,
            properties: {
              header: { ...headerName, default: 'idempotency-key' },
              key_from: { type: 'array', minItems: 1, maxItems: 8, items: { type: 'string', pattern: '^[^.\\s]{1,64}(\\.[^.\\s]{1,64}){0,15}$' } },
              ttl_s: { type: 'integer', minimum: 1, maximum: 2592000, default: 86400 },
              in_flight_ttl_s: { type: 'integer', minimum: 1, maximum: 86400, default: 300 },
              max_stored_bytes: { type: 'integer', minimum: 0, maximum: 16777216, default: 1048576 },
              required: { type: 'boolean', default: false },
            },
          },
          rate_limits: rateLimitRules,
          facts: { type: 'array', items: toolFact, maxItems: 32 },
          budgets: { type: 'array', items: budget, maxItems: 16 },
          rate_limit: {
            type: 'object',
            additionalProperties: false,
            required: ['rps'],
            properties: {
              rps: { type: 'number', exclusiveMinimum: 0 },
              burst: { type: 'integer', minimum: 1, default: 10 },
              key: { enum: ['agent', 'user', 'tenant'], default: 'agent' },
            },
          },
          request: {
            type: 'object',
            additionalProperties: false,
            default: {},
            properties: {
              // No schema default: it depends on the tool (see DEFAULT_MAX_BODY_BYTES in load.ts).
              max_body_bytes: { type: 'integer', minimum: 0, maximum: 104857600 },
              schema: { type: 'string', minLength: 1 },
              injection: { enum: ['off', 'flag', 'block'], default: 'flag' },
              dlp: { type: 'boolean', default: true },
            },
          },
          mcp: {
            type: 'object',
            additionalProperties: false,
            properties: {
              // Optional overrides: tools the server lists are learned without being named here.
              tools: {
                type: 'object',
                default: {},
                additionalProperties: {
                  type: 'object',
                  additionalProperties: false,
                  properties: {
                    mutating: { type: 'boolean' },
                    input_schema: { type: 'string', minLength: 1 },
                  },
                },
              },
              // DNS-rebinding protection (src/mcp/origin.ts): a present Origin must be listed;
              // the Host is checked only when allowed_hosts is set.
              allowed_origins: {
                type: 'array',
                default: [],
                items: { type: 'string', pattern: '^(\\*|null|[A-Za-z][A-Za-z0-9+.-]*://[^/?#\\s]+/?)$' },
              },
              allowed_hosts: {
                type: 'array',
                items: { type: 'string', pattern: '^(\\*|(\\*\\.)?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?|\\[[0-9A-Fa-f:.]+\\](:[0-9]{1,5})?)$' },
              },
              server_url: { type: 'string', pattern: '^https?://[^\\s]+$' },
              on_change: { enum: ['flag', 'hide', 'block'], default: 'block' },
              poisoning: { enum: ['flag', 'hide', 'block'], default: 'hide' },
              pins: { type: 'object', default: {}, additionalProperties: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
              pins_file: { type: 'string', minLength: 1 },
              refresh_s: { type: 'integer', minimum: 1, maximum: 86400, default: 300 },
              // A call waits for the fetch inside ext_proc's request phase: keep this below the
              // ext_proc filter's message_timeout in envoy/envoy.yaml (2s).
              discovery_timeout_ms: { type: 'integer', minimum: 100, maximum: 60000, default: 1500 },
            },
          },
          // OAuth protected resource (RFC 9728 metadata, RFC 8707 audience); URLs are checked
          // further at load (src/mcp/oauth.ts).
          oauth: {
            type: 'object',
            additionalProperties: false,
            required: ['resource', 'authorization_servers'],
            properties: {
              resource: { type: 'string', pattern: '^https?://[^#?\\s]+$' },
              authorization_servers: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', pattern: '^https?://[^#?\\s]+$' } },
              // RFC 6750 scope tokens (NQCHAR), so they can be quoted in WWW-Authenticate as is.
              scopes: { type: 'array', uniqueItems: true, default: [], items: { type: 'string', pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$' } },
              resource_name: { type: 'string', minLength: 1, maxLength: 200, pattern: '^[^\\u0000-\\u001f\\u007f]+$' },
            },
          },
          response: {
            type: 'object',
            additionalProperties: false,
            default: {},
            properties: {
              drop_fields: { type: 'array', items: { type: 'string', minLength: 1 }, default: [] },
              dlp: { type: 'boolean', default: true },
              // Rule actions for this tool's responses over the global dlp.overrides (a CRM
              // tool whose job is returning e-mail addresses: { pii.email: { action: flag } }).
              dlp_overrides: dlpConfigSchema.properties.overrides,
              // Bodies that are not text in their charset: scanned byte for byte and masked in
              // place (inspect), refused (block), or delivered uninspected and recorded so (pass).
              binary: { enum: ['inspect', 'block', 'pass'], default: 'inspect' },
            },
          },
        },
      },
    },
    audit: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        stdout: { type: 'boolean', default: true },
        file: { type: 'string', minLength: 1 },
        payload: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            mode: { enum: ['off', 'truncated'], default: 'off' },
            max_bytes: { type: 'integer', minimum: 0, maximum: 65536, default: 1024 },
          },
        },
        fsync: { type: 'boolean', default: false },
        checkpoint: {
          type: 'object',
          additionalProperties: false,
          required: ['key'],
          properties: {
            key: secretRef,
            every_records: { type: 'integer', minimum: 1, maximum: 10000000, default: 1000 },
            every_seconds: { type: 'integer', minimum: 1, maximum: 86400, default: 60 },
            anchor_file: { type: 'string', minLength: 1 },
          },
        },
      },
    },
    dlp: { type: 'object' },
    alerting: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        dlp_threshold: { type: 'integer', minimum: 0, default: 20 },
        window_s: { type: 'integer', minimum: 1, maximum: 86400, default: 300 },
      },
    },
    inspect: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // What Envoy's ext_authz forwards to the Check (with_request_body.max_request_bytes).
        check_body_bytes: { type: 'integer', minimum: 0, maximum: 104857600, default: 65536 },
        max_batch_calls: { type: 'integer', minimum: 1, maximum: 1000, default: 16 },
        policy_budget_ms: { type: 'integer', minimum: 1, maximum: 10000, default: 50 },
        require_route_tool: { type: 'boolean', default: true },
        // Header hygiene on top of the built-in list (src/tools/headerHygiene.ts) and strip_headers.
        strip_header_prefixes: { type: 'array', items: headerName, default: [] },
        forward_headers: { type: 'array', items: headerName, default: [] },
        // Largest response body held for inspection (larger ones are refused, 503).
        max_response_bytes: { type: 'integer', minimum: 1024, maximum: 1073741824, default: 33554432 },
        // Response bytes held for inspection across all streams of the process; past it a
        // large response is refused with a retryable 503 instead of starving other calls.
        response_memory_budget_bytes: { type: 'integer', minimum: 1048576, maximum: 17179869184, default: 134217728 },
      },
    },
    store: {
      type: 'object',
      additionalProperties: false,
      default: {},
      // A redis store needs its connection settings.
      if: { properties: { kind: { const: 'redis' } }, required: ['kind'] },
      then: { required: ['redis'] },
      properties: {
        kind: { enum: ['memory', 'redis'], default: 'memory' },
        redis: {
          type: 'object',
          additionalProperties: false,
          required: ['url'],
          properties: {
            url: { type: 'string', pattern: '^rediss?://' },
            key_prefix: { type: 'string', maxLength: 64, default: 'portcullis:' },
            timeout_ms: { type: 'integer', minimum: 1, maximum: 10000, default: 200 },
            connect_timeout_ms: { type: 'integer', minimum: 1, maximum: 60000, default: 2000 },
            max_retries: { type: 'integer', minimum: 0, maximum: 10, default: 1 },
          },
        },
      },
    },
    // OpenTelemetry spans of every Check and ext_proc exchange, exported over OTLP/HTTP (protobuf).
    tracing: {
      type: 'object',
      additionalProperties: false,
      default: {},
      // Exporting needs somewhere to export to.
      if: { properties: { enabled: { const: true } }, required: ['enabled'] },
      then: { required: ['otlp_endpoint'] },
      properties: {
        enabled: { type: 'boolean', default: false },
        // Full OTLP/HTTP traces URL, e.g. http://otel-collector:4318/v1/traces.
        otlp_endpoint: { type: 'string', pattern: '^https?://' },
        // Share of new traces kept; a trace Envoy started keeps Envoy's sampling decision.
        sample_ratio: { type: 'number', minimum: 0, maximum: 1, default: 1 },
        service_name: { type: 'string', minLength: 1, maxLength: 128, default: 'portcullis' },
        // Extra request headers for the collector (e.g. its API key).
        headers: { type: 'object', maxProperties: 16, propertyNames: { pattern: '^[A-Za-z0-9-]{1,64}$' }, additionalProperties: { type: 'string', maxLength: 4096 }, default: {} },
        timeout_s: { type: 'number', exclusiveMinimum: 0, maximum: 60, default: 10 },
        // Spans waiting for export; past it new spans are dropped (and counted), never waited for.
        max_queue_spans: { type: 'integer', minimum: 16, maximum: 1000000, default: 2048 },
      },
    },
    rate_limits: rateLimitRules,
    facts: { type: 'array', items: globalFact, maxItems: 64 },
    // OPA-Envoy drop-in mode (src/authz/dropin.ts): requests outside /tools/<name>/ on the routes
    // that opt in go to an OPA-Envoy policy unchanged, answered exactly as opa-envoy-plugin does.
    opa_envoy: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: false },
        path: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$', default: 'envoy/authz/allow' },
        path_prefixes: { type: 'array', items: { type: 'string', pattern: '^/' }, uniqueItems: true, maxItems: 64, default: [] },
        identity: { enum: ['offer', 'off'], default: 'offer' },
      },
    },
    strip_headers: {
      type: 'array',
      items: headerName,
      default: [],
    },
  },
} as const;
