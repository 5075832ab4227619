import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import type { GatewayConfig } from '../config/types.js';
import { readPinFile, setPinInFile } from './pins.js';

/**
 * `portcullis mcp pins --config FILE` lists the pinned MCP tool definitions (configuration pins and
 * pin files); `portcullis mcp approve --config FILE --tool T --name N --hash H` approves a definition
 * in the tool's pin file, which running replicas watch. Returns the exit code; nothing here
 * exits the process.
 */

/** Usage lines of the `mcp` commands. */
export const MCP_USAGE = `  mcp pins --config FILE [--json]
                                 list pinned MCP tool definitions (mcp.pins and pin files)
  mcp approve --config FILE --tool TOOL --name MCP_TOOL --hash SHA256
                                 approve a changed MCP tool definition (written to the tool's mcp.pins_file)
`;

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

/** Runs `portcullis mcp ...`. */
export async function mcpCommand(argv: readonly string[], io: McpIo): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    if (sub === 'pins') {
      const { values } = parseArgs({ args: [...rest], options: { config: { type: 'string' }, json: { type: 'boolean', default: false } }, strict: true });
      if (!values.config) throw new UsageError('mcp pins needs --config FILE');
      const list = rows(loadConfig(resolve(values.config)));
      if (values.json) io.out.write(`${JSON.stringify(list)}\n`);
      else for (const r of list) io.out.write(`${r.tool}\t${r.name}\t${r.hash}\t${r.by}\t${r.since}\n`);
      return 0;
    }
    if (sub === 'approve') {
      const { values } = parseArgs({
        args: [...rest],
        options: { config: { type: 'string' }, tool: { type: 'string' }, name: { type: 'string' }, hash: { type: 'string' } },
        strict: true,
      });
      if (!values.config || !values.tool || !values.name || !values.hash) throw new UsageError('mcp approve needs --config FILE --tool TOOL --name MCP_TOOL --hash SHA256');
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
    throw new UsageError(`usage:\n${MCP_USAGE}`);
  } catch (err) {
    io.err.write(`portcullis: ${(err as Error).message}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}

class UsageError extends Error {}
