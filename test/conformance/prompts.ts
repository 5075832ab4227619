import { z } from 'zod';
import { completable } from '@modelcontextprotocol/sdk/server/completable.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { PNG_BASE64 } from './fixtures.js';

/** Words `completion/complete` offers for `test_prompt_with_arguments`' arguments, by prefix. */
const SUGGESTIONS = ['paris', 'park', 'party', 'test', 'testing', 'tested'];

const suggest = (value: string): string[] => SUGGESTIONS.filter((w) => w.startsWith(value.toLowerCase()));

/** The prompts the suite lists and gets (`test_simple_prompt`, with arguments, with a resource, with an image). */
export function installPrompts(mcp: McpServer): void {
  mcp.registerPrompt('test_simple_prompt', { title: 'Simple prompt', description: 'A prompt without arguments' }, async () => ({
    messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }],
  }));
  mcp.registerPrompt(
    'test_prompt_with_arguments',
    {
      title: 'Prompt with arguments',
      description: 'A prompt with two required arguments',
      argsSchema: {
        arg1: completable(z.string().describe('First test argument'), suggest),
        arg2: completable(z.string().describe('Second test argument'), suggest),
      },
    },
    async ({ arg1, arg2 }) => ({
      messages: [{ role: 'user', content: { type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` } }],
    }),
  );
  mcp.registerPrompt(
    'test_prompt_with_embedded_resource',
    {
      title: 'Prompt with an embedded resource',
      description: 'A prompt that embeds the resource it is given',
      argsSchema: { resourceUri: z.string().describe('URI of the resource to embed') },
    },
    async ({ resourceUri }) => ({
      messages: [
        { role: 'user', content: { type: 'resource', resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } } },
        { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
      ],
    }),
  );
  mcp.registerPrompt('test_prompt_with_image', { title: 'Prompt with an image', description: 'A prompt that carries an image' }, async () => ({
    messages: [
      { role: 'user', content: { type: 'image', data: PNG_BASE64, mimeType: 'image/png' } },
      { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
    ],
  }));
}
