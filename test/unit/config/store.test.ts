import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import { RateLimiter } from '../../../src/limits/tokenBucket.js';
import { configProblems } from '../../helpers/config.js';

const config = (extra: string, toolExtra = ''): string => `
policy: { bundle: b.tar.gz }
${extra}
tools:
  - name: weather
    upstream: tool_weather
${toolExtra}
`;

const problems = configProblems;

describe('store and rate_limits configuration', () => {
  it('defaults: an in-memory store and no limits', () => {
    const cfg = parseConfig(config(''), 'test.yaml');
    expect(cfg.store).toEqual({ kind: 'memory' });
    expect(cfg.rate_limits).toEqual([]);
    expect(cfg.tools[0]?.rate_limits).toEqual([]);
  });

  it('redis with its defaults; limits with theirs', () => {
    const cfg = parseConfig(
      config(
        'store: { kind: redis, redis: { url: "redis://r:6379/1" } }\nrate_limits: [{ name: per-tenant, per: [tenant, tool], rps: 2 }]',
        '    rate_limits: [{ name: per-tool, per: [mcp_tool, method], rps: 1, burst: 3, on_store_error: allow_local }]',
      ),
      'test.yaml',
    );
    expect(cfg.store).toEqual({ kind: 'redis', redis: { url: 'redis://r:6379/1', key_prefix: 'portcullis:', timeout_ms: 200, connect_timeout_ms: 2000, max_retries: 1 } });
    expect(cfg.rate_limits).toEqual([{ name: 'per-tenant', per: ['tenant', 'tool'], rps: 2, burst: 10 }]);
    expect(cfg.tools[0]?.rate_limits).toEqual([{ name: 'per-tool', per: ['mcp_tool', 'method'], rps: 1, burst: 3, on_store_error: 'allow_local' }]);
  });

  it('refuses what would be ambiguous or unbounded', () => {
    expect(problems(config('store: { kind: redis, redis: { url: "http://r" } }')).join('\n')).toMatch(/store\.redis\.url|store\/redis\/url/);
    expect(problems(config('store: { kind: redis, redis: { url: "redis://r", timeout: 5 } }')).join('\n')).toContain('unknown key "timeout"');
    expect(problems(config('store: { kind: redis }')).join('\n')).toContain('missing required key "redis"');
    expect(problems(config('rate_limits: [{ name: a, per: [ip], rps: 1 }]')).join('\n')).toContain('must be one of');
    expect(problems(config('rate_limits: [{ name: a, per: [tenant, tenant], rps: 1 }]')).length).toBeGreaterThan(0);
    expect(problems(config('rate_limits: [{ name: a, rps: 0 }]')).length).toBeGreaterThan(0);
    expect(problems(config('rate_limits: [{ name: "Bad Name", rps: 1 }]')).length).toBeGreaterThan(0);
    // Names that would make two denials look alike are refused when the limits are compiled.
    const dup = parseConfig(config('rate_limits: [{ name: a, rps: 1 }, { name: a, rps: 2 }]'), 'test.yaml');
    expect(() => new RateLimiter().prepare(dup)).toThrow(/"a" is used twice/);
  });
});
