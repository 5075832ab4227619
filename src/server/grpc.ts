import { Server, ServerCredentials, status, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';

/** A gRPC service to register: its definition and handlers. */
export interface ServiceBinding {
  readonly definition: ServiceDefinition;
  readonly impl: UntypedServiceImplementation;
}

/** Running gRPC server with its health service. */
export interface GrpcServer {
  readonly port: number;
  readonly health: HealthImplementation;
  /** Stops accepting calls, lets in-flight streams finish within `graceMs`, then forces. */
  shutdown(graceMs: number): Promise<void>;
}

/** Message size bound: ext_authz bodies are bounded by Envoy; ext_proc chunks are small. */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/**
 * Starts the gRPC server with the given services and the standard `grpc.health.v1` service
 * (Envoy's gRPC health checks). Health starts NOT_SERVING; the caller flips it when ready.
 */
export async function startGrpcServer(host: string, port: number, services: readonly ServiceBinding[]): Promise<GrpcServer> {
  const server = new Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    'grpc.keepalive_permit_without_calls': 1,
  });
  for (const s of services) server.addService(s.definition, s.impl);
  const health = new HealthImplementation({ '': 'NOT_SERVING' });
  health.addToServer(server);
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  return {
    port: bound,
    health,
    shutdown(graceMs: number): Promise<void> {
      health.setStatus('', 'NOT_SERVING');
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
