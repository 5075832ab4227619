import { describe, expect, it } from 'vitest';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { buildPolicyInput } from '../../../src/policy/input.js';
import { buildBundle, writePolicy } from './helpers.js';

/** Evaluates `expr` inside a compiled wasm policy: the decision is the value it produces. */
async function evaluate(exprs: Record<string, string>, body: string): Promise<Record<string, unknown>> {
  const rules = Object.entries(exprs)
    .map(([k, e]) => `r.${k} := ${e}`)
    .join('\n');
  const dir = writePolicy({ 'authz.rego': `package envoy.authz\nimport rego.v1\n${rules}\nallow := {"allowed": true, "dynamic_metadata": r}\n` });
  const { path } = buildBundle(dir);
  const engine = await PolicyEngine.open({ bundlePath: path, decision: 'envoy/authz/allow', watch: false });
  try {
    const input = buildPolicyInput({ attributes: { request: { http: { method: 'POST', path: '/', headers: { 'content-type': 'application/json' }, body } } } }, { identity: null, tool: null, mcp: null, body });
    return (engine.evaluate(input).dynamicMetadata ?? {}) as Record<string, unknown>;
  } finally {
    engine.close();
  }
}

describe('host built-ins a wasm policy can use', () => {
  it('hex.encode / hex.decode, crypto.hmac.equal, time.parse_duration_ns', async () => {
    const out = await evaluate(
      {
        hex: 'hex.encode("hi!")',
        unhex: 'hex.decode("686921")',
        same: 'crypto.hmac.equal(input.parsed_body.a, input.parsed_body.a)',
        differ: 'crypto.hmac.equal(input.parsed_body.a, input.parsed_body.b)',
        d1: 'time.parse_duration_ns("1h30m")',
        d2: 'time.parse_duration_ns("-1.5s")',
        d3: 'time.parse_duration_ns("300ms")',
        d4: 'time.parse_duration_ns("2us")',
      },
      '{"a": "0a1b2c", "b": "0a1b2d"}',
    );
    expect(out).toEqual({ hex: '686921', unhex: 'hi!', same: true, differ: false, d1: 5_400_000_000_000, d2: -1_500_000_000, d3: 300_000_000, d4: 2000 });
  });

  it('bad arguments give undefined, as OPA errors would leave the rule undefined', async () => {
    const out = await evaluate({ badhex: 'hex.decode("zz")', badDuration: 'time.parse_duration_ns("1 hour")', ok: 'true' }, '{}');
    expect(out).toEqual({ ok: true });
  });
});
