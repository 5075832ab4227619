import { afterAll, beforeAll, expect, it } from 'vitest';
import { request as httpRequest } from 'node:http';
import { startStack, type Stack } from '../helpers/index.js';
import { mintToken } from '../../src/identity/mint.js';

/**
 * Graceful shutdown through the real Envoy: SIGTERM lets a call that is already streaming finish
 * (inspected to its end), while the process stops taking new work and reports not-ready.
 */

let stack: Stack;
let token: string;

beforeAll(async () => {
  stack = await startStack();
  token = await mintToken({
    issuer: 'https://issuer.demo.portcullis',
    audience: 'portcullis',
    agent: 'helpdesk',
    user: 'alice',
    tenant: 'acme',
    roles: ['support'],
    ttlS: 300,
    privateJwkPath: stack.prepared.privateJwkPath,
  });
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Reads a whole response with node:http, noting whether it ended cleanly. */
function read(path: string, onFirstChunk: () => void = () => undefined): Promise<{ status: number; body: string; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL(path, stack.envoyUrl), { headers: { authorization: `Bearer ${token}` }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        if (chunks.length === 0) onFirstChunk();
        chunks.push(c);
      });
      res.on('close', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), complete: res.complete }));
    });
    req.on('error', reject);
    req.end();
  });
}

it('SIGTERM drains: the stream in flight is inspected to its end, readiness drops at once', async () => {
  stack.tool.handle('/weather/slow-sse', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: one\n\n');
    // The secret arrives after the shutdown began: it must still be redacted, not passed raw.
    setTimeout(() => res.write('data: key AKIAIOSFODNN7EXAMPLF\n\n'), 600);
    setTimeout(() => res.end('data: done\n\n'), 1200);
  });
  let stopping: Promise<void> | null = null;
  let readyDuringDrain: number | null = null;
  const res = await read('/tools/weather/slow-sse', () => {
    stopping = stack.stopPortcullis();
    void sleep(200)
      .then(() => fetch(`${stack.adminUrl}/readyz`))
      .then((r) => (readyDuringDrain = r.status))
      .catch(() => (readyDuringDrain = -1));
  });
  expect(res.status).toBe(200);
  expect(res.complete).toBe(true);
  expect(res.body).toContain('data: one\n\n');
  expect(res.body).toContain('[REDACTED:aws.access_key_id]');
  expect(res.body).not.toContain('AKIA');
  expect(res.body).toContain('data: done\n\n');
  await stopping;
  // While draining, portcullis said it was not ready (Envoy's health checks see NOT_SERVING too).
  expect(readyDuringDrain).toBe(503);

  // Stopped: calls are denied, never forwarded unchecked.
  const before = stack.tool.received.length;
  const down = await read('/tools/weather/forecast?city=Oslo');
  expect(down.status).toBe(503);
  expect(stack.tool.received.length).toBe(before);

  await stack.startPortcullis();
  const up = await read('/tools/weather/forecast?city=Oslo');
  expect(up.status).toBe(200);
}, 60_000);
