import { Server, ServerCredentials, status, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { GrpcChannel } from '../config/server.js';
import { listenGrpc } from './listener.js';

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

/** Message size bound: ext_authz bodies are bounded by Envoy; ext_proc chunks are small. */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/**
 * Starts the gRPC server with the given services and the standard `grpc.health.v1` service
 * (Envoy's gRPC health checks) on the configured channel (mTLS, unix socket or loopback
 * plaintext; see listener.ts, which decides who may connect). Health starts NOT_SERVING; the
 * caller flips it when ready.
 */
export async function startGrpcServer(channel: GrpcChannel, services: readonly ServiceBinding[]): Promise<GrpcServer> {
  const server = new Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    'grpc.keepalive_permit_without_calls': 1,
  });
  for (const s of services) server.addService(s.definition, s.impl);
  const health = new HealthImplementation({ '': 'NOT_SERVING' });
  health.addToServer(server);
  // The listener authenticates every connection (TLS and SAN, or the socket's file mode) before
  // grpc-js sees it; grpc-js then speaks HTTP/2 on the connection as it is.
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  const listener = await listenGrpc(channel, (socket) => injector.injectConnection(socket));
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
