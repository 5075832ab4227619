import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import { configProblems } from '../../helpers/config.js';

const tools = 'tools:\n  - name: weather\n    upstream: tool_weather\n';

describe('policy bundle and decision log configuration', () => {
  it('defaults: bundle name authz, no signing, no service, no decision logs', () => {
    const cfg = parseConfig(`policy: { bundle: b.tar.gz }\n${tools}`, '/etc/p/c.yaml');
    expect(cfg.policy.bundle_name).toBe('authz');
    expect(cfg.policy.signing).toBeUndefined();
    expect(cfg.policy.bundle_service).toBeUndefined();
    expect(cfg.decision_logs).toBeUndefined();
  });

  it('a bundle service replaces the bundle file, with OPA-like polling defaults', () => {
    const cfg = parseConfig(`policy: { bundle_service: { url: "https://b.example/bundle.tar.gz" } }\n${tools}`, '/etc/p/c.yaml');
    expect(cfg.policy.bundle).toBeUndefined();
    expect(cfg.policy.bundle_service).toEqual({ url: 'https://b.example/bundle.tar.gz', headers: {}, timeout_s: 10, polling: { min_delay_seconds: 60, max_delay_seconds: 120 } });
  });

  it('a policy needs a bundle file or a bundle service', () => {
    expect(configProblems(`policy: { decision: envoy/authz/allow }\n${tools}`).join('\n')).toMatch(/bundle/);
  });

  it('signing keys in OPA shape; key or key_file, a known algorithm', () => {
    const ok = parseConfig(`policy: { bundle: b.tar.gz, signing: { keys: { k1: { algorithm: RS256, key_file: pub.pem } }, scope: write } }\n${tools}`, '/etc/p/c.yaml');
    expect(ok.policy.signing).toEqual({ keys: { k1: { algorithm: 'RS256', key_file: 'pub.pem' } }, scope: 'write', exclude_files: [] });
    expect(configProblems(`policy: { bundle: b.tar.gz, signing: { keys: { k1: { algorithm: none, key: x } } } }\n${tools}`).length).toBeGreaterThan(0);
    expect(configProblems(`policy: { bundle: b.tar.gz, signing: { keys: { k1: { algorithm: RS256 } } } }\n${tools}`).length).toBeGreaterThan(0);
    expect(configProblems(`policy: { bundle: b.tar.gz, signing: { keys: {} } }\n${tools}`).length).toBeGreaterThan(0);
  });

  it('decision logs: defaults, and mask pointers only under /input or /result', () => {
    const cfg = parseConfig(`policy: { bundle: b.tar.gz }\ndecision_logs: { console: true, service: { url: "http://logs.example" } }\n${tools}`, '/etc/p/c.yaml');
    expect(cfg.decision_logs).toEqual({
      console: true,
      service: { url: 'http://logs.example', resource: '/logs', headers: {}, timeout_s: 10, max_batch_bytes: 32768, max_buffer_bytes: 10485760, interval_s: 5 },
      mask: [],
      mask_defaults: true,
      labels: {},
    });
    expect(configProblems(`policy: { bundle: b.tar.gz }\ndecision_logs: { mask: ["/labels/id"] }\n${tools}`).length).toBeGreaterThan(0);
    expect(configProblems(`policy: { bundle: b.tar.gz }\ndecision_logs: { mask: [{ op: replace, path: /input/x }] }\n${tools}`).length).toBeGreaterThan(0);
    parseConfig(`policy: { bundle: b.tar.gz }\ndecision_logs: { mask: ["/input/a", { op: upsert, path: /result/b, value: 1 }] }\n${tools}`, '/etc/p/c.yaml');
  });
});
