import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { generateSigningKey, mintToken } from '../../../src/identity/mint.js';
import { ApiKeyVerifier } from '../../../src/identity/apiKey.js';
import { MtlsVerifier } from '../../../src/identity/mtls.js';

describe('generateSigningKey', () => {
  it('writes a private JWK (0600) and a public JWKS, and reuses them', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'pc-mint-')), 'keys');
    const a = await generateSigningKey(dir, 'demo');
    expect(statSync(a.privateJwkPath).mode & 0o777).toBe(0o600);
    const jwks = JSON.parse(readFileSync(a.jwksPath, 'utf8')) as { keys: Record<string, unknown>[] };
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', kid: 'demo', alg: 'ES256' });
    expect(jwks.keys[0]).not.toHaveProperty('d');
    const before = readFileSync(a.privateJwkPath, 'utf8');
    const b = await generateSigningKey(dir, 'demo');
    expect(b).toEqual(a);
    expect(readFileSync(b.privateJwkPath, 'utf8')).toBe(before);
  });
});

describe('mintToken', () => {
  it('puts the requested claims under the configured names', async () => {
    const { privateJwkPath } = await generateSigningKey(mkdtempSync(join(tmpdir(), 'pc-mint-')));
    const token = await mintToken({
      issuer: 'https://i', audience: 'aud', agent: 'bot', user: 'u1', roles: ['r'], ttlS: 120, privateJwkPath,
      claims: { user: 'email', tenant: 'org', roles: 'scope', agent: 'client_id', agent_version: 'v' },
    });
    const claims = decodeJwt(token);
    expect(claims).toMatchObject({ iss: 'https://i', aud: 'aud', client_id: 'bot', email: 'u1', scope: ['r'] });
    expect((claims.exp as number) - (claims.iat as number)).toBe(120);
    expect(decodeProtectedHeader(token).alg).toBe('ES256');
  });
});

describe('static mappings', () => {
  it('refuse duplicate entries', () => {
    expect(() => new MtlsVerifier([{ principal: 'p', agent: 'a' }, { principal: 'p', agent: 'b' }])).toThrow(/configured twice/);
    const sha256 = 'a'.repeat(64);
    expect(() => new ApiKeyVerifier([{ id: 'x', sha256, agent: 'a' }, { id: 'y', sha256, agent: 'b' }])).toThrow(/configured twice/);
  });
});
