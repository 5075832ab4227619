import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import { GatewayError } from '../../../src/errors.js';
import { checkRouteBinding, ToolRegistry } from '../../../src/tools/registry.js';

const cfg = parseConfig(
  `
policy: { bundle: b }
tools:
  - { name: weather, upstream: w }
  - { name: tickets, upstream: t }
`,
  'c.yaml',
);
const reg = new ToolRegistry(cfg.tools);
const weather = reg.get('weather')!;

function rule(fn: () => void): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as GatewayError).rule;
  }
  return 'ok';
}

describe('route binding', () => {
  it('passes when the route names the tool the path resolves to', () => {
    expect(rule(() => checkRouteBinding(weather, { route_tool: 'weather' }))).toBe('ok');
  });
  it('denies a route bound to another tool, or to none', () => {
    const cases: (Record<string, string> | undefined)[] = [{ route_tool: 'tickets' }, {}, undefined, { route_tool: '' }, { route_tool: 'Weather' }];
    for (const ext of cases) {
      expect(rule(() => checkRouteBinding(weather, ext)), JSON.stringify(ext)).toBe('tool.route_mismatch');
    }
  });
});

describe('route binding without a required route_tool', () => {
  it('tolerates only a missing route_tool, never another tool', () => {
    expect(rule(() => checkRouteBinding(weather, undefined, false))).toBe('ok');
    expect(rule(() => checkRouteBinding(weather, {}, false))).toBe('ok');
    expect(rule(() => checkRouteBinding(weather, { route_tool: 'tickets' }, false))).toBe('tool.route_mismatch');
  });
});

describe('lookup', () => {
  it('never lists the configured tools in an error', () => {
    for (const path of ['/tools/payroll/', '/admin', '/tools/']) {
      const found = reg.lookup(path);
      expect(found.tool).toBeNull();
      expect(found.error?.code).toBe('unknown_tool');
      expect(found.error?.details).toBeUndefined();
      expect(found.error?.message).not.toMatch(/weather|tickets/);
    }
  });
});
