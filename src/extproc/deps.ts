import type { GatewayConfig } from '../config/types.js';
import type { ToolRegistry } from '../tools/registry.js';
import type { Scanner } from '../dlp/index.js';
import type { InjectionDetector } from '../inspect/injection.js';
import type { SchemaSet } from '../inspect/schema.js';
import type { AuditLogger } from '../audit/sinks.js';
import { compileFieldFilter, type FieldFilter } from './fieldFilter.js';
import type { DlpAlerter } from './alerts.js';
import type { HandoffKey } from '../authz/handoff.js';
import { errorBody, rpcErrorBody, type GatewayError, type RpcErrorTarget } from '../errors.js';
import { setHeader, type ProcessingResponse } from './proto.js';

/** Everything ext_proc needs, compiled at config load; swapped as a whole on reload. */
export interface ExtprocDeps {
  readonly config: GatewayConfig;
  readonly tools: ToolRegistry;
  readonly scanner: Scanner;
  readonly injection: InjectionDetector;
  readonly schemas: SchemaSet;
  readonly filters: ReadonlyMap<string, FieldFilter>;
  readonly audit: AuditLogger;
  readonly alerter: DlpAlerter;
  /** Verifies the ext_authz decision forwarded in the dynamic metadata. */
  readonly handoff: HandoffKey;
}

/** Compiles the per-tool response field filters. */
export function compileFilters(config: GatewayConfig): Map<string, FieldFilter> {
  return new Map(config.tools.map((t) => [t.name, compileFieldFilter(t.response.drop_fields)]));
}

/**
 * An ImmediateResponse carrying the gateway's error body (or a JSON-RPC error when the request
 * was JSON-RPC). Used for every denial ext_proc makes before response headers went out.
 */
export function immediateError(err: GatewayError, requestId: string | null, rpc: RpcErrorTarget): ProcessingResponse {
  const body = rpc.isJsonRpc ? rpcErrorBody(err, requestId, rpc) : errorBody(err, requestId);
  const headers = [setHeader('content-type', 'application/json')];
  if (err.retryAfterS !== undefined) headers.push(setHeader('retry-after', String(err.retryAfterS)));
  return {
    immediateResponse: {
      status: { code: err.httpStatus },
      headers: { setHeaders: headers },
      body: Buffer.from(JSON.stringify(body), 'utf8'),
      details: `portcullis_${err.code}`,
    },
  };
}
