import { ROOT_CONTEXT, trace, type Context, type Link, type SpanContext, type TextMapGetter } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';

/**
 * Where a trace context comes from, and how far it is trusted:
 *
 * - the gRPC metadata of a Check or an ext_proc stream is written by Envoy (the channel to
 *   portcullis is authenticated), so its `traceparent` is Envoy's span for that call: the parent;
 * - the request headers inside a CheckRequest are the agent's. Its `traceparent` is only ever a
 *   link: a caller cannot place portcullis' spans in a trace of its choosing, force sampling, or
 *   change anything that is decided.
 *
 * `tracestate` is never read from either: Envoy carries an agent's tracestate along in its own
 * context, so even Envoy's may hold vendor data the agent chose.
 */
const propagator = new W3CTraceContextPropagator();

/** A read-only view of one-valued string headers; repeated or non-string values read as absent. */
export type HeaderSource = (name: string) => readonly unknown[] | string | undefined;

const getter: TextMapGetter<HeaderSource> = {
  keys: () => ['traceparent'],
  get(source, key) {
    if (key !== 'traceparent') return undefined;
    const v = source(key);
    if (typeof v === 'string') return v;
    // Two traceparents are two claims: neither is believed.
    if (!v || v.length !== 1 || typeof v[0] !== 'string') return undefined;
    return v[0];
  },
};

/** The context whose parent is the span Envoy sent in the call's gRPC metadata; ROOT_CONTEXT when none (valid) came. */
export function parentFromMetadata(source: HeaderSource): Context {
  const ctx = propagator.extract(ROOT_CONTEXT, source, getter);
  const sc = trace.getSpanContext(ctx);
  return sc && trace.isSpanContextValid(sc) ? ctx : ROOT_CONTEXT;
}

/** Whether a context carries a parent span. */
export function hasParent(ctx: Context): boolean {
  return trace.getSpanContext(ctx) !== undefined;
}

/** The caller's own `traceparent` (request header) as a link, never as a parent; null when absent or malformed. */
export function callerLink(traceparent: string | undefined): Link | null {
  if (typeof traceparent !== 'string') return null;
  // Only the traceparent: the caller's tracestate is not carried into portcullis' spans.
  const ctx = propagator.extract(ROOT_CONTEXT, () => traceparent, getter);
  const sc = trace.getSpanContext(ctx);
  if (!sc || !trace.isSpanContextValid(sc)) return null;
  return { context: { traceId: sc.traceId, spanId: sc.spanId, traceFlags: sc.traceFlags, isRemote: true }, attributes: { 'portcullis.link': 'caller_traceparent' } };
}

/** The W3C `traceparent` of a span context. */
export function traceparentOf(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 1) === 1 ? '01' : '00'}`;
}

/** Parses a `traceparent` portcullis itself made (the signed hand-off) into a parent context. */
export function parentFromTraceparent(traceparent: string | null | undefined): Context {
  if (!traceparent) return ROOT_CONTEXT;
  return parentFromMetadata((name) => (name === 'traceparent' ? traceparent : undefined));
}
