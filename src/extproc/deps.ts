import type { GatewayConfig } from '../config/types.js';
import type { ToolRegistry } from '../tools/registry.js';
import { compileCatalog, type Scanner } from '../dlp/index.js';
import type { InjectionDetector } from '../inspect/injection.js';
import type { SchemaSet } from '../inspect/schema.js';
import type { AuditLogger } from '../audit/sinks.js';
import type { CredentialInjector } from '../credentials/inject.js';
import { compileFieldFilter } from './fieldFilter.js';
import type { DlpAlerter } from './alerts.js';
import type { HandoffKey } from '../authz/handoff.js';
import { errorBody, rpcErrorBody, type GatewayError, type RpcErrorTarget } from '../errors.js';
import { setHeader, type ProcessingResponse } from './proto.js';
import { compilePipeline, fieldFilterTransform, ResponsePipeline } from './response/pipeline.js';
import type { MemoryBudget } from './response/budget.js';
import type { McpCatalog } from '../mcp/catalog.js';
import { definitionsTransform } from '../mcp/listTransform.js';

/** What ext_proc compiled for one tool's responses. */
export interface ResponsePlan {
  readonly pipeline: ResponsePipeline;
  /** DLP rules for this tool's responses (its overrides applied); null when DLP is off for it. */
  readonly scanner: Scanner | null;
}

/** Everything ext_proc needs, compiled at config load; swapped as a whole on reload. */
export interface ExtprocDeps {
  readonly config: GatewayConfig;
  readonly tools: ToolRegistry;
  /** The global DLP rules (request direction, audit payloads). */
  readonly scanner: Scanner;
  readonly injection: InjectionDetector;
  readonly schemas: SchemaSet;
  /** Response handling per tool. */
  readonly responses: ReadonlyMap<string, ResponsePlan>;
  readonly audit: AuditLogger;
  readonly alerter: DlpAlerter;
  /** Verifies the ext_authz decision forwarded in the dynamic metadata. */
  readonly handoff: HandoffKey;
  /** Knows the credential values injected into each call, to scrub them from responses. */
  readonly credentials: CredentialInjector;
  /** Memory for held response bodies, shared by every stream (kept across reloads). */
  readonly budget: MemoryBudget;
  /** MCP tool definitions learned and pinned, shared with the Check (kept across reloads). */
  readonly mcp?: McpCatalog;
}

/**
 * Compiles each tool's response plan: its pipeline, and its DLP rules (the global scanner, or
 * one compiled with the tool's overrides over the global ones).
 */
export function compileResponses(config: GatewayConfig, scanner: Scanner, mcp?: McpCatalog): Map<string, ResponsePlan> {
  return new Map(
    config.tools.map((t) => {
      let toolScanner: Scanner | null = null;
      if (t.response.dlp) {
        const o = t.response.dlp_overrides;
        toolScanner = o && Object.keys(o).length > 0 ? compileCatalog({ ...config.dlp, overrides: { ...config.dlp?.overrides, ...o } }) : scanner;
      }
      const filter = compileFieldFilter(t.response.drop_fields);
      // MCP definitions are learned (and withheld) before any other transform sees the list.
      const pipeline = t.mcp && mcp ? new ResponsePipeline([definitionsTransform(mcp), ...(filter.empty ? [] : [fieldFilterTransform(filter)])]) : compilePipeline(filter);
      return [t.name, { pipeline, scanner: toolScanner }];
    }),
  );
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
