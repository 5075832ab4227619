import { afterAll, beforeAll, expect, it } from 'vitest';
import { request as httpRequest } from 'node:http';
import { startStack, type Stack } from '../helpers/index.js';
import { mintToken } from '../../src/identity/mint.js';

/**
 * Fail closed when the inspector dies: portcullis is killed (SIGKILL, no graceful drain) while a
 * response is flowing through Envoy; the secret the upstream writes afterwards must never reach
 * the client, and the gateway serves again once portcullis is back.
 */

const AWS_KEY = 'AKIAIOSFODNN7EXAMPLF';

let stack: Stack;
let token: string;

beforeAll(async () => {
  stack = await startStack({
    // Room for a body larger than the 64 KiB ext_authz sees, so the last test reaches ext_proc. Only a
    // tool that is not a JSON tool may take more than the Check reads whole: weather (inspected by DLP).
    editConfig: (cfg) => {
      const weather = (cfg.tools as { name: string; request: { max_body_bytes: number } }[]).find((t) => t.name === 'weather')!;
      weather.request.max_body_bytes = 1024 * 1024;
    },
  });
  token = await mintToken({ issuer: 'https://issuer.demo.portcullis', audience: 'portcullis', agent: 'helpdesk', user: 'alice', tenant: 'acme', roles: ['support'], ttlS: 300, privateJwkPath: stack.prepared.privateJwkPath });
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

interface Streamed {
  status: number;
  received: Buffer[];
  complete: boolean;
  error: string | null;
}

/** Reads a response to its end or its reset, keeping every chunk as received. */
function stream(path: string, onFirstChunk: () => void): Promise<Streamed> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL(path, stack.envoyUrl), { headers: { authorization: `Bearer ${token}` }, agent: false }, (res) => {
      const received: Buffer[] = [];
      let error: string | null = null;
      res.on('data', (c: Buffer) => {
        if (received.length === 0) onFirstChunk();
        received.push(c);
      });
      res.on('error', (err) => (error = err.message));
      res.on('aborted', () => (error ??= 'aborted'));
      res.on('close', () => resolve({ status: res.statusCode ?? 0, received, complete: res.complete, error }));
    });
    req.on('error', reject);
    req.end();
  });
}

it('resets a streamed response when ext_proc dies mid-stream; the secret written afterwards never arrives', async () => {
  let secretWritten = false;
  stack.tool.handle('/weather/sse-kill', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: event 1\n\n');
    // Written well after the kill below; the connection may already be gone by then.
    setTimeout(() => {
      secretWritten = true;
      if (!res.destroyed) res.write(`data: key ${AWS_KEY}\n\n`);
    }, 700);
    setTimeout(() => !res.destroyed && res.end('data: last\n\n'), 900);
  });
  let killed: Promise<void> | null = null;
  const res = await stream('/tools/weather/sse-kill', () => {
    killed = stack.killPortcullis();
  });
  await killed;
  expect(res.status).toBe(200);
  const all = Buffer.concat(res.received).toString('latin1');
  // The first event was inspected and delivered before the kill.
  expect(all).toContain('data: event 1\n\n');
  expect(all).not.toContain('AKIA');
  expect(all).not.toContain('data: last');
  // The client is told the response is broken (reset / truncated chunked body), not a clean end.
  expect(res.complete).toBe(false);
  expect(res.error).not.toBeNull();
  // Wait until the upstream wrote the secret (and would have finished), then check nothing more came.
  await sleep(950);
  expect(secretWritten).toBe(true);
}, 20_000);

it('fails a buffered response closed while portcullis is down, then serves again once it is back', async () => {
  stack.tool.handle('/weather/json-kill', (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ aws: AWS_KEY }));
  });
  const before = stack.tool.received.length;
  const down = await stream('/tools/weather/json-kill', () => undefined);
  const text = Buffer.concat(down.received).toString('utf8');
  // ext_authz cannot answer: denied before any upstream call (fail closed), in the gateway's shape.
  expect(down.status).toBe(503);
  expect(JSON.parse(text)).toMatchObject({ error: { type: 'unavailable', retryable: true } });
  expect(text).not.toContain('AKIA');
  expect(stack.tool.received.length).toBe(before);

  await stack.startPortcullis();
  const up = await stream('/tools/weather/json-kill', () => undefined);
  expect(up.status).toBe(200);
  expect(JSON.parse(Buffer.concat(up.received).toString('utf8'))).toEqual({ aws: '[REDACTED:aws.access_key_id]' });
}, 60_000);

it('stops a call whose request body is still arriving when ext_proc dies: 503 in the error shape, nothing reaches the tool', async () => {
  // The first 64 KiB go to ext_authz (allowed); ext_proc then waits for the whole body, and
  // portcullis is killed before the rest is sent.
  const before = stack.tool.received.length;
  const head = Buffer.alloc(65536, ' ');
  let crash: Promise<void> = Promise.resolve();
  const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = httpRequest(
      new URL('/tools/weather/notes', stack.envoyUrl),
      { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain', 'transfer-encoding': 'chunked' }, agent: false },
      (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('error', reject);
    req.write(head);
    crash = (async () => {
      // Give Envoy time to run the check and open the ext_proc stream, then crash the inspector.
      await sleep(500);
      await stack.killPortcullis();
      await sleep(200);
      if (!req.destroyed) req.end('the rest of the notes');
    })();
    crash.catch(reject);
  });
  expect(res.status).toBe(503);
  // The inspection step failed (not the check, which had already allowed the call).
  expect(JSON.parse(res.body)).toMatchObject({ error: { type: 'unavailable', retryable: true, message: expect.stringMatching(/inspection/) } });
  expect(stack.tool.received.length).toBe(before);
  // Envoy answers as soon as the gRPC connection drops, possibly before the process is reaped.
  await crash;
  await stack.startPortcullis();
}, 60_000);
