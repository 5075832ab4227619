import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfig } from '../../../src/config/load.js';
import { configSchema } from '../../../src/config/schema.js';
import { configFiles, configSecrets } from '../../../src/config/files.js';

type Schema = Record<string, unknown>;
const isObj = (v: unknown): v is Schema => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A `{file} | {env}` secret reference schema. */
function isSecretRef(s: Schema): boolean {
  const branches = Array.isArray(s.oneOf) ? (s.oneOf as Schema[]) : [];
  const requires = (k: string): boolean => branches.some((b) => Array.isArray(b.required) && b.required.length === 1 && b.required[0] === k);
  return requires('file') && requires('env');
}

/** Schema paths (`$.tools[*].request.schema`) of every string key that names a file, and of every secret reference. */
function fileKeysOfSchema(): { files: Set<string>; secrets: Set<string> } {
  const files = new Set<string>();
  const secrets = new Set<string>();
  const walk = (s: unknown, path: string, depth: number): void => {
    if (!isObj(s) || depth > 20) return;
    if (isSecretRef(s)) {
      secrets.add(path);
      return;
    }
    if (isObj(s.properties)) {
      for (const [k, v] of Object.entries(s.properties)) {
        if (isObj(v) && v.type === 'string' && /(^|_)(file|schema|bundle|data|ca|cert|key)$/.test(k)) files.add(`${path}.${k}`);
        walk(v, `${path}.${k}`, depth + 1);
      }
    }
    if (s.items) walk(s.items, `${path}[*]`, depth + 1);
    if (isObj(s.additionalProperties)) walk(s.additionalProperties, `${path}.*`, depth + 1);
    for (const k of ['oneOf', 'anyOf', 'allOf']) if (Array.isArray(s[k])) for (const b of s[k] as unknown[]) walk(b, path, depth + 1);
    for (const k of ['if', 'then', 'else']) walk(s[k], path, depth + 1);
  };
  walk(configSchema, '$', 0);
  // A bundle signing key's `key` is the key material itself (OPA's shape); `key_file` is its file.
  files.delete('$.policy.signing.keys.*.key');
  return { files, secrets };
}

/** `$.tools[2].mcp.tools.search.input_schema` → `$.tools[*].mcp.tools.*.input_schema`. */
function pattern(path: string): string {
  return path.replace(/\.signing\.keys\.[^.]+\./, '.signing.keys.*.').replace(/\[\d+\]/g, '[*]').replace(/\.mcp\.tools\.[^.]+\./, '.mcp.tools.*.').replace(/\.per_user\.[^.]+$/, '.per_user.*');
}

/** A configuration that sets every file-valued key and every secret reference. */
const FULL = parseConfig(
  stringify({
    server: {
      grpc_tls: { ca: 'tls/ca.crt', cert: 'tls/s.crt', key: 'tls/s.key', client_sans: ['spiffe://x/envoy'] },
      handoff_key: { file: 'secrets/handoff' },
      admin_token: { env: 'ADMIN_TOKEN' },
    },
    identity: {
      jwt: [{ issuer: 'https://i.example', audiences: ['a'], jwks_file: 'keys/jwks.json', algorithms: ['ES256'] }],
      signatures: [{ id: 's', secret: { file: 'secrets/sig' }, secrets: [{ file: 'secrets/sig-next' }], signature_header: 'x-sig', timestamp_header: 'x-ts', max_skew_s: 300, agent: 'hooks' }],
    },
    policy: { bundle: 'policy/bundle.tar.gz', data: 'policy/data.json', signing: { keys: { k1: { algorithm: 'RS256', key_file: 'keys/bundle.pem' } } } },
    decision_logs: { file: 'decisions.log' },
    tools: [
      {
        name: 'tickets',
        upstream: 'tool_tickets',
        request: { schema: 'schemas/ticket.json' },
        request_signing: { secret: { file: 'secrets/signing' } },
        credentials: [{ header: 'authorization', format: 'Bearer {secret}', secret: { file: 'secrets/t' }, per_user: { alice: { file: 'secrets/t-alice' } } }],
      },
      { name: 'docs', upstream: 'tool_docs', mcp: { tools: { search: { input_schema: 'schemas/search.json' } }, pins_file: 'pins.json' } },
    ],
    audit: { file: 'audit/audit.log', checkpoint: { key: { file: 'secrets/cp.key' }, anchor_file: '/var/anchors.jsonl' } },
  }),
  '/etc/portcullis/gateway.yaml',
  { requireChannel: true },
);

describe('the files a configuration names', () => {
  it('lists every file-valued key and secret reference the schema has (a new one must be listed too)', () => {
    const schema = fileKeysOfSchema();
    expect(new Set(configFiles(FULL).map((f) => pattern(f.path)))).toEqual(schema.files);
    expect(new Set(configSecrets(FULL).map((s) => pattern(s.path)))).toEqual(schema.secrets);
  });

  it('resolves every relative path against the configuration file\'s folder, absolute paths as written', () => {
    const files = configFiles(FULL);
    expect(files.find((f) => f.path === '$.tools[1].mcp.tools.search.input_schema')).toEqual({
      path: '$.tools[1].mcp.tools.search.input_schema',
      file: 'schemas/search.json',
      abs: '/etc/portcullis/schemas/search.json',
      use: 'read',
    });
    for (const f of files) expect(f.abs).toBe(f.file.startsWith('/') ? f.file : `/etc/portcullis/${f.file}`);
    expect(files.filter((f) => f.use === 'write').map((f) => f.path)).toEqual(['$.tools[1].mcp.pins_file', '$.audit.file', '$.audit.checkpoint.anchor_file', '$.decision_logs.file']);
  });
});
