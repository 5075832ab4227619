import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHmac } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GatewayError } from '../../../src/errors.js';
import { SecretStore } from '../../../src/credentials/secrets.js';
import type { IdentityConfig } from '../../../src/config/types.js';
import { IdentityVerifier, type IdentityRequest } from '../../../src/identity/index.js';
import { RedisStore } from '../../../src/limits/redisStore.js';
import { startRedis, type RedisServer } from '../../helpers/redis.js';

/** Seen request signatures on the shared store: a signature one replica accepted, every replica refuses. */

const SECRET = 'webhook-signing-secret';
const base = mkdtempSync(join(tmpdir(), 'pc-replay-'));
writeFileSync(join(base, 'sig'), `${SECRET}\n`);

const cfg: IdentityConfig = {
  required: true,
  jwt: [],
  mtls: [],
  api_keys: [],
  api_key_header: 'x-api-key',
  signatures: [{ id: 'alerts', secret: { file: 'sig' }, signature_header: 'x-slack-signature', timestamp_header: 'x-slack-request-timestamp', max_skew_s: 300, agent: 'alerts', roles: ['support'], tools: ['tickets'] }],
} as unknown as IdentityConfig;

let server: RedisServer;
let secrets: SecretStore;
const stores: RedisStore[] = [];
const verifiers: IdentityVerifier[] = [];

async function replica(): Promise<IdentityVerifier> {
  const store = new RedisStore({ url: server.url, keyPrefix: 'replay:', timeoutMs: 300, connectTimeoutMs: 500, maxRetries: 1 });
  stores.push(store);
  const v = await IdentityVerifier.create(cfg, base, secrets, { replayStore: store });
  verifiers.push(v);
  return v;
}

function signedReq(body: string): IdentityRequest {
  const ts = Math.floor(Date.now() / 1000);
  const sig = createHmac('sha256', SECRET).update(`v0:${ts}:${body}`).digest('hex');
  return {
    headers: { 'x-slack-signature': `v0=${sig}`, 'x-slack-request-timestamp': String(ts) },
    sourcePrincipal: undefined,
    rawBody: Buffer.from(body),
    bodyTruncated: false,
    toolName: 'tickets',
    nowMs: Date.now(),
    method: 'POST',
    path: '/tools/tickets/tenants/acme/tickets',
  };
}

async function denial(p: Promise<unknown>): Promise<GatewayError> {
  const r = await p.then(
    () => null,
    (e: unknown) => e,
  );
  if (!(r instanceof GatewayError)) throw new Error(`expected a denial, got ${String(r)}`);
  return r;
}

beforeAll(async () => {
  server = await startRedis();
  secrets = new SecretStore(base);
});

afterAll(async () => {
  for (const v of verifiers) v.close();
  for (const s of stores) await s.close();
  secrets?.close();
  await server?.stop();
});

describe('signature replay cache on Redis', () => {
  it('a signature accepted by one replica is a replay on the other', async () => {
    const a = await replica();
    const b = await replica();
    const r = signedReq('{"title":"once"}');
    expect(await a.verify(r)).toMatchObject({ agent: 'alerts' });
    const replay = await denial(b.verify(r));
    expect(replay.rule).toBe('identity.signature');
    expect(replay.message).toMatch(/already used/);
  });

  it('fails closed while Redis is away (503, the signature rule), and accepts fresh signatures once it is back', async () => {
    const a = await replica();
    await a.verify(signedReq('{"warm":1}'));
    await server.stop();
    try {
      const err = await denial(a.verify(signedReq('{"while":"down"}')));
      expect(err.code).toBe('unavailable');
      expect(err.rule).toBe('identity.signature');
      expect(err.message).toMatch(/cannot be checked right now/);
    } finally {
      await server.start();
    }
    const deadline = Date.now() + 15_000;
    while (!stores.every((s) => s.status().available) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await a.verify(signedReq('{"after":"restart"}'))).toMatchObject({ agent: 'alerts' });
  });
});
