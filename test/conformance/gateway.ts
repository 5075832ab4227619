import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TOOL_INPUT_SCHEMAS } from './tools.js';

/**
 * How the gateway is told about the conformance target when it stands in for the demo's `docs`
 * MCP tool. Two ways to give it the target's tool definitions:
 * - `configured`: every tool listed under `mcp.tools`, each with the input schema the target
 *   publishes, written to files (read-only: the suite's tools change nothing);
 * - `learned`: `mcp.server_url` names the target and the gateway reads the definitions from its
 *   `tools/list`.
 */
export type ToolDefinitions = 'configured' | 'learned';

type Json = Record<string, unknown>;

/** Writes one JSON Schema file per target tool into `dir`; returns the `mcp.tools` mapping that uses them. */
export function writeToolSchemas(dir: string): Json {
  mkdirSync(dir, { recursive: true });
  const tools: Json = {};
  for (const [name, schema] of Object.entries(TOOL_INPUT_SCHEMAS)) {
    const file = join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify(schema, null, 2));
    tools[name] = { mutating: false, input_schema: file };
  }
  return tools;
}

/**
 * Writes a policy data file into `dir` that tells the demo policy the target's tools change
 * nothing (merged over the bundle's data), so a read-only role may call them; returns its path.
 */
export function writePolicyData(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const mcpTools = Object.fromEntries(Object.keys(TOOL_INPUT_SCHEMAS).map((name) => [name, { mutating: false }]));
  const file = join(dir, 'policy-data.json');
  // The viewer role may use every tool, prompt and resource of this server (the shipped data
  // names the demo's own), so list filtering hides nothing the suite expects to see.
  const roles = { viewer: { mcp: { docs: { tools: ['*'], prompts: ['*'], resources: ['*'] } } } };
  writeFileSync(file, JSON.stringify({ portcullis: { tools: { docs: { mcp_tools: mcpTools } }, roles } }, null, 2));
  return file;
}

/** Options for {@link configureDocsTool}. */
export interface DocsToolOptions {
  definitions: ToolDefinitions;
  /** Folder for the files written (tool schemas, policy data). */
  dir: string;
  /** The target's MCP endpoint as the gateway reaches it (`learned`). */
  serverUrl: string;
  /** Browser origins and host names that may call the tool (the gateway's DNS-rebinding protection). */
  allowedOrigins?: string[];
  allowedHosts?: string[];
}

/**
 * Edits a gateway config (an `editConfig` callback) so the `docs` tool fronts the conformance
 * target: identity required, policy on (the demo policy, told that the target's tools are
 * read-only), response DLP on, and the tool definitions given the chosen way.
 */
export function configureDocsTool(cfg: Json, opts: DocsToolOptions): void {
  const tools = cfg.tools as Json[];
  const docs = tools.find((t) => t.name === 'docs');
  if (!docs) throw new Error('the demo config has no "docs" tool');
  docs.identity_required = true;
  docs.dry_run = false;
  docs.response = { ...(docs.response as Json | undefined), dlp: true };
  // Learned: the schemas come from the server's tools/list; the operator only marks the tools
  // read-only (the target sets no readOnlyHint, and a tool without one counts as mutating).
  const readOnly = Object.fromEntries(Object.keys(TOOL_INPUT_SCHEMAS).map((name) => [name, { mutating: false }]));
  docs.mcp = {
    ...(opts.definitions === 'configured' ? { tools: writeToolSchemas(opts.dir) } : { server_url: opts.serverUrl, tools: readOnly }),
    ...(opts.allowedOrigins ? { allowed_origins: opts.allowedOrigins } : {}),
    ...(opts.allowedHosts ? { allowed_hosts: opts.allowedHosts } : {}),
  };
  const policy = cfg.policy as Json;
  policy.dry_run = false;
  policy.data = writePolicyData(opts.dir);
}
