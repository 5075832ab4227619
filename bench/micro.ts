/**
 * Check-path micro-benchmarks, in-process (no gRPC, no Envoy): operations per second of
 *   - decoding the benchmark's CheckRequest (protobuf -> object, as grpc-js does per call),
 *   - evaluating the wasm policy on its input,
 *   - verifying the bearer JWT (ES256, node:crypto): every time (cache off) and from the
 *     verified-token cache (the same token again, as an agent sends it),
 *   - building the policy input,
 *   - a whole `Authorizer.check` (tool, identity, policy, limiter, credentials), awaited one at
 *     a time, with the JWT verified every time and with it answered from the cache,
 *   - signing the ext_authz hand-off (Check) and reading + verifying it (ext_proc, per stream).
 * The share of Check each stage takes tells where the direct gRPC scenario's time goes.
 *
 *   npx vite-node bench/micro.ts [--ms 1000]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { prepareDemo } from '../src/demo/prepare.js';
import { mintToken } from '../src/identity/mint.js';
import { loadConfig } from '../src/config/load.js';
import { buildDeps, openPolicy } from '../src/server/app.js';
import { AUTHZ_METADATA_NAMESPACE, handoffStruct, readHandoff, sealHandoff } from '../src/authz/handoff.js';
import { Authorizer } from '../src/authz/check.js';
import { RateLimiter } from '../src/limits/tokenBucket.js';
import { MemoryBudget } from '../src/extproc/response/budget.js';
import { authorizationService } from '../src/server/protos.js';
import { buildPolicyInput } from '../src/policy/input.js';
import { parseStrictJson } from '../src/inspect/strictJson.js';
import type { ProtoCheckRequest } from '../src/authz/request.js';
import { setLogLevel } from '../src/log.js';
import { JwtVerifier } from '../src/identity/jwt.js';
import { repoPath } from '../test/helpers/paths.js';
import { encodeCheckRequest, weatherCheckRequest } from './lib/checkRequest.js';
import { AUDIENCE, ISSUER } from './lib/stack.js';

/** Best of three timed batches, in operations per second. */
async function opsPerSec(ms: number, fn: () => unknown | Promise<unknown>, isAsync: boolean): Promise<number> {
  let best = 0;
  for (let round = 0; round < 3; round++) {
    let n = 0;
    const t0 = process.hrtime.bigint();
    const end = t0 + BigInt(ms) * 1_000_000n;
    let now = t0;
    while (now < end) {
      for (let i = 0; i < 50; i++) {
        if (isAsync) await fn();
        else fn();
      }
      n += 50;
      now = process.hrtime.bigint();
    }
    best = Math.max(best, n / (Number(now - t0) / 1e9));
  }
  return best;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { ms: { type: 'string', default: '1000' } }, strict: false });
  const ms = Number(values.ms);
  setLogLevel('error');
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-micro-'));
  try {
    const prepared = await prepareDemo({
      dir,
      sourceConfig: repoPath('scripts', 'demo', 'portcullis.yaml'),
      policyBundle: repoPath('policies', 'build', 'bundle.tar.gz'),
      edit: (cfg) => {
        const tools = cfg.tools as Array<Record<string, unknown>>;
        const weather = tools.find((t) => t.name === 'weather');
        if (weather) weather.rate_limit = { rps: 1_000_000_000, burst: 1_000_000_000, key: 'agent' };
        cfg.audit = { stdout: false };
      },
    });
    const token = await mintToken({ issuer: ISSUER, audience: AUDIENCE, agent: 'helpdesk', user: 'alice', tenant: 'acme', roles: ['support'], ttlS: 3_600, privateJwkPath: prepared.privateJwkPath });
    const config = loadConfig(prepared.configPath);
    const policy = await openPolicy(config, false);
    const built = await buildDeps(config, policy, new RateLimiter(), new MemoryBudget(config.inspect.response_memory_budget_bytes));
    const authorizer = new Authorizer(built.deps);
    // The same deployment with identity.token_cache_size 0: every Check verifies the signature.
    const uncachedConfig = { ...config, identity: { ...config.identity, token_cache_size: 0 } };
    const uncached = await buildDeps(uncachedConfig, policy, new RateLimiter(), new MemoryBudget(config.inspect.response_memory_budget_bytes));
    const uncachedAuthorizer = new Authorizer(uncached.deps);

    const req = weatherCheckRequest(token);
    const wire = encodeCheckRequest(req);
    const decode = authorizationService().Check!.requestDeserialize;
    const decoded = decode(wire) as ProtoCheckRequest;
    for (const a of [authorizer, uncachedAuthorizer]) {
      const first = await a.check(decoded);
      if (!first.allowed) throw new Error(`the benchmark request is denied: ${JSON.stringify(first.metadata)}`);
    }

    const identity = { agent: 'helpdesk', agent_version: null, user: 'alice', tenant: 'acme', roles: ['support'], methods: ['jwt' as const], proven_by: [ISSUER] };
    const tool = { name: 'weather', mutating: false, external: true, upstream: 'tool_weather' };
    const input = buildPolicyInput(decoded, { identity, tool, mcp: null, body: null });
    if (policy.evaluate(input) === undefined) throw new Error('policy returned no decision');

    const jwt = await JwtVerifier.create(config.identity.jwt, config.base_dir, { tokenCacheSize: 0 });
    const cachedJwt = await JwtVerifier.create(config.identity.jwt, config.base_dir);
    await jwt.verify(token, Date.now());
    await cachedJwt.verify(token, Date.now());

    // A typical MCP tools/call body and a 60 KiB document of small objects, as bytes off the wire.
    const rpcBody = Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'vpn drops every hour', tenant: 'acme', limit: 10 } } }));
    const bigBody = Buffer.from(JSON.stringify(Array.from({ length: 600 }, (_, i) => ({ id: i, title: `ticket ${i}`, tags: ['a', 'b'], priority: 'low', note: 'x'.repeat(40) }))));

    const handoff = built.handoff;
    const allowed = (await authorizer.check(decoded)).metadata;
    const sealedStruct = handoffStruct(sealHandoff(allowed, handoff));
    const forwarded = { [AUTHZ_METADATA_NAMESPACE]: sealedStruct };
    if (!readHandoff(forwarded, handoff).ok) throw new Error('the sealed hand-off does not verify');

    const cases: Array<[string, () => unknown, boolean]> = [
      ['CheckRequest decode (protobuf, proto-loader)', () => decode(wire), false],
      ['strict JSON parse (MCP call, 150 B)', () => parseStrictJson(rpcBody), false],
      ['JSON.parse baseline (MCP call, 150 B)', () => JSON.parse(rpcBody.toString('utf8')), false],
      ['strict JSON parse (60 KiB)', () => parseStrictJson(bigBody), false],
      ['JSON.parse baseline (60 KiB)', () => JSON.parse(bigBody.toString('utf8')), false],
      ['policy input build', () => buildPolicyInput(decoded, { identity, tool, mcp: null, body: null }), false],
      ['policy evaluate (wasm)', () => policy.evaluate(input), false],
      ['JWT verify (ES256, node:crypto, cache off)', () => jwt.verify(token, Date.now()), true],
      ['JWT verify (ES256, cache hit)', () => cachedJwt.verify(token, Date.now()), true],
      ['Authorizer.check (JWT verified, cache off)', () => uncachedAuthorizer.check(decoded), true],
      ['Authorizer.check (JWT from cache)', () => authorizer.check(decoded), true],
      ['hand-off seal (HMAC-SHA256)', () => sealHandoff(allowed, handoff), false],
      ['hand-off read + verify (typed, HMAC-SHA256)', () => readHandoff(forwarded, handoff), false],
    ];
    console.log(`Check path micro-benchmarks (node ${process.version}; best of 3 x ${ms} ms)`);
    const results: Record<string, number> = {};
    for (const [label, fn, isAsync] of cases) {
      const ops = await opsPerSec(ms, fn, isAsync);
      results[label] = ops;
      console.log(`  ${label.padEnd(46)} ${ops.toFixed(0).padStart(9)} ops/s  ${(1e6 / ops).toFixed(1).padStart(7)} us/op`);
    }
    jwt.close();
    cachedJwt.close();
    for (const b of [built, uncached]) {
      b.deps.identity.close();
      b.secrets.close();
      await b.extproc.audit.close();
    }
    policy.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
