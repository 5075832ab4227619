import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import type { Duplex } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { makeCa, makeLeaf } from '../../../src/demo/pki.js';
import { listenGrpc } from '../../../src/server/listener.js';

/** The mTLS listener on its own: who gets handed to grpc-js, and certificate rotation. */

const dir = mkdtempSync(join(tmpdir(), 'pc-listener-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Connects with a client certificate; resolves with the server certificate's SAN and whether the connection survived. */
function tryConnect(port: number, ca: string, client: { cert: string; key: string }): Promise<{ san: string | undefined; open: boolean }> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port, ca: readFileSync(ca), cert: readFileSync(client.cert), key: readFileSync(client.key), ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
    let san: string | undefined;
    s.on('secureConnect', () => {
      san = s.getPeerCertificate().subjectaltname;
      // A refused client is disconnected right after the handshake; an accepted one stays open.
      setTimeout(() => {
        const open = !s.destroyed && s.readyState === 'open';
        s.destroy();
        resolve({ san, open });
      }, 200);
    });
    s.on('error', () => resolve({ san, open: false }));
  });
}

describe('mTLS listener', () => {
  it('hands over only connections with a pinned SAN, and serves a rotated certificate to new connections', async () => {
    const ca = await makeCa(dir, 'ca');
    const [first, second, envoy, stranger] = await Promise.all([
      makeLeaf(dir, 'first', ca, 'serverAuth', 'URI:spiffe://t/first'),
      makeLeaf(dir, 'second', ca, 'serverAuth', 'URI:spiffe://t/second'),
      makeLeaf(dir, 'envoy', ca, 'clientAuth', 'URI:spiffe://t/envoy'),
      makeLeaf(dir, 'stranger', ca, 'clientAuth', 'URI:spiffe://t/stranger'),
    ]);
    const cert = join(dir, 'serving.crt');
    const key = join(dir, 'serving.key');
    copyFileSync(first.cert, cert);
    copyFileSync(first.key, key);
    const accepted: Duplex[] = [];
    const listener = await listenGrpc({ kind: 'mtls', host: '127.0.0.1', port: 0, ca: ca.cert, cert, key, clientSans: ['spiffe://t/envoy'] }, (s) => accepted.push(s));
    try {
      expect(await tryConnect(listener.port, ca.cert, envoy)).toEqual({ san: 'URI:spiffe://t/first', open: true });
      expect(accepted).toHaveLength(1);
      expect((await tryConnect(listener.port, ca.cert, stranger)).open).toBe(false);
      expect(accepted).toHaveLength(1);

      copyFileSync(second.key, key);
      copyFileSync(second.cert, cert);
      let san: string | undefined;
      for (let i = 0; i < 40 && san !== 'URI:spiffe://t/second'; i++) {
        await new Promise((r) => setTimeout(r, 150));
        san = (await tryConnect(listener.port, ca.cert, envoy)).san;
      }
      expect(san).toBe('URI:spiffe://t/second');
    } finally {
      for (const s of accepted) s.destroy();
      await listener.close();
    }
  });
});
