import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadConfig } from '../../../src/config/load.js';

/** The `tools[].mcp` block: optional overrides, safe defaults, refused typos. */

const dir = mkdtempSync(join(tmpdir(), 'mcp-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

function load(mcp: unknown): ReturnType<typeof loadConfig> {
  const file = join(dir, `c${n++}.yaml`);
  writeFileSync(
    file,
    stringify({
      server: { grpc_address: '127.0.0.1', grpc_plaintext: true },
      identity: { jwt: [{ issuer: 'https://issuer.example', audiences: ['gw'], jwks_file: 'jwks.json', algorithms: ['ES256'] }] },
      policy: { bundle: 'bundle.tar.gz' },
      tools: [{ name: 'docs', upstream: 'tool_docs', mcp }],
    }),
  );
  return loadConfig(file);
}

describe('tools[].mcp', () => {
  it('needs no tool list, and defaults to blocking changed definitions and hiding poisoned ones', () => {
    const mcp = load({}).tools[0]!.mcp!;
    expect(mcp).toEqual({ tools: {}, on_change: 'block', poisoning: 'hide', pins: {}, refresh_s: 300, discovery_timeout_ms: 1500, allowed_origins: [] });
  });

  it('keeps overrides optional per field: mutating left out is decided by the server annotations', () => {
    const mcp = load({ tools: { search: { input_schema: 's.json' } }, server_url: 'http://docs:8080/mcp', pins_file: 'pins.json' }).tools[0]!.mcp!;
    expect(mcp.tools.search).toEqual({ input_schema: 's.json' });
    expect(mcp.server_url).toBe('http://docs:8080/mcp');
  });

  it('refuses unknown modes, bad pins and non-HTTP server URLs', () => {
    expect(() => load({ on_change: 'ignore' })).toThrow(/on_change/);
    expect(() => load({ poisoning: 'allow' })).toThrow(/poisoning/);
    expect(() => load({ pins: { search: 'abc' } })).toThrow(/pins/);
    expect(() => load({ server_url: 'file:///etc/passwd' })).toThrow(/server_url/);
    expect(() => load({ refresh: 5 })).toThrow(/refresh/);
  });
});
