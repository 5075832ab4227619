import { describe, expect, it } from 'vitest';
import type { ToolConfig } from '../../../src/config/types.js';
import { GatewayError } from '../../../src/errors.js';
import { compileTransportGuard, normalizeOrigin } from '../../../src/mcp/origin.js';
import { parseConfig } from '../../../src/config/load.js';

function tool(mcp: { allowed_origins?: string[]; allowed_hosts?: string[] }): ToolConfig {
  return {
    name: 'docs',
    upstream: 'tool_docs',
    external: false,
    dry_run: false,
    credentials: [],
    request: { max_body_bytes: 65536, injection: 'off', dlp: false },
    mcp: { tools: {}, on_change: 'block', poisoning: 'hide', pins: {}, refresh_s: 300, discovery_timeout_ms: 1500, ...mcp },
    response: { drop_fields: [], dlp: false, binary: 'inspect' },
  };
}

function refusedRule(fn: () => void): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(GatewayError);
    expect((e as GatewayError).httpStatus).toBe(403);
    return (e as GatewayError).rule;
  }
  return undefined;
}

describe('origins', () => {
  it('normalises scheme and host case and default ports; anything but an origin is not one', () => {
    expect(normalizeOrigin('HTTPS://App.Example.com:443')).toBe('https://app.example.com');
    expect(normalizeOrigin('http://localhost:3000')).toBe('http://localhost:3000');
    expect(normalizeOrigin('null')).toBe('null');
    for (const bad of ['app.example.com', 'https://app.example.com/path', 'https://user@app.example.com', 'https://app.example.com?x', '']) {
      expect(normalizeOrigin(bad), bad).toBeNull();
    }
  });

  it('default: no Origin passes, any Origin is refused (mcp.origin)', () => {
    const g = compileTransportGuard(tool({}));
    expect(refusedRule(() => g.check({}, '127.0.0.1:10000'))).toBeUndefined();
    expect(refusedRule(() => g.check({ origin: 'http://localhost:10000' }, 'localhost:10000'))).toBe('mcp.origin');
    expect(refusedRule(() => g.check({ origin: 'null' }, undefined))).toBe('mcp.origin');
  });

  it('a listed origin passes in any spelling; look-alikes, other ports and schemes, joined values do not', () => {
    const g = compileTransportGuard(tool({ allowed_origins: ['https://app.example.com'] }));
    expect(refusedRule(() => g.check({ origin: 'https://APP.example.com:443' }, undefined))).toBeUndefined();
    for (const bad of ['https://app.example.com.evil.com', 'http://app.example.com', 'https://app.example.com:8443', 'https://evil.com, https://app.example.com', 'https://app.example.com,https://app.example.com']) {
      expect(refusedRule(() => g.check({ origin: bad }, undefined)), bad).toBe('mcp.origin');
    }
  });

  it('"*" allows any origin', () => {
    const g = compileTransportGuard(tool({ allowed_origins: ['*'] }));
    expect(refusedRule(() => g.check({ origin: 'http://anything.example' }, undefined))).toBeUndefined();
  });

  it('an entry that is not an origin is a configuration error', () => {
    expect(() => compileTransportGuard(tool({ allowed_origins: ['app.example.com'] }))).toThrow(/allowed_origins/);
  });
});

describe('hosts', () => {
  it('unset: any host passes', () => {
    const g = compileTransportGuard(tool({}));
    expect(refusedRule(() => g.check({}, 'evil.example.com'))).toBeUndefined();
  });

  it('names match on any port, name:port exactly, *.suffix any subdomain only; case and a trailing dot do not matter', () => {
    const g = compileTransportGuard(tool({ allowed_hosts: ['localhost', '127.0.0.1:10000', '*.gw.example.com', '[::1]'] }));
    for (const ok of ['localhost', 'LOCALHOST:8080', 'localhost.', '127.0.0.1:10000', 'a.gw.example.com', 'a.b.gw.example.com:443', '[::1]:10000']) {
      expect(refusedRule(() => g.check({}, ok)), ok).toBeUndefined();
    }
    for (const bad of ['evil.example.com', '127.0.0.1:10001', '127.0.0.1', 'gw.example.com', 'xgw.example.com', 'localhost.evil.com', 'localhost:80,evil.com', '']) {
      expect(refusedRule(() => g.check({}, bad)), bad).toBe('mcp.host');
    }
  });

  it('falls back to the :authority header when Envoy gives no host attribute', () => {
    const g = compileTransportGuard(tool({ allowed_hosts: ['localhost'] }));
    expect(refusedRule(() => g.check({ ':authority': 'evil.example.com' }, undefined))).toBe('mcp.host');
    expect(refusedRule(() => g.check({ ':authority': 'localhost:1' }, undefined))).toBeUndefined();
  });

  it('an entry that is not a host is a configuration error', () => {
    expect(() => compileTransportGuard(tool({ allowed_hosts: ['http://localhost'] }))).toThrow(/allowed_hosts/);
  });
});

describe('configuration', () => {
  const yaml = (mcp: string): string => `
policy: { bundle: b.tar.gz }
tools:
  - name: docs
    upstream: tool_docs
    mcp: { tools: { search_docs: {} }${mcp} }
`;

  it('defaults to no allowed origin and no host check', () => {
    const t = parseConfig(yaml(''), '/etc/portcullis/c.yaml').tools[0]!;
    expect(t.mcp?.allowed_origins).toEqual([]);
    expect(t.mcp?.allowed_hosts).toBeUndefined();
  });

  it('accepts origins and hosts, refuses entries that are neither', () => {
    const t = parseConfig(yaml(', allowed_origins: [https://app.example.com, "*"], allowed_hosts: [localhost, "gw.example.com:443", "*.example.com", "[::1]"]'), '/etc/portcullis/c.yaml').tools[0]!;
    expect(t.mcp?.allowed_hosts).toHaveLength(4);
    expect(() => parseConfig(yaml(', allowed_origins: [app.example.com]'), '/etc/portcullis/c.yaml')).toThrow(/allowed_origins/);
    expect(() => parseConfig(yaml(', allowed_origins: ["https://app.example.com/path"]'), '/etc/portcullis/c.yaml')).toThrow(/allowed_origins/);
    expect(() => parseConfig(yaml(', allowed_hosts: ["http://localhost"]'), '/etc/portcullis/c.yaml')).toThrow(/allowed_hosts/);
  });
});
