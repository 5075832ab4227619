import { ROOT_CONTEXT, SpanKind, SpanStatusCode, type Span } from '@opentelemetry/api';
import type { AuthzMetadata } from '../authz/check.js';
import type { GatewayError } from '../errors.js';
import { ATTR, decisionAttributes } from './attributes.js';
import { callerLink, hasParent, parentFromMetadata, traceparentOf, type HeaderSource } from './propagation.js';
import { tracer } from './provider.js';
import { childSpan, withSpan } from './scope.js';

/** Fully qualified gRPC method of the Check (`rpc.method`). */
const CHECK_METHOD = 'envoy.service.auth.v3.Authorization/Check';

/** A header portcullis sets or removes upstream. */
export interface TraceHeader {
  readonly key: string;
  readonly value: string;
}

/**
 * The server span of one Check. Its parent is the span Envoy sent in the call's gRPC metadata;
 * without one (Envoy tracing off, a direct gRPC client) the Check starts a new trace, linked to
 * the caller's own `traceparent` if it sent one. Its context is what the audit records carry and
 * what the tool receives as `traceparent`.
 */
export class CheckTrace {
  readonly span: Span;
  /** Envoy sent a trace context: Envoy propagates upstream itself. */
  readonly fromEnvoy: boolean;

  /**
   * @param metadata the Check's gRPC metadata (Envoy's), null for none
   * @param headers the request headers inside the CheckRequest (the agent's)
   */
  constructor(metadata: HeaderSource | null, headers: Readonly<Record<string, string>>, decisionId: string) {
    const parent = metadata ? parentFromMetadata(metadata) : ROOT_CONTEXT;
    this.fromEnvoy = hasParent(parent);
    // With Envoy's parent the caller's context is already Envoy's concern; without, it is only a link.
    const link = this.fromEnvoy ? null : callerLink(headers['traceparent']);
    this.span = tracer().startSpan(
      'ext_authz Check',
      {
        kind: SpanKind.SERVER,
        attributes: { [ATTR.rpcSystem]: 'grpc', [ATTR.rpcMethod]: CHECK_METHOD, [ATTR.decisionId]: decisionId },
        links: link ? [link] : [],
      },
      parent,
    );
  }

  /** Runs the Check with this span as the parent of its stage spans. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    return withSpan(this.span, fn);
  }

  /** W3C `traceparent` of the Check span. */
  get traceparent(): string {
    return traceparentOf(this.span.spanContext());
  }

  /**
   * The trace context the tool receives: the Check span as its parent and no `tracestate`. A
   * caller's `traceparent`/`tracestate` never reach the tool as they were sent (when Envoy
   * traces, its router replaces the traceparent with its own span's, in the same trace).
   */
  upstream(): { readonly set: readonly TraceHeader[]; readonly remove: readonly string[] } {
    return { set: [{ key: 'traceparent', value: this.traceparent }], remove: ['tracestate'] };
  }

  /**
   * Ends the span with what was decided; a denial is an error span carrying the error code.
   * `batchSize` is the number of calls of a JSON-RPC batch, null for one message.
   */
  end(metadata: AuthzMetadata, error: GatewayError | null, rpcId: string | number | null, batchSize: number | null = null): void {
    const span = this.span;
    if (!span.isRecording()) {
      span.end();
      return;
    }
    span.setAttributes(decisionAttributes(metadata, rpcId, batchSize !== null));
    if (batchSize !== null) span.setAttribute(ATTR.batchSize, batchSize);
    span.setAttribute(ATTR.rpcStatus, 'OK');
    if (error) {
      span.setAttribute(ATTR.errorType, error.code);
      span.setAttribute(ATTR.httpStatus, error.httpStatus);
      span.setStatus({ code: SpanStatusCode.ERROR, message: error.code });
    }
    span.end();
  }
}

/** A Check stage (`tool`, `identity`, `policy`, `limits`, `credentials` ...) as a child span of the Check in progress. */
export function traceStage(stage: string): () => void {
  return childSpan(`ext_authz ${stage}`, { [ATTR.stage]: stage });
}
