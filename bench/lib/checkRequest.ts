import { credentials, makeGenericClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { authorizationService } from '../../src/server/protos.js';
import type { ProtoCheckRequest } from '../../src/authz/request.js';

/**
 * The CheckRequest used by the direct gRPC scenarios: what Envoy sends for an agent's
 * `GET /tools/weather/forecast?city=Paris` with a bearer token, encoded with the same protos
 * portcullis decodes with, and a one-shot client to check a server's answer before loading it.
 */

/** `GET /tools/weather/forecast?city=Paris` as Envoy's ext_authz filter describes it. */
export function weatherCheckRequest(token: string): ProtoCheckRequest {
  const path = '/tools/weather/forecast?city=Paris';
  return {
    attributes: {
      source: { address: { socketAddress: { address: '127.0.0.1', portValue: 50_000 } } },
      destination: { address: { socketAddress: { address: '127.0.0.1', portValue: 10_000 } } },
      request: {
        time: { seconds: String(Math.floor(Date.now() / 1000)), nanos: 0 },
        http: {
          id: '4242424242424242424',
          method: 'GET',
          headers: {
            ':authority': 'gateway.local',
            ':method': 'GET',
            ':path': path,
            ':scheme': 'http',
            authorization: `Bearer ${token}`,
            'user-agent': 'bench-agent/1.0',
            accept: 'application/json',
            'x-forwarded-proto': 'http',
            'x-request-id': '0b9a3c6e-5f0e-4c8e-9a53-6f1d2b7c4e10',
          },
          path,
          host: 'gateway.local',
          scheme: 'http',
          protocol: 'HTTP/1.1',
          size: '0',
        },
      },
      // What the weather_read route in envoy/envoy.yaml sends; portcullis denies a route that names another tool.
      contextExtensions: { route_tool: 'weather' },
    },
  };
}

/** The request as a protobuf message. */
export function encodeCheckRequest(req: ProtoCheckRequest): Buffer {
  return authorizationService().Check!.requestSerialize(req);
}

/** gRPC length-prefixed message framing (uncompressed), as sent on the wire by a gRPC client. */
export function grpcFrame(message: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(0, 0);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

/** The parts of a CheckResponse the sanity check reads. */
export interface CheckAnswer {
  /** google.rpc.Status code: 0 allowed. */
  code: number;
  /** HTTP status of a denied response, when the server set one. */
  deniedStatus: string | null;
}

/** Sends one Check to `127.0.0.1:port` and returns the decision. */
export function checkOnce(port: number, req: ProtoCheckRequest, timeoutMs = 5_000): Promise<CheckAnswer> {
  const Client = makeGenericClientConstructor(authorizationService(), 'Authorization');
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + timeoutMs);
    client.makeUnaryRequest(
      '/envoy.service.auth.v3.Authorization/Check',
      (arg: ProtoCheckRequest) => encodeCheckRequest(arg),
      (buf: Buffer) => authorizationService().Check!.responseDeserialize(buf) as { status?: { code?: number }; deniedResponse?: { status?: { code?: string } } },
      req,
      { deadline },
      (err: ServiceError | null, res?: { status?: { code?: number }; deniedResponse?: { status?: { code?: string } } }) => {
        client.close();
        if (err || !res) {
          reject(err ?? new Error('empty CheckResponse'));
          return;
        }
        resolve({ code: res.status?.code ?? 0, deniedStatus: res.deniedResponse?.status?.code ?? null });
      },
    );
  });
}
