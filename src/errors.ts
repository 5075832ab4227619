/**
 * The one error type of the gateway. Every stage throws or returns a {@link GatewayError};
 * only the edges (ext_authz / ext_proc responses, admin HTTP, CLI) turn it into HTTP status,
 * gRPC status or JSON-RPC error. The `code` also labels metrics, so the set is closed.
 */

/** Closed set of denial types; the wire value is the `error.type` field agents see. */
export type ErrorCode =
  | 'unauthenticated'
  | 'forbidden'
  | 'unknown_tool'
  | 'invalid_request'
  | 'payload_too_large'
  | 'rate_limited'
  | 'conflict'
  | 'blocked_content'
  | 'unavailable'
  | 'internal';

interface CodeInfo {
  readonly http: number;
  readonly retryable: boolean;
  /** JSON-RPC error code used when the request was JSON-RPC (implementation-defined range). */
  readonly jsonRpc: number;
}

const CODES: Readonly<Record<ErrorCode, CodeInfo>> = {
  unauthenticated: { http: 401, retryable: false, jsonRpc: -32001 },
  forbidden: { http: 403, retryable: false, jsonRpc: -32003 },
  unknown_tool: { http: 404, retryable: false, jsonRpc: -32601 },
  invalid_request: { http: 400, retryable: false, jsonRpc: -32602 },
  payload_too_large: { http: 413, retryable: false, jsonRpc: -32600 },
  rate_limited: { http: 429, retryable: true, jsonRpc: -32029 },
  // The same call is still in progress (idempotency key held): retrying later gets its answer.
  conflict: { http: 409, retryable: true, jsonRpc: -32009 },
  blocked_content: { http: 403, retryable: false, jsonRpc: -32010 },
  unavailable: { http: 503, retryable: true, jsonRpc: -32050 },
  // Internal failures are reported to agents as "unavailable": fail closed, retry may help,
  // and nothing about the gateway's internals leaks into the error body.
  internal: { http: 503, retryable: true, jsonRpc: -32050 },
};

/** Every error code, for metric label pre-registration and tests. */
export const ERROR_CODES: readonly ErrorCode[] = Object.keys(CODES) as ErrorCode[];

/** Options carried by a {@link GatewayError} beyond code and message. */
export interface GatewayErrorOptions {
  /** Seconds after which a retry may succeed (rate limits, unavailability). */
  readonly retryAfterS?: number;
  /** Policy rule or check that produced the denial; surfaced to the agent and the audit log. */
  readonly rule?: string;
  /** Extra detail safe to show to the agent (e.g. failing schema paths). Never secrets. */
  readonly details?: Readonly<Record<string, unknown>>;
  /** Overrides the HTTP status implied by the code (e.g. a policy's `http_status`). */
  readonly httpStatus?: number;
  readonly cause?: unknown;
}

/** A denial or failure with a stable code; safe to render to an agent. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterS: number | undefined;
  readonly rule: string | undefined;
  readonly details: Readonly<Record<string, unknown>> | undefined;
  readonly httpStatus: number;

  constructor(code: ErrorCode, message: string, opts: GatewayErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.retryAfterS = opts.retryAfterS;
    this.rule = opts.rule;
    this.details = opts.details;
    this.httpStatus = opts.httpStatus ?? CODES[code].http;
  }

  /** Whether an agent may retry the same call unchanged. */
  get retryable(): boolean {
    return CODES[this.code].retryable;
  }

  /** JSON-RPC error code for this denial. */
  get jsonRpcCode(): number {
    return CODES[this.code].jsonRpc;
  }
}

/** Wraps anything thrown into a GatewayError; unknown failures become `internal` (fail closed). */
export function toGatewayError(err: unknown, context = 'internal error'): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError('internal', `${context}; the call was denied`, { cause: err });
}

/** The JSON body every denial carries (DESIGN contract). */
export interface ErrorBody {
  error: {
    type: ErrorCode;
    message: string;
    retryable: boolean;
    retry_after_s: number | null;
    request_id: string | null;
    rule?: string;
    details?: Readonly<Record<string, unknown>>;
  };
}

/** Renders the public error body. `internal` is shown as `unavailable` so internals do not leak. */
export function errorBody(err: GatewayError, requestId: string | null): ErrorBody {
  const type: ErrorCode = err.code === 'internal' ? 'unavailable' : err.code;
  const body: ErrorBody = {
    error: {
      type,
      message: err.message,
      retryable: err.retryable,
      retry_after_s: err.retryAfterS ?? null,
      request_id: requestId,
    },
  };
  if (err.rule !== undefined) body.error.rule = err.rule;
  if (err.details !== undefined) body.error.details = err.details;
  return body;
}

/** JSON-RPC 2.0 error response carrying the same information as {@link errorBody}. */
export function jsonRpcErrorBody(
  err: GatewayError,
  requestId: string | null,
  rpcId: string | number | null,
): Record<string, unknown> {
  const { error } = errorBody(err, requestId);
  const { message, ...data } = error;
  return { jsonrpc: '2.0', id: rpcId, error: { code: err.jsonRpcCode, message, data } };
}

/** How a JSON-RPC request is answered with an error. */
export interface RpcErrorTarget {
  readonly isJsonRpc: boolean;
  /** Id of the call the error is about. */
  readonly id: string | number | null;
  /** Ids of every call of a batch request, in body order; null for a single message. */
  readonly batchIds?: readonly (string | number)[] | null;
}

/**
 * JSON-RPC error body. A batch is rejected as a whole, and JSON-RPC answers a batch with an
 * array: the call the error is about gets it, every other call with an id gets the same error
 * type saying it was not executed because of that call.
 */
export function rpcErrorBody(err: GatewayError, requestId: string | null, rpc: RpcErrorTarget): unknown {
  const ids = rpc.batchIds;
  if (!ids || ids.length === 0) return jsonRpcErrorBody(err, requestId, rpc.id);
  const failed = rpc.id ?? ids[0]!;
  const others = new GatewayError(err.code, `not executed: call ${JSON.stringify(failed)} of the same batch was rejected (${err.message})`, {
    ...(err.rule !== undefined ? { rule: err.rule } : {}),
    ...(err.retryAfterS !== undefined ? { retryAfterS: err.retryAfterS } : {}),
  });
  return ids.map((id) => jsonRpcErrorBody(id === failed ? err : others, requestId, id));
}
