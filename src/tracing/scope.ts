import { AsyncLocalStorage } from 'node:async_hooks';
import { ROOT_CONTEXT, SpanStatusCode, trace, type Attributes, type Span, type Tracer } from '@opentelemetry/api';
import { tracer } from './provider.js';

/**
 * The span a unit of work (one Check, one ext_proc message) runs under, carried across its
 * awaits, so stage timers deep in the call stack can open child spans without every function
 * passing a span along. Only portcullis' own code reads it.
 */
const scope = new AsyncLocalStorage<Span>();

/** Runs `fn` with `span` as the parent of the child spans opened inside it. */
export function withSpan<T>(span: Span, fn: () => T): T {
  return scope.run(span, fn);
}

/** The span of the work in progress, if any. */
export function activeSpan(): Span | undefined {
  return scope.getStore();
}

const NOOP = (): void => undefined;

/**
 * Opens a child span of the work in progress (none outside one, or when it is not recorded) and
 * returns the function that ends it.
 */
export function childSpan(name: string, attributes?: Attributes, t: Tracer = tracer()): (error?: string) => void {
  const parent = scope.getStore();
  if (!parent || !parent.isRecording()) return NOOP;
  const span = t.startSpan(name, { attributes }, trace.setSpan(ROOT_CONTEXT, parent));
  return (error?: string) => {
    if (error) span.setStatus({ code: SpanStatusCode.ERROR, message: error });
    span.end();
  };
}
