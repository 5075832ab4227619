import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { configSchema } from '../../../src/config/schema.js';
import { repoPath } from '../../helpers/paths.js';
import { deployTool, envoyClusterPort, pinnedVersion, runCheck, type Json } from './support.js';

/**
 * docker-compose.yml and the Dockerfile are shipped for users but cannot run here (no engine):
 * they are checked against the Compose Specification schema (vendored, pinned, in
 * check-jsonschema) and against what the native setup uses (pinned versions, envoy.yaml, ports).
 */

const COMPOSE = repoPath('docker-compose.yml');
const compose = parse(readFileSync(COMPOSE, 'utf8'), { merge: true }) as { services: Record<string, Json> };
const envoy = parse(readFileSync(repoPath('envoy', 'envoy.yaml'), 'utf8')) as Json;
const dockerfile = readFileSync(repoPath('Dockerfile'), 'utf8');
const serverDefaults = (configSchema.properties.server as { properties: Record<string, { default?: unknown }> }).properties;
const tmp = mkdtempSync(join(tmpdir(), 'compose-check-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function validateCompose(file: string): { status: number; output: string } {
  return runCheck(deployTool('check-jsonschema'), ['--builtin-schema', 'vendor.compose-spec', file]);
}

/** An image reference pinned to a version tag: a tag with a digit, never `latest` or a moving `-latest`. */
function pinnedTag(image: string): boolean {
  const tag = /:([^/:@]+)$/.exec(image)?.[1];
  return tag !== undefined && /\d/.test(tag) && !/latest/.test(tag);
}

describe('docker-compose.yml', () => {
  it('is valid against the Compose Specification schema, and the check catches a misspelt key', () => {
    const ok = validateCompose(COMPOSE);
    expect(ok.output).toContain('validation done');
    expect(ok.status).toBe(0);
    const bad = join(tmp, 'bad.yml');
    writeFileSync(bad, readFileSync(COMPOSE, 'utf8').replace('restart: unless-stopped', 'restrat: unless-stopped'));
    const res = validateCompose(bad);
    expect(res.status).not.toBe(0);
    expect(res.output).toContain('restrat');
  });

  it('runs every image pinned by tag, Envoy at the version the native setup installs', () => {
    expect(pinnedTag('envoyproxy/envoy:v1.40-latest')).toBe(false);
    expect(pinnedTag('redis')).toBe(false);
    for (const [name, svc] of Object.entries(compose.services)) {
      expect(typeof svc.image, name).toBe('string');
      expect(pinnedTag(svc.image as string), `${name}: ${String(svc.image)}`).toBe(true);
    }
    expect(compose.services.envoy!.image).toBe(`envoyproxy/envoy:v${pinnedVersion('ENVOY_VERSION')}`);
    // portcullis and the sample tool are this repository's image, built from the Dockerfile.
    for (const name of ['portcullis', 'sample-tool']) {
      expect((compose.services[name]!.build as Json).dockerfile, name).toBe('Dockerfile');
    }
  });

  it('has Envoy, portcullis, Redis and the sample tool on the ports envoy.yaml and the config use', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['envoy', 'portcullis', 'redis', 'sample-tool']);
    // Same network as the native setup, so envoy.yaml's 127.0.0.1 endpoints hold unchanged.
    for (const [name, svc] of Object.entries(compose.services)) expect(svc.network_mode, name).toBe('host');
    expect(compose.services.envoy!.volumes).toContain('./envoy/envoy.yaml:/etc/envoy/envoy.yaml:ro');
    expect(compose.services.envoy!.command).toContain('/etc/envoy/envoy.yaml');

    const demo = parse(readFileSync(repoPath('scripts', 'demo', 'portcullis.yaml'), 'utf8')) as { server: Json };
    expect(envoyClusterPort(envoy, 'portcullis')).toBe(demo.server.grpc_port);
    expect(demo.server.grpc_port).toBe(serverDefaults.grpc_port!.default);
    const adminPort = serverDefaults.admin_port!.default as number;
    expect(demo.server.admin_port).toBe(adminPort);
    expect(JSON.stringify(compose.services.portcullis!.healthcheck)).toContain(`127.0.0.1:${adminPort}/readyz`);

    const sample = compose.services['sample-tool']!.command as string[];
    expect(Number(sample[sample.indexOf('--port') + 1])).toBe(envoyClusterPort(envoy, 'tool_docs'));
    for (const c of ['tool_weather', 'tool_tickets']) expect(envoyClusterPort(envoy, c)).toBe(envoyClusterPort(envoy, 'tool_docs'));
  });

  it('points portcullis at the Redis service it starts, kept on loopback', () => {
    const redis = compose.services.redis!;
    const cmd = redis.command as string[];
    expect(cmd[cmd.indexOf('--bind') + 1]).toBe('127.0.0.1');
    const port = cmd[cmd.indexOf('--port') + 1];
    const portcullis = compose.services.portcullis!;
    expect(portcullis.extra_hosts).toContain('redis:127.0.0.1');
    expect(JSON.stringify(portcullis.command)).toContain(`add-store.mjs .demo/portcullis.yaml redis://redis:${port}`);
    expect((portcullis.depends_on as Record<string, { condition: string }>).redis!.condition).toBe('service_healthy');
  });

  it('points a prepared config at the shared Redis store, changing nothing else', () => {
    const cfg = join(tmp, 'portcullis.yaml');
    copyFileSync(repoPath('scripts', 'demo', 'portcullis.yaml'), cfg);
    const before = parse(readFileSync(cfg, 'utf8')) as Json;
    execFileSync(process.execPath, [repoPath('deploy', 'compose', 'add-store.mjs'), cfg, 'redis://redis:6379'], { cwd: repoPath(), stdio: 'pipe' });
    const after = parse(readFileSync(cfg, 'utf8')) as Json;
    expect(after.store).toEqual({ kind: 'redis', redis: { url: 'redis://redis:6379' } });
    const { store: _was, ...untouched } = before;
    const { store: _now, ...rest } = after;
    expect(rest).toEqual(untouched);
    // It is a store this build's config schema knows.
    expect(Object.keys(configSchema.properties)).toContain('store');
  });
});

