import { GatewayError } from '../errors.js';
import type { GatewayConfig, OpaEnvoyConfig } from '../config/types.js';
import type { Principal } from '../identity/types.js';
import type { PolicyEngine } from '../policy/engine.js';
import { toStruct, type ProtoStruct } from '../server/struct.js';
import type { ToolRegistry } from '../tools/registry.js';
import { buildOpaEnvoyInput } from './dropinInput.js';
import type { ProtoCheckRequest } from './request.js';

/**
 * OPA-Envoy drop-in mode: a request that names no logical tool, on a route that opts in, is
 * decided by an OPA-Envoy policy unchanged and answered exactly as opa-envoy-plugin answers
 * (status, headers, body, dynamic metadata with `decision_id`, and the same gRPC errors).
 */

/** Context extension an Envoy route sets to choose the gateway's mode. */
export const MODE_EXTENSION = 'portcullis_mode';
/** {@link MODE_EXTENSION} value of drop-in routes. */
export const MODE_OPA_ENVOY = 'opa-envoy';

/** gRPC status codes the answers use. */
const GRPC_OK = 0;
const GRPC_UNKNOWN = 2;
const GRPC_PERMISSION_DENIED = 7;

/** Values of Envoy's `envoy.type.v3.StatusCode` enum (0, "Empty", is no status). */
const ENVOY_STATUS_CODES = new Set([
  100, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410,
  411, 412, 413, 414, 415, 416, 417, 421, 422, 423, 424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
]);
/** Codes Go's `http.StatusText` names (the reference's first check). */
const GO_STATUS_TEXT = new Set([
  100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407,
  408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 421, 422, 423, 424, 425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505, 506, 507, 508,
  510, 511,
]);

/** A header as OPA-Envoy sets it: `append` left unset (Envoy then adds or overwrites). */
export interface DropinHeader {
  header: { key: string; value: string };
}

/** `envoy.service.auth.v3.CheckResponse` as the reference builds it (proto-loader object form). */
export interface DropinCheckResponse {
  status: { code?: number; message?: string };
  okResponse?: {
    headers: DropinHeader[];
    headersToRemove: string[];
    responseHeadersToAdd: DropinHeader[];
    queryParametersToRemove: string[];
    queryParametersToSet: { key: string; value: string }[];
  };
  deniedResponse?: { status?: { code: number }; headers: DropinHeader[]; body: string };
  dynamicMetadata: ProtoStruct;
}

/** What a drop-in Check answers: a CheckResponse, or a gRPC error (Envoy then denies with 403). */
export type DropinAnswer =
  | { readonly kind: 'response'; readonly allowed: boolean; readonly httpStatus: number | null; readonly response: DropinCheckResponse; readonly rule: string }
  | { readonly kind: 'error'; readonly grpcCode: number; readonly message: string; readonly rule: string };

