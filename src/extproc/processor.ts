import { GatewayError, toGatewayError } from '../errors.js';
import { log } from '../log.js';
import { scrubberFor } from '../credentials/scrub.js';
import { immediateError, type ExtprocDeps, type ResponsePlan } from './deps.js';
import { baseMode, joinDecision, noDecision, onRequestBody, onRequestHeaders, readMetadata } from './request.js';
import { finishExchange, forwardedRecord } from './finish.js';
import { phaseTimer } from './metrics.js';
import { headerMap, setHeader, type ProcessingRequest, type ProcessingResponse, type ProtoHeaderMutation, type ProtoHttpBody } from './proto.js';
import { newRequestState, newResponseState, newStreamState, rpcTarget, type RequestState, type ResponseState, type StreamState } from './state.js';
import { inspectResponseHeaders } from './response/headers.js';
import { bindResponseSession } from '../mcp/transport.js';
import { BodyCollector, budgetExhausted, inspectWholeBody } from './response/body.js';
import { SseInspector } from './response/sse.js';
import { Reservation } from './response/budget.js';
import type { TransformContext } from './response/pipeline.js';
import { mcpListContext } from '../mcp/context.js';
import { REPLAYED_HEADER } from '../limits/idempotency.js';
import { IdempotencyClaim, isReplay } from './idempotency.js';
import { recordExchange, UsageMeter } from './facts.js';
import { StreamTrace } from '../tracing/extproc.js';
import { childSpan } from '../tracing/scope.js';
import type { HeaderSource } from '../tracing/propagation.js';

/**
 * Largest response Envoy is asked to buffer (BUFFERED mode): the listener's
 * per_connection_buffer_limit_bytes. Past Envoy's buffer limit a buffered response stalls until
 * the route times out, so larger bodies, and bodies of unknown length, are streamed to portcullis
 * and held here instead (bounded by `inspect.max_response_bytes` and the memory budget).
 */
const ENVOY_BUFFER_LIMIT = 1024 * 1024;

/** Media types read as text; anything else is inspected byte for byte (or per the tool's `binary`). */
const TEXTUAL = /^(?:text\/|application\/(?:[\w.+-]*\+)?(?:json|xml|x-ndjson|ndjson|x-json-stream|jsonl|javascript|x-www-form-urlencoded|graphql|yaml|x-yaml))/;
const CHARSET = /;\s*charset\s*=\s*"?([^";\s]+)"?/i;

/** Position of each phase in an exchange: Envoy sends them in this order, bodies possibly in chunks. */
const PHASE_ORDER: Readonly<Record<NonNullable<ProcessingRequest['request']>, number>> = {
  requestHeaders: 0,
  requestBody: 1,
  requestTrailers: 2,
  responseHeaders: 3,
  responseBody: 4,
  responseTrailers: 5,
};

/** What handling one message produced: the reply, whether the exchange ended, and whether to fail the stream. */
export interface Outcome {
  readonly reply: ProcessingResponse | null;
  /** The exchange is over (last response message, or a denial): write the completion record. */
  readonly last: boolean;
  /** The response already started and must not continue: fail the stream so Envoy resets it. */
  readonly abort: GatewayError | null;
}

const EMPTY_BODY: ProcessingResponse = { responseBody: { response: { status: 'CONTINUE', bodyMutation: { body: Buffer.alloc(0) } } } };
const CONTINUE_BODY: ProcessingResponse = { responseBody: { response: { status: 'CONTINUE' } } };

/** The unchanged answer to a phase of a local reply (nothing to inspect: it is Envoy's or ours). */
function passThrough(phase: ProcessingRequest['request']): ProcessingResponse {
  switch (phase) {
    case 'requestTrailers':
      return { requestTrailers: {} };
    case 'responseTrailers':
      return { responseTrailers: {} };
    case 'requestBody':
      return { requestBody: { response: { status: 'CONTINUE' } } };
    case 'requestHeaders':
      return { requestHeaders: { response: { status: 'CONTINUE' } } };
    case 'responseHeaders':
      return { responseHeaders: { response: { status: 'CONTINUE' } } };
    default:
      return CONTINUE_BODY;
  }
}

