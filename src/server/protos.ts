import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { loadSync, type Options } from '@grpc/proto-loader';
import { loadPackageDefinition, type GrpcObject, type ServiceDefinition } from '@grpc/grpc-js';

/**
 * Envoy's API protos come from the pinned `@grpc/grpc-js-xds` package, which vendors
 * envoyproxy/data-plane-api and its dependencies (see protos/README.md).
 */
const require = createRequire(import.meta.url);
const depsDir = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');

/** Include paths for Envoy API protos. */
export const PROTO_INCLUDE_DIRS: readonly string[] = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(depsDir, d));

/**
 * Decoding options: protojson (lowerCamelCase) field names, so `attributes` handed to policy
 * has the names OPA-Envoy uses; 64-bit integers as strings, as protojson prints them.
 */
export const PROTO_OPTIONS: Options = {
  keepCase: false,
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: false,
  oneofs: true,
  includeDirs: [...PROTO_INCLUDE_DIRS],
};

let cached: GrpcObject | null = null;

function loadAll(): GrpcObject {
  cached ??= loadPackageDefinition(
    loadSync(['envoy/service/auth/v3/external_auth.proto', 'envoy/service/ext_proc/v3/external_processor.proto'], PROTO_OPTIONS),
  );
  return cached;
}

function service(path: string[]): ServiceDefinition {
  let node: unknown = loadAll();
  for (const p of path) node = (node as Record<string, unknown>)[p];
  const svc = (node as { service?: ServiceDefinition } | undefined)?.service;
  if (!svc) throw new Error(`proto service ${path.join('.')} not found`);
  return svc;
}

/** `envoy.service.auth.v3.Authorization`. */
export function authorizationService(): ServiceDefinition {
  return service(['envoy', 'service', 'auth', 'v3', 'Authorization']);
}

/** `envoy.service.ext_proc.v3.ExternalProcessor`. */
export function externalProcessorService(): ServiceDefinition {
  return service(['envoy', 'service', 'ext_proc', 'v3', 'ExternalProcessor']);
}

/**
 * A copy of a service definition whose `method` hands the handler the request bytes as received,
 * with the decoder to apply to them. grpc-js answers an undecodable stream message with a status
 * of its own, racing the handler's replies on the same stream (a reply written after it left the
 * stream without a status); decoding in the handler keeps every reply and the final status in
 * one place and in order.
 */
export function withRawRequests(def: ServiceDefinition, method: string): { definition: ServiceDefinition; decode: (bytes: Buffer) => unknown } {
  const m = def[method];
  if (!m) throw new Error(`proto method ${method} not found`);
  return {
    definition: { ...def, [method]: { ...m, requestDeserialize: (bytes: Buffer) => bytes } },
    decode: (bytes: Buffer) => m.requestDeserialize(bytes),
  };
}
