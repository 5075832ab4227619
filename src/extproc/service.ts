import type { ServerDuplexStream } from '@grpc/grpc-js';
import { status as grpcStatus } from '@grpc/grpc-js';
import { GatewayError, toGatewayError } from '../errors.js';
import { log } from '../log.js';
import type { ExtprocDeps } from './deps.js';
import { StreamProcessor, type Outcome } from './processor.js';
import type { ProcessingRequest, ProcessingResponse } from './proto.js';

type Stream = ServerDuplexStream<ProcessingRequest | Buffer, ProcessingResponse>;

/** Decodes one ProcessingRequest from its wire bytes (throws on undecodable input). */
export type RequestDecoder = (bytes: Buffer) => unknown;

/**
 * ext_proc `Process`: one gRPC stream per HTTP exchange, one {@link StreamProcessor} per stream.
 * The loop only receives, queues, dispatches and sends: messages are handled one at a time per
 * stream (a phase may await), and replies leave in arrival order. Any failure denies; a failure
 * after the response started fails the stream, so Envoy resets the downstream (fail closed).
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
    // Envoy's trace context for this stream is in its gRPC metadata.
    const p = new StreamProcessor(this.deps, (name) => call.metadata?.get(name));
    let closed = false;
    let queue: Promise<void> = Promise.resolve();
    const fail = (error: GatewayError): void => {
      closed = true;
      try {
        // grpc-js sends an error status for an 'error' event on the call; destroy() would drop
        // the call without one and leave Envoy waiting for its timeout.
        call.emit('error', Object.assign(new Error(error.message), { code: grpcStatus.INTERNAL, details: error.message }));
      } catch (err) {
        log.error({ request_id: p.requestId, err: (err as Error)?.message }, 'ext_proc stream could not be failed');
      }
    };
    const deliver = (out: Outcome): void => {
      if (closed) return;
      if (out.reply) call.write(out.reply);
      if (out.last) {
        // After a denial nothing more is processed; after the last message nothing more comes.
        if (out.reply?.immediateResponse) closed = true;
        p.finish();
      }
      if (out.abort) fail(out.abort);
    };
    const broken = (err: unknown): void => {
      // Nothing an input does may end the process: this stream fails, closed; others go on.
      log.error({ request_id: p.requestId, err: (err as Error)?.message }, 'ext_proc stream failed; failing closed');
      p.stream.error ??= toGatewayError(err, 'inspection failed');
      p.finish();
      if (!closed) fail(p.stream.error);
    };

    call.on('data', (input: ProcessingRequest | Buffer) => {
      if (closed) return;
      let msg: ProcessingRequest;
      try {
        msg = this.message(input);
      } catch (err) {
        broken(err);
        return;
      }
      if (msg.observabilityMode) return;
      queue = queue.then(async () => {
        if (closed) return;
        deliver(await p.handle(msg));
      }).catch(broken);
    });
    call.on('end', () => {
      queue = queue.then(() => {
        p.finish();
        try {
          call.end();
        } catch (err) {
          log.error({ request_id: p.requestId, err: (err as Error)?.message }, 'ext_proc stream could not be ended');
        }
      });
    });
    call.on('error', (err: Error) => {
      closed = true;
      // Envoy cancelled (client went away, timeout): still one completion record for the exchange.
      queue = queue.then(() => p.finish(err));
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
}