/**
 * One ext_proc stream (one HTTP exchange): typed request, response and stream state, and one
 * method per phase. The service feeds it messages one at a time through a per-stream queue, so
 * a phase may await (a budget, a store, a slow inspection yielding to other streams) while its
 * replies still leave in order. Nothing here is shared between streams but the memory budget.
 */
export class StreamProcessor {
  readonly stream: StreamState = newStreamState();
  readonly request: RequestState = newRequestState();
  readonly response: ResponseState = newResponseState();
  private readonly reservation: Reservation;
  private ctx: TransformContext | null = null;
  private plan: ResponsePlan | null = null;
  private collector: BodyCollector | null = null;
  private sse: SseInspector | null = null;
  private claim: IdempotencyClaim | null | undefined;
  /** Units a metered tool reports in this response, for its budgets (extproc/facts.ts). */
  private usage: UsageMeter | null = null;
  /** The stream's spans (a child per message). */
  private readonly trace: StreamTrace;

  /** @param traceSource reads the stream's gRPC metadata (Envoy's trace context), if any */
  constructor(
    private readonly deps: ExtprocDeps,
    traceSource: HeaderSource | null = null,
  ) {
    this.reservation = new Reservation(deps.budget);
    this.trace = new StreamTrace(traceSource);
  }

  /** Request id for logs. */
  get requestId(): string | null {
    return this.request.requestId;
  }

  /**
   * Handles one message. Any failure denies: before the response has started it becomes an
   * immediate error response; after, the outcome asks for the stream to be failed (fail closed).
   */
  async handle(msg: ProcessingRequest): Promise<Outcome> {
    this.stream.sawMessage = true;
    const phase = msg.request;
    const stop = phaseTimer(phase ?? 'unknown');
    const span = this.trace.begin(phase ?? 'unknown');
    let failed: GatewayError | null = null;
    const t0 = process.hrtime.bigint();
    try {
      const reply = await this.trace.run(span, () => this.dispatch(msg));
      const last = (phase === 'responseBody' && msg.responseBody?.endOfStream === true) || (phase === 'responseHeaders' && msg.responseHeaders?.endOfStream === true);
      return { reply, last, abort: null };
    } catch (err) {
      const error = toGatewayError(err, 'inspection failed');
      this.stream.error = error;
      failed = error;
      if (error.code === 'internal') log.error({ request_id: this.request.requestId, rule: error.rule, err: (err as Error)?.message }, 'ext_proc failure; failing closed');
      // An event stream has delivered earlier events: only a reset keeps the rest from the agent.
      if (phase === 'responseBody' && this.response.mode === 'sse') return { reply: null, last: true, abort: error };
      // The gateway answers with an error: the key is free again before the agent can retry.
      await this.idempotency()?.release(`exchange refused (${error.rule ?? error.code})`);
      this.response.status = error.httpStatus;
      return { reply: immediateError(error, this.request.requestId, rpcTarget(this.request)), last: true, abort: null };
    } finally {
      stop(this.stream.tool?.name ?? this.stream.meta?.tool ?? null);
      this.trace.end(span, this.stream.meta, failed);
      const spent = Number(process.hrtime.bigint() - t0) / 1e6;
      if (phase === 'requestHeaders' || phase === 'requestBody') this.request.inspectMs += spent;
      else this.response.inspectMs += spent;
    }
  }

