import { chmodSync, lstatSync, readFileSync, statSync, unlinkSync, unwatchFile, watchFile } from 'node:fs';
import { dirname } from 'node:path';
import { connect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { createSecureContext, createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { Counter } from 'prom-client';
import type { GrpcChannel } from '../config/server.js';
import { log } from '../log.js';
import { registry } from '../metrics.js';
import { hasAllowedSan } from './san.js';

/**
 * The listening socket of the gRPC port, owned here rather than by grpc-js so that who may
 * connect is decided per connection, before a single HTTP/2 byte is read: an mTLS client without
 * an allowed SAN, or any client the TLS handshake rejects, is disconnected; a unix socket gets
 * its file mode before anyone can connect. Accepted connections are handed to grpc-js.
 */

const refused = new Counter({
  name: 'portcullis_grpc_connections_refused_total',
  help: 'Connections to the gRPC port refused, by reason',
  labelNames: ['reason'] as const,
  registers: [registry],
});

/** A bound gRPC port. */
export interface GrpcListener {
  /** Where it listens, for logs: `host:port` or the socket path. */
  readonly address: string;
  /** TCP port (0 for a unix socket). */
  readonly port: number;
  /**
   * Stops accepting connections at once; resolves when every accepted connection has closed
   * (they are left to grpc-js, which drains them).
   */
  close(): Promise<void>;
}

/** How the port is bound. */
export interface ListenOptions {
  /**
   * A worker process of `server.workers` > 1: the port is bound through the primary
   * (`node:cluster` shares it, and hands each accepted connection to one worker), so a unix
   * socket's file belongs to the primary: it is prepared there ({@link prepareSharedSocket})
   * and never removed by a worker. TLS and the SAN check still run here, per connection.
   */
  readonly shared?: boolean;
}

/** Interval at which the TLS files are checked for rotation. */
const TLS_POLL_MS = 1000;

function secureContextOptions(channel: Extract<GrpcChannel, { kind: 'mtls' }>): { ca: Buffer; cert: Buffer; key: Buffer } {
  return { ca: readFileSync(channel.ca), cert: readFileSync(channel.cert), key: readFileSync(channel.key) };
}

function closeServer(server: NetServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function listenTcp(server: NetServer, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr ? addr.port : port);
    });
  });
}

async function listenMtls(channel: Extract<GrpcChannel, { kind: 'mtls' }>, accept: (socket: Duplex) => void): Promise<GrpcListener> {
  const allowed = new Set(channel.clientSans);
  const server: TlsServer = createTlsServer({
    ...secureContextOptions(channel),
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
    ALPNProtocols: ['h2'],
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    socket.on('error', () => undefined);
    const san = socket.getPeerCertificate().subjectaltname;
    if (!socket.authorized || !hasAllowedSan(san, allowed)) {
      refused.inc({ reason: 'client_san' });
      log.warn({ peer: socket.remoteAddress, san: san ?? null }, 'gRPC connection refused: the client certificate carries no allowed SAN');
      socket.destroy();
      return;
    }
    accept(socket);
  });
  server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
    refused.inc({ reason: 'tls' });
    log.warn({ peer: socket.remoteAddress, err: err.message }, 'gRPC connection refused: TLS handshake failed');
  });
  // Rotated certificates apply to new connections without a restart; a broken set keeps the last good one.
  const files = [channel.ca, channel.cert, channel.key];
  const reload = (): void => {
    try {
      server.setSecureContext({ ...secureContextOptions(channel), minVersion: 'TLSv1.2', ALPNProtocols: ['h2'] } as Parameters<TlsServer['setSecureContext']>[0]);
      log.info('gRPC TLS certificates reloaded');
    } catch (err) {
      log.error({ err: (err as Error).message }, 'gRPC TLS certificates could not be reloaded; keeping the previous ones');
    }
  };
  for (const f of files) watchFile(f, { interval: TLS_POLL_MS, persistent: false }, (cur, prev) => {
    if (cur.mtimeMs !== prev.mtimeMs || cur.ino !== prev.ino) reload();
  });
  const port = await listenTcp(server, channel.host, channel.port);
  return {
    address: `${channel.host}:${port}`,
    port,
    close: () => {
      for (const f of files) unwatchFile(f);
      return closeServer(server);
    },
  };
}