describe('Dockerfile', () => {
  const from = [...dockerfile.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]!);
  const args = Object.fromEntries([...dockerfile.matchAll(/^ARG\s+(\w+)=(\S+)/gm)].map((m) => [m[1]!, m[2]!]));
  const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));

  it('builds the policy with the OPA the scripts pin and runs a pinned slim image of the Node.js the scripts pin', () => {
    expect(args.OPA_VERSION).toBe(pinnedVersion('OPA_VERSION'));
    expect(dockerfile).toContain('github.com/open-policy-agent/opa@v${OPA_VERSION}');
    expect(args.NODE_IMAGE).toMatch(new RegExp(`^node:${pinnedVersion('NODE_VERSION').replaceAll('.', '\\.')}-[a-z]+-slim$`));
    for (const image of from) {
      const resolved = image.replace('${NODE_IMAGE}', args.NODE_IMAGE!);
      expect(pinnedTag(resolved), image).toBe(true);
    }
    expect(runtime).toMatch(/^\nFROM \$\{NODE_IMAGE\} AS runtime/);
  });

  it('ships only dist/, production modules, the bundle and the default config, as a non-root user', () => {
    const copies = [...runtime.matchAll(/^COPY\s+(?:--from=(\w+)\s+)?(\S+)/gm)].map((m) => `${m[1] ?? 'context'}:${m[2]!}`);
    expect(copies.sort()).toEqual(['build:/src/dist', 'build:/src/policies/build/bundle.tar.gz', 'context:package.json', 'context:scripts/demo', 'deps:/src/node_modules'].sort());
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    const user = /^USER\s+(\S+)/m.exec(runtime)?.[1];
    expect(user).toBeDefined();
    expect(user!.split(':')[0]).toMatch(/^[1-9]\d*$/);
    expect(runtime).toMatch(/^EXPOSE 9191 9464$/m);
    expect([9191, 9464]).toEqual([serverDefaults.grpc_port!.default, serverDefaults.admin_port!.default]);
    // The HEALTHCHECK asks a path the admin server really serves.
    const health = /HEALTHCHECK[\s\S]*?127\.0\.0\.1:(\d+)(\/\w+)/.exec(runtime);
    expect(health?.[1]).toBe('9464');
    expect(readFileSync(repoPath('src', 'server', 'admin.ts'), 'utf8')).toContain(`url === '${health?.[2]}'`);
  });

  it('needs at run time only packages the production install keeps', () => {
    const pkg = JSON.parse(readFileSync(repoPath('package.json'), 'utf8')) as { dependencies: Record<string, string> };
    const files = readdirSync(repoPath('dist'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.js'));
    expect(files.length).toBeGreaterThan(20);
    const used = new Set<string>();
    for (const f of files) {
      const text = readFileSync(repoPath('dist', f), 'utf8');
      for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\brequire(?:\.resolve)?\(\s*)['"]([^'"./][^'"]*)['"]/g)) {
        const spec = m[1]!;
        if (spec.startsWith('node:')) continue;
        used.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
      }
    }
    expect(used.size).toBeGreaterThan(5);
    for (const name of used) expect(pkg.dependencies, `${name} is imported by dist/ but is not a production dependency`).toHaveProperty([name]);
  });

  it('keeps local state and secrets out of the build context', () => {
    const ignored = readFileSync(repoPath('.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    for (const p of ['.git', 'node_modules', 'dist', '.tools', '.demo', '.run', 'policies/build']) expect(ignored, p).toContain(p);
  });
});