  /** Ends the exchange: the completion record (once) and the budget given back. */
  finish(cancelled?: Error): void {
    this.reservation.release();
    const st = this.stream;
    if (cancelled && !st.error) st.error = new GatewayError('unavailable', `exchange ended early: ${cancelled.message}`, { rule: 'extproc.cancelled' });
    // Not stored by now (reset, cancel, failure, no body seen): released so a retry runs.
    void this.idempotency()?.release(st.error ? `exchange failed (${st.error.rule ?? st.error.code})` : 'exchange ended without a stored answer');
    // A stream that sent nothing saw no request: there is nothing to audit.
    if (st.audited || st.localReply || !st.sawMessage) {
      this.trace.finish(st.meta, st.error, this.response.status, this.request.rpc.id, this.request.rpc.batchIds !== null);
      return;
    }
    st.audited = true;
    try {
      this.trace.audit(() => finishExchange(this.deps, st, this.request, this.response));
    } catch (err) {
      log.error({ request_id: this.request.requestId, err: (err as Error)?.message }, 'ext_proc audit record failed');
    }
    recordExchange(this.deps.store, st, this.response, this.usage);
    this.trace.finish(st.meta, st.error, this.response.status, this.request.rpc.id, this.request.rpc.batchIds !== null);
  }

  private async dispatch(msg: ProcessingRequest): Promise<ProcessingResponse> {
    this.checkOrder(msg.request);
    if (this.stream.localReply) return passThrough(msg.request);
    switch (msg.request) {
      case 'requestHeaders': {
        const reply = onRequestHeaders(this.deps, this.stream, this.request, msg);
        // No body phase follows: the request goes to the tool with this reply.
        if (reply.modeOverride?.requestBodyMode !== 'BUFFERED') await this.recordForwarded();
        return reply;
      }
      case 'requestBody': {
        // Buffered: the one body message; the request leaves with its reply.
        const reply = await onRequestBody(this.deps, this.stream, this.request, msg.requestBody ?? {});
        await this.recordForwarded();
        return reply;
      }
      case 'responseHeaders':
        return this.onResponseHeaders(msg);
      case 'responseBody':
        return this.onResponseBody(msg.responseBody ?? {});
      case 'requestTrailers':
        return { requestTrailers: {} };
      case 'responseTrailers':
        return { responseTrailers: {} };
      default:
        throw new GatewayError('internal', 'unexpected ext_proc message', { rule: 'extproc.protocol' });
    }
  }

  /**
   * Refuses a message Envoy would not send at this point of the exchange: an unknown kind, a
   * phase earlier than one already seen, headers twice, or anything but headers before a
   * verified decision was joined. Such a stream has no decision to act on; it fails closed.
   */
  private checkOrder(phase: ProcessingRequest['request']): void {
    const st = this.stream;
    const rank = phase === undefined ? undefined : PHASE_ORDER[phase];
    if (rank === undefined) throw new GatewayError('internal', 'unexpected ext_proc message', { rule: 'extproc.protocol' });
    const isHeaders = phase === 'requestHeaders' || phase === 'responseHeaders';
    if (rank < st.lastPhase || (isHeaders && rank === st.lastPhase)) {
      throw new GatewayError('internal', `ext_proc message ${phase} out of order`, { rule: 'extproc.protocol' });
    }
    if (!isHeaders && !st.meta && !st.localReply) throw noDecision('absent');
    st.lastPhase = rank;
  }

  /**
   * The forwarded record, durable before the request is released to the tool: a crash after
   * this point leaves a record of a call whose completion is unknown, never no record at all.
   * A sink that cannot take it denies the call (fail closed).
   */
  private async recordForwarded(): Promise<void> {
    const st = this.stream;
    if (st.forwarded || !st.meta) return;
    st.forwarded = true;
    if (st.meta.forwarded_recorded) return;
    const endSpan = childSpan('audit forwarded');
    try {
      await this.deps.audit.forwarded(forwardedRecord(this.deps, st, this.request));
    } finally {
      endSpan();
    }
  }

  /** The idempotency claim this exchange holds, if any (read once from the joined decision). */
  private idempotency(): IdempotencyClaim | null {
    if (this.claim === undefined && this.stream.meta) this.claim = IdempotencyClaim.of(this.deps.store, this.stream.meta, this.stream.tool?.idempotency);
    return this.claim ?? null;
  }

