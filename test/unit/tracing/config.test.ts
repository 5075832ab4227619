import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import { configProblems } from '../../helpers/config.js';

const config = (extra: string): string => `
policy: { bundle: b.tar.gz }
${extra}
tools:
  - name: weather
    upstream: tool_weather
`;

describe('tracing configuration', () => {
  it('is off by default, with its defaults filled in', () => {
    expect(parseConfig(config(''), 'test.yaml').tracing).toEqual({ enabled: false, sample_ratio: 1, service_name: 'portcullis', headers: {}, timeout_s: 10, max_queue_spans: 2048 });
  });

  it('takes an OTLP/HTTP endpoint, a ratio, headers and bounds', () => {
    const cfg = parseConfig(config('tracing: { enabled: true, otlp_endpoint: "http://otel:4318/v1/traces", sample_ratio: 0.25, headers: { x-api-key: k }, timeout_s: 2, max_queue_spans: 100 }'), 'test.yaml');
    expect(cfg.tracing).toMatchObject({ enabled: true, otlp_endpoint: 'http://otel:4318/v1/traces', sample_ratio: 0.25, headers: { 'x-api-key': 'k' }, timeout_s: 2, max_queue_spans: 100 });
  });

  it('refuses tracing with nowhere to export, a ratio outside [0, 1], an unknown key or a bad header name', () => {
    expect(configProblems(config('tracing: { enabled: true }')).join('\n')).toMatch(/otlp_endpoint/);
    expect(configProblems(config('tracing: { enabled: true, otlp_endpoint: "ftp://x" }')).join('\n')).toMatch(/otlp_endpoint/);
    expect(configProblems(config('tracing: { sample_ratio: 2 }')).join('\n')).toMatch(/sample_ratio/);
    expect(configProblems(config('tracing: { exporter: zipkin }')).join('\n')).toContain('unknown key "exporter"');
    expect(configProblems(config('tracing: { headers: { "bad header": v } }')).length).toBeGreaterThan(0);
  });
});
