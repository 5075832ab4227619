import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateUpstreamTls, startStack, upstreamTlsSocket, type CertFiles, type Stack, type UpstreamTlsMaterial } from '../helpers/index.js';
import { call, expectDenial, secretValue, token } from './authz-support.js';

/**
 * Upstream TLS with SAN verification, as envoy/envoy.yaml documents it (the commented block on
 * tool_weather, uncommented by the harness), through the real Envoy: the genuine tool gets the
 * call and its credential; a server holding another service's certificate from the same CA, and
 * one with the right name from another CA, get no request at all, hence no credential.
 */

/** An HTTPS test tool that records every request it receives. */
interface TlsTool {
  readonly port: number;
  readonly received: { method: string; url: string; headers: Record<string, string | string[] | undefined> }[];
  /** TLS handshakes the server saw fail (the client refused our certificate). */
  handshakeErrors: number;
  close(): Promise<void>;
}

async function startTlsTool(cert: CertFiles): Promise<TlsTool> {
  const received: TlsTool['received'] = [];
  const server: Server = createServer({ cert: readFileSync(cert.cert), key: readFileSync(cert.key) }, (req, res) => {
    received.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } });
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: true, served_by: 'tls-tool' }));
    });
  });
  const tool: TlsTool = {
    port: 0,
    received,
    handshakeErrors: 0,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  server.on('tlsClientError', () => {
    tool.handshakeErrors += 1;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  (tool as { port: number }).port = (server.address() as AddressInfo).port;
  return tool;
}

type Json = Record<string, unknown>;

/** Points a cluster's endpoints at 127.0.0.1:port and gives it `socket` as transport_socket. */
function tlsCluster(cfg: Json, name: string, port: number, socket: Json): void {
  const clusters = (cfg.static_resources as { clusters: Json[] }).clusters;
  const cluster = clusters.find((c) => c.name === name);
  if (!cluster) throw new Error(`no cluster ${name}`);
  for (const group of (cluster.load_assignment as { endpoints: { lb_endpoints: { endpoint: { address: { socket_address: Json } } }[] }[] }).endpoints) {
    for (const lb of group.lb_endpoints) lb.endpoint.address.socket_address = { address: '127.0.0.1', port_value: port };
  }
  cluster.transport_socket = socket;
}

const SAN = { weather: 'weather.tools.test', tickets: 'tickets.tools.test', docs: 'docs.tools.test' };

let scratch: string;
let certs: UpstreamTlsMaterial;
let genuine: TlsTool;
let otherService: TlsTool;
let impostor: TlsTool;
let stack: Stack;
let alice: string;

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'portcullis-upstream-tls-'));
  certs = await generateUpstreamTls(scratch, Object.values(SAN));
  // tool_weather: the real weather service. tool_tickets: a squatter on the tickets address that
  // holds the weather service's (valid, same-CA) certificate. tool_docs: a squatter with a
  // certificate for the right name from a CA Envoy does not trust.
  genuine = await startTlsTool(certs.servers[SAN.weather] as CertFiles);
  otherService = await startTlsTool(certs.servers[SAN.weather] as CertFiles);
  impostor = await startTlsTool(certs.impostors[SAN.docs] as CertFiles);
  stack = await startStack({
    editEnvoy: (cfg) => {
      tlsCluster(cfg, 'tool_weather', genuine.port, upstreamTlsSocket('tool_weather', { ca: certs.ca, san: SAN.weather }));
      tlsCluster(cfg, 'tool_tickets', otherService.port, upstreamTlsSocket('tool_weather', { ca: certs.ca, san: SAN.tickets }));
      tlsCluster(cfg, 'tool_docs', impostor.port, upstreamTlsSocket('tool_weather', { ca: certs.ca, san: SAN.docs }));
    },
  });
  alice = await token(stack);
});

afterAll(async () => {
  await stack?.stop();
  await Promise.all([genuine?.close(), otherService?.close(), impostor?.close()]);
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('upstream TLS with SAN verification (the documented tool cluster block)', () => {
  it('the tool with the expected certificate receives the call and its injected credential', async () => {
    const r = await call(`${stack.envoyUrl}/tools/weather/forecast?city=Oslo`, { headers: { authorization: `Bearer ${alice}` } });
    expect(r.status, r.text).toBe(200);
    expect(JSON.parse(r.text)).toMatchObject({ served_by: 'tls-tool' });
    expect(genuine.received).toHaveLength(1);
    expect(genuine.received[0]?.url).toBe('/weather/forecast?city=Oslo');
    expect(genuine.received[0]?.headers['x-api-key']).toBe(secretValue(stack, 'secrets/weather-api-key'));
  });

  it('a server with a valid certificate for another name gets no request and no credential', async () => {
    const r = await call(`${stack.envoyUrl}/tools/tickets/tenants/acme/tickets`, { headers: { authorization: `Bearer ${alice}` } });
    const e = expectDenial(r, 503, 'unavailable');
    expect(e.error.message).toMatch(/tool is unavailable/);
    // Refused for its name: the certificate chains to the trusted CA but names another service.
    expect(String(e.error.details?.reason)).toMatch(/CERTIFICATE_VERIFY_FAILED.*SAN/);
    expect(otherService.received).toEqual([]);
    // It was reached (the handshake started) and refused by Envoy, not merely down.
    expect(otherService.handshakeErrors).toBeGreaterThan(0);
  });

  it('a server with the right name from an untrusted CA gets no request and no credential', async () => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' });
    const r = await call(`${stack.envoyUrl}/tools/docs/`, { method: 'POST', body, headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' } });
    expect(r.status, r.text).toBe(503);
    expect(r.text).toMatch(/CERTIFICATE_VERIFY_FAILED/);
    expect(impostor.received).toEqual([]);
    expect(impostor.handshakeErrors).toBeGreaterThan(0);
    const docsToken = stack.prepared.env.DOCS_TOKEN as string;
    expect(JSON.stringify(impostor.received)).not.toContain(docsToken);
  });
});
