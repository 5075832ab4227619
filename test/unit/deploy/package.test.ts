import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { repoPath } from '../../helpers/paths.js';
import { pinnedVersion } from './support.js';

interface PackageJson {
  engines: { node: string };
  bin: Record<string, string>;
  files: string[];
  exports: Record<string, string>;
  dependencies: Record<string, string>;
}

const pkg = JSON.parse(readFileSync(repoPath('package.json'), 'utf8')) as PackageJson;

type Version = [number, number, number];

function parseVersion(text: string): Version {
  const m = /^v?(\d+)\.(\d+)\.(\d+)$/.exec(text.trim());
  if (!m) throw new Error(`not a version: ${text}`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

/** `^X.Y.Z || ^A.B.C` (the only form `engines` uses): same major, not older than the floor. */
function satisfies(version: string, range: string): boolean {
  const v = parseVersion(version);
  return range.split('||').some((part) => {
    const m = /^\s*\^(\d+\.\d+\.\d+)\s*$/.exec(part);
    if (!m) throw new Error(`engines range part "${part}" is not a caret range`);
    const floor = parseVersion(m[1]!);
    if (v[0] !== floor[0]) return false;
    return v[1] > floor[1] || (v[1] === floor[1] && v[2] >= floor[2]);
  });
}

describe('package.json', () => {
  it('admits the Node.js this suite runs on, the one the scripts pin, and no end-of-life one', () => {
    expect(satisfies(process.version, pkg.engines.node), `${process.version} vs engines ${pkg.engines.node}`).toBe(true);
    expect(satisfies(pinnedVersion('NODE_VERSION'), pkg.engines.node)).toBe(true);
    // Node 20 reached end of life in April 2026: it is not admitted.
    expect(satisfies('20.20.2', pkg.engines.node)).toBe(false);
  });

  it('publishes the built CLI and its runtime files, not sources, tests or tools', () => {
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: repoPath(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const files = (JSON.parse(out) as [{ files: { path: string }[] }])[0].files.map((f) => f.path);
    for (const bin of Object.values(pkg.bin)) expect(files).toContain(bin.replace(/^\.\//, ''));
    expect(files).toContain('dist/server/app.js');
    expect(files).toContain('envoy/envoy.yaml');
    expect(files).toContain('scripts/demo/portcullis.yaml');
    for (const f of files) expect(f, f).not.toMatch(/^(src|test|bench|\.tools|node_modules|\.ci)\/|\.map$/);
  });

  it('exposes no importable module (a CLI, not a library) and depends on nothing unused', () => {
    expect(Object.keys(pkg.exports)).toEqual(['./package.json']);
    // Envoy's messages, Struct included, are encoded by proto-loader (protobufjs); google-protobuf is not used.
    expect(pkg.dependencies).not.toHaveProperty('google-protobuf');
  });
});
