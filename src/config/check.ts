import { readFileSync } from 'node:fs';
import type { ConfigProblem } from './load.js';
import { configPath, fileProblems } from './files.js';
import type { GatewayConfig, SecretRef } from './types.js';

/**
 * `portcullis check`: everything that would keep a configuration from serving, found in one run.
 * Each check is a {@link ProblemProducer}; {@link runChecks} runs a list of them in order and
 * collects every problem, each located by the JSON path of the key it is about. Nothing here
 * binds a port, opens an audit file or starts a watch that outlives the check.
 */

/** What every check sees: the loaded configuration and what earlier checks found. */
export interface CheckContext {
  readonly config: GatewayConfig;
  /** Every problem found so far (loading included), in order. */
  readonly found: readonly ConfigProblem[];
  /** JSON paths of file and secret keys already reported as unavailable: later checks skip them. */
  readonly missing: Set<string>;
  /** Facts for the summary line (e.g. `policy`: the bundle's version). */
  readonly notes: Map<string, string>;
}

/** One check: returns the problems it finds (an exception is itself reported as a problem). */
export interface ProblemProducer {
  /** Short name, shown when the check itself fails. */
  readonly name: string;
  run(ctx: CheckContext): ConfigProblem[] | Promise<ConfigProblem[]>;
}

function message(err: unknown): string {
  return (err as Error)?.message ?? String(err);
}

/**
 * Runs `producers` in order against one configuration; resolves with every problem found,
 * after `initial` (what loading it found).
 */
export async function runChecks(
  config: GatewayConfig,
  producers: readonly ProblemProducer[],
  initial: readonly ConfigProblem[] = [],
): Promise<{ problems: ConfigProblem[]; notes: Map<string, string> }> {
  const problems: ConfigProblem[] = [...initial];
  const ctx: CheckContext = { config, found: problems, missing: new Set(), notes: new Map() };
  for (const p of producers) {
    try {
      problems.push(...(await p.run(ctx)));
    } catch (err) {
      // Fail closed: a check that cannot run is a problem, never a pass.
      problems.push({ path: '$', message: `${p.name} check failed: ${message(err)}` });
    }
  }
  return { problems, notes: ctx.notes };
}

/** Files and secrets: each one the gateway would open, read (or create) now. */
export const filesCheck: ProblemProducer = {
  name: 'files',
  run(ctx) {
    const { problems, missing } = fileProblems(ctx.config);
    for (const m of missing) ctx.missing.add(m);
    return problems;
  },
};

