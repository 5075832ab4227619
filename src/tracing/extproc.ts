import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span } from '@opentelemetry/api';
import type { AuthzMetadata } from '../authz/check.js';
import type { GatewayError } from '../errors.js';
import { ATTR, decisionAttributes } from './attributes.js';
import { hasParent, parentFromMetadata, parentFromTraceparent, type HeaderSource } from './propagation.js';
import { tracer } from './provider.js';
import { withSpan } from './scope.js';

/** Fully qualified gRPC method of an ext_proc stream (`rpc.method`). */
const PROCESS_METHOD = 'envoy.service.ext_proc.v3.ExternalProcessor/Process';

/**
 * Phase spans one stream records at most: a long event stream sends a body message per chunk,
 * and an exchange must not turn into thousands of spans. Later phases are counted on the stream.
 */
export const MAX_PHASE_SPANS = 64;

/** One ext_proc message being handled. */
export interface PhaseSpan {
  readonly name: string;
  readonly startedAt: Date;
  /** The live span, when the stream's span already existed as the message arrived. */
  readonly span: Span | null;
}

/**
 * The spans of one ext_proc stream: a server span for the exchange with a child per message
 * (phase), and below those the DLP and audit work. The parent is the span Envoy sent in the
 * stream's gRPC metadata; without one, the Check's span named in the signed hand-off, so the
 * exchange joins the decision's trace (the stream span then starts once the first message told
 * which decision it belongs to, back-dated to its arrival).
 */
export class StreamTrace {
  private span: Span | null = null;
  private readonly parent: Context;
  private phases = 0;
  private skipped = 0;
  private ended = false;

  /** @param metadata the stream's gRPC metadata (Envoy's), null for none */
  constructor(metadata: HeaderSource | null) {
    this.parent = metadata ? parentFromMetadata(metadata) : ROOT_CONTEXT;
  }

  /** Opens the span of one message. */
  begin(phase: string): PhaseSpan {
    const startedAt = new Date();
    if (!this.span && hasParent(this.parent)) this.open(this.parent, startedAt);
    const span = this.span && this.phases < MAX_PHASE_SPANS ? this.child(phase, startedAt) : null;
    return { name: phase, startedAt, span };
  }

  /** Runs the message's work with its span as the parent of DLP and audit spans. */
  run<T>(p: PhaseSpan, fn: () => Promise<T>): Promise<T> {
    return p.span ? withSpan(p.span, fn) : fn();
  }

  /** Ends the span of one message; `meta` is the decision joined so far. */
  end(p: PhaseSpan, meta: AuthzMetadata | null, error: GatewayError | null): void {
    if (this.ended) {
      // A message handled after the exchange ended: its span closes, nothing new is opened.
      p.span?.end();
      return;
    }
    if (!this.span) this.open(parentFromTraceparent(meta?.traceparent), p.startedAt);
    const span = p.span ?? (this.phases < MAX_PHASE_SPANS ? this.child(p.name, p.startedAt) : null);
    if (!span) {
      this.skipped += 1;
      return;
    }
    if (error) fail(span, error);
    span.end();
  }

  /** Runs the audit of the exchange as a child span of the stream. */
  audit(fn: () => void): void {
    const span = this.span?.isRecording() ? tracer().startSpan('audit record', {}, trace.setSpan(ROOT_CONTEXT, this.span)) : null;
    try {
      fn();
    } finally {
      span?.end();
    }
  }

  /** Ends the stream's span with what was decided and how the exchange ended (`batch`: a JSON-RPC batch). */
  finish(meta: AuthzMetadata | null, error: GatewayError | null, status: number | null, rpcId: string | number | null, batch = false): void {
    if (this.ended) return;
    this.ended = true;
    const span = this.span;
    if (!span) return;
    if (span.isRecording()) {
      if (meta) span.setAttributes(decisionAttributes(meta, batch ? null : rpcId, batch));
      if (status !== null) span.setAttribute(ATTR.httpStatus, status);
      if (this.skipped > 0) span.setAttribute('portcullis.phases_not_traced', this.skipped);
      if (error) fail(span, error);
    }
    span.end();
  }

  private open(parent: Context, startTime: Date): void {
    this.span = tracer().startSpan(
      'ext_proc Process',
      { kind: SpanKind.SERVER, startTime, attributes: { [ATTR.rpcSystem]: 'grpc', [ATTR.rpcMethod]: PROCESS_METHOD } },
      parent,
    );
  }

  private child(phase: string, startTime: Date): Span {
    this.phases += 1;
    return tracer().startSpan(`ext_proc ${phase}`, { startTime, attributes: { [ATTR.phase]: phase } }, trace.setSpan(ROOT_CONTEXT, this.span as Span));
  }
}

function fail(span: Span, error: GatewayError): void {
  span.setAttribute(ATTR.errorType, error.code);
  if (error.rule) span.setAttribute(ATTR.rule, error.rule);
  span.setStatus({ code: SpanStatusCode.ERROR, message: error.code });
}
