import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import { ToolRegistry, isMutating } from '../../../src/tools/registry.js';
import { GatewayError } from '../../../src/errors.js';

const cfg = parseConfig(
  `
policy: { bundle: b }
tools:
  - { name: weather, upstream: w }
  - { name: docs, upstream: d, mcp: { tools: { search: { mutating: false }, remove: { mutating: true } } } }
  - { name: ro, upstream: r, mutating: false }
`,
  'c.yaml',
);
const reg = new ToolRegistry(cfg.tools);

function code(path: string): string {
  try {
    reg.resolve(path);
    return 'ok';
  } catch (err) {
    return (err as GatewayError).code;
  }
}

describe('tool registry', () => {
  it('resolves logical tool paths', () => {
    expect(reg.resolve('/tools/weather/forecast?city=x').name).toBe('weather');
    expect(reg.resolve('/tools/weather').name).toBe('weather');
    expect(reg.resolve('/tools/weather?x=1').name).toBe('weather');
  });

  it('rejects unknown tools and direct upstream addressing', () => {
    expect(code('/tools/nope/x')).toBe('unknown_tool');
    expect(code('/tools/weatherx/x')).toBe('unknown_tool');
    expect(code('/admin')).toBe('unknown_tool');
    expect(code('http://10.0.0.1:8080/weather')).toBe('invalid_request');
    expect(code('//upstream/weather')).toBe('invalid_request');
  });

  it('infers mutation from explicit setting, MCP tool, then method', () => {
    const [weather, docs, ro] = cfg.tools;
    expect(isMutating(weather!, 'GET', [])).toBe(false);
    expect(isMutating(weather!, 'POST', [])).toBe(true);
    expect(isMutating(docs!, 'POST', ['search'])).toBe(false);
    expect(isMutating(docs!, 'POST', ['remove'])).toBe(true);
    expect(isMutating(docs!, 'POST', ['unknown'])).toBe(true);
    expect(isMutating(docs!, 'POST', [])).toBe(false);
    expect(isMutating(ro!, 'DELETE', [])).toBe(false);
  });
});
