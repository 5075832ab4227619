import { readFileSync } from 'node:fs';
import { credentials, makeGenericClientConstructor, type ChannelCredentials, type Client, type ServiceError } from '@grpc/grpc-js';
import { authorizationService, externalProcessorService } from '../../src/server/protos.js';
import type { PortcullisChannel } from './envoyConfig.js';
import type { CertFiles } from '../../src/demo/pki.js';

/**
 * Direct gRPC clients of portcullis (no Envoy): what Envoy does, or what anything else that can
 * reach the port could try. `as` chooses how the client connects.
 */

/** How a test client connects: as Envoy (the channel's own credentials), with another certificate, or without any. */
export type ClientIdentity = 'envoy' | 'plaintext' | 'no-cert' | CertFiles;

/** Target and credentials for a client of `channel`. */
export function clientTarget(channel: PortcullisChannel, port: number, as: ClientIdentity): { target: string; creds: ChannelCredentials } {
  if (channel.kind === 'unix') return { target: `unix://${channel.path}`, creds: credentials.createInsecure() };
  const target = `127.0.0.1:${port}`;
  if (channel.kind === 'plaintext' || as === 'plaintext') return { target, creds: credentials.createInsecure() };
  const ca = readFileSync(channel.ca);
  if (as === 'no-cert') return { target, creds: credentials.createSsl(ca) };
  const files = as === 'envoy' ? { cert: channel.cert, key: channel.key } : as;
  return { target, creds: credentials.createSsl(ca, readFileSync(files.key), readFileSync(files.cert)) };
}

type Unary = (req: unknown, opts: { deadline: Date }, cb: (err: ServiceError | null, res: unknown) => void) => void;

/** The outcome of one Check: the response, or the gRPC error. */
export type CheckResult = { ok: true; res: Record<string, unknown> } | { ok: false; err: ServiceError };

/** Sends one Check and closes the client. */
export function checkOnce(channel: PortcullisChannel, port: number, as: ClientIdentity, req: unknown, timeoutMs = 5_000): Promise<CheckResult> {
  const { target, creds } = clientTarget(channel, port, as);
  const Ctor = makeGenericClientConstructor(authorizationService(), 'Authorization');
  const client = new Ctor(target, creds) as Client & Record<string, Unary>;
  return new Promise((resolve) => {
    client.Check!.call(client, req, { deadline: new Date(Date.now() + timeoutMs) }, (err, res) => {
      client.close();
      resolve(err ? { ok: false, err } : { ok: true, res: res as Record<string, unknown> });
    });
  });
}

/** The outcome of one Process stream: the replies, and the status it ended with. */
export interface StreamResult {
  replies: Record<string, unknown>[];
  /** gRPC status code the stream ended with (0: OK). */
  code: number;
  details: string;
}

interface Duplex {
  write(m: unknown): boolean;
  end(): void;
  on(ev: 'data', f: (m: Record<string, unknown>) => void): void;
  on(ev: 'error', f: (e: ServiceError) => void): void;
  on(ev: 'status', f: (s: { code: number; details: string }) => void): void;
}

/**
 * Opens a Process stream on an existing client, sends `messages`, half-closes, and resolves with
 * every reply and the final status. Never rejects: a failed stream is a result too.
 */
export function processOn(client: Client, messages: readonly unknown[], timeoutMs = 5_000): Promise<StreamResult> {
  const call = (client as unknown as Record<string, (opts: { deadline: Date }) => Duplex>).Process!.call(client, { deadline: new Date(Date.now() + timeoutMs) });
  const replies: Record<string, unknown>[] = [];
  return new Promise((resolve) => {
    let done = false;
    const finish = (code: number, details: string): void => {
      if (done) return;
      done = true;
      resolve({ replies, code, details });
    };
    call.on('data', (m) => replies.push(m));
    call.on('error', (e) => finish(e.code ?? -1, e.details ?? e.message));
    call.on('status', (s) => finish(s.code, s.details));
    for (const m of messages) call.write(m);
    call.end();
  });
}

/** A Process client for `channel`; close it when done. */
export function processClient(channel: PortcullisChannel, port: number, as: ClientIdentity): Client {
  const { target, creds } = clientTarget(channel, port, as);
  const Ctor = makeGenericClientConstructor(externalProcessorService(), 'ExternalProcessor');
  return new Ctor(target, creds);
}
