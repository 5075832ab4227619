import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { copyShippedPolicy, ROOT } from './helpers.js';

function testPolicy(dir?: string): { status: number | null; out: string } {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.OPA;
  if (dir) env.POLICY_DIR = dir;
  else delete env.POLICY_DIR;
  const r = spawnSync('bash', [join(ROOT, 'scripts/test-policy.sh')], { env, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('shipped Rego policy (opa test via scripts/test-policy.sh)', () => {
  it('passes every Rego test', () => {
    const r = testPolicy();
    expect(r.out).toMatch(/PASS: (\d+)\/\1/);
    expect(r.out).not.toContain('FAIL');
    expect(r.status).toBe(0);
    // One test per rule at least, each with its negative case.
    for (const name of [
      'test_identity_required_when_identity_null',
      'test_identity_required_not_raised_for_identified_caller',
      'test_agent_not_bound_reporter_tickets',
      'test_agent_bound_helpdesk_tickets',
      'test_role_not_allowed_without_roles',
      'test_admin_wildcard_grants_any_tool',
      'test_tenant_mismatch_in_path',
      'test_tenant_match_in_path_allowed',
      'test_read_only_viewer_mutating_http',
      'test_read_only_viewer_reading_allowed',
      'test_first_denial_is_deterministic',
    ]) {
      expect(r.out).toContain(`data.envoy.authz_test.${name}: PASS`);
    }
  });

  it('fails when a Rego test fails', () => {
    const dir = copyShippedPolicy();
    writeFileSync(join(dir, 'extra_test.rego'), 'package envoy.extra_test\n\nimport data.envoy.authz\n\ntest_wrong if {\n\td := authz.allow with input as {}\n\td.allowed == true\n}\n');
    const r = testPolicy(dir);
    expect(r.status).not.toBe(0);
    expect(r.out).toContain('test_wrong: FAIL');
  });
});
