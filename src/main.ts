#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { ConfigError, loadConfig } from './config/load.js';
import { MemoryBudget } from './extproc/response/budget.js';
import { flushStdout, log } from './log.js';
import { AUDIT_USAGE } from './audit/cli.js';
import { MCP_USAGE } from './mcp/cli.js';

const USAGE = `usage: portcullis <command> [options]

commands:
  serve --config FILE            run the ext_authz/ext_proc gRPC service and the admin HTTP port
  check --config FILE [--envoy FILE]
                                 validate configuration, policy bundle, keys and secrets (and that the
                                 Envoy config's body window and tool routes match); print every problem
  token --config FILE [--agent A] [--user U] [--tenant T] [--roles r1,r2] [--ttl SECONDS] [--key FILE]
                                 mint a JWT for the configured (demo) issuer
  dlp scan [--json] [--config FILE]
                                 read stdin, print it redacted (or the findings as JSON lines)
${AUDIT_USAGE}${MCP_USAGE}`;

function fail(message: string, code = 2): never {
  process.stderr.write(`portcullis: ${message}\n`);
  process.exit(code);
}

async function cmdServe(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' } }, strict: true });
  if (!values.config) fail('serve needs --config FILE');
  const configPath = resolve(values.config);
  const cluster = (await import('node:cluster')).default;
  if (cluster.isWorker) {
    const { runWorker } = await import('./server/worker.js');
    return runWorker(configPath);
  }
  // server.workers > 1: this process becomes the primary of that many workers (server/primary.ts).
  const config = loadConfig(configPath);
  const { workerCount } = await import('./config/server.js');
  const workers = workerCount(config.server);
  if (workers > 1) {
    const { runPrimary } = await import('./server/primary.js');
    return runPrimary(configPath, config, workers);
  }
  const { serve } = await import('./server/app.js');
  const app = await serve(configPath);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: draining in-flight calls');
    // close() drains calls and closes the audit sinks (file appended, stdout handed over); the
    // last log lines are flushed before exit rather than left to the synchronous exit hook.
    app.close().then(
      () => flushStdout().then(() => process.exit(0)),
      (err: unknown) => {
        log.error({ err: (err as Error)?.message }, 'shutdown failed');
        void flushStdout().then(() => process.exit(1));
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function cmdCheck(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' }, envoy: { type: 'string' } }, strict: true });
  if (!values.config) fail('check needs --config FILE');
  const problems: string[] = [];
  let config;
  try {
    config = loadConfig(resolve(values.config));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  if (values.envoy) {
    const { envoyProblems } = await import('./config/envoyCheck.js');
    let text = '';
    try {
      text = readFileSync(resolve(values.envoy), 'utf8');
    } catch (err) {
      problems.push(`envoy: cannot read ${values.envoy} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (text) problems.push(...envoyProblems(config, text));
  }
  const { openPolicy, buildDeps } = await import('./server/app.js');
  const { grpcChannel } = await import('./config/server.js');
  const { channelProblems } = await import('./server/listener.js');
  problems.push(...channelProblems(grpcChannel(config.server, config.base_dir)));
  const { RateLimiter } = await import('./limits/tokenBucket.js');
  const { compileToolSchemas } = await import('./inspect/schema.js');
  try {
    compileToolSchemas(config.tools, config.base_dir);
  } catch (err) {
    problems.push(`$.tools: ${(err as Error).message}`);
  }
  let policy = null;
  try {
    policy = await openPolicy(config, false);
  } catch (err) {
    problems.push(`$.policy: ${(err as Error).message}`);
  }
  if (policy) problems.push(...(await import('./policy/setup.js')).policyProblems(policy));
  if (policy) {
    try {
      const built = await buildDeps(config, policy, new RateLimiter(), new MemoryBudget(config.inspect.response_memory_budget_bytes));
      for (const p of built.deps.credentials.problems()) problems.push(`$.tools[${p.tool}].credentials: ${p.secret}: ${p.problem}`);
      built.deps.identity.close();
      built.secrets.close();
      built.extproc.mcp?.close();
      await built.extproc.audit.close();
    } catch (err) {
      // Schema problems were reported above; this is identity, DLP or audit sink set-up.
      const msg = (err as Error).message;
      if (!problems.some((p) => p.includes(msg))) problems.push(`$: ${msg}`);
    }
    policy.close();
  }
  if (problems.length > 0) {
    process.stderr.write(`${values.config}: ${problems.length} problem(s)\n${problems.map((p) => `  ${p}`).join('\n')}\n`);
    process.exit(1);
  }
  process.stdout.write(`${values.config}: ok (${config.tools.length} tools, policy ${policy?.status().version ?? '?'})\n`);
}

async function cmdToken(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string', short: 'c' },
      agent: { type: 'string', default: 'helpdesk' },
      'agent-version': { type: 'string' },
      user: { type: 'string' },
      tenant: { type: 'string' },
      roles: { type: 'string' },
      ttl: { type: 'string', default: '3600' },
      key: { type: 'string' },
      issuer: { type: 'string' },
      audience: { type: 'string' },
    },
    strict: true,
  });
  if (!values.config) fail('token needs --config FILE (the issuer and audience come from it)');
  const config = loadConfig(resolve(values.config));
  const jwt = config.identity.jwt.find((j) => !values.issuer || j.issuer === values.issuer);
  if (!jwt) fail('no JWT issuer is configured');
  const ttlS = Number(values.ttl);
  if (!Number.isInteger(ttlS) || ttlS <= 0) fail('--ttl must be a positive number of seconds');
  const { mintToken, DEFAULT_PRIVATE_KEY_FILE } = await import('./identity/mint.js');
  const token = await mintToken({
    issuer: jwt.issuer,
    audience: values.audience ?? jwt.audiences[0] ?? '',
    agent: values.agent ?? 'helpdesk',
    agentVersion: values['agent-version'],
    user: values.user,
    tenant: values.tenant,
    roles: values.roles ? values.roles.split(',').map((r) => r.trim()).filter(Boolean) : undefined,
    ttlS,
    privateJwkPath: resolve(values.key ?? resolve(config.base_dir, DEFAULT_PRIVATE_KEY_FILE)),
    claims: jwt.claims,
  });
  process.stdout.write(`${token}\n`);
}

async function cmdDlp(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub !== 'scan') fail('usage: portcullis dlp scan [--json] [--config FILE]');
  const { values } = parseArgs({ args: rest, options: { json: { type: 'boolean', default: false }, config: { type: 'string' } }, strict: true });
  const { runDlpScan } = await import('./dlp/index.js');
  const dlp = values.config ? loadConfig(resolve(values.config)).dlp : undefined;
  process.exitCode = await runDlpScan(process.stdin, process.stdout, { json: values.json ?? false, config: dlp });
}

async function cmdAudit(argv: string[]): Promise<void> {
  const { auditCommand } = await import('./audit/cli.js');
  // `audit show ... | head` closes the pipe early: that is the reader being done, not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  process.exitCode = await auditCommand(argv, { out: process.stdout, err: process.stderr, isTTY: process.stdout.isTTY === true });
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  switch (cmd) {
    case 'serve':
      return cmdServe(rest);
    case 'check':
      return cmdCheck(rest);
    case 'token':
      return cmdToken(rest);
    case 'dlp':
      return cmdDlp(rest);
    case 'audit':
      return cmdAudit(rest);
    case 'mcp': {
      const { mcpCommand } = await import('./mcp/cli.js');
      process.exitCode = await mcpCommand(rest, { out: process.stdout, err: process.stderr });
      return;
    }
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return;
    default:
      fail(`unknown command "${cmd}"\n${USAGE}`);
  }
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) fail(err.message, 1);
  fail((err as Error)?.message ?? String(err), 1);
});
