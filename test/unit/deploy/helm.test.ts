import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { parseConfig } from '../../../src/config/load.js';
import { configSchema } from '../../../src/config/schema.js';
import { repoPath, toolPath } from '../../helpers/paths.js';
import { isCoreKind, istioProblems, kubernetesProblems, meshProtoFields } from './schemas.js';
import { deployTool, runCheck, yamlDocs, type Json } from './support.js';

/**
 * The Helm chart, rendered with its defaults and with everything enabled, is checked against the
 * real schemas (Kubernetes' through kubernetes-validate, strict; Istio's CRDs; the mesh config
 * proto; Envoy itself for the filter configs the EnvoyFilters insert), against portcullis' own
 * config loader, and for what a rollout depends on: probes on real admin paths, ports that match
 * the config, at least 2 replicas, a PDB, a drain that outlasts server.shutdown_grace_ms, non-root
 * read-only pods, and network access limited to Envoy and the scraper.
 */

const CHART = repoPath('deploy', 'helm', 'portcullis');
const MIN_KUBE = '1.27.0';
const NEWEST_KUBE = '1.37.0';
const NS = 'portcullis';
const tmp = mkdtempSync(join(tmpdir(), 'helm-check-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const EVERYTHING = {
  replicaCount: 3,
  serviceMonitor: { enabled: true },
  redis: { enabled: true },
  istio: { enabled: true, routes: [{ tool: 'docs', route: 'docs' }] },
  policyData: { tenants: { acme: { tier: 'gold' } } },
  secretEnv: [{ name: 'DOCS_TOKEN', secretKey: 'docs-token' }],
};

function helm(args: string[]): { status: number; output: string } {
  return runCheck(deployTool('helm'), args);
}

/** `helm template` of the chart with a values object; throws with helm's message on failure. */
function render(values: Json = {}, extra: string[] = []): Json[] {
  const file = join(tmp, `values-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, stringify(values));
  const res = helm(['template', 'pc', CHART, '--namespace', NS, '--kube-version', MIN_KUBE, '-f', file, ...extra]);
  if (res.status !== 0) throw new Error(`helm template failed: ${res.output}`);
  return yamlDocs(res.output);
}

function one(docs: Json[], kind: string, name?: string): Json {
  const found = docs.filter((d) => d.kind === kind && (name === undefined || (d.metadata as Json).name === name));
  expect(found, `${kind} ${name ?? ''}`).toHaveLength(1);
  return found[0]!;
}

type Container = { name: string; ports: { name: string; containerPort: number }[]; readinessProbe: Json; livenessProbe: Json; startupProbe?: Json; lifecycle: Json; resources: Json; securityContext: Json; volumeMounts: { name: string; mountPath: string }[] };
type PodSpec = { containers: Container[]; securityContext: Json; terminationGracePeriodSeconds: number; volumes: Json[] };

function podSpec(deployment: Json): PodSpec {
  return ((deployment.spec as Json).template as { spec: PodSpec }).spec;
}
function portcullisDeployment(docs: Json[]): Json {
  return one(docs, 'Deployment', 'pc-portcullis');
}
function renderedConfig(docs: Json[]): { text: string; cfg: Json } {
  const text = ((one(docs, 'ConfigMap', 'pc-portcullis-config').data as Record<string, string>)['portcullis.yaml'])!;
  return { text, cfg: parse(text) as Json };
}

let defaults: Json[];
let everything: Json[];
beforeAll(() => {
  defaults = render();
  everything = render(EVERYTHING, ['--api-versions', 'monitoring.coreos.com/v1/ServiceMonitor']);
});

describe('helm chart: schemas', () => {
  it('passes helm lint', () => {
    const file = join(tmp, 'everything.yaml');
    writeFileSync(file, stringify(EVERYTHING));
    for (const args of [[], ['-f', file]]) {
      const res = helm(['lint', '--strict', CHART, '--kube-version', MIN_KUBE, ...args]);
      expect(res.output).toContain('0 chart(s) failed');
      expect(res.status).toBe(0);
    }
  });

  it('renders only Kubernetes kinds that are valid (strict) for the oldest and the newest supported version', () => {
    for (const [name, docs] of [['defaults', defaults], ['everything', everything]] as const) {
      const core = docs.filter(isCoreKind);
      expect(core.length, name).toBeGreaterThanOrEqual(6);
      const file = join(tmp, `${name}-core.yaml`);
      // As JSON: re-serialised YAML 1.2 would leave `no` unquoted, which YAML 1.1 readers take for false.
      writeFileSync(file, core.map((d) => JSON.stringify(d)).join('\n---\n'));
      for (const v of [MIN_KUBE, NEWEST_KUBE]) expect(kubernetesProblems(file, v), `${name} @ ${v}`).toEqual([]);
    }
    // Every kind is either a Kubernetes one or a CRD checked below: nothing goes unvalidated.
    const kinds = new Set(everything.filter((d) => !isCoreKind(d)).map((d) => `${String(d.apiVersion)}/${String(d.kind)}`));
    expect([...kinds].sort()).toEqual(['monitoring.coreos.com/v1/ServiceMonitor', 'networking.istio.io/v1/DestinationRule', 'networking.istio.io/v1alpha3/EnvoyFilter', 'security.istio.io/v1/AuthorizationPolicy']);
  });

  it('the Kubernetes check catches a misspelt field and a wrong type', () => {
    const d = structuredClone(portcullisDeployment(defaults));
    (d.spec as Json).replica = 2;
    const typo = join(tmp, 'typo.yaml');
    writeFileSync(typo, JSON.stringify(d));
    expect(kubernetesProblems(typo, MIN_KUBE).join('\n')).toContain('replica');
    const e = structuredClone(portcullisDeployment(defaults));
    podSpec(e).containers[0]!.ports[0]!.containerPort = 'grpc' as unknown as number;
    const wrong = join(tmp, 'wrong.yaml');
    writeFileSync(wrong, JSON.stringify(e));
    expect(kubernetesProblems(wrong, MIN_KUBE).length).toBeGreaterThan(0);
  });

  it("renders Istio resources valid against Istio's CRD schemas, and that check catches mistakes", () => {
    const istio = everything.filter((d) => String(d.apiVersion).includes('istio.io'));
    expect(istio.length).toBe(5);
    for (const d of istio) expect(istioProblems(d), `${String(d.kind)} ${String((d.metadata as Json).name)}`).toEqual([]);
    const ap = structuredClone(one(everything, 'AuthorizationPolicy', 'pc-portcullis-tools'));
    (ap.spec as Json).action = 'ALLOW_ALL';
    expect(istioProblems(ap).length).toBeGreaterThan(0);
    const dr = structuredClone(one(everything, 'DestinationRule'));
    ((dr.spec as Json).trafficPolicy as Json).tlsMode = 'MUTUAL';
    expect(istioProblems(dr).join('\n')).toContain('tlsMode');
  });

  it('renders a mesh config fragment whose every key is a field of Istio\'s MeshConfig proto', () => {
    const mesh = parse(((one(everything, 'ConfigMap', 'pc-portcullis-istio-mesh').data as Record<string, string>)['mesh-config.yaml'])!) as Json;
    const checkKeys = (obj: Json, message: string): void => {
      const fields = meshProtoFields(message);
      for (const [k, v] of Object.entries(obj)) {
        expect(fields.has(k), `${message}.${k}`).toBe(true);
        const type = fields.get(k)!;
        if (typeof v === 'object' && v !== null && !Array.isArray(v) && /^[A-Z]/.test(type) && !type.startsWith('google.')) checkKeys(v as Json, type);
      }
    };
    expect(meshProtoFields('MeshConfig').get('extensionProviders')).toBe('ExtensionProvider');
    const providers = mesh.extensionProviders as Json[];
    expect(providers).toHaveLength(1);
    checkKeys(providers[0]!, 'ExtensionProvider');
    // The check itself refuses a key the proto does not have.
    expect(meshProtoFields('EnvoyExternalAuthorizationGrpcProvider').has('failureModeAllow')).toBe(false);

    const grpc = providers[0]!.envoyExtAuthzGrpc as Json;
    expect(grpc.service).toBe(`pc-portcullis.${NS}.svc.cluster.local`);
    expect(grpc.port).toBe(9191);
    expect(grpc.failOpen).toBe(false);
    expect(providers[0]!.name).toBe(((one(everything, 'AuthorizationPolicy', 'pc-portcullis-tools').spec as Json).provider as Json).name);
  });

  it('inserts ext_proc and the route_tool binding as configs Envoy itself accepts', () => {
    const procFilter = one(everything, 'EnvoyFilter', 'pc-portcullis-ext-proc');
    const routes = one(everything, 'EnvoyFilter', 'pc-portcullis-route-tools');
    const patch = ((procFilter.spec as Json).configPatches as { match: Json; patch: { operation: string; value: Json } }[])[0]!;
    expect(patch.patch.operation).toBe('INSERT_AFTER');
    expect(JSON.stringify(patch.match)).toContain('"subFilter":{"name":"envoy.filters.http.ext_authz"}');
    const extProc = patch.patch.value;
    const tc = extProc.typed_config as Json;
    expect(tc.failure_mode_allow).toBe(false);
    expect((tc.metadata_options as Json).forwarding_namespaces).toEqual({ untyped: ['envoy.filters.http.ext_authz'] });
    const cluster = ((tc.grpc_service as Json).envoy_grpc as Json).cluster_name as string;
    expect(cluster).toBe(`outbound|9191||pc-portcullis.${NS}.svc.cluster.local`);
    const routePatch = ((routes.spec as Json).configPatches as { match: Json; patch: { value: Json } }[])[0]!;
    expect(JSON.stringify(routePatch.match)).toContain('"route":{"name":"docs"}');
    const perRoute = routePatch.patch.value.typed_per_filter_config as Json;

    // A minimal gateway: ext_authz (as Istio's CUSTOM provider adds it), the inserted ext_proc,
    // and a route carrying the patched per-route config.
    const bootstrap = (perRouteConfig: Json, proc: Json): Json => ({
      static_resources: {
        listeners: [
          {
            name: 'gateway',
            address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
            filter_chains: [
              {
                filters: [
                  {
                    name: 'envoy.filters.network.http_connection_manager',
                    typed_config: {
                      '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                      stat_prefix: 'gw',
                      route_config: { virtual_hosts: [{ name: 'tools', domains: ['*'], routes: [{ name: 'docs', match: { prefix: '/tools/docs/' }, route: { cluster }, typed_per_filter_config: perRouteConfig }] }] },
                      http_filters: [
                        { name: 'envoy.filters.http.ext_authz', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz', grpc_service: { envoy_grpc: { cluster_name: cluster } }, transport_api_version: 'V3' } },
                        proc,
                        { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } },
                      ],
                    },
                  },
                ],
              },
            ],
          },
        ],
        clusters: [
          {
            name: cluster,
            type: 'STATIC',
            typed_extension_protocol_options: { 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': { '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions', explicit_http_config: { http2_protocol_options: {} } } },
            load_assignment: { cluster_name: cluster, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 9191 } } } }] }] },
          },
        ],
      },
    });
    const validate = (cfg: Json): { status: number; output: string } => {
      const file = join(tmp, `envoy-${Math.random().toString(36).slice(2)}.yaml`);
      writeFileSync(file, stringify(cfg));
      return runCheck(toolPath('envoy'), ['--mode', 'validate', '-c', file, '-l', 'error', '--disable-hot-restart']);
    };
    const ok = validate(bootstrap(perRoute, extProc));
    expect(ok.output).toContain('OK');
    expect(ok.status).toBe(0);
    // Envoy refuses a misspelt field in either config, so the check is real.
    const badProc = structuredClone(extProc);
    (badProc.typed_config as Json).failure_mode_allows = false;
    expect(validate(bootstrap(perRoute, badProc)).status).not.toBe(0);
    const badRoute = structuredClone(perRoute);
    ((badRoute['envoy.filters.http.ext_authz'] as Json).check_settings as Json).context_extension = { route_tool: 'docs' };
    expect(validate(bootstrap(badRoute, extProc)).status).not.toBe(0);
    expect(((perRoute['envoy.filters.http.ext_authz'] as Json).check_settings as Json).context_extensions).toEqual({ route_tool: 'docs' });
  }, 60_000);

  it('refuses misspelt or mistyped values instead of ignoring them (values.schema.json)', () => {
    for (const [values, key] of [
      [{ networkPolicy: { enable: false } }, 'enable'],
      [{ replicaCout: 3 }, 'replicaCout'],
      [{ ports: { grpc: '9191' } }, 'grpc'],
      [{ image: { repository: 'portcullis', tag: 'latest' } }, 'tag'],
      [{ istio: { routes: [{ tool: 'docs' }] } }, 'route'],
    ] as const) {
      expect(() => render(values as unknown as Json), JSON.stringify(values)).toThrow(new RegExp(`values don't meet the specifications[\\s\\S]*${key}`));
    }
  });

  it('renders the ServiceMonitor only when the cluster has its CRD, scraping the admin port with the admin token', () => {
    expect(render({ serviceMonitor: { enabled: true } }).some((d) => d.kind === 'ServiceMonitor')).toBe(false);
    const sm = one(everything, 'ServiceMonitor');
    const ep = ((sm.spec as Json).endpoints as Json[])[0]!;
    const svc = one(everything, 'Service', 'pc-portcullis');
    const adminPort = ((svc.spec as Json).ports as { name: string; port: number }[]).find((p) => p.name === ep.port);
    expect(adminPort?.port).toBe(9464);
    expect(ep.path).toBe('/metrics');
    expect(ep.bearerTokenSecret).toEqual({ name: 'portcullis-secrets', key: 'admin-token' });
  });
});

