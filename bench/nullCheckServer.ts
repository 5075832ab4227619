/**
 * A do-nothing ext_authz server: grpc-js with the same proto definitions and decoding options as
 * portcullis, answering every Check with OK. It is the floor for the direct Check scenario — the
 * cost of Node, grpc-js and protobuf decoding alone.
 *
 *   npx vite-node bench/nullCheckServer.ts -- --port 9292
 */
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { parseArgs } from 'node:util';
import { authorizationService } from '../src/server/protos.js';
import type { ProtoCheckRequest } from '../src/authz/request.js';

/** Starts the server on 127.0.0.1:`port` (0 picks one); resolves with the bound port. */
export async function startNullCheckServer(port: number): Promise<{ port: number; server: Server }> {
  const server = new Server();
  server.addService(authorizationService(), {
    Check: (_call: ServerUnaryCall<ProtoCheckRequest, unknown>, callback: sendUnaryData<unknown>) => {
      callback(null, { status: { code: 0 } });
    },
  });
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  return { port: bound, server };
}

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' } }, strict: false });
const wanted = Number(values.port);
if (!Number.isInteger(wanted) || wanted < 0 || wanted > 65_535) {
  process.stderr.write('nullCheckServer: --port must be a port number\n');
  process.exit(2);
}
startNullCheckServer(wanted).then(
  ({ port, server }) => {
    process.stdout.write(`null Check server listening on 127.0.0.1:${port}\n`);
    const stop = (): void => server.tryShutdown(() => process.exit(0));
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  },
  (err: unknown) => {
    process.stderr.write(`nullCheckServer: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
