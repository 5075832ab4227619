import type { ServerDuplexStream } from '@grpc/grpc-js';
import { status as grpcStatus } from '@grpc/grpc-js';
import { GatewayError, toGatewayError } from '../errors.js';
import { log } from '../log.js';
import { Exchange } from './exchange.js';
import { immediateError, type ExtprocDeps } from './deps.js';
import { noDecision, onRequestBody, onRequestHeaders } from './requestPhase.js';
import { onResponseBody, onResponseHeaders } from './responsePhase.js';
import { finishExchange } from './finish.js';
import { phaseTimer } from './metrics.js';
import type { ProcessingRequest, ProcessingResponse } from './proto.js';

type Stream = ServerDuplexStream<ProcessingRequest | Buffer, ProcessingResponse>;

/** Decodes one ProcessingRequest from its wire bytes (throws on undecodable input). */
export type RequestDecoder = (bytes: Buffer) => unknown;

/** Position of each phase in an exchange: Envoy sends them in this order, bodies possibly in chunks. */
const PHASE_ORDER: Readonly<Record<NonNullable<ProcessingRequest['request']>, number>> = {
  requestHeaders: 0,
  requestBody: 1,
  requestTrailers: 2,
  responseHeaders: 3,
  responseBody: 4,
  responseTrailers: 5,
};

/**
 * Refuses a message Envoy would not send at this point of the exchange: an unknown kind, a phase
 * earlier than one already seen, headers twice, or anything but headers before a verified
 * decision was joined. Such a stream has no decision to act on; it fails closed.
 */
function checkOrder(ex: Exchange, phase: ProcessingRequest['request']): void {
  const rank = phase === undefined ? undefined : PHASE_ORDER[phase];
  if (rank === undefined) throw new GatewayError('internal', 'unexpected ext_proc message', { rule: 'extproc.protocol' });
  const isHeaders = phase === 'requestHeaders' || phase === 'responseHeaders';
  if (rank < ex.lastPhase || (isHeaders && rank === ex.lastPhase)) {
    throw new GatewayError('internal', `ext_proc message ${phase} out of order`, { rule: 'extproc.protocol' });
  }
  if (!isHeaders && !ex.meta && !ex.localReply) throw noDecision('absent');
  ex.lastPhase = rank;
}

/** Routes one message to its phase handler. Synchronous: replies leave in arrival order. */
function dispatch(deps: ExtprocDeps, ex: Exchange, msg: ProcessingRequest): ProcessingResponse | null {
  checkOrder(ex, msg.request);
  if (ex.localReply) return passThrough(msg.request);
  switch (msg.request) {
    case 'requestHeaders':
      return onRequestHeaders(deps, ex, msg);
    case 'requestBody':
      return onRequestBody(deps, ex, msg.requestBody ?? {});
    case 'responseHeaders':
      return onResponseHeaders(deps, ex, msg);
    case 'responseBody':
      return onResponseBody(deps, ex, msg.responseBody ?? {});
    case 'requestTrailers':
      return { requestTrailers: {} };
    case 'responseTrailers':
      return { responseTrailers: {} };
    default:
      throw new GatewayError('internal', 'unexpected ext_proc message', { rule: 'extproc.protocol' });
  }
}

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
      return { responseBody: { response: { status: 'CONTINUE' } } };
  }
}

/** Whether the downstream response has started, so an immediate response is no longer possible. */
function downstreamStarted(ex: Exchange, phase: ProcessingRequest['request']): boolean {
  // A held body has released nothing yet, so its denial can still be a clean error response (were
  // the headers already out, Envoy resets the downstream instead: fail closed either way).
  return phase === 'responseBody' && ex.responseMode === 'streamed';
}

/**
 * ext_proc `Process`: one gRPC stream per HTTP exchange. The loop only receives, dispatches by
 * phase and sends. Any failure denies: before the response has started it becomes an immediate
 * error response; after, the stream is failed so Envoy resets the downstream (fail closed).
 */
export class ExtprocService {
  /**
   * @param decode decoder for streams that deliver wire bytes (the gRPC binding decodes here, see
   *   `withRawRequests`); streams that deliver decoded messages need none.
   */
  constructor(
    private deps: ExtprocDeps,
    private readonly decode: RequestDecoder | null = null,
  ) {}

  /** Replaces compiled dependencies (config reload); streams in flight keep their snapshot. */
  swap(deps: ExtprocDeps): void {
    this.deps = deps;
  }

  /** Current dependencies. */
  get current(): ExtprocDeps {
    return this.deps;
  }

