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
import type { PolicyEngine } from '../policy/engine.js';
import { errorBody, rpcErrorBody, type GatewayError, type RpcErrorTarget } from '../errors.js';
import { setHeader, type ProcessingResponse } from './proto.js';
import { compilePipeline, type ResponsePipeline } from './response/pipeline.js';
import type { MemoryBudget } from './response/budget.js';
import type { McpCatalog } from '../mcp/catalog.js';
import { definitionsTransform } from '../mcp/listTransform.js';
import type { Store } from '../limits/store.js';

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
  /** The policy the Check decides with: ext_proc asks it which MCP list items a caller may see, and decides again on what only it reads (a body decided on its headers). */
  readonly policy: PolicyEngine;
  /** MCP tool definitions learned and pinned, shared with the Check (kept across reloads). */
  readonly mcp?: McpCatalog;
  /**
   * The shared store: ext_proc settles idempotency claims in it (extproc/idempotency.ts) and
   * records the facts and budgets of finished exchanges (extproc/facts.ts).
   */
  readonly store?: Store;
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
      // MCP definitions are learned (and withheld) before any other transform sees the list;
      // the policy's list filter comes next, then the field filter.
      const pipeline = t.mcp && mcp ? compilePipeline(filter, true, [definitionsTransform(mcp)]) : compilePipeline(filter, Boolean(t.mcp));
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
