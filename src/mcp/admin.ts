import type { McpCatalog } from './catalog.js';

/**
 * The MCP pins on the admin port: `GET /mcp/pins` lists every pinned or learned MCP tool with
 * its status; `POST /mcp/pins/approve` with `{"tool", "name", "hash"}` approves a definition
 * (written to the pin file, which replicas sharing it pick up). HTTP-free, so the admin server
 * only routes and authenticates.
 */

/** An answer of the pins endpoints. */
export interface PinsReply {
  readonly status: number;
  readonly body: unknown;
}

/** The pins endpoints' logic. */
export interface McpPinsAdmin {
  list(): PinsReply;
  /** `body` is the request body as text. */
  approve(body: string): PinsReply;
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The pins endpoints over one catalog. */
export function mcpPinsAdmin(catalog: McpCatalog): McpPinsAdmin {
  return {
    list: () => ({ status: 200, body: { pins: catalog.pins() } }),
    approve(text) {
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        return { status: 400, body: { error: 'the body must be JSON: {"tool": ..., "name": ..., "hash": ...}' } };
      }
      if (!isObj(body) || typeof body.tool !== 'string' || typeof body.name !== 'string' || typeof body.hash !== 'string') {
        return { status: 400, body: { error: 'tool, name and hash (strings) are required' } };
      }
      try {
        const pin = catalog.approve(body.tool, body.name, body.hash, 'admin');
        return { status: 200, body: { approved: true, tool: body.tool, name: body.name, pin } };
      } catch (err) {
        return { status: 422, body: { approved: false, error: (err as Error).message } };
      }
    },
  };
}
