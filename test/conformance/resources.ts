import { ResourceTemplate, type McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SubscribeRequestSchema, UnsubscribeRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { PNG_BASE64 } from './fixtures.js';

/**
 * The resources the suite reads (`test://static-text`, `test://static-binary`, the template
 * `test://template/{id}/data`, `test://watched-resource`) and resource subscriptions. One call per
 * session: subscriptions are the session's own.
 */
export function installResources(mcp: McpServer): void {
  mcp.registerResource('static-text', 'test://static-text', { title: 'Static text', description: 'A fixed text resource', mimeType: 'text/plain' }, async (uri) => ({
    contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }],
  }));
  mcp.registerResource('static-binary', 'test://static-binary', { title: 'Static binary', description: 'A fixed PNG image', mimeType: 'image/png' }, async (uri) => ({
    contents: [{ uri: uri.href, mimeType: 'image/png', blob: PNG_BASE64 }],
  }));
  mcp.registerResource(
    'template',
    new ResourceTemplate('test://template/{id}/data', {
      list: undefined,
      complete: { id: (value) => ['123', '456', '789'].filter((v) => v.startsWith(value)) },
    }),
    { title: 'Templated data', description: 'JSON data for any id', mimeType: 'application/json' },
    async (uri, { id }) => ({
      contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${String(id)}` }) }],
    }),
  );
  mcp.registerResource('watched-resource', 'test://watched-resource', { title: 'Watched', description: 'A resource clients subscribe to', mimeType: 'text/plain' }, async (uri) => ({
    contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'Watched resource content' }],
  }));

  const subscribed = new Set<string>();
  mcp.server.setRequestHandler(SubscribeRequestSchema, async (req) => {
    subscribed.add(req.params.uri);
    return {};
  });
  mcp.server.setRequestHandler(UnsubscribeRequestSchema, async (req) => {
    subscribed.delete(req.params.uri);
    return {};
  });
}
