import type { ServerDuplexStream } from '@grpc/grpc-js';
import { status as grpcStatus } from '@grpc/grpc-js';
import { GatewayError, toGatewayError } from '../errors.js';
import { log } from '../log.js';
import { Exchange } from './exchange.js';
import { immediateError, type ExtprocDeps } from './deps.js';
import { onRequestBody, onRequestHeaders } from './requestPhase.js';
import { onResponseBody, onResponseHeaders } from './responsePhase.js';
import { finishExchange } from './finish.js';
import { phaseTimer } from './metrics.js';
import type { ProcessingRequest, ProcessingResponse } from './proto.js';

type Stream = ServerDuplexStream<ProcessingRequest, ProcessingResponse>;

/** Routes one message to its phase handler. Synchronous: replies leave in arrival order. */
function dispatch(deps: ExtprocDeps, ex: Exchange, msg: ProcessingRequest): ProcessingResponse | null {
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
  constructor(private deps: ExtprocDeps) {}

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
    const finish = (): void => {
      if (ex.audited || ex.localReply) return;
      ex.audited = true;
      finishExchange(deps, ex);
    };

    call.on('data', (msg: ProcessingRequest) => {
      if (closed || msg.observabilityMode) return;
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
        if (downstreamStarted(ex, msg.request)) {
          closed = true;
          abort = error;
          reply = null;
        } else {
          ex.responseStatus = error.httpStatus;
          reply = immediateError(error, ex.requestId, { isJsonRpc: ex.isJsonRpc, id: ex.rpcId, batchIds: ex.rpcBatchIds });
          closed = true;
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
      // uninspected byte is delivered. grpc-js sends an error status for an 'error' event on the
      // call; destroy() would drop the call without one and leave Envoy waiting for its timeout.
      if (abort) call.emit('error', Object.assign(new Error(abort.message), { code: grpcStatus.INTERNAL, details: abort.message }));
    });
    call.on('end', () => {
      finish();
      call.end();
    });
    call.on('error', (err: Error) => {
      // Envoy cancelled (client went away, timeout): still one audit record for the exchange.
      if (!ex.error) ex.error = new GatewayError('unavailable', `exchange ended early: ${err.message}`, { rule: 'extproc.cancelled' });
      finish();
    });
  };
}
