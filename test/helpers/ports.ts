import { createServer } from 'node:net';

/**
 * Ports this process already handed out. The OS may give the same ephemeral port to two
 * consecutive port-0 binds once the first socket is closed, and a stack binds its ports only
 * after asking for all of them: without this, two of its processes can be told the same port.
 */
const handedOut = new Set<number>();
/** Attempts before giving up on finding a port not handed out yet. */
const ATTEMPTS = 50;

function osPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('could not read the allocated port'));
        return;
      }
      srv.close(() => resolve(addr.port));
    });
  });
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed out
 * before (the OS picks it; the socket is closed before returning, so bind it soon).
 */
export async function freePort(): Promise<number> {
  for (let i = 0; i < ATTEMPTS; i++) {
    const port = await osPort();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no port that was not handed out already after ${ATTEMPTS} attempts`);
}
