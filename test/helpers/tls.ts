import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** SPIFFE id the demo config maps to agent `reporter` (`identity.mtls`). */
export const REPORTER_SPIFFE_ID = 'spiffe://demo.portcullis/agent/reporter';
/** A SPIFFE id in the same trust domain that no agent is mapped to. */
export const STRANGER_SPIFFE_ID = 'spiffe://demo.portcullis/agent/stranger';

/** A PEM certificate and its unencrypted PEM private key, as file paths. */
export interface CertFiles {
  cert: string;
  key: string;
}

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
 * Minimal request config so the result does not depend on the system's openssl.cnf (whose
 * defaults, e.g. extensions added by `req -x509`, differ between distributions).
 */
const REQ_CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
`;

function leafExt(usage: 'serverAuth' | 'clientAuth', san: string): string {
  return `basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = ${usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = ${san}
`;
}

async function openssl(cwd: string, args: string[]): Promise<void> {
  try {
    await run('openssl', args, { cwd, timeout: 30_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`openssl ${args[0]} failed: ${e.stderr || e.message}`);
  }
}

/** P-256 keys: fast to generate and accepted by Envoy (BoringSSL) and Node alike. */
const KEY_ARGS = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
/** One day is plenty for a test run; certificates are regenerated for every stack. */
const DAYS = '1';

async function makeCa(dir: string, name: string): Promise<CertFiles> {
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  await openssl(dir, [
    'req', '-x509', ...KEY_ARGS, '-config', join(dir, 'req.cnf'), '-subj', `/O=portcullis tests/CN=${name}`,
    '-days', DAYS, '-sha256', '-keyout', files.key, '-out', files.cert,
    '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-addext', 'subjectKeyIdentifier=hash',
  ]);
  return files;
}

async function makeLeaf(dir: string, name: string, ca: CertFiles, usage: 'serverAuth' | 'clientAuth', san: string): Promise<CertFiles> {
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, leafExt(usage, san));
  await openssl(dir, ['req', '-new', ...KEY_ARGS, '-config', join(dir, 'req.cnf'), '-subj', `/O=portcullis tests/CN=${name}`, '-keyout', files.key, '-out', csr]);
  await openssl(dir, [
    'x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', `0x${randomBytes(12).toString('hex')}`,
    '-days', DAYS, '-sha256', '-extfile', ext, '-out', files.cert,
  ]);
  return files;
}

/**
 * Generates, with the `openssl` CLI, a CA, Envoy's server certificate for 127.0.0.1/localhost,
 * client certificates for the reporter and an unmapped SPIFFE id, and a reporter-named client
 * certificate from a second, untrusted CA. Everything is written under `dir/tls`.
 */
export async function generateTlsMaterial(dir: string): Promise<TlsMaterial> {
  const tls = join(dir, 'tls');
  mkdirSync(tls, { recursive: true });
  writeFileSync(join(tls, 'req.cnf'), REQ_CONFIG);
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
  writeFileSync(join(out, 'req.cnf'), REQ_CONFIG);
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
