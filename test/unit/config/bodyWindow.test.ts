import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_MAX_BODY_BYTES, parseConfig } from '../../../src/config/load.js';
import { configProblems } from '../../helpers/config.js';

function config(tools: string, inspect = ''): string {
  return `
policy: { bundle: b.tar.gz }
${inspect}
tools:
${tools}
`;
}

const problems = configProblems;

describe('body limits against what the Check reads whole', () => {
  it('defaults a JSON tool to inspect.check_body_bytes and any other tool to 1 MiB', () => {
    const cfg = parseConfig(
      config(`
  - { name: plain, upstream: u }
  - { name: json, upstream: u, request: { schema: s.json } }
  - { name: rpc, upstream: u, mcp: { tools: { a: {} } } }`),
      'test.yaml',
    );
    expect(cfg.inspect.check_body_bytes).toBe(65536);
    expect(cfg.tools.map((t) => t.request.max_body_bytes)).toEqual([DEFAULT_MAX_BODY_BYTES, 65536, 65536]);
  });

  it('follows a configured check_body_bytes', () => {
    const cfg = parseConfig(config(`  - { name: json, upstream: u, request: { schema: s.json } }`, 'inspect: { check_body_bytes: 32768 }'), 'test.yaml');
    expect(cfg.tools[0]?.request.max_body_bytes).toBe(32768);
  });

  it('refuses a JSON or MCP tool whose limit the Check cannot read whole, naming each tool', () => {
    const found = problems(
      config(`
  - { name: plain, upstream: u, request: { max_body_bytes: 10485760 } }
  - { name: tickets, upstream: u, request: { schema: s.json, max_body_bytes: 1048576 } }
  - { name: docs, upstream: u, request: { max_body_bytes: 65537 }, mcp: { tools: { a: {} } } }
  - { name: fine, upstream: u, request: { schema: s.json, max_body_bytes: 65536 } }`),
    );
    expect(found).toHaveLength(2);
    expect(found[0]).toMatch(/^\$\.tools\[1\]\.request\.max_body_bytes: tool "tickets" takes JSON bodies \(request\.schema\) up to 1048576 bytes.*check_body_bytes \(65536/);
    expect(found[1]).toMatch(/^\$\.tools\[2\]\.request\.max_body_bytes: tool "docs" takes JSON bodies \(MCP\) up to 65537 bytes/);
  });
});
