import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCa, makeLeaf } from '../../src/demo/pki.js';
import { parse, stringify } from 'yaml';
import { freePort, loadEnvoyConfig, renderEnvoyConfig, repoPath, toolPath } from '../helpers/index.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'portcullis-envoy-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
// The shipped file reads the demo's channel certificates relative to where Envoy runs (.demo/tls/).
beforeAll(async () => {
  const tls = join(dir, '.demo', 'tls');
  const ca = await makeCa(tls, 'ca');
  await makeLeaf(tls, 'envoy', ca, 'clientAuth', 'URI:spiffe://demo.portcullis/envoy');
});

type Json = Record<string, unknown>;

/** `envoy --mode validate`; resolves with the exit status and output instead of throwing. */
async function validate(configPath: string): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout, stderr } = await run(toolPath('envoy'), ['--mode', 'validate', '-c', configPath, '-l', 'error', '--disable-hot-restart'], {
      cwd: dir,
      timeout: 60_000,
    });
    return { ok: true, output: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}${e.message}` };
  }
}

function write(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** Follows mapping keys and `name`-matched list items: at(cfg, 'static_resources', 'clusters', 'portcullis'). */
function at(node: unknown, ...keys: string[]): Json {
  let cur: unknown = node;
  for (const k of keys) {
    cur = Array.isArray(cur) ? cur.find((item) => (item as Json).name === k) : (cur as Json)[k];
    if (cur === undefined) throw new Error(`missing ${keys.join('.')} at ${k}`);
  }
  return cur as Json;
}

function socketOf(endpointOwner: Json): Json {
  const la = endpointOwner.load_assignment as { endpoints: { lb_endpoints: { endpoint: { address: { socket_address: Json } } }[] }[] };
  return la.endpoints[0]!.lb_endpoints[0]!.endpoint.address.socket_address;
}

describe('envoy/envoy.yaml', () => {
  it('validates as is (native defaults)', async () => {
    const r = await validate(repoPath('envoy', 'envoy.yaml'));
    expect(r.output).toContain('OK');
    expect(r.ok).toBe(true);
  });

  it('validates after rendering with test ports, which land on the named items', async () => {
    const ports = { listener: await freePort(), admin: await freePort(), portcullis: await freePort(), upstream: await freePort() };
    const text = renderEnvoyConfig(ports);
    const cfg = parse(text) as Json;
    expect(at(cfg, 'admin', 'address', 'socket_address').port_value).toBe(ports.admin);
    expect(at(cfg, 'static_resources', 'listeners', 'agents', 'address', 'socket_address').port_value).toBe(ports.listener);
    expect(socketOf(at(cfg, 'static_resources', 'clusters', 'portcullis')).port_value).toBe(ports.portcullis);
    for (const tool of ['tool_weather', 'tool_tickets', 'tool_docs']) {
      const sock = socketOf(at(cfg, 'static_resources', 'clusters', tool));
      expect(sock).toEqual({ address: '127.0.0.1', port_value: ports.upstream });
    }
    const r = await validate(write('rendered.yaml', text));
    expect(r.output).toContain('OK');
    expect(r.ok).toBe(true);
  });

  it('fails validation for a broken config (the check can fail)', async () => {
    const cfg = loadEnvoyConfig();
    // Route a tool to a cluster that does not exist: validate_clusters must reject it.
    const hcm = at(cfg, 'static_resources', 'listeners', 'agents', 'filter_chains');
    const typed = ((hcm as unknown as Json[])[0]!.filters as Json[])[0]!.typed_config as Json;
    const routes = at(typed, 'route_config', 'virtual_hosts', 'tools', 'routes', 'tickets');
    (routes.route as Json).cluster = 'tool_does_not_exist';
    const r = await validate(write('broken.yaml', stringify(cfg, { aliasDuplicateObjects: false })));
    expect(r.ok).toBe(false);
    expect(r.output).toMatch(/tool_does_not_exist/);
  });

  it('fails closed and never lets unknown paths reach an upstream', () => {
    const cfg = loadEnvoyConfig();
    const hcm = ((at(cfg, 'static_resources', 'listeners', 'agents', 'filter_chains') as unknown as Json[])[0]!.filters as Json[])[0]!
      .typed_config as Json;
    const filters = hcm.http_filters as Json[];
    expect(filters.map((f) => f.name)).toEqual(['envoy.filters.http.ext_authz', 'envoy.filters.http.ext_proc', 'envoy.filters.http.router']);
    const authz = filters[0]!.typed_config as Json;
    const proc = filters[1]!.typed_config as Json;
    // ext_proc streams are reset, not half-closed: Envoy crashes at the end of long exchanges with
    // graceful close (test/e2e/long-exchange.test.ts). Resets stay under Node's rapid-reset budget
    // because each connection to portcullis is retired after a bounded number of streams.
    const layers = (cfg.layered_runtime as Json).layers as Json[];
    const graceful = layers.map((l) => (l.static_layer as Json | undefined)?.['envoy.reloadable_features.ext_proc_graceful_grpc_close']);
    expect(graceful).toContain(false);
    expect(graceful).not.toContain(true);
    const portcullisHttp = (at(cfg, 'static_resources', 'clusters', 'portcullis').typed_extension_protocol_options as Json)['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'] as Json;
    const perConnection = (portcullisHttp.common_http_protocol_options as Json | undefined)?.max_requests_per_connection;
    expect(typeof perConnection).toBe('number');
    // nghttp2's default burst is 1000 resets per connection: keep at least a 2x margin.
    expect(perConnection as number).toBeLessThanOrEqual(500);
    // A dead replica is ejected on connection failures only (test/e2e/replicas.test.ts), never on
    // the gRPC errors portcullis answers on purpose, which an agent could provoke.
    const outlier = at(cfg, 'static_resources', 'clusters', 'portcullis').outlier_detection as Json;
    expect(outlier).toMatchObject({ split_external_local_origin_errors: true, enforcing_consecutive_local_origin_failure: 100, enforcing_consecutive_5xx: 0, enforcing_consecutive_gateway_failure: 0, enforcing_success_rate: 0, enforcing_local_origin_success_rate: 0 });
    expect(outlier.consecutive_local_origin_failure as number).toBeLessThanOrEqual(5);
    expect(proc.failure_mode_allow).toBe(false);
    expect(proc.allow_mode_override).toBe(true);
    expect(proc.message_timeout).toMatch(/^\d+(\.\d+)?s$/);
    expect(proc.metadata_options).toEqual({ forwarding_namespaces: { untyped: ['envoy.filters.http.ext_authz'] } });
    // Only headers by default: bodies are switched on per request by mode_override.
    expect(proc.processing_mode).toMatchObject({ request_header_mode: 'SEND', response_header_mode: 'SKIP', request_body_mode: 'NONE', response_body_mode: 'NONE' });
    expect(authz.failure_mode_allow).toBe(false);
    expect(authz.status_on_error).toEqual({ code: 'ServiceUnavailable' });
    expect(authz.with_request_body).toEqual({ max_request_bytes: 65536, allow_partial_message: true, pack_as_bytes: true });
    const routes = at(hcm, 'route_config', 'virtual_hosts', 'tools', 'routes') as unknown as Json[];
    const last = routes[routes.length - 1]!;
    expect(last.match).toEqual({ prefix: '/' });
    expect((last.direct_response as Json).status).toBe(404);
    const body = JSON.parse(((last.direct_response as Json).body as Json).inline_string as string) as { error: Json };
    expect(body.error.type).toBe('unknown_tool');
    for (const r of routes.slice(0, -1)) expect(String((r.match as Json).prefix)).toMatch(/^\/tools\/[a-z]+\/$/);
  });

  it('keeps long MCP streams open on idle timeouts, not a fixed route timeout', () => {
    const cfg = loadEnvoyConfig();
    const hcm = ((at(cfg, 'static_resources', 'listeners', 'agents', 'filter_chains') as unknown as Json[])[0]!.filters as Json[])[0]!
      .typed_config as Json;
    const docs = at(hcm, 'route_config', 'virtual_hosts', 'tools', 'routes', 'docs').route as Json;
    expect(docs.timeout).toBe('0s');
    expect(String(docs.idle_timeout)).toMatch(/^\d+s$/);
    expect(Number.parseInt(String(docs.idle_timeout), 10)).toBeGreaterThanOrEqual(120);
    expect((docs.retry_policy as Json).per_try_timeout).toBeUndefined();
  });

  it("traces with OpenTelemetry to the otel_collector cluster and drops an agent's tracestate before tracing reads it", () => {
    const cfg = loadEnvoyConfig();
    const hcm = ((at(cfg, 'static_resources', 'listeners', 'agents', 'filter_chains') as unknown as Json[])[0]!.filters as Json[])[0]!
      .typed_config as Json;
    const provider = (hcm.tracing as Json).provider as Json;
    expect(provider.name).toBe('envoy.tracers.opentelemetry');
    const uri = ((provider.typed_config as Json).http_service as Json).http_uri as Json;
    expect(uri.cluster).toBe('otel_collector');
    expect(((cfg.static_resources as Json).clusters as Json[]).some((c) => c.name === 'otel_collector')).toBe(true);
    const early = (hcm.early_header_mutation_extensions as Json[]).flatMap((e) => ((e.typed_config as Json).mutations as Json[]).map((m) => m.remove));
    expect(early).toContain('tracestate');
  });

  it('sheds load through the overload manager before memory runs out', () => {
    const om = loadEnvoyConfig().overload_manager as Json;
    const monitors = (om.resource_monitors as Json[]).map((m) => m.name);
    expect(monitors).toEqual(expect.arrayContaining(['envoy.resource_monitors.fixed_heap', 'envoy.resource_monitors.global_downstream_max_connections']));
    const actions = new Map((om.actions as Json[]).map((a) => [a.name, a]));
    for (const name of ['envoy.overload_actions.shrink_heap', 'envoy.overload_actions.stop_accepting_requests']) {
      const triggers = (actions.get(name)?.triggers as Json[] | undefined) ?? [];
      expect(triggers.map((t) => t.name), name).toContain('envoy.resource_monitors.fixed_heap');
    }
  });
});
