import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, constants as h2 } from 'node:http2';
import { Agent, request } from 'node:https';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { freePort, renderEnvoyConfig, REPORTER_SPIFFE_ID, startStack, STRANGER_SPIFFE_ID, toolPath, type CertFiles, type Stack } from '../helpers/index.js';
import { auditRecords, eventually, expectDenial, secretValue, token, type Reply } from './authz-support.js';

/**
 * mTLS agents through the real Envoy: the listener requires a client certificate from the test
 * CA, Envoy hands the certificate's URI SAN to portcullis as `source.principal`, and
 * `identity.mtls` maps it to an agent. Certificates alone identify the caller; headers never do.
 */

const run = promisify(execFile);
let stack: Stack;

/** What a request over TLS produced: an HTTP reply, or the error that prevented one. */
type Outcome = { reply: Reply; error: null } | { reply: null; error: NodeJS.ErrnoException };

function tlsOf(s: Stack): NonNullable<Stack['tls']> {
  if (!s.tls) throw new Error('the stack was started without tls');
  return s.tls;
}

/** A fresh connection per call (no keep-alive), so each call is its own TLS handshake. */
function agentFor(client: CertFiles | null): Agent {
  const ca = readFileSync(tlsOf(stack).ca);
  if (!client) return new Agent({ ca, keepAlive: false });
  return new Agent({ ca, cert: readFileSync(client.cert), key: readFileSync(client.key), keepAlive: false });
}