/** Every tool's request schema and MCP input schema, compiled one file at a time. */
export const schemasCheck: ProblemProducer = {
  name: 'schemas',
  async run({ config, missing }) {
    const { compileToolSchemas } = await import('../inspect/schema.js');
    const out: ConfigProblem[] = [];
    const compile = (path: string, tool: GatewayConfig['tools'][number]): void => {
      if (missing.has(path)) return;
      try {
        compileToolSchemas([tool], config.base_dir);
      } catch (err) {
        const details = (err as { details?: { problems?: unknown } }).details?.problems;
        const list = Array.isArray(details) ? details.map(String) : [message(err)];
        // The compiler names the tool and file; the path already says which key it is.
        for (const m of list) out.push({ path, message: m.replace(/^tool "[^"]*" [^:]*: /, '') });
      }
    };
    config.tools.forEach((t, i) => {
      if (t.request.schema) compile(`$.tools[${i}].request.schema`, { ...t, mcp: undefined });
      if (!t.mcp) return;
      for (const [name, m] of Object.entries(t.mcp.tools)) {
        if (!m.input_schema) continue;
        const only = { ...t, request: { ...t.request, schema: undefined }, mcp: { ...t.mcp, tools: { [name]: m } } };
        compile(`$.tools[${i}].mcp.tools.${name}.input_schema`, only);
      }
    });
    return out;
  },
};

/** JWT issuers (one at a time: keys, algorithms, claims) and the other identity methods. */
export const identityCheck: ProblemProducer = {
  name: 'identity',
  async run({ config, missing }) {
    const { JwtVerifier } = await import('../identity/jwt.js');
    const { IdentityVerifier } = await import('../identity/index.js');
    const { SecretStore } = await import('../credentials/secrets.js');
    const out: ConfigProblem[] = [];
    for (const [i, j] of config.identity.jwt.entries()) {
      const path = `$.identity.jwt[${i}]`;
      if (missing.has(`${path}.jwks_file`)) continue;
      try {
        (await JwtVerifier.create([j], config.base_dir, { tokenCacheSize: 0 })).close();
      } catch (err) {
        const m = message(err).replace(/^identity\.jwt\[0\] \([^)]*\): /, '');
        out.push({ path: m.startsWith('jwks_file') ? `${path}.jwks_file` : path, message: m });
      }
    }
    // mTLS principals, API keys and signers; JWT issuers were checked above, unavailable secrets too.
    const identity = { ...config.identity, jwt: [], signatures: config.identity.signatures.filter((_s, i) => !missing.has(`$.identity.signatures[${i}].secret`)) };
    const secrets = new SecretStore(config.base_dir);
    try {
      (await IdentityVerifier.create(identity, config.base_dir, secrets)).close();
    } catch (err) {
      out.push({ path: '$.identity', message: message(err) });
    } finally {
      secrets.close();
    }
    return out;
  },
};

/** The gRPC channel from Envoy: TLS files that belong together, or the unix socket's folder. */
export const channelCheck: ProblemProducer = {
  name: 'channel',
  async run({ config, missing, found }) {
    if (['ca', 'cert', 'key'].some((k) => missing.has(`$.server.grpc_tls.${k}`))) return [];
    // A channel the server section already got wrong (reported at load) cannot be built.
    if (found.some((p) => p.path.startsWith('$.server'))) return [];
    const { grpcChannel } = await import('./server.js');
    const { channelProblems } = await import('../server/listener.js');
    return channelProblems(grpcChannel(config.server, config.base_dir)).map((p) => {
      const m = /^(\$[^:]*): (.*)$/s.exec(p);
      return m ? { path: m[1] as string, message: m[2] as string } : { path: '$.server', message: p };
    });
  },
};

function secretValue(config: GatewayConfig, ref: SecretRef): string {
  return 'env' in ref ? (process.env[ref.env] ?? '') : readFileSync(configPath(config, ref.file), 'utf8').replace(/\r?\n$/, '');
}

/** Secrets whose value must have a shape: the hand-off key's length, the checkpoint key's type. */
export const secretValuesCheck: ProblemProducer = {
  name: 'secrets',
  async run({ config, missing }) {
    const out: ConfigProblem[] = [];
    const handoff = config.server.handoff_key;
    if (handoff && !missing.has('$.server.handoff_key')) {
      const { HANDOFF_MIN_KEY_BYTES } = await import('../authz/handoff.js');
      if (Buffer.byteLength(secretValue(config, handoff), 'utf8') < HANDOFF_MIN_KEY_BYTES) {
        out.push({ path: '$.server.handoff_key', message: `shorter than ${HANDOFF_MIN_KEY_BYTES} bytes` });
      }
    }
    const checkpoint = config.audit.checkpoint;
    if (checkpoint && !config.audit.file) out.push({ path: '$.audit.checkpoint', message: 'needs audit.file: checkpoints are lines of the hash-chained file' });
    if (checkpoint && !missing.has('$.audit.checkpoint.key')) {
      const { CheckpointSigner } = await import('../audit/checkpoint.js');
      try {
        CheckpointSigner.fromPem(secretValue(config, checkpoint.key));
      } catch (err) {
        out.push({ path: '$.audit.checkpoint.key', message: message(err) });
      }
    }
    return out;
  },
};

/** The policy bundle (and data file): loaded and compiled as serve would, then closed. */
export const policyCheck: ProblemProducer = {
  name: 'policy',
  async run(ctx) {
    if (ctx.missing.has('$.policy.bundle') || ctx.missing.has('$.policy.data')) return [];
    const { openPolicy } = await import('../server/app.js');
    let policy;
    try {
      policy = await openPolicy(ctx.config, false);
    } catch (err) {
      return [{ path: '$.policy', message: message(err) }];
    }
    ctx.notes.set('policy', policy.status().version ?? '?');
    // From a bundle service the open succeeds without a bundle: say why none is loadable.
    const { policyProblems } = await import('../policy/setup.js');
    const problems = policyProblems(policy).map((m) => ({ path: '$.policy', message: m }));
    policy.close();
    return problems;
  },
};

/** What serve compiles at load besides files: OAuth resources, MCP guards, limits, facts, pin files. */
export const setupCheck: ProblemProducer = {
  name: 'setup',
  async run({ config, missing }) {
    const out: ConfigProblem[] = [];
    const attempt = (path: string, fn: () => void): void => {
      try {
        fn();
      } catch (err) {
        out.push({ path, message: message(err) });
      }
    };
    const { OAuthResources } = await import('../mcp/oauth.js');
    for (const p of OAuthResources.problems(config)) out.push({ path: p.path.startsWith('$') ? p.path : `$.${p.path}`, message: p.message });
    const { transportGuard } = await import('../mcp/origin.js');
    const { readPinFile } = await import('../mcp/pins.js');
    config.tools.forEach((t, i) => {
      if (!t.mcp) return;
      attempt(`$.tools[${i}].mcp`, () => transportGuard(t));
      const pins = `$.tools[${i}].mcp.pins_file`;
      if (t.mcp.pins_file && !missing.has(pins)) attempt(pins, () => readPinFile(configPath(config, t.mcp?.pins_file ?? '')));
    });
    const { RateLimiter } = await import('../limits/tokenBucket.js');
    attempt('$.rate_limits', () => new RateLimiter().prepare(config));
    const { prepareFacts } = await import('../limits/facts.js');
    attempt('$.facts', () => prepareFacts(config));
    const { compileCatalog } = await import('../dlp/index.js');
    const { compileResponses } = await import('../extproc/deps.js');
    attempt('$.tools', () => compileResponses(config, compileCatalog(config.dlp)));
    return out;
  },
};

/** The checks `portcullis check` runs on every configuration, in order. */
export const CONFIG_CHECKS: readonly ProblemProducer[] = [filesCheck, schemasCheck, identityCheck, channelCheck, secretValuesCheck, policyCheck, setupCheck];

