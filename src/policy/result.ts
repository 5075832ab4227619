import { GatewayError } from '../errors.js';

/** Header map of an OPA-Envoy decision: one value or several. */
export type DecisionHeaders = Readonly<Record<string, string | readonly string[]>>;

/**
 * A policy decision in OPA-Envoy terms, read and type-checked. Fields the policy did not set
 * are `null`.
 */
export interface Decision {
  readonly allowed: boolean;
  /** Allowed: headers set on the upstream request. Denied: headers on the denial response. */
  readonly headers: DecisionHeaders | null;
  /** Headers added to the response sent back to the caller. */
  readonly responseHeadersToAdd: DecisionHeaders | null;
  /** Request headers removed before the upstream sees the request. */
  readonly requestHeadersToRemove: readonly string[] | null;
  /** Denial response body. */
  readonly body: string | null;
  /** Denial HTTP status (100-599). */
  readonly httpStatus: number | null;
  /** Envoy dynamic metadata emitted with the decision. */
  readonly dynamicMetadata: Readonly<Record<string, unknown>> | null;
  /** Why, for agents and the audit log. */
  readonly reason: string | null;
  /** Identifier of the rule that decided. */
  readonly rule: string | null;
}

const KNOWN_FIELDS = new Set([
  'allowed',
  'headers',
  'response_headers_to_add',
  'request_headers_to_remove',
  'body',
  'http_status',
  'dynamic_metadata',
  'reason',
  'rule',
]);

// OPA-Envoy fields the gateway cannot honour: refusing them is safer than silently ignoring them.
const UNSUPPORTED_FIELDS = ['query_parameters_to_set', 'query_parameters_to_remove'];

const BOOLEAN_ALLOW: Decision = Object.freeze(bare(true));
const BOOLEAN_DENY: Decision = Object.freeze(bare(false));

function bare(allowed: boolean): Decision {
  return {
    allowed,
    headers: null,
    responseHeadersToAdd: null,
    requestHeadersToRemove: null,
    body: null,
    httpStatus: null,
    dynamicMetadata: null,
    reason: null,
    rule: null,
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Short description of a value for error messages (type and a clipped rendering). */
function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  const text = JSON.stringify(v) ?? String(v);
  return `${typeof v} ${text.length > 40 ? `${text.slice(0, 40)}...` : text}`;
}

function malformed(path: string, message: string): GatewayError {
  return new GatewayError('internal', `policy decision ${path} is malformed: ${message}`, { rule: 'policy.malformed' });
}

function readHeaders(path: string, field: string, v: unknown): DecisionHeaders {
  if (!isObject(v)) throw malformed(path, `"${field}" must be an object of header name to string or array of strings, got ${describe(v)}`);
  for (const [name, value] of Object.entries(v)) {
    if (typeof value === 'string') continue;
    if (Array.isArray(value)) {
      const bad = value.findIndex((x) => typeof x !== 'string');
      if (bad === -1) continue;
      throw malformed(path, `"${field}.${name}[${bad}]" must be a string, got ${describe(value[bad])}`);
    }
    throw malformed(path, `"${field}.${name}" must be a string or an array of strings, got ${describe(value)}`);
  }
  return v as DecisionHeaders;
}

function readString(path: string, field: string, v: unknown): string {
  if (typeof v !== 'string') throw malformed(path, `"${field}" must be a string, got ${describe(v)}`);
  return v;
}

/**
 * Reads the value of the decision document (`undefined` when the policy produced none).
 * A boolean is a bare allow/deny; an object follows OPA-Envoy (`allowed` required) plus
 * `reason`/`rule`. Unknown members are ignored, as OPA-Envoy does, except the ones it would
 * act on and the gateway cannot.
 *
 * @param path decision path, for messages (e.g. `envoy/authz/allow`)
 * @throws GatewayError `forbidden` (rule `policy.undefined`) when the decision is undefined;
 *   `internal` (rule `policy.malformed`) naming the field and the problem otherwise.
 */
export function readDecision(value: unknown, path: string): Decision {
  if (value === undefined) {
    throw new GatewayError('forbidden', `policy decision ${path} is undefined for this request; denying by default`, {
      rule: 'policy.undefined',
    });
  }
  if (value === true) return BOOLEAN_ALLOW;
  if (value === false) return BOOLEAN_DENY;
  if (!isObject(value)) throw malformed(path, `expected a boolean or an object with "allowed", got ${describe(value)}`);

  if (!('allowed' in value)) throw malformed(path, '"allowed" is missing');
  if (typeof value.allowed !== 'boolean') throw malformed(path, `"allowed" must be a boolean, got ${describe(value.allowed)}`);
  for (const f of UNSUPPORTED_FIELDS) {
    if (f in value) throw malformed(path, `"${f}" is not supported by this gateway`);
  }

  const d: { -readonly [K in keyof Decision]: Decision[K] } = bare(value.allowed);
  for (const [field, v] of Object.entries(value)) {
    if (!KNOWN_FIELDS.has(field) || v === undefined) continue;
    switch (field) {
      case 'headers':
        d.headers = readHeaders(path, field, v);
        break;
      case 'response_headers_to_add':
        d.responseHeadersToAdd = readHeaders(path, field, v);
        break;
      case 'request_headers_to_remove': {
        if (!Array.isArray(v)) throw malformed(path, `"${field}" must be an array of strings, got ${describe(v)}`);
        const bad = v.findIndex((x) => typeof x !== 'string');
        if (bad !== -1) throw malformed(path, `"${field}[${bad}]" must be a string, got ${describe(v[bad])}`);
        d.requestHeadersToRemove = v as string[];
        break;
      }
      case 'body':
        d.body = readString(path, field, v);
        break;
      case 'http_status':
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 100 || v > 599) {
          throw malformed(path, `"http_status" must be an integer from 100 to 599, got ${describe(v)}`);
        }
        d.httpStatus = v;
        break;
      case 'dynamic_metadata':
        if (!isObject(v)) throw malformed(path, `"dynamic_metadata" must be an object, got ${describe(v)}`);
        d.dynamicMetadata = v;
        break;
      case 'reason':
        d.reason = readString(path, field, v);
        break;
      case 'rule':
        d.rule = readString(path, field, v);
        break;
    }
  }
  return d;
}