/** GET over HTTPS presenting `client` (or no certificate); never rejects. */
function tryGet(path: string, client: CertFiles | null, headers: Record<string, string> = {}): Promise<Outcome> {
  const agent = agentFor(client);
  return new Promise<Outcome>((resolve) => {
    const req = request(`${stack.envoyUrl}${path}`, { agent, headers, timeout: 15_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) h.set(k, Array.isArray(v) ? v.join(', ') : v);
        resolve({ reply: { status: res.statusCode ?? 0, headers: h, text: Buffer.concat(chunks).toString('utf8') }, error: null });
      });
      res.on('error', (error: NodeJS.ErrnoException) => resolve({ reply: null, error }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('request timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ reply: null, error }));
    req.end();
  }).finally(() => agent.destroy());
}

/** GET that must produce an HTTP reply. */
async function get(path: string, client: CertFiles | null, headers: Record<string, string> = {}): Promise<Reply> {
  const o = await tryGet(path, client, headers);
  if (o.error) throw new Error(`GET ${path}: no HTTP response: ${o.error.code ?? ''} ${o.error.message}`);
  return o.reply;
}

/** Sum of one listener SSL counter on the agents listener (Envoy admin stats). */
async function sslStat(name: string): Promise<number> {
  const port = new URL(stack.envoyUrl).port;
  const res = await fetch(`${stack.envoyAdminUrl}/stats?filter=${encodeURIComponent(`^listener\\.127\\.0\\.0\\.1_${port}\\.ssl\\.${name}$`)}`);
  const m = /: (\d+)\s*$/m.exec(await res.text());
  return m ? Number(m[1]) : 0;
}

/** The one audit record of `requestId` (the file sink writes asynchronously). */
async function auditOf(requestId: string): Promise<Record<string, unknown>> {
  const found = (): Record<string, unknown>[] => auditRecords(stack).filter((r) => r.request_id === requestId);
  await eventually(async () => found().length > 0, 5_000);
  const records = found();
  expect(records, `audit records for ${requestId}`).toHaveLength(1);
  return records[0]!;
}

const WEATHER = '/tools/weather/forecast?city=Oslo';
const TICKETS = '/tools/tickets/tenants/acme/tickets';
/** A client-forged XFCC header naming the reporter, as a proxy in front of Envoy would send it. */
const FORGED_XFCC = `By=${REPORTER_SPIFFE_ID};Hash=${'ab'.repeat(32)};URI=${REPORTER_SPIFFE_ID}`;

beforeAll(async () => {
  stack = await startStack({ tls: true });
});

afterAll(async () => {
  await stack?.stop();
});

describe('TLS-rendered envoy.yaml', () => {
  it('passes envoy --mode validate, and fails it when the trusted CA file is missing', async () => {
    const t = tlsOf(stack);
    const ports = { listener: await freePort(), admin: await freePort(), portcullis: await freePort(), upstream: await freePort() };
    const text = renderEnvoyConfig(ports, { channel: stack.channel, tls: { certChain: t.server.cert, privateKey: t.server.key, trustedCa: t.ca } });
    type Chain = { transport_socket?: { name: string; typed_config: Record<string, unknown> } };
    const listeners = (parse(text) as { static_resources: { listeners: { name: string; filter_chains: Chain[] }[] } }).static_resources.listeners;
    const chains = listeners.find((l) => l.name === 'agents')?.filter_chains ?? [];
    expect(chains).toHaveLength(1);
    expect(chains[0]?.transport_socket?.name).toBe('envoy.transport_sockets.tls');
    expect(chains[0]?.transport_socket?.typed_config).toMatchObject({
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
      require_client_certificate: true,
      common_tls_context: { validation_context: { trusted_ca: { filename: t.ca } } },
    });

    const validate = async (name: string, yaml: string): Promise<{ ok: boolean; output: string }> => {
      const path = join(stack.dir, name);
      writeFileSync(path, yaml);
      try {
        const { stdout, stderr } = await run(toolPath('envoy'), ['--mode', 'validate', '-c', path, '-l', 'error', '--disable-hot-restart'], { cwd: stack.dir, timeout: 60_000 });
        return { ok: true, output: stdout + stderr };
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string; message: string };
        return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}${e.message}` };
      }
    };
    const good = await validate('envoy-tls-validate.yaml', text);
    expect(good.output).toContain('OK');
    expect(good.ok).toBe(true);

    const missing = join(stack.dir, 'tls', 'no-such-ca.crt');
    const bad = await validate(
      'envoy-tls-broken.yaml',
      renderEnvoyConfig(ports, { channel: stack.channel, tls: { certChain: t.server.cert, privateKey: t.server.key, trustedCa: missing } }),
    );
    expect(bad.ok).toBe(false);
    expect(bad.output).toContain('no-such-ca.crt');
  });
});

describe('a client certificate identifies the agent', () => {
  it('the reporter certificate alone calls weather; the tool gets the injected key and the agent, the audit says mtls', async () => {
    const before = stack.tool.received.length;
    const r = await get(WEATHER, tlsOf(stack).clients.reporter);
    expect(r.status, r.text).toBe(200);
    expect(stack.tool.received.length).toBe(before + 1);
    const seen = stack.tool.received.at(-1)!;
    expect(seen.path).toBe('/weather/forecast?city=Oslo');
    expect(seen.headers['x-api-key']).toBe(secretValue(stack, 'secrets/weather-api-key'));
    expect(seen.headers['x-portcullis-agent']).toBe('reporter');
    expect(seen.headers['x-portcullis-tenant']).toBe('acme');
    expect(seen.headers['x-portcullis-user']).toBeUndefined();
    // The injected key went upstream only: the sample tool echoes headers, Envoy/ext_proc must not.
    expect(r.text).not.toContain(secretValue(stack, 'secrets/weather-api-key'));

    const rid = r.headers.get('x-request-id');
    expect(rid).toBeTruthy();
    const rec = await auditOf(rid!);
    expect(rec).toMatchObject({ agent_id: 'reporter', tenant_id: 'acme', user_id: null, auth_methods: ['mtls'], tool: 'weather', upstream_status: 200 });
    expect((rec.decision as Record<string, unknown>).allowed).toBe(true);
  });

  it('the reporter certificate over HTTP/2 (ALPN h2) is identified the same way', async () => {
    const t = tlsOf(stack);
    const session = connect(stack.envoyUrl, { ca: readFileSync(t.ca), cert: readFileSync(t.clients.reporter.cert), key: readFileSync(t.clients.reporter.key) });
    try {
      const { status, alpn } = await new Promise<{ status: number; alpn: string | false | undefined }>((resolve, reject) => {
        session.on('error', reject);
        const req = session.request({ [h2.HTTP2_HEADER_PATH]: WEATHER });
        req.on('response', (h) => {
          resolve({ status: Number(h[h2.HTTP2_HEADER_STATUS]), alpn: session.alpnProtocol });
          req.resume();
        });
        req.on('error', reject);
        req.end();
      });
      expect(alpn).toBe('h2');
      expect(status).toBe(200);
      expect(stack.tool.received.at(-1)?.headers['x-portcullis-agent']).toBe('reporter');
    } finally {
      session.close();
    }
  });

  it('the reporter certificate on tickets: 403, the agent is not bound to the tool', async () => {
    const before = stack.tool.received.length;
    const body = expectDenial(await get(TICKETS, tlsOf(stack).clients.reporter), 403, 'forbidden', 'agent.not_bound');
    expect(body.error.message).toMatch(/reporter/);
    expect(body.error.message).toMatch(/tickets/);
    expect(stack.tool.received.length).toBe(before);
    const rec = await auditOf(body.error.request_id!);
    expect(rec).toMatchObject({ agent_id: 'reporter', auth_methods: ['mtls'], tool: 'tickets', upstream_status: null });
    expect((rec.decision as Record<string, unknown>).rule).toBe('agent.not_bound');
  });

  it('a certificate and a JWT naming another agent do not belong together: 401', async () => {
    const helpdesk = await token(stack, { agent: 'helpdesk' });
    const before = stack.tool.received.length;
    const body = expectDenial(await get(WEATHER, tlsOf(stack).clients.reporter, { authorization: `Bearer ${helpdesk}` }), 401, 'unauthenticated');
    expect(body.error.message).toMatch(/disagree on the agent/);
    expect(stack.tool.received.length).toBe(before);
  });

  it('a valid certificate with an unknown SPIFFE id proves nothing: 401 identity.required', async () => {
    const before = stack.tool.received.length;
    const r = await get(WEATHER, tlsOf(stack).clients.stranger);
    const body = expectDenial(r, 401, 'unauthenticated', 'identity.required');
    expect(body.error.message).not.toContain(STRANGER_SPIFFE_ID);
    expect(stack.tool.received.length).toBe(before);
    expect(await auditOf(body.error.request_id!)).toMatchObject({ agent_id: null, auth_methods: [] });
  });
});

describe('the TLS handshake is the first gate', () => {
  it('a certificate from another CA (even naming the reporter), or none at all, gets no HTTP response', async () => {
    const before = stack.tool.received.length;
    const verifyErrors = await sslStat('fail_verify_error');
    const noCert = await sslStat('fail_verify_no_cert');

    const foreign = await tryGet(WEATHER, tlsOf(stack).clients.foreign);
    expect(foreign.reply, 'foreign CA got an HTTP response').toBeNull();
    // TLS 1.3: the client finishes its side first, then reads Envoy's alert (or, if its request
    // raced the close, a reset).
    expect(foreign.error?.code).toMatch(/^(ERR_SSL_TLSV1_ALERT_UNKNOWN_CA|ECONNRESET)$/);

    const anonymous = await tryGet(WEATHER, null);
    expect(anonymous.reply, 'no certificate got an HTTP response').toBeNull();
    expect(anonymous.error?.code).toMatch(/^(ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED|ECONNRESET)$/);

    // Plain HTTP to the TLS listener is not answered either.
    const plain = await fetch(stack.envoyUrl.replace(/^https:/, 'http:') + WEATHER, { signal: AbortSignal.timeout(5_000) }).then(
      (res) => res.status,
      () => null,
    );
    expect(plain).toBeNull();

    expect(stack.tool.received.length).toBe(before);
    // Envoy saw, and refused, exactly what was sent (proves the failures are the verification).
    expect(await eventually(async () => (await sslStat('fail_verify_error')) === verifyErrors + 1, 5_000)).toBe(true);
    expect(await eventually(async () => (await sslStat('fail_verify_no_cert')) === noCert + 1, 5_000)).toBe(true);
  });
});

describe('headers cannot impersonate a certificate', () => {
  it('the stranger certificate plus forged XFCC and x-portcullis-agent headers naming the reporter: still 401', async () => {
    const before = stack.tool.received.length;
    const r = await get(WEATHER, tlsOf(stack).clients.stranger, {
      'x-forwarded-client-cert': FORGED_XFCC,
      'x-portcullis-agent': 'reporter',
      'x-portcullis-tenant': 'acme',
    });
    expectDenial(r, 401, 'unauthenticated', 'identity.required');
    expect(stack.tool.received.length).toBe(before);
  });

  it('on an allowed call, a client-sent XFCC never reaches the tool and x-portcullis-agent is the verified one', async () => {
    const r = await get(WEATHER, tlsOf(stack).clients.reporter, {
      'x-forwarded-client-cert': `By=spiffe://demo.portcullis/agent/admin;URI=spiffe://demo.portcullis/agent/admin`,
      'x-portcullis-agent': 'admin',
      'x-portcullis-user': 'root',
    });
    expect(r.status, r.text).toBe(200);
    const h = stack.tool.received.at(-1)!.headers;
    // forward_client_cert_details defaults to SANITIZE: Envoy drops the header and adds none.
    expect(h['x-forwarded-client-cert']).toBeUndefined();
    expect(JSON.stringify(h)).not.toContain('agent/admin');
    expect(h['x-portcullis-agent']).toBe('reporter');
    expect(h['x-portcullis-user']).toBeUndefined();
  });
});

describe('portcullis crash', () => {
  it('SIGKILLed portcullis fails closed (503 unavailable), and calls succeed again after a restart', async () => {
    await stack.killPortcullis();
    const before = stack.tool.received.length;
    const down = await get(WEATHER, tlsOf(stack).clients.reporter);
    expectDenial(down, 503, 'unavailable');
    expect(stack.tool.received.length).toBe(before);

    await stack.startPortcullis();
    const up = await get(WEATHER, tlsOf(stack).clients.reporter);
    expect(up.status, up.text).toBe(200);
    expect(stack.tool.received.at(-1)?.headers['x-portcullis-agent']).toBe('reporter');
  });
});
