import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import type { JwtIssuerConfig } from '../config/types.js';

/** Private signing key written by {@link generateSigningKey}, relative to the config folder. */
export const DEFAULT_PRIVATE_KEY_FILE = 'keys/private.jwk.json';
/** Public JWKS written by {@link generateSigningKey}, relative to the config folder. */
export const DEFAULT_JWKS_FILE = 'keys/jwks.json';

const PRIVATE_NAME = 'private.jwk.json';
const JWKS_NAME = 'jwks.json';
const ALG = 'ES256';

/**
 * Creates an ES256 key pair in `dir`: the private JWK (mode 0600) and the public JWKS an issuer
 * config points at. Idempotent: an existing private key is reused (and its JWKS rewritten if
 * missing), so re-running a demo does not invalidate tokens already minted.
 */
export async function generateSigningKey(dir: string, kid?: string): Promise<{ privateJwkPath: string; jwksPath: string }> {
  const privateJwkPath = join(dir, PRIVATE_NAME);
  const jwksPath = join(dir, JWKS_NAME);
  await mkdir(dir, { recursive: true });
  let priv = await readJwk(privateJwkPath).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (!priv) {
    const { privateKey } = await generateKeyPair(ALG, { extractable: true });
    const jwk = await exportJWK(privateKey);
    priv = { ...jwk, kid: kid ?? (await calculateJwkThumbprint(jwk)), alg: ALG, use: 'sig' };
    await writeAtomic(privateJwkPath, `${JSON.stringify(priv, null, 2)}\n`, 0o600);
  }
  const exists = await readFile(jwksPath, 'utf8').then(() => true, () => false);
  if (!exists) {
    const { d: _private, ...pub } = priv;
    await writeAtomic(jwksPath, `${JSON.stringify({ keys: [pub] }, null, 2)}\n`, 0o644);
  }
  return { privateJwkPath, jwksPath };
}

/** What a minted token says. `claims` maps fields to claim names (defaults: sub, tenant, roles, azp, agent_version). */
export interface MintOptions {
  issuer: string;
  audience: string;
  agent: string;
  agentVersion?: string;
  user?: string;
  tenant?: string;
  roles?: string[];
  ttlS: number;
  privateJwkPath: string;
  claims?: JwtIssuerConfig['claims'];
}

/** Signs a JWT with the private JWK at `privateJwkPath` (for the `token` command and tests). */
export async function mintToken(o: MintOptions): Promise<string> {
  if (!Number.isFinite(o.ttlS) || o.ttlS <= 0) throw new Error('ttlS must be a positive number of seconds');
  const jwk = await readJwk(o.privateJwkPath);
  if (typeof jwk.d !== 'string') throw new Error(`${o.privateJwkPath} does not contain a private key`);
  const alg = jwk.alg ?? ALG;
  const key = await importJWK(jwk, alg);
  const names = o.claims ?? { user: 'sub', tenant: 'tenant', roles: 'roles', agent: 'azp', agent_version: 'agent_version' };
  const payload: Record<string, unknown> = { [names.agent]: o.agent };
  if (o.agentVersion !== undefined) payload[names.agent_version] = o.agentVersion;
  if (o.user !== undefined) payload[names.user] = o.user;
  if (o.tenant !== undefined) payload[names.tenant] = o.tenant;
  if (o.roles !== undefined) payload[names.roles] = o.roles;
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(payload)
    .setProtectedHeader({ alg, typ: 'JWT', ...(jwk.kid ? { kid: jwk.kid } : {}) })
    .setIssuer(o.issuer)
    .setAudience(o.audience)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + Math.ceil(o.ttlS))
    .setJti(randomUUID())
    .sign(key);
}

async function readJwk(path: string): Promise<JWK> {
  const doc: unknown = JSON.parse(await readFile(path, 'utf8'));
  if (typeof doc !== 'object' || doc === null || typeof (doc as JWK).kty !== 'string') throw new Error(`${path} is not a JWK`);
  return doc as JWK;
}

/** Writes via a temporary file and rename, so a watcher never reads a half-written file. */
async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode });
  await chmod(tmp, mode);
  await rename(tmp, path);
}
