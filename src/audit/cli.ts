import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Command } from 'commander';
import type { KeyObject } from 'node:crypto';
import { readAnchors, type Anchor } from './anchors.js';
import { generateCheckpointKeys, publicKeyFromPem } from './checkpoint.js';
import { SHOW_DECISIONS, parseTimeBound, showAuditFile, type ShowDecision, type ShowOptions, type TextOut } from './show.js';
import { UsageError, applyConventions, collect, exitCodeOf, runCommand, type ExitCode } from '../cli/program.js';
import { completedIn, verifyAuditFile, type AuditVerifyResult } from './verify.js';

/**
 * The `portcullis audit` subcommands: verify, show, keygen. Each returns its exit code; nothing
 * here exits the process, so tests call {@link auditCommand} directly.
 */

/** Exit codes of `audit verify` (and `audit show --verify`). */
export const EXIT = {
  /** Intact, nothing to report. */
  ok: 0,
  /** Evidence of tampering or damage: chain break, bad checkpoint, anchor mismatch or truncation. */
  broken: 1,
  /** Bad usage or unreadable input. */
  usage: 2,
  /** Intact, with findings: records after the last checkpoint, or exchanges never completed. */
  findings: 3,
} as const;

/** Streams and terminal facts the commands use. */
export interface AuditIo {
  readonly out: TextOut;
  readonly err: TextOut;
  /** Whether `out` is a terminal (the default `audit show` format is then a table). */
  readonly isTTY: boolean;
}

/** Options of `audit verify`. */
interface VerifyOptions {
  publicKey: string[];
  keyId: string[];
  anchors?: string;
}

/** Options of `audit show`. */
interface ShowCliOptions {
  since?: string;
  until?: string;
  agent?: string;
  user?: string;
  tenant?: string;
  tool?: string;
  mcpTool?: string;
  decision?: string;
  format?: string;
  verify: boolean;
}

/**
 * Runs an action, turning what the user can fix (bad values, unreadable files) into the usage
 * exit code with a message, as every `audit` command does.
 */
function guarded(cmd: Command, io: AuditIo, result: ExitCode, run: () => Promise<number>): Promise<void> {
  return run().then(
    (code) => {
      result.code = code;
    },
    (err: unknown) => {
      const usage = exitCodeOf(err, cmd, io);
      if (usage !== null) {
        result.code = usage;
        return;
      }
      const code = (err as NodeJS.ErrnoException).code;
      if (typeof code === 'string' && code.startsWith('E')) {
        io.err.write(`portcullis: ${(err as Error).message}\n`);
        result.code = EXIT.usage;
        return;
      }
      throw err;
    },
  );
}

/**
 * The `audit` command tree (verify, show, keygen) for a program; each action records its exit
 * code in `result`. Conventions (output, help pointers) are applied by the program that holds it.
 */
export function auditCli(io: AuditIo, result: ExitCode): Command {
  const audit = new Command('audit').description('verify and read audit files');
  const verify = audit
    .command('verify')
    .description(
      'check audit files: hash chain, checkpoint signatures, anchors; exit 0 intact, 1 broken, 3 intact with findings ' +
        '(unanchored tail, exchanges forwarded but never completed in any FILE given: pass every replica\'s file together)',
    )
    .argument('<file...>', 'audit files (every replica\'s, together)')
    .option('--public-key <pem>', 'trusted checkpoint public key (PEM); repeatable', collect, [])
    .option('--key-id <id>', 'trusted checkpoint key id; repeatable', collect, [])
    .option('--anchors <file>', 'anchor file of checkpoint lines (one audit FILE only)');
  verify.action((files: string[], opts: VerifyOptions) => guarded(verify, io, result, () => cmdVerify(files, opts, io)));
  const show = audit
    .command('show')
    .description('print matching records (T: ISO time or 30m, 1h, 7d ago)')
    .argument('<file>', 'audit file')
    .option('--since <T>', 'records at or after T')
    .option('--until <T>', 'records before T')
    .option('--agent <agent>', 'only this agent')
    .option('--user <user>', 'only this user')
    .option('--tenant <tenant>', 'only this tenant')
    .option('--tool <tool>', 'only this tool')
    .option('--mcp-tool <name>', 'only this MCP tool')
    .option('--decision <decision>', `only this outcome: ${SHOW_DECISIONS.join(', ')}`)
    .option('--format <format>', 'json or table (default: table on a terminal, else json)')
    .option('--verify', 'exit 1 when the hash chain does not verify', false);
  show.action((file: string, opts: ShowCliOptions) => guarded(show, io, result, () => cmdShow(file, opts, io)));
  const keygen = audit
    .command('keygen')
    .description('write an Ed25519 checkpoint key pair: PREFIX.key (private, 0600) and PREFIX.pub; print its key id')
    .requiredOption('--out <prefix>', 'where to write PREFIX.key and PREFIX.pub (never overwritten)');
  keygen.action((opts: { out: string }) => guarded(keygen, io, result, () => cmdKeygen(opts.out, io)));
  return audit;
}

