import { Server, ServerCredentials, status, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { GrpcChannel } from '../config/server.js';
import { listenGrpc, type ListenOptions } from './listener.js';
import type { Http2Server, ServerHttp2Session } from 'node:http2';
import { log } from '../log.js';

/** A gRPC service to register: its definition and handlers. */
export interface ServiceBinding {
  readonly definition: ServiceDefinition;
  readonly impl: UntypedServiceImplementation;
}

/** Running gRPC server with its health service. */
export interface GrpcServer {
  /** TCP port (0 on a unix socket). */
  readonly port: number;
  /** Where it listens, for logs: `host:port` or the socket path. */
  readonly address: string;
  readonly health: HealthImplementation;
  /** Stops accepting calls, lets in-flight streams finish within `graceMs`, then forces. */
  shutdown(graceMs: number): Promise<void>;
}

/** Received message bound: ext_authz bodies are bounded by Envoy; ext_proc chunks are small. */
const MAX_RECEIVE_BYTES = 16 * 1024 * 1024;

/**
 * HTTP/2 receive windows (connection and each stream). Node's default of 64 KiB per connection
 * lets Envoy send only 64 KiB between two turns of the event loop, for all streams of that
 * connection together: while large bodies stream in, a small call's message would wait behind
 * them for seconds. A large window lets the data in as fast as it is read; what is held is
 * bounded by the response memory budget and Envoy's own per-stream buffer limits.
 */
const CONNECTION_WINDOW_BYTES = 8 * 1024 * 1024;
const STREAM_WINDOW_BYTES = 1024 * 1024;

/** The HTTP/2 servers grpc-js made for a connection injector (not exposed by its API). */
function http2ServersOf(server: Server): Http2Server[] {
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  return servers instanceof Map ? ([...servers.keys()] as Http2Server[]) : [];
}

/** Raises the receive windows of every session grpc-js accepts (see CONNECTION_WINDOW_BYTES). */
function widenWindows(server: Server): void {
  const servers = http2ServersOf(server);
  if (servers.length === 0) {
    log.warn('gRPC HTTP/2 sessions could not be reached; receive windows stay at 64 KiB (large bodies may slow other calls)');
    return;
  }
  for (const h2 of servers) {
    h2.on('session', (session: ServerHttp2Session) => {
      try {
        session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
        session.settings({ initialWindowSize: STREAM_WINDOW_BYTES });
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'gRPC HTTP/2 receive window could not be raised');
      }
    });
  }
}

/**
 * Starts the gRPC server with the given services and the standard `grpc.health.v1` service
 * (Envoy's gRPC health checks) on the configured channel (mTLS, unix socket or loopback
 * plaintext; see listener.ts, which decides who may connect). Health starts NOT_SERVING; the
 * caller flips it when ready.
 */
export async function startGrpcServer(channel: GrpcChannel, services: readonly ServiceBinding[], opts: ListenOptions = {}): Promise<GrpcServer> {
  const server = new Server({
    'grpc.max_receive_message_length': MAX_RECEIVE_BYTES,
    // A held response goes back whole in one reply (bounded by inspect.max_response_bytes).
    'grpc.max_send_message_length': -1,
    'grpc.keepalive_permit_without_calls': 1,
  });
  for (const s of services) server.addService(s.definition, s.impl);
  const health = new HealthImplementation({ '': 'NOT_SERVING' });
  health.addToServer(server);
  // The listener authenticates every connection (TLS and SAN, or the socket's file mode) before
  // grpc-js sees it; grpc-js then speaks HTTP/2 on the connection as it is.
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  widenWindows(server);
  const listener = await listenGrpc(channel, (socket) => injector.injectConnection(socket), opts);
  return {
    port: listener.port,
    address: listener.address,
    health,
    shutdown(graceMs: number): Promise<void> {
      health.setStatus('', 'NOT_SERVING');
      // New connections are refused now; the accepted ones drain below.
      void listener.close();
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        timer.unref();
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

/** gRPC status for an unexpected handler failure (the Envoy filter then fails closed). */
export const INTERNAL = status.INTERNAL;