describe('helm chart: what the rollout depends on', () => {
  const adminSource = readFileSync(repoPath('src', 'server', 'admin.ts'), 'utf8');
  const serverDefaults = (configSchema.properties.server as { properties: Record<string, { default?: unknown }> }).properties;

  it('renders a config portcullis itself accepts (schema, semantics, an authenticated gRPC channel)', () => {
    for (const docs of [defaults, everything]) {
      const { text } = renderedConfig(docs);
      const loaded = parseConfig(text, '/etc/portcullis/portcullis.yaml', { requireChannel: true });
      expect(loaded.server.grpc_tls?.client_sans.length).toBeGreaterThan(0);
      expect(loaded.server.admin_token).toBeDefined();
      if (docs === everything) expect(loaded.store).toMatchObject({ kind: 'redis', redis: { url: 'redis://pc-portcullis-redis:6379' } });
    }
    // The chart owns what the pod spec depends on: a config that moves the ports or binds admin
    // to loopback would leave the probes and the Service pointing nowhere.
    const own = renderedConfig(render({ config: { server: { grpc_port: 1234, admin_address: '127.0.0.1', admin_port: 1, grpc_socket_mode: '0600' } } })).cfg.server as Json;
    expect(own).toMatchObject({ grpc_port: 9191, admin_address: '0.0.0.0', admin_port: 9464, grpc_socket_mode: '0600' });
    expect(renderedConfig(everything).cfg.policy).toEqual({ bundle: '/app/policies/build/bundle.tar.gz', data: '/etc/portcullis/data.json' });
    expect(JSON.parse(((one(everything, 'ConfigMap', 'pc-portcullis-config').data as Record<string, string>)['data.json'])!)).toEqual(EVERYTHING.policyData);
  });

  it('probes real admin paths on the admin port, and every port agrees with the config and the Service', () => {
    for (const docs of [defaults, everything]) {
      const { cfg } = renderedConfig(docs);
      const server = cfg.server as { grpc_port: number; admin_port: number };
      expect([server.grpc_port, server.admin_port]).toEqual([serverDefaults.grpc_port!.default, serverDefaults.admin_port!.default]);
      const c = podSpec(portcullisDeployment(docs)).containers[0]!;
      const port = (name: string): number | undefined => c.ports.find((p) => p.name === name)?.containerPort;
      expect(port('grpc')).toBe(server.grpc_port);
      expect(port('admin')).toBe(server.admin_port);
      for (const [probe, path] of [[c.readinessProbe, '/readyz'], [c.livenessProbe, '/healthz'], [c.startupProbe, '/readyz']] as const) {
        const get = (probe as { httpGet: { path: string; port: string } }).httpGet;
        expect(get).toEqual({ path, port: 'admin' });
        expect(adminSource).toContain(`url === '${get.path}'`);
      }
      const svc = one(docs, 'Service', 'pc-portcullis');
      const svcPorts = (svc.spec as Json).ports as { name: string; port: number; targetPort: string; appProtocol?: string }[];
      expect(svcPorts.map((p) => [p.port, p.targetPort])).toEqual([[server.grpc_port, 'grpc'], [server.admin_port, 'admin']]);
      expect(svcPorts[0]!.appProtocol).toBe('grpc');
      expect((svc.spec as Json).selector).toEqual(((portcullisDeployment(docs).spec as Json).selector as Json).matchLabels);
    }
  });

  it('runs at least 2 replicas under a PodDisruptionBudget, and refuses a single replica', () => {
    for (const docs of [defaults, everything]) {
      const d = portcullisDeployment(docs);
      const replicas = (d.spec as Json).replicas as number;
      expect(replicas).toBeGreaterThanOrEqual(2);
      const pdb = one(docs, 'PodDisruptionBudget').spec as { minAvailable: number; selector: Json };
      expect(pdb.selector).toEqual((d.spec as Json).selector);
      expect(pdb.minAvailable).toBeGreaterThanOrEqual(1);
      expect(pdb.minAvailable).toBeLessThan(replicas);
      expect(((d.spec as Json).strategy as Json).rollingUpdate).toEqual({ maxUnavailable: 0, maxSurge: 1 });
    }
    expect(() => render({ replicaCount: 1 })).toThrow(/'\/replicaCount': minimum: got 1, want 2/);
  });

  it('drains for longer than server.shutdown_grace_ms after a preStop wait', () => {
    for (const values of [{}, { shutdownGraceMs: 45_500, preStopSeconds: 8 }]) {
      const docs = render(values);
      const spec = podSpec(portcullisDeployment(docs));
      const grace = (renderedConfig(docs).cfg.server as { shutdown_grace_ms: number }).shutdown_grace_ms;
      expect(grace).toBe((values as { shutdownGraceMs?: number }).shutdownGraceMs ?? 10_000);
      const cmd = ((spec.containers[0]!.lifecycle.preStop as Json).exec as { command: string[] }).command;
      expect(cmd[0]).toBe('sleep');
      const preStop = Number(cmd[1]);
      expect(preStop).toBe((values as { preStopSeconds?: number }).preStopSeconds ?? 5);
      expect(spec.terminationGracePeriodSeconds).toBeGreaterThan(preStop + grace / 1000);
    }
  });

  it('runs non-root on a read-only root filesystem with resources set, and mounts secrets where the config reads them', () => {
    for (const docs of [defaults, everything]) {
      for (const d of docs.filter((x) => x.kind === 'Deployment')) {
        const spec = podSpec(d);
        expect(spec.securityContext.runAsNonRoot, String((d.metadata as Json).name)).toBe(true);
        expect(spec.securityContext.runAsUser).toBeGreaterThan(0);
        for (const c of spec.containers) {
          expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
          expect((c.resources.requests as Json).memory).toBeDefined();
          expect((c.resources.limits as Json).memory).toBeDefined();
        }
      }
      // Secrets come from Secrets the operator creates, never from values rendered into the chart.
      expect(docs.some((x) => x.kind === 'Secret')).toBe(false);
      const c = podSpec(portcullisDeployment(docs)).containers[0]!;
      const mounts = new Map(c.volumeMounts.map((m) => [m.name, m.mountPath]));
      const server = renderedConfig(docs).cfg.server as { handoff_key: { file: string }; admin_token: { file: string }; grpc_tls: Record<string, string> };
      expect(server.handoff_key.file.startsWith(`${mounts.get('secrets')}/`)).toBe(true);
      expect(server.admin_token.file.startsWith(`${mounts.get('secrets')}/`)).toBe(true);
      for (const k of ['ca', 'cert', 'key']) expect(server.grpc_tls[k]!.startsWith(`${mounts.get('grpc-tls')}/`), k).toBe(true);
      expect(mounts.get('config')).toBe('/etc/portcullis');
    }
  });

  it("admits only Envoy's pods to the gRPC port, only the scraper to the admin port, only portcullis to Redis", () => {
    const np = one(everything, 'NetworkPolicy', 'pc-portcullis').spec as { podSelector: { matchLabels: Json }; policyTypes: string[]; ingress: { from: Json[]; ports: { port: number }[] }[] };
    expect(np.podSelector.matchLabels).toEqual(((portcullisDeployment(everything).spec as Json).selector as Json).matchLabels);
    expect(np.policyTypes).toEqual(['Ingress']);
    expect(np.ingress.map((r) => r.ports.map((p) => p.port))).toEqual([[9191], [9464]]);
    expect(np.ingress[0]!.from).toEqual([{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'istio-system' } }, podSelector: { matchLabels: { istio: 'ingressgateway' } } }]);
    expect(JSON.stringify(np.ingress[1]!.from)).toContain('monitoring');
    for (const r of np.ingress) for (const f of r.from) expect(Object.keys(f).sort()).toEqual(['namespaceSelector', 'podSelector']);
    const redisNp = one(everything, 'NetworkPolicy', 'pc-portcullis-redis').spec as { podSelector: { matchLabels: Json }; ingress: { from: Json[] }[] };
    expect(redisNp.podSelector.matchLabels).toEqual(((one(everything, 'Deployment', 'pc-portcullis-redis').spec as Json).selector as Json).matchLabels);
    expect(redisNp.ingress[0]!.from).toEqual([{ podSelector: { matchLabels: np.podSelector.matchLabels } }]);
    // The store URL names the Redis Service.
    const redisSvc = one(everything, 'Service', 'pc-portcullis-redis');
    expect(((renderedConfig(everything).cfg.store as Json).redis as Json).url).toBe(`redis://${String((redisSvc.metadata as Json).name)}:6379`);
  });

  it('wires Istio: CUSTOM on the tool paths, a DENY for the rest, mTLS to portcullis, the gRPC port out of sidecar capture', () => {
    const custom = one(everything, 'AuthorizationPolicy', 'pc-portcullis-tools').spec as Json;
    expect(custom.action).toBe('CUSTOM');
    expect(JSON.stringify(custom.rules)).toContain('"paths":["/tools/*"]');
    const deny = one(everything, 'AuthorizationPolicy', 'pc-portcullis-deny-non-tools').spec as Json;
    expect(deny.action).toBe('DENY');
    expect(JSON.stringify(deny.rules)).toContain('"notPaths":["/tools/*"]');
    const dr = one(everything, 'DestinationRule').spec as { host: string; trafficPolicy: { connectionPool: Json; portLevelSettings: { port: { number: number }; tls: Json }[] } };
    expect(dr.host).toBe(`pc-portcullis.${NS}.svc.cluster.local`);
    expect(dr.trafficPolicy.portLevelSettings[0]!.port.number).toBe(9191);
    expect(dr.trafficPolicy.portLevelSettings[0]!.tls).toMatchObject({ mode: 'MUTUAL', subjectAltNames: ['spiffe://cluster.local/ns/portcullis/sa/portcullis'] });
    expect((dr.trafficPolicy.connectionPool.http as Json).maxRequestsPerConnection).toBe(500);
    expect((dr.trafficPolicy as unknown as { outlierDetection: Json }).outlierDetection).toMatchObject({ splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 3, consecutive5xxErrors: 0, consecutiveGatewayErrors: 0 });
    const annotations = ((portcullisDeployment(everything).spec as Json).template as { metadata: { annotations: Record<string, string> } }).metadata.annotations;
    expect(annotations['traffic.sidecar.istio.io/excludeInboundPorts']).toBe('9191');
    // A route bound to a tool the config does not have, or no tool paths at all, is refused.
    expect(() => render({ istio: { enabled: true, routes: [{ tool: 'nope', route: 'docs' }] } })).toThrow(/tool "nope" is not in config.tools/);
    expect(() => render({ istio: { enabled: true, paths: [] } })).toThrow(/istio.paths must name the tool paths/);
    // Without istio.enabled nothing of Istio is rendered.
    expect(defaults.some((d) => String(d.apiVersion).includes('istio.io'))).toBe(false);
  });
});

