import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * A throw-away PKI for demos and tests, made with the `openssl` CLI: CAs and leaf certificates
 * (P-256, one day). Never for production: keys are written unencrypted next to the certificates.
 */

const run = promisify(execFile);

/** A PEM certificate and its unencrypted PEM private key, as file paths. */
export interface CertFiles {
  cert: string;
  key: string;
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

/** P-256 keys: fast to generate and accepted by Envoy (BoringSSL) and Node alike. */
const KEY_ARGS = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
/** One day is plenty for a demo or test run; certificates are regenerated every time. */
const DAYS = '1';

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
    throw new Error(`openssl ${args[0]} failed (is the openssl CLI installed?): ${e.stderr || e.message}`);
  }
}

function reqConfig(dir: string): string {
  const path = join(dir, 'req.cnf');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path, REQ_CONFIG);
  return path;
}

/** Creates a self-signed CA `dir/<name>.crt` + `.key`. */
export async function makeCa(dir: string, name: string): Promise<CertFiles> {
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  await openssl(dir, [
    'req', '-x509', ...KEY_ARGS, '-config', reqConfig(dir), '-subj', `/O=portcullis demo/CN=${name}`,
    '-days', DAYS, '-sha256', '-keyout', files.key, '-out', files.cert,
    '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-addext', 'subjectKeyIdentifier=hash',
  ]);
  return files;
}

/**
 * Creates a leaf certificate `dir/<name>.crt` + `.key` signed by `ca`, for `usage`, with the
 * subjectAltName extension value `san` (e.g. `URI:spiffe://x/y, DNS:localhost`).
 */
export async function makeLeaf(dir: string, name: string, ca: CertFiles, usage: 'serverAuth' | 'clientAuth', san: string): Promise<CertFiles> {
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, leafExt(usage, san));
  await openssl(dir, ['req', '-new', ...KEY_ARGS, '-config', reqConfig(dir), '-subj', `/O=portcullis demo/CN=${name}`, '-keyout', files.key, '-out', csr]);
  await openssl(dir, [
    'x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', `0x${randomBytes(12).toString('hex')}`,
    '-days', DAYS, '-sha256', '-extfile', ext, '-out', files.cert,
  ]);
  return files;
}