/** A drop-in answer that is a gRPC error, thrown by the renderer for the gRPC layer to send. */
export class DropinGrpcError extends Error {
  /** @param code gRPC status code */
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Whether a request is decided in drop-in mode: its route says so ({@link MODE_EXTENSION}) or its
 * path is under one of `opa_envoy.path_prefixes`, and it names no configured tool (a request
 * that does keeps every tool stage).
 * @throws GatewayError when a route asks for a mode the configuration does not enable, or for
 *   an unknown mode: a mis-edited Envoy config is denied, never served in another mode.
 */
export function dropinSelected(config: GatewayConfig, req: ProtoCheckRequest, tools: ToolRegistry, path: string): boolean {
  const asked = req.attributes?.contextExtensions?.[MODE_EXTENSION];
  if (asked !== undefined && asked !== MODE_OPA_ENVOY) {
    throw new GatewayError('forbidden', `the gateway route asks for an unknown mode "${asked.slice(0, 64)}"; the call was denied`, { rule: 'opa_envoy.mode' });
  }
  const mode = config.opa_envoy;
  const bare = path.split('?')[0] as string;
  const byPrefix = mode?.enabled === true && mode.path_prefixes.some((p) => bare.startsWith(p));
  if (asked === undefined && !byPrefix) return false;
  if (!mode?.enabled) {
    throw new GatewayError('forbidden', 'the gateway route asks for OPA-Envoy drop-in mode, which the gateway configuration does not enable (opa_envoy.enabled)', {
      rule: 'opa_envoy.disabled',
    });
  }
  return tools.lookup(path).tool === null;
}

/** Go's `%T` of a decoded policy value, as the reference's messages name types. */
function goType(v: unknown): string {
  if (v === null || v === undefined) return '<nil>';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'number') return 'json.Number';
  if (typeof v === 'boolean') return 'bool';
  if (Array.isArray(v)) return '[]interface {}';
  return 'map[string]interface {}';
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A failure reading the decision: the reference's message for it. */
class Refusal extends Error {}

function headersOf(decision: Record<string, unknown>, field: string): DropinHeader[] {
  const out: DropinHeader[] = [];
  if (!(field in decision)) return out;
  const value = decision[field];
  const maps = Array.isArray(value) ? value : [value];
  for (const m of maps) {
    if (!isObject(m)) throw new Refusal(`type assertion error, expected headers to be of type 'object' but got '${goType(m)}'`);
    for (const [key, v] of Object.entries(m)) {
      if (typeof v === 'string') out.push({ header: { key, value: v } });
      else if (Array.isArray(v)) {
        for (const item of v) {
          if (typeof item !== 'string') throw new Refusal(`invalid value type ${goType(item)} for header '${key}'`);
          out.push({ header: { key, value: item } });
        }
      } else throw new Refusal(`type assertion error for header '${key}'`);
    }
  }
  return out;
}

function stringsOf(decision: Record<string, unknown>, field: string): string[] {
  if (!(field in decision)) return [];
  const v = decision[field];
  if (!Array.isArray(v)) throw new Refusal(`type assertion error, expected ${field} to be of type '[]string' but got '${goType(v)}'`);
  return v.map((s) => {
    if (typeof s !== 'string') throw new Refusal(`type assertion error, expected ${field} value to be of type 'string' but got '${goType(s)}'`);
    return s;
  });
}

function queryToSet(decision: Record<string, unknown>): { key: string; value: string }[] {
  if (!('query_parameters_to_set' in decision)) return [];
  const v = decision.query_parameters_to_set;
  if (!isObject(v)) throw new Refusal(`type assertion error, expected query_parameters_to_set to be a map but got '${goType(v)}'`);
  const out: { key: string; value: string }[] = [];
  for (const [key, value] of Object.entries(v)) {
    if (typeof value === 'string') out.push({ key, value });
    else if (Array.isArray(value)) {
      for (const item of value) {
        if (typeof item !== 'string') throw new Refusal(`type assertion error: expected array element to be string but got '${goType(item)}'`);
        out.push({ key, value: item });
      }
    } else throw new Refusal(`type assertion error, expected value to be string or array but got '${goType(value)}'`);
  }
  return out;
}

function httpStatusOf(decision: Record<string, unknown>): number {
  if (!('http_status' in decision)) return 403;
  const v = decision.http_status;
  if (typeof v !== 'number') throw new Refusal(`type assertion error, expected http_status to be of type 'number' but got '${goType(v)}'`);
  if (!Number.isSafeInteger(v)) throw new Refusal(`error converting JSON number to int: strconv.ParseInt: parsing "${String(v)}": invalid syntax`);
  if (!GO_STATUS_TEXT.has(v) || !ENVOY_STATUS_CODES.has(v)) throw new Refusal(`Invalid HTTP status code ${v}`);
  return v;
}

/** Runs one reading step, prefixing a refusal with what was being read (as the reference does). */
function step<T>(what: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof Refusal) throw new Refusal(`${what}: ${err.message}`);
    throw err;
  }
}

/** Everything {@link decideOpaEnvoy} needs besides the request. */
export interface DropinContext {
  readonly policy: PolicyEngine;
  readonly mode: OpaEnvoyConfig;
  /** Denials are logged and answered as allowed with an empty OK response (OPA-Envoy `dry-run`). */
  readonly dryRun: boolean;
  readonly identity: Principal | null;
  readonly decisionId: string;
  /** Request headers the gateway owns or strips (caller-supplied identity): removed on allow. */
  readonly removeHeaders: readonly string[];
}

/**
 * Decides one request in drop-in mode: the reference's input, the policy at `mode.path`, and the
 * reference's answer for its result. Never throws: every failure is an answer that denies.
 */
export function decideOpaEnvoy(req: ProtoCheckRequest, ctx: DropinContext): DropinAnswer {
  const built = buildOpaEnvoyInput(req, ctx.identity);
  if (!built.ok) {
    return {
      kind: 'response',
      allowed: false,
      httpStatus: 400,
      rule: 'opa_envoy.request_parse',
      response: { status: { code: GRPC_PERMISSION_DENIED, message: built.error }, deniedResponse: { status: { code: 400 }, headers: [], body: built.error }, dynamicMetadata: { fields: {} } },
    };
  }
  let decision: unknown;
  try {
    decision = ctx.policy.evaluateAt(built.input, ctx.mode.path, ctx.decisionId);
  } catch (err) {
    return { kind: 'error', grpcCode: GRPC_UNKNOWN, message: err instanceof Error ? err.message : String(err), rule: 'opa_envoy.error' };
  }
  if (decision === undefined) return { kind: 'error', grpcCode: GRPC_UNKNOWN, message: 'undefined decision', rule: 'policy.undefined' };
  try {
    return shape(decision, ctx);
  } catch (err) {
    if (!(err instanceof Refusal)) throw err;
    return { kind: 'error', grpcCode: GRPC_UNKNOWN, message: err.message, rule: 'policy.malformed' };
  }
}