  /** The `Process` handler. */
  readonly process = (call: Stream): void => {
    const deps = this.deps;
    const ex = new Exchange();
    let closed = false;
    // One audit record per exchange that carried at least one message. A stream that sent
    // nothing saw no request: there is nothing to audit, and no record can be made up from it.
    const finish = (): void => {
      if (ex.audited || ex.localReply || !ex.sawMessage) return;
      ex.audited = true;
      try {
        finishExchange(deps, ex);
      } catch (err) {
        log.error({ request_id: ex.requestId, err: (err as Error)?.message }, 'ext_proc audit record failed');
      }
    };
    const fail = (error: GatewayError): void => {
      closed = true;
      try {
        // grpc-js sends an error status for an 'error' event on the call; destroy() would drop
        // the call without one and leave Envoy waiting for its timeout.
        call.emit('error', Object.assign(new Error(error.message), { code: grpcStatus.INTERNAL, details: error.message }));
      } catch (err) {
        log.error({ request_id: ex.requestId, err: (err as Error)?.message }, 'ext_proc stream could not be failed');
      }
    };

    call.on('data', (input: ProcessingRequest | Buffer) => {
      if (closed) return;
      try {
        const msg = this.message(input);
        this.onMessage(deps, ex, msg, call, finish, fail, () => (closed = true));
      } catch (err) {
        // Nothing an input does may end the process: this stream fails, closed; others go on.
        log.error({ request_id: ex.requestId, err: (err as Error)?.message }, 'ext_proc stream failed; failing closed');
        ex.error ??= toGatewayError(err, 'inspection failed');
        finish();
        fail(ex.error);
      }
    });
    call.on('end', () => {
      finish();
      try {
        call.end();
      } catch (err) {
        log.error({ request_id: ex.requestId, err: (err as Error)?.message }, 'ext_proc stream could not be ended');
      }
    });
    call.on('error', (err: Error) => {
      closed = true;
      // Envoy cancelled (client went away, timeout): still one audit record for the exchange.
      if (!ex.error) ex.error = new GatewayError('unavailable', `exchange ended early: ${err.message}`, { rule: 'extproc.cancelled' });
      finish();
    });
  };

  /** A decoded message; undecodable bytes become a message no phase accepts (a protocol error, fail closed). */
  private message(input: ProcessingRequest | Buffer): ProcessingRequest {
    if (!Buffer.isBuffer(input)) return input;
    if (!this.decode) throw new GatewayError('internal', 'ext_proc received bytes without a decoder', { rule: 'extproc.protocol' });
    try {
      return this.decode(input) as ProcessingRequest;
    } catch {
      return {};
    }
  }

  /** Handles one message: dispatch, reply, and on failure an error response or a failed stream. */
  private onMessage(
    deps: ExtprocDeps,
    ex: Exchange,
    msg: ProcessingRequest,
    call: Stream,
    finish: () => void,
    fail: (error: GatewayError) => void,
    close: () => void,
  ): void {
    if (msg.observabilityMode) return;
    ex.sawMessage = true;
    const stop = phaseTimer(msg.request ?? 'unknown');
    const t0 = process.hrtime.bigint();
    let reply: ProcessingResponse | null;
    let last = false;
    let abort: GatewayError | null = null;
    try {
      reply = dispatch(deps, ex, msg);
      last = (msg.request === 'responseBody' && msg.responseBody?.endOfStream === true) || (msg.request === 'responseHeaders' && msg.responseHeaders?.endOfStream === true);
    } catch (err) {
      const error = toGatewayError(err, 'inspection failed');
      ex.error = error;
      if (error.code === 'internal') log.error({ request_id: ex.requestId, rule: error.rule, err: (err as Error)?.message }, 'ext_proc failure; failing closed');
      close();
      if (downstreamStarted(ex, msg.request)) {
        abort = error;
        reply = null;
      } else {
        ex.responseStatus = error.httpStatus;
        reply = immediateError(error, ex.requestId, { isJsonRpc: ex.isJsonRpc, id: ex.rpcId, batchIds: ex.rpcBatchIds });
      }
      last = true;
    } finally {
      stop();
      const spent = Number(process.hrtime.bigint() - t0) / 1e6;
      if (msg.request === 'requestHeaders' || msg.request === 'requestBody') ex.requestInspectMs += spent;
      else ex.responseInspectMs += spent;
    }
    if (reply) call.write(reply);
    if (last) finish();
    // The response already started: failing the stream makes Envoy reset the downstream, so no
    // uninspected byte is delivered.
    if (abort) fail(abort);
  }
}
