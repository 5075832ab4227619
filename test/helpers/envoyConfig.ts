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

/** Optional changes {@link renderEnvoyConfig} makes besides the ports. */
export interface RenderOptions {
  /** Terminate TLS on the `agents` listener and require a client certificate signed by `trustedCa`. */
  tls?: ListenerTls;
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

/** envoy/envoy.yaml as a plain object. */
export function loadEnvoyConfig(): Json {
  return obj(parse(readFileSync(repoPath('envoy', 'envoy.yaml'), 'utf8')), 'document');
}

/**
 * envoy/envoy.yaml with its ports replaced for a test stack. Items are found by name (admin,
 * listener `agents`, cluster `portcullis`, clusters `tool_*`), not by text substitution, and a
 * missing item is an error so the harness cannot silently test a different topology. With
 * `opts.tls` the `agents` listener terminates TLS and requires a client certificate.
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
  setClusterPort(portcullis, ports.portcullis);
  const tools = clusters.filter((c) => typeof c.name === 'string' && c.name.startsWith(TOOL_CLUSTER_PREFIX));
  if (tools.length === 0) throw new Error(`envoy.yaml: no "${TOOL_CLUSTER_PREFIX}*" clusters`);
  for (const c of tools) setClusterPort(c, ports.upstream);
  opts.edit?.(cfg);

  // Anchored blocks are written out in full so the result reads like the source file's meaning.
  return stringify(cfg, { aliasDuplicateObjects: false, lineWidth: 0 });
}
