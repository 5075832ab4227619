import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { KeyObject } from 'node:crypto';
import { readAnchors, type Anchor } from './anchors.js';
import { generateCheckpointKeys, publicKeyFromPem } from './checkpoint.js';
import { SHOW_DECISIONS, parseTimeBound, showAuditFile, type ShowDecision, type ShowOptions, type TextOut } from './show.js';
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

export const AUDIT_USAGE = `  audit verify FILE... [--public-key PEM]... [--key-id ID]... [--anchors FILE]
                                 check audit files: hash chain, checkpoint signatures, anchors;
                                 exit 0 intact, 1 broken, 3 intact with findings (unanchored tail,
                                 exchanges forwarded but never completed in any FILE given: pass
                                 every replica's file together)
  audit show FILE [--since T] [--until T] [--agent A] [--user U] [--tenant T] [--tool T]
                  [--mcp-tool T] [--decision allowed|denied|blocked|failed|incomplete]
                  [--format json|table] [--verify]
                                 print matching records (T: ISO time or 30m, 1h, 7d ago)
  audit keygen --out PREFIX      write an Ed25519 checkpoint key pair: PREFIX.key (private, 0600)
                                 and PREFIX.pub; print its key id
`;

class UsageError extends Error {}

/** Runs `audit <sub> ...`; resolves with the exit code. */
export async function auditCommand(argv: readonly string[], io: AuditIo): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    switch (sub) {
      case 'verify':
        return await cmdVerify(rest, io);
      case 'show':
        return await cmdShow(rest, io);
      case 'keygen':
        return await cmdKeygen(rest, io);
      default:
        throw new UsageError(sub ? `unknown audit command "${sub}"` : 'audit needs a command: verify, show or keygen');
    }
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: unknown }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      io.err.write(`portcullis: ${(err as Error).message}\nusage:\n${AUDIT_USAGE}`);
      return EXIT.usage;
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('E')) {
      io.err.write(`portcullis: ${(err as Error).message}\n`);
      return EXIT.usage;
    }
    throw err;
  }
}

function one(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new UsageError(`expected one ${what}`);
  return positionals[0]!;
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

async function cmdVerify(argv: string[], io: AuditIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: { 'public-key': { type: 'string', multiple: true }, 'key-id': { type: 'string', multiple: true }, anchors: { type: 'string' } },
  });
  if (positionals.length === 0) throw new UsageError('expected one or more audit FILEs');
  // Anchors are taken from one file's checkpoints: they prove nothing about another file.
  if (values.anchors && positionals.length > 1) throw new UsageError('--anchors checks one file: verify each anchored file on its own');
  const publicKeys = readKeys(values['public-key'] ?? []);
  let anchors: Anchor[] | undefined;
  if (values.anchors) anchors = (await readAnchors(resolve(values.anchors))).anchors;
  const paths = positionals.map((f) => resolve(f));
  let results: AuditVerifyResult[] = [];
  for (const path of paths) results.push(await verifyAuditFile(path, { publicKeys, keyIds: values['key-id'] ?? [], ...(anchors ? { anchors } : {}) }));
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

async function cmdShow(argv: string[], io: AuditIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      since: { type: 'string' },
      until: { type: 'string' },
      agent: { type: 'string' },
      user: { type: 'string' },
      tenant: { type: 'string' },
      tool: { type: 'string' },
      'mcp-tool': { type: 'string' },
      decision: { type: 'string' },
      format: { type: 'string' },
      verify: { type: 'boolean', default: false },
    },
  });
  const file = one(positionals, 'audit FILE');
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
    ...pick('mcpTool', optional(values['mcp-tool'])),
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

async function cmdKeygen(argv: string[], io: AuditIo): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, strict: true, options: { out: { type: 'string' } } });
  if (!values.out || positionals.length > 0) throw new UsageError('audit keygen needs --out PREFIX');
  const keys = generateCheckpointKeys();
  const prefix = resolve(values.out);
  // Never overwrites: a replaced key would leave earlier checkpoints unverifiable by the new one.
  await writeFile(`${prefix}.key`, keys.privatePem, { mode: 0o600, flag: 'wx' });
  await writeFile(`${prefix}.pub`, keys.publicPem, { mode: 0o644, flag: 'wx' });
  io.out.write(`${keys.keyId}\nprivate key: ${values.out}.key (audit.checkpoint.key: {file: ...})\npublic key:  ${values.out}.pub (audit verify --public-key)\n`);
  return EXIT.ok;
}
