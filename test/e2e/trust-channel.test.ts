import { spawnSync } from 'node:child_process';
import { chmodSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeGenericClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { HandoffKey, handoffStruct, sealHandoff } from '../../src/authz/handoff.js';
import { makeCa, makeLeaf } from '../../src/demo/pki.js';
import { externalProcessorService } from '../../src/server/protos.js';
import { readAuditFile, startStack, type Stack } from '../helpers/index.js';
import { checkOnce, clientTarget, processClient, processOn, type CheckResult } from '../helpers/grpc.js';
import { call, eventually, secretValue, token } from './authz-support.js';

/**
 * The channel into portcullis, tried as anything else on the network would: straight at the
 * gRPC port, without Envoy. Only Envoy's certificate (pinned SAN) gets an answer; and even on
 * that channel, no ext_proc message can crash the process or make it record a decision it did
 * not make. Then the same chain through the real Envoy on a unix socket.
 */

const WEATHER_PATH = '/tools/weather/forecast?city=Oslo';
const PROCESS = '/envoy.service.ext_proc.v3.ExternalProcessor/Process';

/** A CheckRequest as Envoy would send it for a weather call carrying only the agent's JWT. */
function weatherCheck(jwt: string): unknown {
  return {
    attributes: {
      request: {
        http: { id: 'direct-1', method: 'GET', path: WEATHER_PATH, headers: { ':method': 'GET', ':path': WEATHER_PATH, authorization: `Bearer ${jwt}`, 'x-request-id': 'direct-1' } },
      },
      contextExtensions: { route_tool: 'weather' },
    },
  };
}

function allowedHeaders(r: CheckResult): Record<string, string> {
  if (!r.ok) return {};
  const ok = r.res.okResponse as { headers?: { header: { key: string; value: string } }[] } | undefined;
  return Object.fromEntries((ok?.headers ?? []).map((h) => [h.header.key, h.header.value]));
}

describe('mTLS channel (pinned client SAN)', () => {
  let stack: Stack;
  let jwt: string;
  let weatherKey: string;
  let auditFile: string;
  let strangerCert: { cert: string; key: string };
  let foreignCert: { cert: string; key: string };

  beforeAll(async () => {
    stack = await startStack();
    jwt = await token(stack, { agent: 'reporter', user: 'bob', roles: ['viewer'] });
    weatherKey = secretValue(stack, 'secrets/weather-api-key');
    auditFile = join(stack.dir, 'audit.log');
    const channel = stack.channel;
    if (channel.kind !== 'mtls') throw new Error('expected an mTLS stack');
    // Same CA as Envoy's certificate, but a SAN portcullis does not pin; and Envoy's SAN from another CA.
    const caDir = join(stack.dir, 'tls');
    strangerCert = await makeLeaf(caDir, 'stranger', { cert: join(caDir, 'ca.crt'), key: join(caDir, 'ca.key') }, 'clientAuth', 'URI:spiffe://demo.portcullis/agent/reporter, DNS:envoy');
    const other = await makeCa(join(stack.dir, 'other-ca'), 'other');
    foreignCert = await makeLeaf(join(stack.dir, 'other-ca'), 'envoy-lookalike', other, 'clientAuth', 'URI:spiffe://demo.portcullis/envoy');
  });
  afterAll(async () => stack?.stop());

  it("Envoy's certificate gets the decision (control: the same Check that the others send)", async () => {
    const r = await checkOnce(stack.channel, stack.grpcPort, 'envoy', weatherCheck(jwt));
    expect(r.ok).toBe(true);
    expect(allowedHeaders(r)['x-api-key']).toBe(weatherKey);
  });

  it('a plaintext client with an agent JWT gets no answer, and so no tool credential', async () => {
    const r = await checkOnce(stack.channel, stack.grpcPort, 'plaintext', weatherCheck(jwt), 2_000);
    expect(r.ok).toBe(false);
    expect(JSON.stringify(r)).not.toContain(weatherKey);
  });

  it('a TLS client without a certificate is refused in the handshake', async () => {
    const r = await checkOnce(stack.channel, stack.grpcPort, 'no-cert', weatherCheck(jwt), 2_000);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.err.code).toBe(14); // UNAVAILABLE: no connection
  });

  it('a certificate from the trusted CA without the pinned SAN is disconnected', async () => {
    const r = await checkOnce(stack.channel, stack.grpcPort, strangerCert, weatherCheck(jwt), 2_000);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.err.code).toBe(14);
    const metrics = await call(`${stack.adminUrl}/metrics`);
    expect(metrics.text).toMatch(/portcullis_grpc_connections_refused_total\{reason="client_san"\} [1-9]/);
  });

  it("a certificate with Envoy's SAN from another CA is refused", async () => {
    const r = await checkOnce(stack.channel, stack.grpcPort, foreignCert, weatherCheck(jwt), 2_000);
    expect(r.ok).toBe(false);
  });

  it('the whole chain through Envoy works on the mTLS channel (Envoy health checks included)', async () => {
    const r = await call(`${stack.envoyUrl}${WEATHER_PATH}`, { headers: { authorization: `Bearer ${jwt}` } });
    expect(r.status, r.text).toBe(200);
    expect(stack.tool.received.at(-1)?.headers['x-api-key']).toBe(weatherKey);
  });

  describe('ext_proc on the authenticated channel: no message ends the process or records a made-up decision', () => {
    /**
     * Request headers whose forwarded metadata claims an allowed call by an agent that never
     * asked: with `path` as given, and optionally a made-up signature.
     */
    const forged = (path: unknown, sig?: string): unknown => ({
      requestHeaders: { headers: { headers: [{ key: ':path', rawValue: Buffer.from('/tools/weather/x') }, { key: 'x-request-id', rawValue: Buffer.from('forged-1') }] }, endOfStream: true },
      metadataContext: {
        filterMetadata: {
          'envoy.filters.http.ext_authz': {
            fields: {
              portcullis: {
                structValue: {
                  fields: {
                    request_id: { stringValue: 'forged-1' },
                    path,
                    method: { stringValue: 'GET' },
                    tool: { stringValue: 'weather' },
                    agent: { stringValue: 'admin-agent' },
                    user: { stringValue: 'root' },
                    allowed: { boolValue: true },
                    ...(sig ? { sig: { stringValue: sig }, iat: { numberValue: Date.now() } } : {}),
                  },
                },
              },
            },
          },
        },
      },
    });

    it('`path` as a number: the stream gets a deny, the process lives on, the record says no decision', async () => {
      const before = readAuditFile(auditFile).length;
      const client = processClient(stack.channel, stack.grpcPort, 'envoy');
      try {
        const r = await processOn(client, [forged({ numberValue: 42 }, 'v1.AAAA')]);
        expect(r.replies).toHaveLength(1);
        const imm = r.replies[0]!.immediateResponse as { status: { code: string | number } } | undefined;
        expect(imm).toBeDefined();
        expect(String(imm!.status.code)).toMatch(/^(503|ServiceUnavailable)$/);
        // An unsigned hand-off (an agent claiming allowed: true) is denied the same way.
        const r2 = await processOn(client, [forged({ stringValue: '/tools/weather/x' })]);
        expect(r2.replies[0]!.immediateResponse).toBeDefined();
      } finally {
        client.close();
      }
      // Still alive and serving: health, and a normal call through Envoy.
      expect((await call(`${stack.adminUrl}/healthz`)).status).toBe(200);
      const ok = await call(`${stack.envoyUrl}${WEATHER_PATH}`, { headers: { authorization: `Bearer ${jwt}` } });
      expect(ok.status, ok.text).toBe(200);
      let records: Record<string, unknown>[] = [];
      for (let i = 0; i < 50 && records.filter((x) => x.request_id === 'forged-1').length < 2; i++) {
        await new Promise((res) => setTimeout(res, 100));
        records = readAuditFile(auditFile).slice(before);
      }
      const forgedRecords = records.filter((x) => x.request_id === 'forged-1');
      expect(forgedRecords).toHaveLength(2);
      for (const rec of forgedRecords) {
        expect(rec).toMatchObject({ agent_id: null, user_id: null, tool: null, decision: { allowed: false } });
        expect((rec.decision as { rule: string }).rule).toMatch(/^handoff\.(malformed|unsigned)$/);
      }
      expect((forgedRecords[0]!.decision as { rule: string }).rule).toBe('handoff.malformed');
      expect((forgedRecords[1]!.decision as { rule: string }).rule).toBe('handoff.unsigned');
      // Nothing in the file claims the forged principal.
      expect(readAuditFile(auditFile).some((x) => x.agent_id === 'admin-agent' || x.user_id === 'root')).toBe(false);
    });

    it('an undecodable message in the middle of a stream still ends that stream with a status, after its replies', async () => {
      const key = new HandoffKey(() => secretValue(stack, 'secrets/handoff-key'));
      const meta = {
        request_id: null, traceparent: null, method: 'GET', path: '/tools/weather/x', tool: 'weather', agent: 'reporter', agent_version: null, user: 'bob', tenant: 'acme',
        auth_methods: ['jwt'], roles: [], auth_error: null, forwarded_recorded: false, allowed: true, dry_run: false, rule: null, reason: null, policy_version: null, mcp_method: null, mcp_tool: null, mcp_prompt: null, mcp_resource: null, mcp_session: null, mcp_protocol_version: null, proven_by: [], jti: null, authz_ms: 1, body_sha256: null,
        mcp_decided_on: null,
        idempotency_key: null,
        idempotency_claim: null,
        fact_records: [],
        budget_records: [],
      };
      const encode = externalProcessorService().Process!.requestSerialize as (m: unknown) => Buffer;
      const md = { filterMetadata: { 'envoy.filters.http.ext_authz': handoffStruct(sealHandoff(meta, key)) } };
      const trailers = { headers: Array.from({ length: 200 }, (_, i) => ({ key: `k${i}`, value: 'x'.repeat(10_000) })) };
      const messages = [
        encode({ responseHeaders: { headers: { headers: [{ key: ':status', value: '200' }] } }, metadataContext: md }),
        encode({ responseTrailers: { trailers } }),
        encode({ metadataContext: md }),
        Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2]),
      ];
      const { target, creds } = clientTarget(stack.channel, stack.grpcPort, 'envoy');
      const client = new (makeGenericClientConstructor({}, 'Raw'))(target, creds, { 'grpc.max_send_message_length': 64 << 20 });
      try {
        for (let round = 0; round < 10; round++) {
          const code = await new Promise<number>((resolve) => {
            const c = client.makeBidiStreamRequest(PROCESS, (b: Buffer) => b, (b: Buffer) => b, { deadline: new Date(Date.now() + 4_000) });
            c.on('data', () => undefined);
            c.on('error', (e: ServiceError) => resolve(e.code));
            c.on('status', (st: { code: number }) => resolve(st.code));
            for (const m of messages) c.write(m);
            c.end();
          });
          // OK (the stream was answered with an immediate response and ended), never a deadline.
          expect(code, `round ${round}`).not.toBe(4);
        }
      } finally {
        client.close();
      }
    });

    it('200 empty streams add no audit record', async () => {
      // Let the records of earlier calls land first.
      await new Promise((res) => setTimeout(res, 300));
      const before = readAuditFile(auditFile).length;
      const client = processClient(stack.channel, stack.grpcPort, 'envoy');
      try {
        const results = await Promise.all(Array.from({ length: 200 }, () => processOn(client, [])));
        for (const r of results) expect(r.code).toBe(0);
      } finally {
        client.close();
      }
      await new Promise((res) => setTimeout(res, 300));
      expect(readAuditFile(auditFile).length).toBe(before);
    });
  });
});