/** Runs `audit <sub> ...` (the words after `audit`); resolves with the exit code. */
export async function auditCommand(argv: readonly string[], io: AuditIo): Promise<number> {
  const result: ExitCode = { code: EXIT.ok };
  const audit = applyConventions(auditCli(io, result).name('portcullis audit'), io);
  return runCommand(audit, argv, io, result);
}

function readKeys(files: readonly string[]): KeyObject[] {
  return files.map((f) => {
    try {
      return publicKeyFromPem(readFileSync(resolve(f), 'utf8'));
    } catch (err) {
      throw new UsageError(`--public-key ${f}: ${(err as Error).message}`);
    }
  });
}

async function cmdVerify(positionals: string[], values: VerifyOptions, io: AuditIo): Promise<number> {
  // Anchors are taken from one file's checkpoints: they prove nothing about another file.
  if (values.anchors && positionals.length > 1) throw new UsageError('--anchors checks one file: verify each anchored file on its own');
  const publicKeys = readKeys(values.publicKey);
  let anchors: Anchor[] | undefined;
  if (values.anchors) anchors = (await readAnchors(resolve(values.anchors))).anchors;
  const paths = positionals.map((f) => resolve(f));
  let results: AuditVerifyResult[] = [];
  for (const path of paths) results.push(await verifyAuditFile(path, { publicKeys, keyIds: values.keyId, ...(anchors ? { anchors } : {}) }));
  // Files of several replicas: an exchange forwarded by one and completed by another is complete.
  if (paths.length > 1) {
    const done = await completedIn(paths, new Set(results.flatMap((r) => r.incomplete)));
    results = results.map((r) => ({ ...r, incomplete: r.incomplete.filter((id) => !done.has(id)) }));
  }
  let code: number = EXIT.ok;
  results.forEach((r, i) => {
    io.out.write(verifyReport(positionals[i] as string, r));
    const checkpointing = r.checkpoints.count > 0 || r.checkpoints.pinned;
    if (!r.ok) code = EXIT.broken;
    else if (code === EXIT.ok && ((checkpointing && r.unanchored > 0) || r.incomplete.length > 0)) code = EXIT.findings;
  });
  return code;
}

