import { resolve } from 'node:path';
import { Command } from 'commander';
import { applyConventions, exitCodeOf, runCommand, type ExitCode } from '../cli/program.js';
import { loadConfig } from '../config/load.js';
import type { GatewayConfig } from '../config/types.js';
import { readPinFile, setPinInFile } from './pins.js';

/**
 * `portcullis mcp pins --config FILE` lists the pinned MCP tool definitions (configuration pins and
 * pin files); `portcullis mcp approve --config FILE --tool T --name N --hash H` approves a definition
 * in the tool's pin file, which running replicas watch. Returns the exit code; nothing here
 * exits the process.
 */

/** Where output goes. */
export interface McpIo {
  readonly out: { write(s: string): unknown };
  readonly err: { write(s: string): unknown };
}

interface Row {
  tool: string;
  name: string;
  hash: string;
  by: string;
  since: string;
  source: string;
}

function rows(config: GatewayConfig): Row[] {
  const out: Row[] = [];
  for (const t of config.tools) {
    if (!t.mcp) continue;
    for (const [name, hash] of Object.entries(t.mcp.pins)) out.push({ tool: t.name, name, hash, by: 'config', since: '', source: 'mcp.pins' });
    if (!t.mcp.pins_file) continue;
    const file = resolve(config.base_dir, t.mcp.pins_file);
    for (const [name, p] of Object.entries(readPinFile(file).pins[t.name] ?? {})) {
      if (t.mcp.pins[name] === undefined) out.push({ tool: t.name, name, hash: p.hash, by: p.by, since: p.since, source: file });
    }
  }
  return out;
}

/** Runs an action; an error is reported on `err` with exit 1 (usage errors: 2). */
function guarded(cmd: Command, io: McpIo, result: ExitCode, run: () => number): void {
  try {
    result.code = run();
  } catch (err) {
    const usage = exitCodeOf(err, cmd, io);
    if (usage !== null) {
      result.code = usage;
      return;
    }
    io.err.write(`portcullis: ${(err as Error).message}\n`);
    result.code = 1;
  }
}

function approve(values: { config: string; tool: string; name: string; hash: string }, io: McpIo): number {
  const config = loadConfig(resolve(values.config));
  const tool = config.tools.find((t) => t.name === values.tool);
  if (!tool?.mcp) throw new Error(`tool "${values.tool}" is not an MCP tool of this configuration`);
  if (!/^[0-9a-f]{64}$/.test(values.hash)) throw new Error('--hash must be a sha256 hex digest (64 lower-case hex characters)');
  if (tool.mcp.pins[values.name] !== undefined) throw new Error(`MCP tool "${values.name}" of tool "${tool.name}" is pinned in the configuration (mcp.pins); change it there`);
  if (!tool.mcp.pins_file) {
    throw new Error(`tool "${tool.name}" has no mcp.pins_file: its pins live in each replica's memory; approve on each through POST /mcp/pins/approve on the admin port`);
  }
  const file = resolve(config.base_dir, tool.mcp.pins_file);
  setPinInFile(file, tool.name, values.name, { hash: values.hash, since: new Date().toISOString(), by: 'cli' });
  io.out.write(`approved ${tool.name}/${values.name} ${values.hash} in ${file}\n`);
  return 0;
}

/**
 * The `mcp` command tree (pins, approve) for a program; each action records its exit code in
 * `result`. Conventions (output, help pointers) are applied by the program that holds it.
 */
export function mcpCli(io: McpIo, result: ExitCode): Command {
  const mcp = new Command('mcp').description('MCP tool definition pins');
  const pins = mcp
    .command('pins')
    .description('list pinned MCP tool definitions (mcp.pins and pin files): tool, name, hash, by, since')
    .requiredOption('-c, --config <file>', 'gateway configuration')
    .option('--json', 'one JSON array instead of tab-separated lines', false);
  pins.action((opts: { config: string; json: boolean }) =>
    guarded(pins, io, result, () => {
      const list = rows(loadConfig(resolve(opts.config)));
      if (opts.json) io.out.write(`${JSON.stringify(list)}\n`);
      else for (const r of list) io.out.write(`${r.tool}\t${r.name}\t${r.hash}\t${r.by}\t${r.since}\n`);
      return 0;
    }),
  );
  const approveCmd = mcp
    .command('approve')
    .description("approve a changed MCP tool definition (written to the tool's mcp.pins_file, which running replicas watch)")
    .requiredOption('-c, --config <file>', 'gateway configuration')
    .requiredOption('--tool <tool>', 'the configured (MCP) tool')
    .requiredOption('--name <mcp_tool>', 'the MCP tool name the server lists')
    .requiredOption('--hash <sha256>', 'the definition hash to approve (from the audit record, metrics or mcp pins)');
  approveCmd.action((opts: { config: string; tool: string; name: string; hash: string }) => guarded(approveCmd, io, result, () => approve(opts, io)));
  return mcp;
}

/** Runs `portcullis mcp ...` (the words after `mcp`); resolves with the exit code. */
export async function mcpCommand(argv: readonly string[], io: McpIo): Promise<number> {
  const result: ExitCode = { code: 0 };
  const mcp = applyConventions(mcpCli(io, result).name('portcullis mcp'), io);
  return runCommand(mcp, argv, io, result);
}
