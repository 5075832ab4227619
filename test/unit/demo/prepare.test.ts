import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { prepareDemo, type KeyGenerator } from '../../../src/demo/prepare.js';
import { DEFAULT_PRIVATE_KEY_FILE } from '../../../src/identity/mint.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'portcullis-prepare-'));
  dirs.push(d);
  return d;
}

/** Stand-in key generator: the real one lives in the identity module. */
const fakeKeys: KeyGenerator = async (dir) => {
  mkdirSync(dir, { recursive: true });
  const privateJwkPath = join(dir, 'signing.jwk.json');
  const jwksPath = join(dir, 'published-jwks.json');
  writeFileSync(privateJwkPath, '{"kty":"EC"}');
  writeFileSync(jwksPath, '{"keys":[]}');
  return { privateJwkPath, jwksPath };
};

/** A source folder with a config using every kind of reference prepare handles. */
function sourceConfig(): { config: string; bundle: string } {
  const src = tempDir();
  mkdirSync(join(src, 'schemas'));
  writeFileSync(join(src, 'schemas', 'ticket.json'), '{"type":"object"}');
  writeFileSync(join(src, 'schemas', 'search.json'), '{"type":"object","title":"search"}');
  writeFileSync(join(src, 'policy-data.json'), '{"x":1}');
  const bundle = join(src, 'bundle.tar.gz');
  writeFileSync(bundle, 'not really a tarball');
  const config = join(src, 'portcullis.yaml');
  writeFileSync(
    config,
    `# kept comment
server: { grpc_address: 0.0.0.0, grpc_port: 9191, admin_address: 0.0.0.0, admin_port: 9464 }
identity:
  jwt:
    - { issuer: https://i, audiences: [a], jwks_file: keys/jwks.json }
  signatures:
    - { id: hook, secret: { file: secrets/hook } }
policy: { bundle: bundle.tar.gz, data: policy-data.json }
tools:
  - name: tickets
    credentials:
      - header: authorization
        secret: { file: secrets/tickets }
        per_user: { alice: { file: secrets/tickets-alice } }
    request: { schema: schemas/ticket.json }
  - name: docs
    credentials:
      - { header: authorization, secret: { env: DOCS_TOKEN } }
    mcp: { tools: { search_docs: { input_schema: schemas/search.json } } }
audit: { file: audit.log }
`,
  );
  return { config, bundle };
}