  /** The transform context of this exchange's response (built once, at the response headers). */
  private context(): TransformContext {
    if (this.ctx) return this.ctx;
    const tool = this.stream.tool!;
    const plan = this.deps.responses.get(tool.name);
    if (!plan) throw new GatewayError('internal', `tool "${tool.name}" has no compiled response plan`, { rule: 'extproc.unknown_tool' });
    this.plan = plan;
    const values = this.deps.credentials.injectedValues(tool.name, this.stream.meta?.user ?? null);
    this.ctx = {
      tool: tool.name,
      jsonRpc: Boolean(tool.mcp) || this.request.rpc.isJsonRpc,
      res: this.response,
      scanner: plan.scanner,
      scrubber: scrubberFor(values),
      mcp: mcpListContext(this.deps, tool, this.stream, this.request),
    };
    return this.ctx;
  }

  /**
   * Response headers: scan every header value, then choose how the body is inspected — held
   * whole (by Envoy when it fits its buffer, else by portcullis under the memory budget) for
   * bodies of every content type, event by event for SSE, or not at all when the tool inspects
   * nothing (or passes binary bodies, recorded as not inspected).
   */
  private async onResponseHeaders(msg: ProcessingRequest): Promise<ProcessingResponse> {
    const st = this.stream;
    const res = this.response;
    if (!this.request.seen) {
      const handoff = readMetadata(this.deps, msg);
      // A local reply from a filter before this one: an Envoy error (no hand-off at all) or an
      // ext_authz denial (a verified hand-off that did not allow). No tool answered, ext_authz
      // already audited a denial, and the body is the gateway's or Envoy's own error.
      if ((!handoff.ok && handoff.problem === 'absent') || (handoff.ok && (!handoff.meta.allowed || isReplay(handoff.meta)))) {
        st.localReply = true;
        return { responseHeaders: { response: { status: 'CONTINUE' } } };
      }
      if (!handoff.ok) throw noDecision(handoff.problem);
      if (!handoff.meta.tool) throw noDecision('not_allowed');
      // A route that skips the request-header phase (nothing to inspect on the way in).
      joinDecision(this.deps, st, this.request, handoff.meta);
    }
    const tool = st.tool!;
    const h = headerMap(msg.responseHeaders);
    res.upstreamStatus = Number(h[':status'] ?? 0) || null;
    res.status = res.upstreamStatus;
    const ct = h['content-type'] ?? '';
    res.contentType = ct.split(';')[0]!.trim().toLowerCase();
    res.charset = CHARSET.exec(ct)?.[1]?.toLowerCase() ?? null;
    const encoding = (h['content-encoding'] ?? 'identity').trim().toLowerCase();
    const ctx = this.context();
    const mutation: ProtoHeaderMutation = inspectResponseHeaders(msg.responseHeaders, ctx);
    // Only the gateway says an answer came from its idempotency store: a tool cannot claim it.
    if (h[REPLAYED_HEADER] !== undefined) mutation.removeHeaders = [...(mutation.removeHeaders ?? []), REPLAYED_HEADER];
    bindResponseSession(this.deps, st, msg.responseHeaders, mutation);
    const claim = this.idempotency();
    await claim?.noteHeaders(res.upstreamStatus, h, mutation);
    const mode = baseMode('NONE');
    const reply = (): ProcessingResponse => ({ responseHeaders: { response: { status: 'CONTINUE', headerMutation: mutation } }, modeOverride: mode });
    if (msg.responseHeaders?.endOfStream) {
      await claim?.complete(Buffer.alloc(0));
      return reply();
    }
    const plan = this.plan!;
    if (!plan.scanner && !plan.pipeline.hasJson && ctx.scrubber.empty && !claim?.needsBody) {
      res.notInspected = 'tool_inspects_nothing';
      return reply();
    }
    const textual = res.contentType === '' || TEXTUAL.test(res.contentType);
    if (!textual && tool.response.binary === 'pass') {
      // A list answer must be read to be filtered: never passed unread.
      plan.pipeline.unparsed(null, ctx);
      res.notInspected = 'binary_pass';
      await claim?.release('binary response passed unread');
      return reply();
    }
    if (!textual && tool.response.binary === 'block') {
      throw new GatewayError('blocked_content', `tool "${tool.name}" answered with a ${res.contentType} body, which this gateway does not deliver for it`, { rule: 'dlp.binary_blocked' });
    }
    const removes = mutation.removeHeaders ?? [];
    if (res.contentType === 'text/event-stream') {
      if (encoding !== 'identity' && encoding !== '') throw new GatewayError('internal', 'compressed event streams cannot be inspected', { rule: 'dlp.encoding' });
      res.mode = 'sse';
      await claim?.release('event stream responses are not stored');
      this.sse = new SseInspector(plan.pipeline, ctx, this.request.requestId);
      mode.responseBodyMode = 'STREAMED';
      mutation.removeHeaders = [...removes, 'content-length'];
      return reply();
    }
    if (encoding !== 'identity' && encoding !== '') res.encoding = encoding;
    const max = this.deps.config.inspect.max_response_bytes;
    const length = Number(h['content-length'] ?? NaN);
    const known = Number.isSafeInteger(length) && length >= 0;
    if (known && length > max) {
      throw new GatewayError('unavailable', `the response of tool "${tool.name}" is larger than ${max} bytes and cannot be inspected`, { rule: 'dlp.response_too_large' });
    }
    res.mode = known && length <= ENVOY_BUFFER_LIMIT ? 'buffered' : 'held';
    // Reserve what is announced now: refused before anything was delivered, while a clean retryable error is still possible.
    if (known && !this.reservation.grow(length, res.mode === 'held')) throw budgetExhausted(tool.name);
    this.collector = new BodyCollector(this.reservation, max, tool.name, known ? length : 0, res.mode === 'held');
    mode.responseBodyMode = res.mode === 'buffered' ? 'BUFFERED' : 'STREAMED';
    // A held body leaves after its headers: redaction changes the length, and it is sent decoded.
    if (res.mode === 'held') mutation.removeHeaders = [...removes, ...(res.encoding ? ['content-length', 'content-encoding'] : ['content-length'])];
    return reply();
  }

