import { readFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { repoPath } from './paths.js';

/** Ports a test stack binds; every address is 127.0.0.1. */
export interface EnvoyPorts {
  listener: number;
  admin: number;
  portcullis: number;
  upstream: number;
}

/** PEM files for a TLS listener that requires client certificates (mTLS agents). */
export interface ListenerTls {
  /** Server certificate chain Envoy presents. */
  certChain: string;
  /** Its private key. */
  privateKey: string;
  /** CA bundle client certificates must chain to. */
  trustedCa: string;
}

/**
 * How Envoy reaches portcullis: mTLS with the given files (absolute paths) and portcullis' SAN,
 * or a unix socket (Envoy `pipe` address, no transport socket).
 */
export type PortcullisChannel =
  | { kind: 'mtls'; ca: string; cert: string; key: string; serverSan: string }
  | { kind: 'unix'; path: string }
  /** Loopback plaintext: only to measure the unauthenticated baseline (benchmarks), never shipped. */
  | { kind: 'plaintext' };

/** Optional changes {@link renderEnvoyConfig} makes besides the ports. */
export interface RenderOptions {
  /** Terminate TLS on the `agents` listener and require a client certificate signed by `trustedCa`. */
  tls?: ListenerTls;
  /**
   * The channel to portcullis. Without it the file's own settings stay (mTLS with files relative
   * to the directory Envoy runs in).
   */
  channel?: PortcullisChannel;
  /** Edits the parsed envoy.yaml (plain object) after the ports are set, e.g. a route a test mis-edits on purpose. */
  edit?: (cfg: Record<string, unknown>) => void;
}

type Json = Record<string, unknown>;

const LOOPBACK = '127.0.0.1';
/** Listener that agents call. */
const LISTENER_NAME = 'agents';
/** Cluster that serves ext_authz / ext_proc. */
const PORTCULLIS_CLUSTER = 'portcullis';
/** Tool clusters are named `tool_<name>`; all point at the sample tool in tests. */
const TOOL_CLUSTER_PREFIX = 'tool_';

function obj(v: unknown, where: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`envoy.yaml: ${where} is not a mapping`);
  return v as Json;
}

function list(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) throw new Error(`envoy.yaml: ${where} is not a list`);
  return v;
}

function setSocket(address: unknown, port: number, where: string): void {
  const socket = obj(obj(address, where).socket_address, `${where}.socket_address`);
  socket.address = LOOPBACK;
  socket.port_value = port;
}

/** Points every endpoint of a cluster at 127.0.0.1:`port`. */
function setClusterPort(cluster: Json, port: number): void {
  const name = String(cluster.name);
  const endpoints = list(obj(cluster.load_assignment, `${name}.load_assignment`).endpoints, `${name}.endpoints`);
  for (const group of endpoints) {
    for (const lb of list(obj(group, `${name}.endpoints[]`).lb_endpoints, `${name}.lb_endpoints`)) {
      const endpoint = obj(obj(lb, `${name}.lb_endpoints[]`).endpoint, `${name}.endpoint`);
      setSocket(endpoint.address, port, `${name}.endpoint.address`);
    }
  }
}

/**
 * The DownstreamTlsContext envoy/README.md describes for mTLS agents. Envoy then reports the client
 * certificate's URI SAN as `source.principal` to ext_authz.
 */
function downstreamTls(tls: ListenerTls): Json {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
      require_client_certificate: true,
      common_tls_context: {
        tls_certificates: [{ certificate_chain: { filename: tls.certChain }, private_key: { filename: tls.privateKey } }],
        validation_context: { trusted_ca: { filename: tls.trustedCa } },
        // The HCM codec is AUTO: offer both so HTTP/2 agents negotiate h2 over TLS.
        alpn_protocols: ['h2', 'http/1.1'],
      },
    },
  };
}

/**
 * Rewrites the `portcullis` cluster for a channel: the UpstreamTlsContext's certificate, key, CA
 * and pinned SAN for mTLS; for a unix socket a `pipe` endpoint and no transport socket.
 */
function setChannel(cluster: Json, channel: PortcullisChannel): void {
  if (channel.kind === 'plaintext') {
    delete cluster.transport_socket;
    return;
  }
  if (channel.kind === 'unix') {
    delete cluster.transport_socket;
    const endpoints = list(obj(cluster.load_assignment, 'portcullis.load_assignment').endpoints, 'portcullis.endpoints');
    for (const group of endpoints) {
      for (const lb of list(obj(group, 'portcullis.endpoints[]').lb_endpoints, 'portcullis.lb_endpoints')) {
        obj(obj(lb, 'portcullis.lb_endpoints[]').endpoint, 'portcullis.endpoint').address = { pipe: { path: channel.path } };
      }
    }
    return;
  }
  const socket = obj(cluster.transport_socket, 'portcullis.transport_socket');
  const ctx = obj(obj(socket.typed_config, 'portcullis.transport_socket.typed_config').common_tls_context, 'portcullis common_tls_context');
  ctx.tls_certificates = [{ certificate_chain: { filename: channel.cert }, private_key: { filename: channel.key } }];
  const validation = obj(ctx.validation_context, 'portcullis validation_context');
  validation.trusted_ca = { filename: channel.ca };
  validation.match_typed_subject_alt_names = [{ san_type: 'URI', matcher: { exact: channel.serverSan } }];
}