/** Whether a unix socket file is in use: something accepts connections on it. */
function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe: Socket = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/**
 * Makes the socket path free to bind: a socket left behind by a process that did not shut down
 * cleanly is removed; anything else there, or a socket someone answers on, is an error.
 */
export async function prepareSharedSocket(channel: Extract<GrpcChannel, { kind: 'unix' }>): Promise<void> {
  let existing = null;
  try {
    existing = lstatSync(channel.path);
  } catch {
    // Nothing there yet.
  }
  if (existing) {
    if (!existing.isSocket()) throw new Error(`${channel.path} exists and is not a socket; refusing to replace it`);
    if (await socketInUse(channel.path)) throw new Error(`${channel.path} is in use by another process`);
    // Left behind by a process that did not shut down cleanly.
    unlinkSync(channel.path);
  }
}

async function listenUnix(channel: Extract<GrpcChannel, { kind: 'unix' }>, accept: (socket: Duplex) => void, shared: boolean): Promise<GrpcListener> {
  if (!shared) await prepareSharedSocket(channel);
  const server = createNetServer((socket) => {
    socket.on('error', () => undefined);
    accept(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // The socket file is created by bind(2) inside listen(); with this umask nobody but the
    // owner can connect until the configured mode is applied just below.
    const previous = process.umask(0o177);
    try {
      server.listen(channel.path, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      process.umask(previous);
    }
  });
  chmodSync(channel.path, channel.mode);
  return {
    address: channel.path,
    port: 0,
    close: () => {
      const closed = closeServer(server);
      // A worker leaves the shared socket to the primary and the other workers.
      if (shared) return closed;
      try {
        unlinkSync(channel.path);
      } catch {
        // Already gone.
      }
      return closed;
    },
  };
}

async function listenPlaintext(channel: Extract<GrpcChannel, { kind: 'plaintext' }>, accept: (socket: Duplex) => void): Promise<GrpcListener> {
  const server = createNetServer((socket) => {
    socket.on('error', () => undefined);
    accept(socket);
  });
  const port = await listenTcp(server, channel.host, channel.port);
  log.warn({ address: `${channel.host}:${port}` }, 'gRPC port is plaintext (loopback only): any local process can call it');
  return { address: `${channel.host}:${port}`, port, close: () => closeServer(server) };
}

/**
 * What would keep the channel from starting, without binding anything (for `portcullis check`):
 * unreadable TLS files, a key that does not match its certificate, a socket folder that is missing.
 */
export function channelProblems(channel: GrpcChannel): string[] {
  if (channel.kind === 'mtls') {
    try {
      createSecureContext(secureContextOptions(channel));
      return [];
    } catch (err) {
      return [`$.server.grpc_tls: ${(err as Error).message}`];
    }
  }
  if (channel.kind === 'unix') {
    try {
      if (!statSync(dirname(channel.path)).isDirectory()) return [`$.server.grpc_address: ${dirname(channel.path)} is not a directory`];
    } catch {
      return [`$.server.grpc_address: the socket's folder ${dirname(channel.path)} does not exist`];
    }
  }
  return [];
}

/** Binds the gRPC port for a channel; `accept` receives every connection allowed in. */
export function listenGrpc(channel: GrpcChannel, accept: (socket: Duplex) => void, opts: ListenOptions = {}): Promise<GrpcListener> {
  switch (channel.kind) {
    case 'mtls':
      return listenMtls(channel, accept);
    case 'unix':
      return listenUnix(channel, accept, opts.shared === true);
    case 'plaintext':
      return listenPlaintext(channel, accept);
  }
}
