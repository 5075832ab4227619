import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { makeCa, makeLeaf, type CertFiles } from '../../src/demo/pki.js';

export type { CertFiles } from '../../src/demo/pki.js';

/** SPIFFE id the demo config maps to agent `reporter` (`identity.mtls`). */
export const REPORTER_SPIFFE_ID = 'spiffe://demo.portcullis/agent/reporter';
/** A SPIFFE id in the same trust domain that no agent is mapped to. */
export const STRANGER_SPIFFE_ID = 'spiffe://demo.portcullis/agent/stranger';

/** Certificates for an mTLS test stack, all as PEM file paths. */
export interface TlsMaterial {
  /** The CA Envoy trusts for client certificates and that signed the server certificate. */
  ca: string;
  /** Envoy's listener certificate: SANs `IP:127.0.0.1` and `DNS:localhost`. */
  server: CertFiles;
  /** Client certificates signed by {@link TlsMaterial.ca}, named by their URI SAN. */
  clients: {
    /** URI SAN {@link REPORTER_SPIFFE_ID} (mapped to agent `reporter`). */
    reporter: CertFiles;
    /** URI SAN {@link STRANGER_SPIFFE_ID} (mapped to no agent). */
    stranger: CertFiles;
    /** URI SAN {@link REPORTER_SPIFFE_ID}, but signed by another CA Envoy does not trust. */
    foreign: CertFiles;
  };
  /** The untrusted CA that signed `clients.foreign`. */
  foreignCa: string;
}

/**
 * Generates, with the `openssl` CLI, a CA, Envoy's server certificate for 127.0.0.1/localhost,
 * client certificates for the reporter and an unmapped SPIFFE id, and a reporter-named client
 * certificate from a second, untrusted CA. Everything is written under `dir/agent-tls`.
 */
export async function generateTlsMaterial(dir: string): Promise<TlsMaterial> {
  const tls = join(dir, 'agent-tls');
  mkdirSync(tls, { recursive: true });
  const [ca, foreignCa] = await Promise.all([makeCa(tls, 'ca'), makeCa(tls, 'foreign-ca')]);
  const [server, reporter, stranger, foreign] = await Promise.all([
    makeLeaf(tls, 'server', ca, 'serverAuth', 'IP:127.0.0.1, DNS:localhost'),
    makeLeaf(tls, 'reporter', ca, 'clientAuth', `URI:${REPORTER_SPIFFE_ID}`),
    makeLeaf(tls, 'stranger', ca, 'clientAuth', `URI:${STRANGER_SPIFFE_ID}`),
    makeLeaf(tls, 'foreign', foreignCa, 'clientAuth', `URI:${REPORTER_SPIFFE_ID}`),
  ]);
  return { ca: ca.cert, server, clients: { reporter, stranger, foreign }, foreignCa: foreignCa.cert };
}

/** Certificates for TLS from Envoy to test tools (upstream TLS), as PEM file paths. */
export interface UpstreamTlsMaterial {
  /** The CA Envoy is configured to trust for tools. */
  ca: string;
  /** Server certificates signed by {@link UpstreamTlsMaterial.ca}, one per DNS SAN asked for. */
  servers: Record<string, CertFiles>;
  /** Server certificates for the same SANs, signed by a CA Envoy does not trust. */
  impostors: Record<string, CertFiles>;
}

/**
 * Generates, with the `openssl` CLI, a tools CA and for every name in `sans` a server certificate
 * with that DNS SAN (and a second one, from an untrusted CA, with the same SAN). Written under
 * `dir/upstream-tls`.
 */
export async function generateUpstreamTls(dir: string, sans: readonly string[]): Promise<UpstreamTlsMaterial> {
  const out = join(dir, 'upstream-tls');
  mkdirSync(out, { recursive: true });
  const [ca, foreign] = await Promise.all([makeCa(out, 'tools-ca'), makeCa(out, 'foreign-tools-ca')]);
  const servers: Record<string, CertFiles> = {};
  const impostors: Record<string, CertFiles> = {};
  await Promise.all(
    sans.flatMap((san, i) => [
      makeLeaf(out, `server-${i}`, ca, 'serverAuth', `DNS:${san}`).then((c) => (servers[san] = c)),
      makeLeaf(out, `impostor-${i}`, foreign, 'serverAuth', `DNS:${san}`).then((c) => (impostors[san] = c)),
    ]),
  );
  return { ca: ca.cert, servers, impostors };
}
