import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { ROOT, buildBundle, tempDir, writePolicy } from './helpers.js';

/** `opa build -b -t wasm`: bundle mode keeps the Rego sources whole beside policy.wasm. */
function bundleModeBuild(dir: string): string {
  const out = join(tempDir(), 'bundle.tar.gz');
  execFileSync(join(ROOT, '.tools/bin/opa'), ['build', '-b', '-t', 'wasm', '-e', 'envoy/authz/allow', '-o', out, '.'], { cwd: dir, stdio: 'ignore' });
  return out;
}

const POLICY = [
  'package envoy.authz',
  'import rego.v1',
  'default allow := false',
  '',
  '# http.send is not available to wasm policies',
  'allow if {',
  '  resp := http.send({"method": "GET", "url": "http://opa.example/allow"})',
  '  resp.status_code == 200',
  '}',
  '',
  'allow if time.weekday(time.now_ns()) == "Sunday"',
  '',
  'audited if input.attributes.request.http.method == "POST"',
].join('\n');

describe('built-ins the wasm runtime lacks', () => {
  it('load names each missing built-in and the rule that calls it (bundle mode)', async () => {
    const dir = writePolicy({ 'authz.rego': POLICY });
    const path = bundleModeBuild(dir);
    const err = await PolicyEngine.open({ bundlePath: path, decision: 'envoy/authz/allow', watch: false }).then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/uses built-in functions the wasm runtime does not provide: http\.send \(called from data\.envoy\.authz\.allow\); time\.weekday \(called from data\.envoy\.authz\.allow\)/);
    // time.now_ns is provided by the gateway: not reported.
    expect(err?.message).not.toMatch(/time\.now_ns/);
  });

  it('the same from the project build script (opa build without -b)', async () => {
    const { path } = buildBundle(writePolicy({ 'authz.rego': POLICY }));
    const err = await PolicyEngine.open({ bundlePath: path, decision: 'envoy/authz/allow', watch: false }).then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/http\.send \(called from data\.envoy\.authz\.allow\)/);
    expect(err?.message).toMatch(/time\.weekday/);
  });

  it('`portcullis check` reports the same, instead of failing at the first call', () => {
    const dir = writePolicy({ 'authz.rego': POLICY });
    const path = bundleModeBuild(dir);
    const config = join(dir, 'portcullis.yaml');
    execFileSync('bash', ['-c', `cat > ${config}`], {
      input: [
        'server: { grpc_plaintext: true, grpc_address: 127.0.0.1 }',
        `policy: { bundle: ${path} }`,
        'identity: { required: false }',
        'tools: [{ name: docs, upstream: tool_docs }]',
      ].join('\n'),
    });
    let out = '';
    try {
      execFileSync(process.execPath, [join(ROOT, 'dist/main.js'), 'check', '--config', config], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      const ex = e as { stdout?: string; stderr?: string };
      out = `${ex.stdout ?? ''}${ex.stderr ?? ''}`;
    }
    expect(out).toMatch(/\$\.policy: .*http\.send \(called from data\.envoy\.authz\.allow\)/);
  });
});