/** The reference's CheckResponse for a decision value. @throws Refusal with its error text */
function shape(decision: unknown, ctx: DropinContext): DropinAnswer {
  let allowed: boolean;
  if (typeof decision === 'boolean') allowed = decision;
  else if (isObject(decision)) {
    if (!('allowed' in decision)) throw new Refusal('failed to get response status: unable to determine evaluation result due to missing "allowed" key');
    if (typeof decision.allowed !== 'boolean') {
      throw new Refusal(`failed to get response status: type assertion error, expected allowed to be of type 'boolean' but got '${goType(decision.allowed)}'`);
    }
    allowed = decision.allowed;
  } else throw new Refusal(`failed to get response status: illegal value for policy evaluation result: ${goType(decision)}`);

  // A zero code is left unset, as a Go server encodes it (proto3 default).
  const response: DropinCheckResponse = { status: allowed ? {} : { code: GRPC_PERMISSION_DENIED }, dynamicMetadata: { fields: {} } };
  let httpStatus: number | null = allowed ? null : 403;
  if (isObject(decision)) {
    const headers = step('failed to get response headers', () => headersOf(decision, 'headers'));
    const meta = decision.dynamic_metadata;
    if ('dynamic_metadata' in decision && !isObject(meta)) {
      throw new Refusal(`failed to get dynamic metadata: type assertion error, expected dynamic_metadata to be of type 'object' but got '${goType(meta)}'`);
    }
    if (isObject(meta)) response.dynamicMetadata = toStruct(meta);
    if (allowed) {
      response.okResponse = {
        headers,
        headersToRemove: step('failed to get request headers to remove', () => stringsOf(decision, 'request_headers_to_remove')),
        responseHeadersToAdd: step('failed to get response headers to send to client', () => headersOf(decision, 'response_headers_to_add')),
        queryParametersToRemove: step('failed to get request query parameters to remove', () => stringsOf(decision, 'query_parameters_to_remove')),
        queryParametersToSet: step('failed to get request query parameters to set', () => queryToSet(decision)),
      };
    } else {
      const body = step('failed to get response body', () => {
        if (!('body' in decision)) return '';
        if (typeof decision.body !== 'string') throw new Refusal(`type assertion error, expected body to be of type 'string' but got '${goType(decision.body)}'`);
        return decision.body;
      });
      httpStatus = step('failed to get response http status', () => httpStatusOf(decision));
      response.deniedResponse = { headers, body, status: { code: httpStatus } };
    }
  }
  let rule = allowed ? 'opa_envoy.allow' : 'opa_envoy.deny';
  if (!allowed && ctx.dryRun) {
    response.status = {};
    delete response.deniedResponse;
    response.okResponse = { headers: [], headersToRemove: [], responseHeadersToAdd: [], queryParametersToRemove: [], queryParametersToSet: [] };
    rule = 'opa_envoy.dry_run_deny';
    httpStatus = null;
  }
  // Headers only the gateway may set (and caller-supplied identity) never reach the upstream.
  if ((response.status.code ?? GRPC_OK) === GRPC_OK && ctx.removeHeaders.length > 0) {
    const ok = (response.okResponse ??= { headers: [], headersToRemove: [], responseHeadersToAdd: [], queryParametersToRemove: [], queryParametersToSet: [] });
    // Envoy removes after it sets: a header the policy sets itself is kept.
    const set = new Set(ok.headers.map((h) => h.header.key.toLowerCase()));
    for (const name of ctx.removeHeaders) if (!set.has(name) && !ok.headersToRemove.includes(name)) ok.headersToRemove.push(name);
  }
  response.dynamicMetadata.fields.decision_id = { stringValue: ctx.decisionId };
  return { kind: 'response', allowed: (response.status.code ?? GRPC_OK) === GRPC_OK, httpStatus, response, rule };
}

/** The CheckResponse of a drop-in answer. @throws DropinGrpcError for an answer that is a gRPC error */
export function dropinResponse(answer: DropinAnswer): DropinCheckResponse {
  if (answer.kind === 'error') throw new DropinGrpcError(answer.grpcCode, answer.message);
  return answer.response;
}
