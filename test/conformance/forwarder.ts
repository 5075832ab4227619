import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A loopback HTTP forwarder that adds `Authorization: Bearer <token>` to every request: the
 * conformance suite's CLI cannot send credentials, and the gateway requires them. Everything
 * else passes unchanged in both directions (method, path, `Host`, `Origin`, body), streamed as it
 * arrives so SSE responses keep their timing; a client that goes away cancels the upstream call.
 */

/** A running forwarder. */
export interface Forwarder {
  /** `http://127.0.0.1:PORT` */
  url: string;
  close(): Promise<void>;
}

/** Connection-level headers that describe one hop, not the message. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer'];

function forwardable(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = { ...headers };
  for (const h of HOP_BY_HOP) delete out[h];
  return out;
}

/**
 * Forwards 127.0.0.1:<free port> to `upstream()` (`http://host:port`, read per request, so the
 * forwarder can start before what it forwards to), bearing `token()` on each request.
 */
export async function startBearerForwarder(upstream: () => string, token: () => string): Promise<Forwarder> {
  const server: Server = createServer((req, res) => {
    const target = new URL(upstream());
    const headers = forwardable(req.headers);
    headers.authorization = `Bearer ${token()}`;
    const up = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, forwardable(upRes.headers));
      upRes.pipe(res);
    });
    up.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`forwarder: ${err.message}`);
    });
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
