import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { fetchToolList } from '../../../src/mcp/discovery.js';
import { startTestMcpServer, type TestMcpServer } from '../../helpers/mcpServer.js';

/** The gateway's own MCP client: every page, the server's entries untouched, credentials sent, bounded. */

let mcp: TestMcpServer;
beforeAll(async () => {
  mcp = await startTestMcpServer();
});
afterAll(async () => mcp?.close());

/** A low-level SDK server that lists its tools over `pages` pages, with a field the SDK's own tool schema would drop. */
async function pagedServer(pages: number, delayMs = 0): Promise<{ url: string; close: () => Promise<void> }> {
  const http: HttpServer = createServer((req, res) => {
    const server = new Server({ name: 'paged', version: '1' }, { capabilities: { tools: {} } });
    server.setRequestHandler(ListToolsRequestSchema, async (r) => {
      if (delayMs) await new Promise((s) => setTimeout(s, delayMs));
      const page = Number(r.params?.cursor ?? 0);
      return {
        tools: [{ name: `tool_${page}`, inputSchema: { type: 'object' }, annotations: { readOnlyHint: true, vendorHint: 'kept' } }],
        ...(page + 1 < pages ? { nextCursor: String(page + 1) } : {}),
      };
    });
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => void server.close());
    void server.connect(transport).then(() => transport.handleRequest(req, res));
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`, close: () => new Promise((r) => http.close(() => r())) };
}

describe('fetchToolList', () => {
  it('returns the entries of an SDK server with the configured headers sent', async () => {
    const tools = (await fetchToolList({ url: mcp.url, headers: { authorization: 'Bearer discovery-secret' }, timeoutMs: 5000 })) as { name: string; inputSchema: unknown }[];
    expect(tools.map((t) => t.name).sort()).toEqual(['add', 'block_me', 'flag_me', 'hide_me', 'write_note']);
    expect(tools.find((t) => t.name === 'add')!.inputSchema).toMatchObject({ type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } } });
    const listed = mcp.requests.filter((r) => r.methods.includes('tools/list'));
    expect(listed.length).toBeGreaterThan(0);
    expect(listed.every((r) => r.authorization === 'Bearer discovery-secret')).toBe(true);
  });

  it('follows every page and keeps fields the SDK schema does not know (they are hashed)', async () => {
    const s = await pagedServer(3);
    try {
      const tools = (await fetchToolList({ url: s.url, headers: {}, timeoutMs: 5000 })) as { name: string; annotations: Record<string, unknown> }[];
      expect(tools.map((t) => t.name)).toEqual(['tool_0', 'tool_1', 'tool_2']);
      expect(tools[0]!.annotations.vendorHint).toBe('kept');
    } finally {
      await s.close();
    }
  });

  it('gives up after its timeout', async () => {
    const s = await pagedServer(1, 3000);
    try {
      await expect(fetchToolList({ url: s.url, headers: {}, timeoutMs: 300 })).rejects.toThrow();
    } finally {
      await s.close();
    }
  });

  it('fails on a server that is not there', async () => {
    await expect(fetchToolList({ url: 'http://127.0.0.1:1/mcp', headers: {}, timeoutMs: 2000 })).rejects.toThrow();
  });
});
