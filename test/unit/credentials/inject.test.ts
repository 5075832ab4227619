import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../../src/config/load.js';
import { SecretStore } from '../../../src/credentials/secrets.js';
import { CredentialInjector } from '../../../src/credentials/inject.js';
import type { Principal } from '../../../src/identity/types.js';

const dir = mkdtempSync(join(tmpdir(), 'pc-cred-'));
writeFileSync(join(dir, 'tok'), 'shared-token\n');
writeFileSync(join(dir, 'alice'), 'alice-token');
const cfg = parseConfig(
  `
policy: { bundle: b }
tools:
  - name: t
    upstream: u
    credentials:
      - header: authorization
        format: "Bearer {secret}"
        secret: { file: tok }
        per_user: { alice: { file: alice } }
  - name: strict
    upstream: u
    credentials:
      - { header: x-api-key, secret: { env: PC_TEST_KEY }, require_per_user: true, per_user: { bob: { env: PC_TEST_BOB } } }
`,
  join(dir, 'c.yaml'),
);
const store = new SecretStore(dir);
const inj = new CredentialInjector(cfg.tools, store);
const who = (user: string | null): Principal => ({ agent: 'a', agent_version: null, user, tenant: null, roles: [], methods: ['jwt'], proven_by: [] });

afterEach(() => {
  delete process.env.PC_TEST_BOB;
});

describe('credential injection', () => {
  it('formats the shared secret, or the per-user one', () => {
    expect(inj.headersFor('t', who('carol'))).toEqual([{ key: 'authorization', value: 'Bearer shared-token' }]);
    expect(inj.headersFor('t', who('alice'))).toEqual([{ key: 'authorization', value: 'Bearer alice-token' }]);
    expect(inj.headersFor('t', null)).toEqual([{ key: 'authorization', value: 'Bearer shared-token' }]);
  });

  it('inserts a secret containing replacement patterns verbatim', () => {
    process.env.PC_TEST_BOB = "ab$&cd$'x";
    expect(inj.headersFor('strict', who('bob'))).toEqual([{ key: 'x-api-key', value: "ab$&cd$'x" }]);
    const bearer = new CredentialInjector(
      parseConfig(`policy: { bundle: b }\ntools: [{ name: t, upstream: u, credentials: [{ header: authorization, format: "Bearer {secret}", secret: { env: PC_TEST_BOB } }] }]\n`, join(dir, 'c.yaml')).tools,
      store,
    );
    expect(bearer.headersFor('t', null)).toEqual([{ key: 'authorization', value: "Bearer ab$&cd$'x" }]);
  });

  it('denies when a per-user credential is required and missing, and when a secret is unavailable', () => {
    expect(() => inj.headersFor('strict', who('carol'))).toThrow(/no upstream credential is provisioned/);
    try {
      inj.headersFor('strict', who('bob'));
      throw new Error('should have thrown');
    } catch (err) {
      expect((err as { code: string }).code).toBe('unavailable');
      expect(String((err as Error).message)).not.toContain('PC_TEST');
    }
    process.env.PC_TEST_BOB = 'bob-key';
    expect(inj.headersFor('strict', who('bob'))).toEqual([{ key: 'x-api-key', value: 'bob-key' }]);
  });

  it('picks up a rotated secret file without restart', async () => {
    expect(inj.problems().filter((p) => p.tool === 't')).toEqual([]);
    writeFileSync(join(dir, 'tok.new'), 'rotated-token\n');
    renameSync(join(dir, 'tok.new'), join(dir, 'tok'));
    // File watching polls; on a loaded machine the poll can be late, so allow a generous bound.
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && inj.headersFor('t', null)[0]?.value !== 'Bearer rotated-token') {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(inj.headersFor('t', null)[0]?.value).toBe('Bearer rotated-token');
    store.close();
  });
});