/** envoy/envoy.yaml as a plain object. */
export function loadEnvoyConfig(): Json {
  return obj(parse(readFileSync(repoPath('envoy', 'envoy.yaml'), 'utf8')), 'document');
}

/**
 * Points the endpoints of cluster `name` at 127.0.0.1:`port` in a parsed envoy.yaml (for an
 * `editEnvoy` callback): a test that runs its own upstream for one tool (an MCP server made
 * with the official SDK, say) while the other tools keep the sample tool.
 */
export function pointCluster(cfg: Json, name: string, port: number): void {
  const resources = obj(cfg.static_resources, 'static_resources');
  const cluster = list(resources.clusters, 'clusters').map((c) => obj(c, 'clusters[]')).find((c) => c.name === name);
  if (!cluster) throw new Error(`envoy.yaml: no cluster named "${name}"`);
  setClusterPort(cluster, port);
}

/**
 * envoy/envoy.yaml with its ports replaced for a test stack. Items are found by name (admin,
 * listener `agents`, cluster `portcullis`, clusters `tool_*`), not by text substitution, and a
 * missing item is an error so the harness cannot silently test a different topology. With
 * `opts.tls` the `agents` listener terminates TLS and requires a client certificate; with
 * `opts.channel` the `portcullis` cluster uses the given mTLS files or unix socket.
 */
export function renderEnvoyConfig(ports: EnvoyPorts, opts: RenderOptions = {}): string {
  const cfg = loadEnvoyConfig();
  setSocket(obj(cfg.admin, 'admin').address, ports.admin, 'admin.address');

  const resources = obj(cfg.static_resources, 'static_resources');
  const listeners = list(resources.listeners, 'listeners').map((l) => obj(l, 'listeners[]'));
  const listener = listeners.find((l) => l.name === LISTENER_NAME);
  if (!listener) throw new Error(`envoy.yaml: no listener named "${LISTENER_NAME}"`);
  setSocket(listener.address, ports.listener, `listener ${LISTENER_NAME}`);
  if (opts.tls) {
    const chains = list(listener.filter_chains, `listener ${LISTENER_NAME}.filter_chains`);
    if (chains.length === 0) throw new Error(`envoy.yaml: listener "${LISTENER_NAME}" has no filter chain`);
    // Replaces any transport_socket the file may carry: the test CA must be the one that decides.
    for (const chain of chains) obj(chain, `listener ${LISTENER_NAME}.filter_chains[]`).transport_socket = downstreamTls(opts.tls);
  }

  const clusters = list(resources.clusters, 'clusters').map((c) => obj(c, 'clusters[]'));
  const portcullis = clusters.find((c) => c.name === PORTCULLIS_CLUSTER);
  if (!portcullis) throw new Error(`envoy.yaml: no cluster named "${PORTCULLIS_CLUSTER}"`);
  if (opts.channel?.kind !== 'unix') setClusterPort(portcullis, ports.portcullis);
  if (opts.channel) setChannel(portcullis, opts.channel);
  const tools = clusters.filter((c) => typeof c.name === 'string' && c.name.startsWith(TOOL_CLUSTER_PREFIX));
  if (tools.length === 0) throw new Error(`envoy.yaml: no "${TOOL_CLUSTER_PREFIX}*" clusters`);
  for (const c of tools) setClusterPort(c, ports.upstream);
  opts.edit?.(cfg);

  // Anchored blocks are written out in full so the result reads like the source file's meaning.
  return stringify(cfg, { aliasDuplicateObjects: false, lineWidth: 0 });
}

/**
 * Makes the `portcullis` cluster pick a replica at random per stream (an `editEnvoy` callback).
 * Checks and ext_proc streams share the cluster: round robin could pair every Check with one
 * replica, so a test of state shared by replicas would prove nothing; random spreads them.
 */
export function spreadOverReplicas(cfg: Json): void {
  const clusters = (cfg.static_resources as { clusters: { name: string; lb_policy?: string }[] }).clusters;
  const portcullis = clusters.find((c) => c.name === 'portcullis');
  if (!portcullis) throw new Error('envoy.yaml has no portcullis cluster');
  portcullis.lb_policy = 'RANDOM';
}