/** The text `audit verify` prints for a result. */
export function verifyReport(file: string, r: AuditVerifyResult): string {
  const lines: string[] = [];
  const bad = r.firstBad;
  if (bad) lines.push(`${file}: BROKEN at line ${bad.line}${bad.seq !== undefined ? ` (seq ${bad.seq})` : ''}: ${bad.reason}`);
  else lines.push(`${file}: ${r.ok ? 'ok' : 'BROKEN'}, ${r.records} records, chain intact`);
  const cp = r.checkpoints;
  for (const p of cp.problems) lines.push(`  BROKEN checkpoint at line ${p.line}${p.seq !== undefined ? ` (seq ${p.seq})` : ''}: ${p.reason}`);
  for (const p of r.anchors.problems) lines.push(`  BROKEN anchor (anchor file line ${p.line}${p.seq !== undefined ? `, seq ${p.seq}` : ''}): ${p.reason}`);
  if (cp.count > 0) {
    const verified = cp.count - cp.problems.length;
    lines.push(`  checkpoints: ${verified} of ${cp.count} verified${cp.pinned ? ' against the given key(s)' : ' against the key each carries only; pin it with --public-key or --key-id'}`);
  } else if (cp.pinned) lines.push('  checkpoints: none in the file');
  if (!bad && (cp.count > 0 || cp.pinned) && r.unanchored > 0) {
    lines.push(
      cp.count > 0
        ? `  the file ends ${r.unanchored} record${r.unanchored === 1 ? '' : 's'} after its last checkpoint — truncated, or the writer did not shut down cleanly (or is still writing)`
        : `  none of its ${r.unanchored} records is covered by a checkpoint`,
    );
  }
  if (r.anchors.checked > 0 && r.anchors.problems.length === 0) lines.push(`  anchors: ${r.anchors.checked} checked, all match`);
  if (r.incomplete.length > 0) {
    const shown = r.incomplete.slice(0, 20).join(', ');
    lines.push(`  ${r.incomplete.length} exchange(s) forwarded but never completed: ${shown}${r.incomplete.length > 20 ? ', ...' : ''}`);
  }
  return `${lines.join('\n')}\n`;
}

function optional(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}

async function cmdShow(file: string, values: ShowCliOptions, io: AuditIo): Promise<number> {
  const format = values.format ?? (io.isTTY ? 'table' : 'json');
  if (format !== 'json' && format !== 'table') throw new UsageError('--format is json or table');
  const decision = values.decision;
  if (decision !== undefined && !SHOW_DECISIONS.includes(decision as ShowDecision)) throw new UsageError(`--decision is one of ${SHOW_DECISIONS.join(', ')}`);
  const bound = (name: string, v: string | undefined): Date | undefined => {
    if (v === undefined) return undefined;
    try {
      return parseTimeBound(v);
    } catch (err) {
      throw new UsageError(`--${name}: ${(err as Error).message}`);
    }
  };
  const since = bound('since', values.since);
  const until = bound('until', values.until);
  const opts: ShowOptions = {
    format,
    ...(since ? { since } : {}),
    ...(until ? { until } : {}),
    ...pick('agent', optional(values.agent)),
    ...pick('user', optional(values.user)),
    ...pick('tenant', optional(values.tenant)),
    ...pick('tool', optional(values.tool)),
    ...pick('mcpTool', optional(values.mcpTool)),
    ...(decision ? { decision: decision as ShowDecision } : {}),
  };
  const r = await showAuditFile(resolve(file), opts, io.out);
  if (r.unreadable > 0) io.err.write(`${file}: ${r.unreadable} unreadable line(s) skipped\n`);
  if (r.incomplete.length > 0) {
    io.err.write(`${file}: ${r.incomplete.length} exchange(s) forwarded but never completed (--decision incomplete lists them)\n`);
  }
  if (r.chainProblem) {
    io.err.write(`${file}: warning: the hash chain did not verify (line ${r.chainProblem.line}: ${r.chainProblem.reason}); check it with "portcullis audit verify"\n`);
    if (values.verify) return EXIT.broken;
  }
  return EXIT.ok;
}

function pick<K extends string>(key: K, v: string | undefined): Partial<Record<K, string>> {
  return v === undefined ? {} : ({ [key]: v } as Record<K, string>);
}

async function cmdKeygen(out: string, io: AuditIo): Promise<number> {
  const keys = generateCheckpointKeys();
  const prefix = resolve(out);
  // Never overwrites: a replaced key would leave earlier checkpoints unverifiable by the new one.
  await writeFile(`${prefix}.key`, keys.privatePem, { mode: 0o600, flag: 'wx' });
  await writeFile(`${prefix}.pub`, keys.publicPem, { mode: 0o644, flag: 'wx' });
  io.out.write(`${keys.keyId}\nprivate key: ${out}.key (audit.checkpoint.key: {file: ...})\npublic key:  ${out}.pub (audit verify --public-key)\n`);
  return EXIT.ok;
}
