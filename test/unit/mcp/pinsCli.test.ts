import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { mcpCommand } from '../../../src/mcp/cli.js';
import { PinStore, parsePinDocument, readPinFile, setPinInFile } from '../../../src/mcp/pins.js';
import { mcpPinsAdmin } from '../../../src/mcp/admin.js';
import { McpCatalog } from '../../../src/mcp/catalog.js';
import { loadConfig } from '../../../src/config/load.js';
import { CredentialInjector } from '../../../src/credentials/inject.js';
import { SecretStore } from '../../../src/credentials/secrets.js';

/** The pin file, the `portcullis mcp` commands and the admin endpoints' logic. */

const dir = mkdtempSync(join(tmpdir(), 'mcp-pins-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const H1 = '1'.repeat(64);
const H2 = '2'.repeat(64);

/** A minimal gateway config with one MCP tool (`docs`) and one plain tool. */
function writeConfig(name: string, mcp: Record<string, unknown>): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    stringify({
      server: { grpc_address: '127.0.0.1', grpc_plaintext: true },
      identity: { jwt: [{ issuer: 'https://issuer.example', audiences: ['gw'], jwks_file: 'jwks.json', algorithms: ['ES256'] }] },
      policy: { bundle: 'bundle.tar.gz' },
      tools: [
        { name: 'docs', upstream: 'tool_docs', mcp },
        { name: 'weather', upstream: 'tool_weather' },
      ],
    }),
  );
  return file;
}

function io(): { out: string[]; err: string[]; io: Parameters<typeof mcpCommand>[1] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: { write: (s: string) => out.push(s) }, err: { write: (s: string) => err.push(s) } } };
}

describe('pin file', () => {
  it('is written atomically (no temporary file left), merged with what another writer put there', () => {
    const file = join(dir, 'atomic', 'pins.json');
    setPinInFile(file, 'docs', 'a', { hash: H1, since: 't', by: 'cli' });
    setPinInFile(file, 'other', 'b', { hash: H2, since: 't', by: 'cli' });
    expect(readPinFile(file).pins).toEqual({ docs: { a: { hash: H1, since: 't', by: 'cli' } }, other: { b: { hash: H2, since: 't', by: 'cli' } } });
    expect(readdirSync(join(dir, 'atomic'))).toEqual(['pins.json']);
  });

  it('refuses what is not a pin file, and a store keeps its last good pins when the file turns bad', () => {
    expect(() => parsePinDocument('{"version": 2, "pins": {}}')).toThrow(/not a pin file/);
    expect(() => parsePinDocument(JSON.stringify({ version: 1, pins: { docs: { a: { hash: 'short' } } } }))).toThrow(/no sha256 hash/);
    const file = join(dir, 'turns-bad.json');
    setPinInFile(file, 'docs', 'a', { hash: H1, since: 't', by: 'cli' });
    const store = new PinStore(file);
    try {
      writeFileSync(file, '{ not json');
      store.reload();
      expect(store.get('docs', 'a')?.hash).toBe(H1);
      setPinInFile(join(dir, 'x.json'), 'docs', 'a', { hash: H2, since: 't', by: 'cli' });
      writeFileSync(file, readFileSync(join(dir, 'x.json')));
      store.reload();
      expect(store.get('docs', 'a')?.hash).toBe(H2);
    } finally {
      store.close();
    }
  });
});

describe('portcullis mcp', () => {
  it('approve writes the tool pin file, and pins lists it beside the configuration pins', async () => {
    const config = writeConfig('cli', { pins_file: 'cli-pins.json', pins: { fixed: H1 } });
    const a = io();
    expect(await mcpCommand(['approve', '--config', config, '--tool', 'docs', '--name', 'search', '--hash', H2], a.io)).toBe(0);
    expect(readPinFile(join(dir, 'cli-pins.json')).pins.docs?.search).toMatchObject({ hash: H2, by: 'cli' });
    const l = io();
    expect(await mcpCommand(['pins', '--config', config, '--json'], l.io)).toBe(0);
    const rows = JSON.parse(l.out.join('')) as { name: string; hash: string; by: string }[];
    expect(rows).toEqual([expect.objectContaining({ name: 'fixed', hash: H1, by: 'config' }), expect.objectContaining({ name: 'search', hash: H2, by: 'cli' })]);
  });

  it('approve refuses what it cannot record, saying why', async () => {
    const withFile = writeConfig('refuse', { pins_file: 'refuse-pins.json', pins: { fixed: H1 } });
    const noFile = writeConfig('nofile', {});
    const cases: [string[], RegExp][] = [
      [['approve', '--config', withFile, '--tool', 'docs', '--name', 'fixed', '--hash', H2], /pinned in the configuration/],
      [['approve', '--config', withFile, '--tool', 'weather', '--name', 'x', '--hash', H2], /not an MCP tool/],
      [['approve', '--config', withFile, '--tool', 'docs', '--name', 'x', '--hash', 'abc'], /sha256/],
      [['approve', '--config', noFile, '--tool', 'docs', '--name', 'x', '--hash', H2], /has no mcp.pins_file.*POST \/mcp\/pins\/approve/],
    ];
    for (const [args, why] of cases) {
      const r = io();
      expect(await mcpCommand(args, r.io)).toBe(1);
      expect(r.err.join('')).toMatch(why);
    }
    const usage = io();
    expect(await mcpCommand(['approve', '--config', withFile, '--tool', 'docs'], usage.io)).toBe(2);
  });
});

describe('admin pins endpoints', () => {
  it('approve through the running catalog, and list the status', () => {
    const config = loadConfig(writeConfig('admin', { pins_file: 'admin-pins.json' }));
    const catalog = new McpCatalog();
    try {
      catalog.configure(config, new CredentialInjector(config.tools, new SecretStore(dir)));
      const admin = mcpPinsAdmin(catalog);
      catalog.ingest('docs', [{ name: 'note', inputSchema: { type: 'object' } }]);
      expect((admin.list().body as { pins: { name: string; status: string }[] }).pins).toEqual([expect.objectContaining({ name: 'note', status: 'ok' })]);
      expect(admin.approve('not json').status).toBe(400);
      expect(admin.approve(JSON.stringify({ tool: 'docs', name: 'note' })).status).toBe(400);
      expect(admin.approve(JSON.stringify({ tool: 'weather', name: 'note', hash: H1 })).status).toBe(422);
      const ok = admin.approve(JSON.stringify({ tool: 'docs', name: 'note', hash: H1 }));
      expect(ok.status).toBe(200);
      expect(readPinFile(join(dir, 'admin-pins.json')).pins.docs?.note).toMatchObject({ hash: H1, by: 'admin' });
      expect((admin.list().body as { pins: { name: string; status: string }[] }).pins).toEqual([expect.objectContaining({ name: 'note', status: 'changed' })]);
    } finally {
      catalog.close();
    }
  });
});
