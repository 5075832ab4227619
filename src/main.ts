#!/usr/bin/env node
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { loadConfig, readConfig, type ConfigProblem } from './config/load.js';
import type { ProblemProducer } from './config/check.js';
import { flushStdout, log, useCliLogging } from './log.js';
import { auditCli } from './audit/cli.js';
import { mcpCli } from './mcp/cli.js';
import { UsageError, applyConventions, runCommand, type CliIo, type ExitCode } from './cli/program.js';

async function cmdServe(configFile: string): Promise<void> {
  const configPath = resolve(configFile);
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

/**
 * `check`: loads the configuration, then runs every problem producer in order and reports all
 * their problems at once, each with its path. To add a check, add a producer to the list.
 */
async function cmdCheck(opts: { config: string; envoy?: string }, io: CliIo): Promise<number> {
  const reading = readConfig(resolve(opts.config));
  const config = reading.config;
  // Not YAML, or not of the schema: nothing typed to check further.
  if (!config) {
    io.out.write(report(opts.config, reading.problems));
    return 1;
  }
  const { CONFIG_CHECKS, runChecks } = await import('./config/check.js');
  const producers: ProblemProducer[] = [...CONFIG_CHECKS];
  if (opts.envoy) {
    const { envoyCheck } = await import('./config/envoyCheck.js');
    producers.push(envoyCheck(opts.envoy));
  }
  const { problems, notes } = await runChecks(config, producers, reading.problems);
  if (problems.length > 0) {
    io.out.write(report(opts.config, problems));
    return 1;
  }
  const envoy = opts.envoy ? `, agrees with ${opts.envoy}` : '';
  io.out.write(`${opts.config}: ok (${config.tools.length} tools, policy ${notes.get('policy') ?? '?'}${envoy})\n`);
  return 0;
}

/** The problem list `check` prints: one line per problem, with its path. */
function report(file: string, problems: readonly ConfigProblem[]): string {
  return `${file}: ${problems.length} problem(s)\n${problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}\n`;
}

/** Options of `token`. */
interface TokenOptions {
  config: string;
  agent: string;
  agentVersion?: string;
  user?: string;
  tenant?: string;
  roles?: string;
  ttl: string;
  key?: string;
  issuer?: string;
  audience?: string;
}

async function cmdToken(values: TokenOptions, io: CliIo): Promise<number> {
  const config = loadConfig(resolve(values.config));
  const jwt = config.identity.jwt.find((j) => !values.issuer || j.issuer === values.issuer);
  if (!jwt) throw new Error(values.issuer ? `no JWT issuer "${values.issuer}" is configured` : 'no JWT issuer is configured');
  const ttlS = Number(values.ttl);
  if (!Number.isInteger(ttlS) || ttlS <= 0) throw new UsageError('--ttl must be a positive number of seconds');
  const { mintToken, DEFAULT_PRIVATE_KEY_FILE } = await import('./identity/mint.js');
  const keyPath = resolve(values.key ?? resolve(config.base_dir, DEFAULT_PRIVATE_KEY_FILE));
  if (!existsSync(keyPath)) {
    throw new Error(
      `no signing key at ${keyPath}: pass --key FILE (a private JWK of the issuer's JWKS); ` +
        '`npm run demo` writes one to keys/ beside the configuration it prepares',
    );
  }
  const token = await mintToken({
    issuer: jwt.issuer,
    audience: values.audience ?? jwt.audiences[0] ?? '',
    agent: values.agent,
    agentVersion: values.agentVersion,
    user: values.user,
    tenant: values.tenant,
    roles: values.roles ? values.roles.split(',').map((r) => r.trim()).filter(Boolean) : undefined,
    ttlS,
    privateJwkPath: keyPath,
    claims: jwt.claims,
  });
  io.out.write(`${token}\n`);
  return 0;
}

async function cmdDlpScan(opts: { json: boolean; config?: string }): Promise<number> {
  const { runDlpScan } = await import('./dlp/index.js');
  const dlp = opts.config ? loadConfig(resolve(opts.config)).dlp : undefined;
  return runDlpScan(process.stdin, process.stdout, { json: opts.json, config: dlp });
}

/** The package version, from package.json (one level above both src/ and dist/). */
function version(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The `portcullis` program: every command, its options and help. Actions record their exit code in `result`. */
function program(io: CliIo, result: ExitCode): Command {
  const root = new Command('portcullis')
    .description('Agent tool-call gateway: the Envoy ext_authz and ext_proc service, and its tools.')
    .version(version(), '-V, --version', 'print the version');
  root.addHelpText('after', '\nRun "portcullis <command> --help" for a command\'s options.\n');
  root
    .command('serve')
    .description('run the ext_authz/ext_proc gRPC service and the admin HTTP port')
    .requiredOption('-c, --config <file>', 'gateway configuration (YAML)')
    .action(async (opts: { config: string }) => {
      await cmdServe(opts.config);
    });
  root
    .command('check')
    .description(
      'validate the configuration, the files it names (relative to its folder), policy bundle, keys and secrets, ' +
        'and with --envoy that the Envoy configuration routes every tool to its upstream; print every problem with its path ' +
        '(exit 0 clean, 1 problems, 2 usage)',
    )
    .requiredOption('-c, --config <file>', 'gateway configuration (YAML)')
    .option('--envoy <file>', 'Envoy configuration to cross-check (clusters, routes, route_tool, body window, timeouts)')
    .action(async (opts: { config: string; envoy?: string }) => {
      result.code = await cmdCheck(opts, io);
    });
  root
    .command('token')
    .description('mint a JWT for the configured (demo) issuer')
    .requiredOption('-c, --config <file>', 'gateway configuration: the issuer and audience come from it')
    .option('--agent <agent>', 'agent (azp claim)', 'helpdesk')
    .option('--agent-version <version>', 'agent version claim')
    .option('--user <user>', 'user (sub claim)')
    .option('--tenant <tenant>', 'tenant claim')
    .option('--roles <r1,r2>', 'comma-separated roles')
    .option('--ttl <seconds>', 'lifetime in seconds', '3600')
    .option('--key <file>', 'private JWK to sign with (default: keys/ beside the configuration)')
    .option('--issuer <url>', 'which configured issuer (default: the first)')
    .option('--audience <aud>', "audience (default: the issuer's first)")
    .action(async (opts: TokenOptions) => {
      result.code = await cmdToken(opts, io);
    });
  const dlp = root.command('dlp').description('data loss prevention tools');
  dlp
    .command('scan')
    .description('read stdin, print it redacted (or the findings as JSON); exit 0 nothing found, 1 findings, 2 a block rule fired')
    .option('--json', 'print the findings as JSON instead of the redacted text', false)
    .option('-c, --config <file>', "use this configuration's dlp section (default: the built-in rules)")
    .action(async (opts: { json: boolean; config?: string }) => {
      result.code = await cmdDlpScan(opts);
    });
  root.addCommand(auditCli({ ...io, isTTY: process.stdout.isTTY === true }, result));
  root.addCommand(mcpCli(io, result));
  // CLI commands print only their output on stdout; the process log turns into plain diagnostics on stderr.
  root.hook('preAction', (_root, action) => {
    if (action.name() !== 'serve') useCliLogging(io.err);
  });
  return applyConventions(root, io);
}

async function main(): Promise<void> {
  const io: CliIo = { out: process.stdout, err: process.stderr };
  // `audit show ... | head` closes the pipe early: that is the reader being done, not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  const result: ExitCode = { code: 0 };
  const root = program(io, result);
  const argv = process.argv.slice(2);
  if (argv.length === 0) {
    root.outputHelp();
    return;
  }
  process.exitCode = await runCommand(root, argv, io, result);
}

main().catch((err: unknown) => {
  process.stderr.write(`portcullis: ${(err as Error)?.message ?? String(err)}\n`);
  process.exit(1);
});