describe('unix socket channel (sidecar layout)', () => {
  let stack: Stack;
  let jwt: string;

  beforeAll(async () => {
    stack = await startStack({ channel: 'unix' });
    jwt = await token(stack, { agent: 'reporter', user: 'bob', roles: ['viewer'] });
  });
  afterAll(async () => stack?.stop());

  it('the whole chain through Envoy works over the socket (pipe address, health checks included)', async () => {
    const r = await call(`${stack.envoyUrl}${WEATHER_PATH}`, { headers: { authorization: `Bearer ${jwt}` } });
    expect(r.status, r.text).toBe(200);
    expect(stack.tool.received.at(-1)?.headers['x-api-key']).toBe(secretValue(stack, 'secrets/weather-api-key'));
    // ext_proc ran on the socket too: the exchange has its record, with the verified hand-off's principal.
    const id = r.headers.get('x-request-id');
    const find = (): Record<string, unknown> | undefined => readAuditFile(join(stack.dir, 'audit.log')).find((x) => x.request_id === id);
    expect(await eventually(async () => find() !== undefined, 5_000)).toBe(true);
    expect(find()).toMatchObject({ agent_id: 'reporter', user_id: 'bob', tool: 'weather', decision: { allowed: true }, upstream_status: 200 });
  });

  it('the socket file is owner-only (mode 0600 by default), and another user cannot connect', async () => {
    if (stack.channel.kind !== 'unix') throw new Error('expected a unix stack');
    const path = stack.channel.path;
    const st = statSync(path);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    if (process.getuid?.() === 0) {
      // As root the mode is not enforced for us: try as an unprivileged user, with the folder
      // itself traversable so only the socket's own mode can refuse.
      chmodSync(stack.dir, 0o755);
      const probe = `require('net').connect(${JSON.stringify(path)}).on('connect',()=>{console.log('connected');process.exit(0)}).on('error',(e)=>{console.log(e.code);process.exit(0)})`;
      const r = spawnSync(process.execPath, ['-e', probe], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 10_000 });
      expect(r.stdout.trim()).toBe('EACCES');
    }
  });
});
