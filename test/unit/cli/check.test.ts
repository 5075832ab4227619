import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { prepareDemo, type PreparedDemo } from '../../../src/demo/prepare.js';
import { repoPath } from '../../helpers/paths.js';
import { cli, jsonLogLines } from './run.js';

const SHIPPED = repoPath('scripts', 'demo', 'portcullis.yaml');
const BUNDLE = repoPath('policies', 'build', 'bundle.tar.gz');
const dirs: string[] = [];

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'portcullis-check-'));
  dirs.push(d);
  return d;
}

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The problem lines of a failed check: `path: message`, in order. */
function problemLines(out: string): string[] {
  const [head, ...rest] = out.trimEnd().split('\n');
  expect(head).toMatch(/: \d+ problem\(s\)$/);
  return rest.map((l) => l.replace(/^ {2}/, ''));
}

describe('portcullis check of the demo configuration', () => {
  let demo: PreparedDemo;

  beforeAll(async () => {
    if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing: run "bash scripts/build-policy.sh" first`);
    // What `npm run demo` does: the shipped config, its own bundle path, generated keys and secrets.
    demo = await prepareDemo({ dir: tempDir(), sourceConfig: SHIPPED });
  });

  it('the prepared demo passes as the README says (its env file, from any folder), with and without --envoy', async () => {
    const plain = await cli(['check', '--config', demo.configPath], { env: demo.env, cwd: tmpdir() });
    expect(plain).toEqual({ code: 0, out: expect.stringMatching(/^\S+portcullis\.yaml: ok \(6 tools, policy sha256:[0-9a-f]+\)\n$/), err: '' });
    const envoy = await cli(['check', '--config', demo.configPath, '--envoy', 'envoy/envoy.yaml'], { env: demo.env });
    expect(envoy).toEqual({ code: 0, out: expect.stringMatching(/: ok \(6 tools, policy sha256:[0-9a-f]+, agrees with envoy\/envoy\.yaml\)\n$/), err: '' });
    expect(existsSync(join(demo.configPath, '..', 'audit.log'))).toBe(false); // check creates nothing
  });

  it('without the env file, says exactly which variable is missing', async () => {
    const r = await cli(['check', '--config', demo.configPath], { env: { DOCS_TOKEN: undefined } });
    expect(r.code).toBe(1);
    expect(problemLines(r.out)).toEqual(['$.tools[2].credentials[0].secret: environment variable DOCS_TOKEN is not set']);
  });

  it('the shipped file resolves its own paths (bundle, schemas) and names only what the demo generates', async () => {
    const r = await cli(['check', '--config', 'scripts/demo/portcullis.yaml'], { env: { DOCS_TOKEN: undefined } });
    expect(r.code).toBe(1);
    expect(r.err).toBe('');
    const lines = problemLines(r.out);
    expect(lines.map((l) => l.split(':')[0])).toEqual([
      '$.server.grpc_tls.ca',
      '$.server.grpc_tls.cert',
      '$.server.grpc_tls.key',
      '$.identity.jwt[0].jwks_file',
      '$.server.handoff_key',
      '$.identity.signatures[0].secret',
      '$.tools[0].credentials[0].secret',
      '$.tools[1].credentials[0].secret',
      '$.tools[1].credentials[0].per_user.alice',
      '$.tools[2].credentials[0].secret',
    ]);
    expect(lines[0]).toBe(`$.server.grpc_tls.ca: not found: tls/ca.crt (resolved to ${repoPath('scripts', 'demo', 'tls', 'ca.crt')})`);
  });
});

describe('portcullis check of a configuration with several problems', () => {
  it('lists every problem in one run, each at the path of its key, relative paths against the file', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'schemas'));
    writeFileSync(join(dir, 'schemas', 'broken.json'), '{"type": "object",');
    writeFileSync(join(dir, 'empty-keys.json'), '{"keys": []}');
    writeFileSync(join(dir, 'short-key'), 'short\n');
    writeFileSync(join(dir, 'cp.key'), 'not a key\n');
    const config = join(dir, 'gateway.yaml');
    writeFileSync(
      config,
      stringify({
        server: { grpc_address: '127.0.0.1', grpc_plaintext: true, handoff_key: { file: 'short-key' } },
        identity: {
          jwt: [
            { issuer: 'https://a.example', audiences: ['p'], jwks_file: 'keys/missing.json', algorithms: ['ES256'] },
            { issuer: 'https://b.example', audiences: ['p'], jwks_file: 'empty-keys.json', algorithms: ['ES256'] },
          ],
        },
        policy: { bundle: BUNDLE },
        tools: [
          { name: 'weather', upstream: 'tool_weather', request: { schema: 'schemas/missing.json' } },
          { name: 'tickets', upstream: 'tool_tickets', request: { schema: 'schemas/broken.json' } },
          {
            name: 'docs',
            upstream: 'tool_docs',
            credentials: [{ header: 'authorization', format: 'Bearer {secret}', secret: { env: 'PORTCULLIS_CHECK_UNSET' } }],
            mcp: { tools: { search: { input_schema: 'schemas/search.json' } } },
          },
        ],
        audit: { file: 'logs/nested/audit.log', checkpoint: { key: { file: 'cp.key' } } },
      }),
    );
    const r = await cli(['check', '--config', config], { cwd: tmpdir() });
    expect(r.code).toBe(1);
    expect(r.err).toBe('');
    const lines = problemLines(r.out);
    expect(lines).toEqual([
      `$.identity.jwt[0].jwks_file: not found: keys/missing.json (resolved to ${join(dir, 'keys', 'missing.json')})`,
      `$.tools[0].request.schema: not found: schemas/missing.json (resolved to ${join(dir, 'schemas', 'missing.json')})`,
      `$.tools[2].mcp.tools.search.input_schema: not found: schemas/search.json (resolved to ${join(dir, 'schemas', 'search.json')})`,
      '$.tools[2].credentials[0].secret: environment variable PORTCULLIS_CHECK_UNSET is not set',
      expect.stringMatching(/^\$\.tools\[1\]\.request\.schema: schema file schemas\/broken\.json: /),
      expect.stringMatching(/^\$\.identity\.jwt\[1\]\.jwks_file: jwks_file empty-keys\.json: must be a JSON object with a non-empty "keys" array/),
      '$.server.handoff_key: shorter than 32 bytes',
      '$.audit.checkpoint.key: not a PEM (PKCS8) private key',
    ]);
    // The audit file (and its folders) would be created by serve; check creates nothing.
    expect(existsSync(join(dir, 'logs'))).toBe(false);
  });

  it('a cross-field rule that fails does not hide the files: both in one run', async () => {
    const dir = tempDir();
    const config = join(dir, 'gateway.yaml');
    writeFileSync(
      config,
      stringify({
        server: { grpc_address: '127.0.0.1', grpc_plaintext: true },
        policy: { bundle: 'missing.tar.gz' },
        tools: [
          { name: 'weather', upstream: 'tool_weather', request: { schema: 'w.json' } },
          { name: 'weather', upstream: 'tool_weather2' },
        ],
      }),
    );
    const r = await cli(['check', '--config', config]);
    expect(r.code).toBe(1);
    expect(problemLines(r.out)).toEqual([
      '$.tools[1].name: duplicate tool name "weather" (also $.tools[0])',
      `$.policy.bundle: not found: missing.tar.gz (resolved to ${join(dir, 'missing.tar.gz')})`,
      `$.tools[0].request.schema: not found: w.json (resolved to ${join(dir, 'w.json')})`,
    ]);
  });

  it('a configuration that does not validate is reported whole, exit 1; an unreadable one too', async () => {
    const dir = tempDir();
    const config = join(dir, 'bad.yaml');
    writeFileSync(config, 'policy: { bundle: b.tar.gz, colour: blue }\ntools: [{ name: "Bad!", upstream: u }]\n');
    const r = await cli(['check', '--config', config]);
    expect(r.code).toBe(1);
    const lines = problemLines(r.out);
    expect(lines).toContain('$.policy: unknown key "colour"');
    expect(lines.some((l) => l.startsWith('$.tools[0].name:'))).toBe(true);
    const missing = await cli(['check', '--config', join(dir, 'nope.yaml')]);
    expect(missing.code).toBe(1);
    expect(problemLines(missing.out)).toEqual(['$: cannot read file (ENOENT)']);
  });
});

describe('portcullis check --envoy', () => {
  let demo: PreparedDemo;
  beforeAll(async () => {
    demo = await prepareDemo({ dir: tempDir(), sourceConfig: SHIPPED });
  });

  type Node = Record<string, any>;
  /** envoy/envoy.yaml with `edit` applied, written next to the prepared demo. */
  function envoyWith(edit: (doc: Node, routes: Node[]) => void): string {
    const doc = parse(readFileSync(repoPath('envoy', 'envoy.yaml'), 'utf8')) as Node;
    const hcm = doc.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    edit(doc, hcm.route_config.virtual_hosts[0].routes as Node[]);
    const file = join(demo.configPath, '..', `envoy-${Math.random().toString(16).slice(2)}.yaml`);
    writeFileSync(file, stringify(doc, { aliasDuplicateObjects: false }));
    return file;
  }

  it('names a tool whose upstream cluster is missing and a tool no route serves', async () => {
    const file = envoyWith((doc, routes) => {
      doc.static_resources.clusters = (doc.static_resources.clusters as Node[]).filter((c) => c.name !== 'tool_llm');
      routes.splice(routes.findIndex((r) => r.name === 'exports'), 1);
    });
    const r = await cli(['check', '--config', demo.configPath, '--envoy', file], { env: demo.env });
    expect(r.code).toBe(1);
    expect(problemLines(r.out)).toEqual([
      expect.stringMatching(/^\$\.tools\[4\]: no Envoy route serves tool "exports"/),
      '$.tools[5].upstream: cluster "tool_llm" is not defined in the Envoy configuration (static_resources.clusters)',
    ]);
  });

  it('names a route sent to another cluster or bound to another tool', async () => {
    const file = envoyWith((_doc, routes) => {
      routes.find((r) => r.name === 'payments')!.route.cluster = 'tool_exports';
      routes.find((r) => r.name === 'llm')!.typed_per_filter_config['envoy.filters.http.ext_authz'].check_settings.context_extensions = { route_tool: 'payments' };
    });
    const r = await cli(['check', '--config', demo.configPath, '--envoy', file], { env: demo.env });
    expect(r.code).toBe(1);
    const lines = problemLines(r.out);
    expect(lines).toContain('$.tools[3].upstream: is "tool_payments" but envoy: route "payments" sends tool "payments" to cluster "tool_exports"');
    expect(lines).toContainEqual(expect.stringMatching(/^\$\.tools\[5\]: envoy: route "llm" sends route_tool "payments" for tool "llm"/));
    expect(lines).toContainEqual(expect.stringMatching(/^\$\.tools\[5\]: no Envoy route serves tool "llm"/));
  });

  it('an unreadable Envoy file is a problem, not a pass', async () => {
    const r = await cli(['check', '--config', demo.configPath, '--envoy', 'envoy/missing.yaml'], { env: demo.env });
    expect(r.code).toBe(1);
    expect(problemLines(r.out)).toEqual(['envoy: cannot read envoy/missing.yaml (ENOENT)']);
  });

  it('prints only its report: no log line on stdout, diagnostics (if any) as plain text on stderr', async () => {
    // A remote JWKS that cannot be reached logs a warning while the issuer is set up.
    const cfg = parse(readFileSync(demo.configPath, 'utf8')) as Node;
    cfg.identity.jwt.push({ issuer: 'https://remote.example', audiences: ['p'], jwks_url: 'http://127.0.0.1:9/jwks.json', algorithms: ['ES256'] });
    const file = join(demo.configPath, '..', 'remote.yaml');
    writeFileSync(file, stringify(cfg));
    const r = await cli(['check', '--config', file], { env: { ...demo.env, PORTCULLIS_LOG_LEVEL: 'debug' } });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^\S+remote\.yaml: ok \(6 tools, policy sha256:[0-9a-f]+\)\n$/);
    expect(jsonLogLines(r.err)).toEqual([]);
    // At debug level the policy load is logged: it arrives as a plain line on stderr.
    expect(r.err).toMatch(/^portcullis: info: policy loaded \(policy_version=sha256:/m);
    for (const line of r.err.trimEnd().split('\n')) expect(line).toMatch(/^portcullis: (debug|info|warning|error): /);
  });
});