  private async onResponseBody(body: ProtoHttpBody): Promise<ProcessingResponse> {
    const res = this.response;
    const chunk = body.body ?? Buffer.alloc(0);
    if (res.mode === 'sse') {
      const endSpan = childSpan('dlp response');
      const r = this.sse!.push(chunk, body.endOfStream === true);
      endSpan(r.error?.code);
      if (r.error) this.stream.error = r.error;
      (this.usage ??= new UsageMeter(this.stream.meta)).sse(r.text, body.endOfStream === true);
      return { responseBody: { response: { status: 'CONTINUE', bodyMutation: { body: Buffer.from(r.text, 'utf8') } } } };
    }
    if (res.mode === 'none') return CONTINUE_BODY;
    this.collector!.add(chunk);
    // Buffered mode delivers one message; tolerate more by holding everything until the end.
    if (!body.endOfStream) return EMPTY_BODY;
    const endSpan = childSpan('dlp response');
    let out: Awaited<ReturnType<typeof inspectWholeBody>>;
    try {
      out = await inspectWholeBody(this.collector!.take(), res, this.plan!.pipeline, this.context(), { maxBytes: this.deps.config.inspect.max_response_bytes, reservation: this.reservation });
    } catch (err) {
      endSpan(toGatewayError(err, 'inspection failed').code);
      throw err;
    }
    endSpan();
    if (this.deps.config.audit.payload.mode !== 'off' && out.text !== null) res.payload = out.text;
    await this.idempotency()?.complete(out.bytes);
    (this.usage ??= new UsageMeter(this.stream.meta)).body(out.text);
    if (res.mode === 'held') return { responseBody: { response: { status: 'CONTINUE', bodyMutation: { body: out.bytes } } } };
    const mutation: ProtoHeaderMutation = { setHeaders: [setHeader('content-length', String(out.bytes.length))] };
    if (res.encoding) mutation.removeHeaders = ['content-encoding'];
    return { responseBody: { response: { status: 'CONTINUE', headerMutation: mutation, bodyMutation: { body: out.bytes } } } };
  }
}