describe('prepareDemo', () => {
  it('writes a self-contained folder: ports, bundle copy, schemas, secrets, keys', async () => {
    const { config, bundle } = sourceConfig();
    const dir = tempDir();
    const p = await prepareDemo({ dir, sourceConfig: config, policyBundle: bundle, server: { grpcPort: 1111, adminPort: 2222, address: '127.0.0.1' }, generateKey: fakeKeys });

    const text = readFileSync(p.configPath, 'utf8');
    expect(text).toContain('# kept comment');
    const cfg = parse(text) as Record<string, any>;
    expect(cfg.server).toEqual({ grpc_address: '127.0.0.1', grpc_port: 1111, admin_address: '127.0.0.1', admin_port: 2222 });
    expect(cfg.policy.bundle).toBe(join(dir, 'policy', 'bundle.tar.gz'));
    expect(readFileSync(cfg.policy.bundle, 'utf8')).toBe('not really a tarball');
    expect(cfg.identity.jwt[0].jwks_file).toBe(join('keys', 'published-jwks.json'));
    expect(existsSync(join(dir, 'schemas', 'ticket.json'))).toBe(true);
    expect(existsSync(join(dir, 'schemas', 'search.json'))).toBe(true);
    expect(existsSync(join(dir, 'policy-data.json'))).toBe(true);

    expect(Object.keys(p.secrets).sort()).toEqual(['secrets/hook', 'secrets/tickets', 'secrets/tickets-alice']);
    for (const [file, value] of Object.entries(p.secrets)) {
      expect(readFileSync(join(dir, file), 'utf8')).toBe(`${value}\n`);
      expect(statSync(join(dir, file)).mode & 0o777).toBe(0o600);
    }
    expect(new Set(Object.values(p.secrets)).size).toBe(3);
    expect(Object.keys(p.env)).toEqual(['DOCS_TOKEN']);
    expect(p.env.DOCS_TOKEN).toMatch(/^demo-docs-token-[0-9a-f]{24}$/);
    expect(p.privateJwkPath).toBe(join(dir, 'keys', 'signing.jwk.json'));
  });

  it('applies edits last and generates fresh secrets per run', async () => {
    const { config, bundle } = sourceConfig();
    const a = await prepareDemo({ dir: tempDir(), sourceConfig: config, policyBundle: bundle, generateKey: fakeKeys });
    const b = await prepareDemo({
      dir: tempDir(),
      sourceConfig: config,
      policyBundle: bundle,
      generateKey: fakeKeys,
      edit: (cfg) => {
        (cfg.audit as Record<string, unknown>).file = 'other.log';
      },
    });
    expect(a.secrets['secrets/hook']).not.toBe(b.secrets['secrets/hook']);
    expect((parse(readFileSync(b.configPath, 'utf8')) as Record<string, any>).audit.file).toBe('other.log');
  });

  it('fails clearly when the bundle or a schema is missing', async () => {
    const { config } = sourceConfig();
    await expect(prepareDemo({ dir: tempDir(), sourceConfig: config, policyBundle: '/nonexistent/bundle.tar.gz', generateKey: fakeKeys })).rejects.toThrow(
      /policy bundle not found.*build-policy/,
    );
    const { config: c2, bundle } = sourceConfig();
    rmSync(join(c2, '..', 'schemas', 'ticket.json'));
    await expect(prepareDemo({ dir: tempDir(), sourceConfig: c2, policyBundle: bundle, generateKey: fakeKeys })).rejects.toThrow(/schema file not found/);
  });

  it('prepares the shipped demo config with a real ES256 key where `token` looks for it', async () => {
    const { bundle } = sourceConfig();
    const dir = tempDir();
    const p = await prepareDemo({ dir, sourceConfig: fileURLToPath(new URL('../../../scripts/demo/portcullis.yaml', import.meta.url)), policyBundle: bundle });
    expect(p.privateJwkPath).toBe(join(dir, DEFAULT_PRIVATE_KEY_FILE));
    const jwk = JSON.parse(readFileSync(p.privateJwkPath, 'utf8')) as Record<string, string>;
    expect(jwk).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256' });
    const cfg = parse(readFileSync(p.configPath, 'utf8')) as Record<string, any>;
    const jwks = JSON.parse(readFileSync(join(dir, cfg.identity.jwt[0].jwks_file), 'utf8')) as { keys: Record<string, string>[] };
    expect(jwks.keys[0]?.kid).toBe(jwk.kid);
    expect(jwks.keys[0]?.d).toBeUndefined();
    expect(Object.keys(p.secrets).sort()).toEqual([
      'secrets/handoff-key',
      'secrets/tickets-token',
      'secrets/tickets-token-alice',
      'secrets/weather-api-key',
      'secrets/webhook-signing-secret',
    ]);
    // The channel from Envoy is mTLS, with a demo PKI generated where the config reads it.
    expect(p.channel).toMatchObject({ kind: 'mtls', serverSan: 'spiffe://demo.portcullis/portcullis' });
    for (const f of ['ca.crt', 'portcullis.crt', 'portcullis.key', 'envoy.crt', 'envoy.key']) expect(existsSync(join(dir, 'tls', f))).toBe(true);
    expect(Object.keys(p.env)).toEqual(['DOCS_TOKEN']);
    for (const s of ['ticket.json', 'search_docs.json', 'delete_doc.json']) expect(existsSync(join(dir, 'schemas', s))).toBe(true);
  });

  it('switches the shipped demo to a unix socket or to loopback plaintext when asked, and the result loads', async () => {
    const { loadConfig } = await import('../../../src/config/load.js');
    const { grpcChannel } = await import('../../../src/config/server.js');
    const bundle = join(tempDir(), 'b.tar.gz');
    writeFileSync(bundle, 'x');
    const source = fileURLToPath(new URL('../../../scripts/demo/portcullis.yaml', import.meta.url));
    const dir = tempDir();
    const unix = await prepareDemo({ dir, sourceConfig: source, policyBundle: bundle, server: { channel: 'unix', address: '127.0.0.1' }, generateKey: fakeKeys });
    expect(unix.channel).toEqual({ kind: 'unix', socketPath: join(dir, 'grpc.sock') });
    const cfg = loadConfig(unix.configPath);
    expect(cfg.server.grpc_tls).toBeUndefined();
    expect(grpcChannel(cfg.server, cfg.base_dir)).toEqual({ kind: 'unix', path: join(dir, 'grpc.sock'), mode: 0o600 });
    const plain = await prepareDemo({ dir: tempDir(), sourceConfig: source, policyBundle: bundle, server: { channel: 'plaintext', address: '127.0.0.1' }, generateKey: fakeKeys });
    expect(plain.channel).toEqual({ kind: 'plaintext' });
    expect(grpcChannel(loadConfig(plain.configPath).server, '/')).toMatchObject({ kind: 'plaintext', host: '127.0.0.1' });
    // Plaintext on a routable address is refused when the prepared config is loaded.
    const open = await prepareDemo({ dir: tempDir(), sourceConfig: source, policyBundle: bundle, server: { channel: 'plaintext', address: '0.0.0.0' }, generateKey: fakeKeys });
    expect(() => loadConfig(open.configPath)).toThrow(/plaintext gRPC is only allowed on a loopback address/);
  });
});
