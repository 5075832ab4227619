import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseConfig } from '../../../src/config/load.js';
import { grpcChannel, isLoopback } from '../../../src/config/server.js';
import { channelProblems } from '../../../src/server/listener.js';
import { makeCa, makeLeaf } from '../../../src/demo/pki.js';

/** The server section: which gRPC channels a config may ask for, and the admin port's rules. */

const REST = `
policy: { bundle: b }
tools: [{ name: t, upstream: u }]
`;

function problems(server: string, requireChannel = true): string[] {
  try {
    parseConfig(`server: ${server}\n${REST}`, 'c.yaml', { requireChannel });
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.problems.map((p) => `${p.path}: ${p.message}`);
  }
}

const TLS = '{ ca: ca.crt, cert: s.crt, key: s.key, client_sans: [spiffe://x/envoy] }';

describe('server section', () => {
  it('binds both ports to loopback by default', () => {
    const cfg = parseConfig(REST, 'c.yaml');
    expect(cfg.server.grpc_address).toBe('127.0.0.1');
    expect(cfg.server.admin_address).toBe('127.0.0.1');
    expect(cfg.server.grpc_plaintext).toBe(false);
  });

  it('a file to serve must configure an authenticated channel: nothing is plaintext by default', () => {
    const list = problems('{ grpc_port: 9191 }');
    expect(list).toHaveLength(1);
    expect(list[0]).toMatch(/^\$\.server: the gRPC port from Envoy must be authenticated: set server\.grpc_tls/);
    const dir = mkdtempSync(join(tmpdir(), 'pc-server-'));
    writeFileSync(join(dir, 'c.yaml'), REST);
    expect(() => loadConfig(join(dir, 'c.yaml'))).toThrow(/must be authenticated/);
  });

  it('accepts mTLS, a unix socket, or plaintext explicitly on loopback', () => {
    expect(problems(`{ grpc_address: 0.0.0.0, grpc_tls: ${TLS} }`)).toEqual([]);
    expect(problems('{ grpc_address: "unix:///run/portcullis/grpc.sock", grpc_socket_mode: "0660" }')).toEqual([]);
    expect(problems('{ grpc_address: 127.0.0.1, grpc_plaintext: true }')).toEqual([]);
    expect(problems('{ grpc_address: "::1", grpc_plaintext: true }')).toEqual([]);
  });

  it('refuses plaintext off loopback, and says what to do instead', () => {
    for (const address of ['0.0.0.0', '10.0.0.5', 'localhost', 'portcullis.internal', '::']) {
      const list = problems(`{ grpc_address: "${address}", grpc_plaintext: true }`);
      expect(list, address).toHaveLength(1);
      expect(list[0]).toContain('$.server.grpc_address: plaintext gRPC is only allowed on a loopback address');
      expect(list[0]).toContain('grpc_tls');
    }
  });

  it('reports every server problem at once, with the schema checking the TLS block', () => {
    const list = problems('{ grpc_address: "unix:///s.sock", grpc_tls: ' + TLS + ', grpc_plaintext: true, admin_address: 0.0.0.0 }');
    expect(list.map((p) => p.split(':')[0])).toEqual(['$.server.grpc_tls', '$.server.grpc_plaintext', '$.server.admin_token']);
    expect(problems('{ grpc_tls: { ca: a, cert: b } }').join('\n')).toMatch(/missing required key "key"[\s\S]*missing required key "client_sans"/);
    expect(problems('{ grpc_address: "unix:///s.sock", grpc_socket_mode: "0999" }').join('\n')).toContain('$.server.grpc_socket_mode');
  });

  it('the admin port off loopback needs a token', () => {
    expect(problems(`{ grpc_tls: ${TLS}, admin_address: 0.0.0.0 }`)).toEqual([
      '$.server.admin_token: required when admin_address ("0.0.0.0") is not a loopback address: metrics and reload must not be open to the network',
    ]);
    expect(problems(`{ grpc_tls: ${TLS}, admin_address: 0.0.0.0, admin_token: { env: ADMIN_TOKEN } }`)).toEqual([]);
  });

  it('resolves the channel with file paths against the config folder', () => {
    const cfg = parseConfig(`server: { grpc_address: 0.0.0.0, grpc_port: 1234, grpc_tls: ${TLS} }\n${REST}`, '/etc/pc/c.yaml', { requireChannel: true });
    expect(grpcChannel(cfg.server, cfg.base_dir)).toEqual({ kind: 'mtls', host: '0.0.0.0', port: 1234, ca: '/etc/pc/ca.crt', cert: '/etc/pc/s.crt', key: '/etc/pc/s.key', clientSans: ['spiffe://x/envoy'] });
    const unix = parseConfig(`server: { grpc_address: "unix:run/g.sock" }\n${REST}`, '/etc/pc/c.yaml');
    expect(grpcChannel(unix.server, unix.base_dir)).toEqual({ kind: 'unix', path: '/etc/pc/run/g.sock', mode: 0o600 });
    // Never an open port by accident, even for a config that skipped the channel check.
    expect(() => grpcChannel(parseConfig(REST, 'c.yaml').server, '/')).toThrow(/must be authenticated/);
  });

  it('knows loopback addresses', () => {
    expect(['127.0.0.1', '127.1.2.3', '::1', '[::1]'].every(isLoopback)).toBe(true);
    expect(['0.0.0.0', '::', 'localhost', '10.0.0.1', '128.0.0.1'].some(isLoopback)).toBe(false);
  });

  it('portcullis check finds TLS files that cannot serve: a key of another certificate, a missing file, no socket folder', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pc-channel-'));
    const ca = await makeCa(dir, 'ca');
    const server = await makeLeaf(dir, 'server', ca, 'serverAuth', 'DNS:localhost');
    const other = await makeLeaf(dir, 'other', ca, 'clientAuth', 'URI:spiffe://x/envoy');
    const mtls = { kind: 'mtls' as const, host: '127.0.0.1', port: 0, ca: ca.cert, cert: server.cert, key: server.key, clientSans: ['spiffe://x/envoy'] };
    expect(channelProblems(mtls)).toEqual([]);
    expect(channelProblems({ ...mtls, key: other.key })[0]).toMatch(/^\$\.server\.grpc_tls: .*key values mismatch/);
    expect(channelProblems({ ...mtls, ca: join(dir, 'missing.crt') })[0]).toMatch(/ENOENT/);
    expect(channelProblems({ kind: 'unix', path: join(dir, 'nope', 'g.sock'), mode: 0o600 })[0]).toContain('does not exist');
  });
});
