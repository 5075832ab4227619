import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseVerifiedBundle } from '../../../src/policy/bundle.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { compileVerifier, type SigningConfig } from '../../../src/policy/signatures.js';
import { ROOT, tempDir, writePolicy } from './helpers.js';

const OPA = join(ROOT, '.tools/bin/opa');
const POLICY = {
  'authz.rego': 'package envoy.authz\nimport rego.v1\ndefault allow := false\nallow if data.flags.open\n',
  'flags/data.json': '{"open": true, "limit": 1.50, "name": "a<b>&c"}',
};

interface Keys {
  readonly dir: string;
  readonly rsaPriv: string;
  readonly rsaPub: string;
  readonly ecPriv: string;
  readonly ecPub: string;
}

function keys(): Keys {
  const dir = tempDir('portcullis-keys-');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const out = {
    dir,
    rsaPriv: join(dir, 'rsa.pem'),
    rsaPub: rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    ecPriv: join(dir, 'ec.pem'),
    ecPub: ec.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
  writeFileSync(out.rsaPriv, rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(out.ecPriv, ec.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  return out;
}

/** Builds and signs a wasm bundle with the real OPA (`--bundle` mode). */
function signedBundle(opts: { key: string; alg: string; keyId?: string; scope?: string; revision?: string; files?: Record<string, string> }): string {
  const dir = writePolicy(opts.files ?? POLICY);
  const out = join(tempDir(), 'bundle.tar.gz');
  const args = ['build', '-b', '-t', 'wasm', '-e', 'envoy/authz/allow', '--signing-key', opts.key, '--signing-alg', opts.alg, '-o', out, '.'];
  // A claims file replaces OPA's default claims: the key id then travels as the keyid claim.
  if (opts.keyId || opts.scope) {
    const claims = join(tempDir(), 'claims.json');
    writeFileSync(claims, JSON.stringify({ ...(opts.keyId ? { keyid: opts.keyId } : { keyid: 'default' }), ...(opts.scope ? { scope: opts.scope } : {}) }));
    args.push('--claims-file', claims);
  }
  if (opts.revision) args.push('--revision', opts.revision);
  execFileSync(OPA, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  return out;
}

/** Extracts a bundle, lets `edit` change the tree, and packs it again (no re-signing). */
function repack(bundle: string, edit: (dir: string) => void): Buffer {
  const dir = tempDir();
  execFileSync('tar', ['-xzf', bundle, '-C', dir]);
  edit(dir);
  const out = join(tempDir(), 'repacked.tar.gz');
  execFileSync('tar', ['--format=ustar', '-czf', out, '-C', dir, '.']);
  return readFileSync(out);
}

function verifier(cfg: Partial<SigningConfig> & Pick<SigningConfig, 'keys'>): ReturnType<typeof compileVerifier> {
  return compileVerifier(cfg, '/');
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('the bundle was accepted');
}

describe('signed bundles (signed by opa build, verified by portcullis)', () => {
  const k = keys();
  const rsa = { default: { algorithm: 'RS256', key: k.rsaPub } } as const;

  it('accepts an RS256 bundle signed by OPA, JSON data hashed in OPA canonical form', async () => {
    const path = signedBundle({ key: k.rsaPriv, alg: 'RS256', revision: 'r1' });
    const bundle = await parseVerifiedBundle(readFileSync(path), path, verifier({ keys: rsa }));
    expect(bundle.manifest?.revision).toBe('r1');
    expect(bundle.data).toEqual({ flags: { open: true, limit: 1.5, name: 'a<b>&c' } });
  });

  it('accepts ES256 and HS256 bundles, and PS256', async () => {
    const es = signedBundle({ key: k.ecPriv, alg: 'ES256', keyId: 'ec' });
    await parseVerifiedBundle(readFileSync(es), es, verifier({ keys: { ec: { algorithm: 'ES256', key: k.ecPub } } }));
    const hs = signedBundle({ key: 'a-shared-secret-of-some-length', alg: 'HS256', keyId: 'hs' });
    await parseVerifiedBundle(readFileSync(hs), hs, verifier({ keys: { hs: { algorithm: 'HS256', key: 'a-shared-secret-of-some-length' } } }));
    const ps = signedBundle({ key: k.rsaPriv, alg: 'PS256', keyId: 'ps' });
    await parseVerifiedBundle(readFileSync(ps), ps, verifier({ keys: { ps: { algorithm: 'PS256', key: k.rsaPub } } }));
  });

  it('refuses an unsigned bundle when keys are configured', async () => {
    const dir = writePolicy(POLICY);
    const out = join(tempDir(), 'plain.tar.gz');
    execFileSync(OPA, ['build', '-b', '-t', 'wasm', '-e', 'envoy/authz/allow', '-o', out, '.'], { cwd: dir, stdio: 'ignore' });
    expect(await refusal(parseVerifiedBundle(readFileSync(out), out, verifier({ keys: rsa })))).toMatch(/not signed/);
    // Without keys the same bundle loads (signing is opt-in).
    await parseVerifiedBundle(readFileSync(out), out, null);
  });

  it('refuses a tampered data file, even one that only changes a number', async () => {
    const path = signedBundle({ key: k.rsaPriv, alg: 'RS256' });
    const archive = repack(path, (dir) => writeFileSync(join(dir, 'data.json'), '{"flags": {"open": true, "limit": 1.51, "name": "a<b>&c"}}'));
    expect(await refusal(parseVerifiedBundle(archive, 'x', verifier({ keys: rsa })))).toMatch(/file data\.json does not match its signed digest/);
  });

  it('accepts the same data reformatted (keys reordered, spaces), as OPA does', async () => {
    const path = signedBundle({ key: k.rsaPriv, alg: 'RS256' });
    const archive = repack(path, (dir) => writeFileSync(join(dir, 'data.json'), '{ "flags": { "name":"a<b>&c","limit":1.50,\n "open":true } }'));
    await parseVerifiedBundle(archive, 'x', verifier({ keys: rsa }));
  });

  it('verifies before interpreting anything: a tampered, unparsable data file is refused for its signature', async () => {
    const path = signedBundle({ key: k.rsaPriv, alg: 'RS256' });
    const archive = repack(path, (dir) => {
      mkdirSync(join(dir, 'evil'));
      writeFileSync(join(dir, 'evil/data.json'), '{not json');
    });
    expect(await refusal(parseVerifiedBundle(archive, 'x', verifier({ keys: rsa })))).toMatch(/evil\/data\.json is in the bundle but not in its signature/);
    // Without keys the same archive fails on the data file itself.
    expect(await refusal(parseVerifiedBundle(archive, 'x', null))).toMatch(/evil\/data\.json cannot be parsed/);
  });

  it('refuses a replaced policy.wasm', async () => {
    const path = signedBundle({ key: k.rsaPriv, alg: 'RS256' });
    const other = signedBundle({ key: k.rsaPriv, alg: 'RS256', files: { 'authz.rego': 'package envoy.authz\nimport rego.v1\nallow := true\n' } });
    const otherDir = tempDir();
    execFileSync('tar', ['-xzf', other, '-C', otherDir]);
    const archive = repack(path, (dir) => writeFileSync(join(dir, 'policy.wasm'), readFileSync(join(otherDir, 'policy.wasm'))));
    expect(await refusal(parseVerifiedBundle(archive, 'x', verifier({ keys: rsa })))).toMatch(/policy\.wasm does not match/);
  });

  it('refuses a file added after signing, and a listed file that was removed', async () => {
    const path = signedBundle({ key: k.rsaPriv, alg: 'RS256' });
    const added = repack(path, (dir) => {
      mkdirSync(join(dir, 'extra'));
      writeFileSync(join(dir, 'extra/data.json'), '{"open": false}');
    });
    expect(await refusal(parseVerifiedBundle(added, 'x', verifier({ keys: rsa })))).toMatch(/extra\/data\.json is in the bundle but not in its signature/);
    const removed = repack(path, (dir) => rmSync(join(dir, 'authz.rego')));
    expect(await refusal(parseVerifiedBundle(removed, 'x', verifier({ keys: rsa })))).toMatch(/authz\.rego is listed in the bundle signature but missing/);
  });

  it('refuses a bundle signed with another key, an unknown key id, or the wrong algorithm', async () => {
    const other = keys();
    const path = signedBundle({ key: other.rsaPriv, alg: 'RS256' });
    expect(await refusal(parseVerifiedBundle(readFileSync(path), path, verifier({ keys: rsa })))).toMatch(/does not verify with key "default"/);
    const named = signedBundle({ key: k.rsaPriv, alg: 'RS256', keyId: 'elsewhere' });
    expect(await refusal(parseVerifiedBundle(readFileSync(named), named, verifier({ keys: rsa })))).toMatch(/key "elsewhere", which is not one of/);
    const hsKeyed = verifier({ keys: { default: { algorithm: 'HS256', key: k.rsaPub } } });
    expect(await refusal(parseVerifiedBundle(readFileSync(path), path, hsKeyed))).toMatch(/uses RS256 but key "default" is configured for HS256/);
  });

  it('checks the scope claim when a scope is configured', async () => {
    const path = signedBundle({ key: k.rsaPriv, alg: 'RS256', scope: 'read' });
    expect(await refusal(parseVerifiedBundle(readFileSync(path), path, verifier({ keys: rsa, scope: 'write' })))).toMatch(/scope "read" but policy.signing.scope is "write"/);
    await parseVerifiedBundle(readFileSync(path), path, verifier({ keys: rsa, scope: 'read' }));
  });

  it('refuses a forged .signatures.json (alg none)', async () => {
    const path = signedBundle({ key: k.rsaPriv, alg: 'RS256' });
    const archive = repack(path, (dir) => {
      const doc = JSON.parse(readFileSync(join(dir, '.signatures.json'), 'utf8')) as { signatures: string[] };
      const [, payload] = (doc.signatures[0] as string).split('.');
      const header = Buffer.from(JSON.stringify({ alg: 'none', kid: 'default' })).toString('base64url');
      writeFileSync(join(dir, '.signatures.json'), JSON.stringify({ signatures: [`${header}.${payload}.`] }));
    });
    expect(await refusal(parseVerifiedBundle(archive, 'x', verifier({ keys: rsa })))).toMatch(/uses none/);
  });

  it('a tampered bundle on reload is refused and the previous signed bundle stays in force', async () => {
    const dir = tempDir();
    const live = join(dir, 'bundle.tar.gz');
    writeFileSync(live, readFileSync(signedBundle({ key: k.rsaPriv, alg: 'RS256', revision: 'good' })));
    const engine = await PolicyEngine.open({ bundlePath: live, decision: 'envoy/authz/allow', watch: false, verifier: verifier({ keys: rsa }) });
    try {
      expect(engine.status().version).toBe('good');
      writeFileSync(live, repack(live, (d) => writeFileSync(join(d, 'data.json'), '{"flags": {"open": false}}')));
      const status = await engine.reload();
      expect(status.version).toBe('good');
      expect(status.lastError).toMatch(/signature check failed: file data\.json does not match/);
    } finally {
      engine.close();
    }
  });

  it('refuses at open an unsigned bundle file with keys configured', async () => {
    const dir = writePolicy(POLICY);
    const out = join(tempDir(), 'plain.tar.gz');
    execFileSync(OPA, ['build', '-b', '-t', 'wasm', '-e', 'envoy/authz/allow', '-o', out, '.'], { cwd: dir, stdio: 'ignore' });
    await expect(PolicyEngine.open({ bundlePath: out, decision: 'envoy/authz/allow', watch: false, verifier: verifier({ keys: rsa }) })).rejects.toThrow(/not signed/);
  });

  it('names an unusable key at config load', () => {
    expect(() => compileVerifier({ keys: { k1: { algorithm: 'RS256', key: 'not a pem' } } }, '/')).toThrow(/policy.signing.keys.k1: not a PEM/);
    expect(() => compileVerifier({ keys: rsa, keyid: 'nope' }, '/')).toThrow(/keyid "nope"/);
  });
});