describe('static manifests in envoy/k8s and envoy/istio', () => {
  it('are valid against the Kubernetes and Istio schemas', () => {
    const k8s = join(tmp, 'k8s.yaml');
    writeFileSync(k8s, readFileSync(repoPath('envoy', 'k8s', 'portcullis.yaml'), 'utf8'));
    expect(kubernetesProblems(k8s, MIN_KUBE)).toEqual([]);
    const files = readdirSync(repoPath('envoy', 'istio')).filter((f) => f.endsWith('.yaml') && f !== 'mesh-config.yaml');
    expect(files.length).toBe(4);
    for (const f of files) {
      for (const d of yamlDocs(readFileSync(repoPath('envoy', 'istio', f), 'utf8'))) expect(istioProblems(d), f).toEqual([]);
    }
    // The plain files say what the chart renders, for the same names.
    const chart = new Map(everything.filter((d) => String(d.apiVersion).includes('istio.io')).map((d) => [`${String(d.kind)}/${String((d.metadata as Json).name).replace(/^pc-/, '')}`, d.spec]));
    for (const f of files) {
      for (const d of yamlDocs(readFileSync(repoPath('envoy', 'istio', f), 'utf8'))) {
        const key = `${String(d.kind)}/${String((d.metadata as Json).name)}`;
        expect(chart.has(key), key).toBe(true);
        const rendered = JSON.stringify(chart.get(key)).replaceAll(`pc-portcullis.${NS}.svc`, 'portcullis.portcullis.svc');
        expect(JSON.parse(rendered), key).toEqual(d.spec);
      }
    }
    const mesh = yamlDocs(readFileSync(repoPath('envoy', 'istio', 'mesh-config.yaml'), 'utf8'))[0]!.meshConfig as { extensionProviders: Json[] };
    const fields = meshProtoFields('EnvoyExternalAuthorizationGrpcProvider');
    for (const k of Object.keys(mesh.extensionProviders[0]!.envoyExtAuthzGrpc as Json)) expect(fields.has(k), k).toBe(true);
    const fragment = ((one(everything, 'ConfigMap', 'pc-portcullis-istio-mesh').data as Record<string, string>)['mesh-config.yaml'])!;
    expect(parse(fragment.replaceAll(`pc-portcullis.${NS}.svc`, 'portcullis.portcullis.svc'))).toEqual({ extensionProviders: mesh.extensionProviders });
  });
});
