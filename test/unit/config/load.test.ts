import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { parseConfig } from '../../../src/config/load.js';
import { configProblems } from '../../helpers/config.js';

const minimal = `
policy: { bundle: b.tar.gz }
tools:
  - name: weather
    upstream: tool_weather
`;

const withIdentity = (identity: string): string => `
identity: ${identity}
policy: { bundle: b.tar.gz }
tools:
  - name: weather
    upstream: tool_weather
`;

const problems = configProblems;

describe('config loading', () => {
  it('applies defaults to a minimal config', () => {
    const cfg = parseConfig(minimal, '/etc/portcullis/config.yaml');
    expect(cfg.server.grpc_port).toBe(9191);
    expect(cfg.server.admin_port).toBe(9464);
    expect(cfg.identity.required).toBe(true);
    expect(cfg.policy.decision).toBe('envoy/authz/allow');
    expect(cfg.tools[0]?.request.max_body_bytes).toBe(1048576);
    expect(cfg.tools[0]?.external).toBe(false);
    expect(cfg.base_dir).toBe('/etc/portcullis');
  });

  it('reports every problem at once, each with its path', () => {
    const list = problems(`
server: { grpc_port: 99999, colour: blue }
identity:
  jwt:
    - issuer: x
      audiences: []
      jwks_file: k.json
      algorithms: [HS256]
policy: { bundle: b.tar.gz, dry_run: "yes" }
tools:
  - name: Weather!
    upstream: u
`);
    expect(list).toContain('$.server: unknown key "colour"');
    expect(list.some((p) => p.startsWith('$.server.grpc_port:'))).toBe(true);
    expect(list.some((p) => p.startsWith('$.identity.jwt[0].audiences:'))).toBe(true);
    expect(list.some((p) => p.startsWith('$.identity.jwt[0].algorithms[0]:'))).toBe(true);
    expect(list.some((p) => p.startsWith('$.policy.dry_run:'))).toBe(true);
    expect(list.some((p) => p.startsWith('$.tools[0].name:'))).toBe(true);
  });

  it('rejects alg none and duplicate tools', () => {
    expect(problems(minimal.replace('tools:', 'identity: { jwt: [{ issuer: i, audiences: [a], jwks_file: k, algorithms: [none] }] }\ntools:')).join('\n')).toMatch(
      /algorithms\[0\]/,
    );
    expect(problems(`${minimal}  - name: weather\n    upstream: other\n`)).toContain('$.tools[1].name: duplicate tool name "weather" (also $.tools[0])');
  });

  it('reports YAML syntax errors with a line', () => {
    expect(problems('policy: {bundle: [\n')[0]).toMatch(/^line \d+/);
  });

  it('accepts the shipped demo configuration', () => {
    const cfg = parseConfig(readFileSync('scripts/demo/portcullis.yaml', 'utf8'), 'scripts/demo/portcullis.yaml');
    expect(cfg.tools.map((t) => t.name)).toEqual(['weather', 'tickets', 'docs', 'payments', 'exports', 'llm']);
  });
});

describe('identity.token_cache_size', () => {
  it('defaults to 10000 verified tokens', () => {
    expect(parseConfig(withIdentity('{}'), 'test.yaml').identity.token_cache_size).toBe(10000);
  });

  it('accepts 0 (verify every request) and an explicit size', () => {
    expect(parseConfig(withIdentity('{ token_cache_size: 0 }'), 'test.yaml').identity.token_cache_size).toBe(0);
    expect(parseConfig(withIdentity('{ token_cache_size: 500 }'), 'test.yaml').identity.token_cache_size).toBe(500);
  });

  it('rejects a negative, fractional, unbounded or non-numeric size', () => {
    for (const bad of ['-1', '1.5', '100000000', '"big"']) {
      expect(problems(withIdentity(`{ token_cache_size: ${bad} }`)).some((p) => p.startsWith('$.identity.token_cache_size:'))).toBe(true);
    }
  });
});
