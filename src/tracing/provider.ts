import { diag, DiagLogLevel, trace, type Tracer } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type ReadableSpan,
  type Span,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import type { Context } from '@opentelemetry/api';
import { Counter } from 'prom-client';
import type { TracingConfig } from '../config/types.js';
import { registry } from '../metrics.js';
import { log } from '../log.js';

/** Instrumentation scope of every portcullis span. */
const SCOPE = 'portcullis';
/** Shortest time between two log lines about failing exports. */
const DIAG_LOG_INTERVAL_MS = 30_000;

const dropped = new Counter({
  name: 'portcullis_tracing_spans_dropped_total',
  help: 'Finished spans not exported: the export queue was full, or the collector refused or did not answer',
  labelNames: ['reason'] as const,
  registers: [registry],
});

const exported = new Counter({
  name: 'portcullis_tracing_spans_exported_total',
  help: 'Spans the collector accepted',
  registers: [registry],
});

/** An exporter that counts what it delivers and what is lost, and releases its share of the queue. */
class CountingExporter implements SpanExporter {
  constructor(
    private readonly inner: SpanExporter,
    private readonly released: (n: number) => void,
  ) {}

  export(spans: ReadableSpan[], done: Parameters<SpanExporter['export']>[1]): void {
    // The batch has left the processor's queue: its places are free again.
    this.released(spans.length);
    this.inner.export(spans, (result) => {
      if (result.code === 0) exported.inc(spans.length);
      else dropped.inc({ reason: 'export_failed' }, spans.length);
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/**
 * In front of the batch processor: a sampled span enters the queue only while it has room, so a
 * collector that is slow or down costs a Check nothing but a dropped (and counted) span.
 */
class BoundedProcessor implements SpanProcessor {
  private queued = 0;

  constructor(
    private readonly batch: SpanProcessor,
    private readonly max: number,
  ) {}

  /** Frees queue places once the batch processor handed spans to the exporter. */
  release(n: number): void {
    this.queued = Math.max(0, this.queued - n);
  }

  onStart(span: Span, parent: Context): void {
    this.batch.onStart(span, parent);
  }

  onEnd(span: ReadableSpan): void {
    if ((span.spanContext().traceFlags & 1) === 0) return;
    if (this.queued >= this.max) {
      dropped.inc({ reason: 'queue_full' });
      return;
    }
    this.queued += 1;
    this.batch.onEnd(span);
  }

  forceFlush(): Promise<void> {
    return this.batch.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.batch.shutdown();
  }
}

/** The process' tracer provider: started once at startup, flushed at shutdown. */
export interface Tracing {
  readonly tracer: Tracer;
  /** Whether spans are recorded and exported at all. */
  readonly enabled: boolean;
  /** Exports what is queued (bounded by the export timeout) and stops. */
  shutdown(): Promise<void>;
}

/** Options of {@link startTracing}. */
export interface TracingOptions {
  /** Worker slot of a multi-process gateway (a resource attribute), absent for one process. */
  readonly worker?: number;
  /** Replaces the OTLP exporter (tests). */
  readonly exporter?: SpanExporter;
}

let current: Tracing | null = null;

/** The tracer spans are made with: the started provider's, or one that records nothing. */
export function tracer(): Tracer {
  return (current ?? disabled()).tracer;
}

let off: Tracing | null = null;

/** A provider that samples nothing: spans still get ids (audit records, upstream traceparent). */
function disabled(): Tracing {
  off ??= {
    tracer: new TracerProvider({ sampler: new AlwaysOffSampler() }).getTracer(SCOPE),
    enabled: false,
    shutdown: () => Promise.resolve(),
  };
  return off;
}

/**
 * Starts tracing for this process from `tracing` (off: ids only). Each worker process starts its
 * own and exports its own spans. Not registered as the global provider: portcullis passes
 * parents explicitly, and nothing else in the process should export through it.
 */
export function startTracing(config: TracingConfig | undefined, opts: TracingOptions = {}): Tracing {
  if (!config?.enabled || (!config.otlp_endpoint && !opts.exporter)) {
    current = disabled();
    return current;
  }
  // The SDK reports export failures through diag: to the log, at most one line per interval, so a
  // collector that is down for hours does not fill it (the drop counter has the full count).
  let lastLogged = 0;
  const throttled = (msg: string): void => {
    const now = Date.now();
    if (now - lastLogged < DIAG_LOG_INTERVAL_MS) return;
    lastLogged = now;
    log.warn({ component: 'tracing' }, `span export: ${msg.slice(0, 512)}`);
  };
  diag.setLogger(
    {
      error: throttled,
      warn: throttled,
      info: () => undefined,
      debug: () => undefined,
      verbose: () => undefined,
    },
    { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
  );
  const otlp =
    opts.exporter ??
    new OTLPTraceExporter({ url: config.otlp_endpoint, headers: { ...config.headers }, timeoutMillis: Math.round(config.timeout_s * 1000), concurrencyLimit: 2 });
  let bounded: BoundedProcessor | null = null;
  const exporter = new CountingExporter(otlp, (n) => bounded?.release(n));
  const batch = new BatchSpanProcessor({
    exporter,
    maxQueueSize: config.max_queue_spans,
    maxExportBatchSize: Math.min(512, config.max_queue_spans),
    scheduledDelayMillis: 1000,
    exportTimeoutMillis: Math.round(config.timeout_s * 1000),
  });
  bounded = new BoundedProcessor(batch, config.max_queue_spans);
  const provider = new TracerProvider({
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sample_ratio) }),
    resource: resourceFromAttributes({
      'service.name': config.service_name,
      'process.pid': process.pid,
      ...(opts.worker !== undefined ? { 'portcullis.worker': opts.worker } : {}),
    }),
    spanProcessors: [bounded],
    // Attributes are short identifiers; a long value is a bug or an attack, never worth exporting.
    spanLimits: { attributeValueLengthLimit: 256, attributeCountLimit: 64, linkCountLimit: 4, eventCountLimit: 16 },
  });
  const started: Tracing = {
    tracer: provider.getTracer(SCOPE),
    enabled: true,
    async shutdown(): Promise<void> {
      try {
        await provider.shutdown();
      } catch (err) {
        log.warn({ component: 'tracing', err: (err as Error)?.message }, 'spans could not be flushed at shutdown');
      }
      if (current === started) current = disabled();
    },
  };
  current = started;
  log.info({ component: 'tracing', endpoint: config.otlp_endpoint ? new URL(config.otlp_endpoint).origin : 'custom', sample_ratio: config.sample_ratio }, 'tracing enabled');
  return started;
}

