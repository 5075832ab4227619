import { z } from 'zod';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  CallToolRequestSchema,
  CreateMessageResultSchema,
  ElicitResultSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  type CallToolResult,
  type ElicitRequest,
  type ServerNotification,
  type ServerRequest,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { PNG_BASE64, WAV_BASE64 } from './fixtures.js';

/**
 * The tools the conformance suite's server scenarios call (`test_*`, `json_schema_2020_12_tool`).
 * Each tool is one entry: a zod object for its arguments (validated on every call) and the JSON
 * Schema `tools/list` publishes, derived from the zod object unless the tool publishes a
 * hand-written schema. The same JSON Schemas are what a gateway in front of this server is
 * configured with, so the two can never disagree.
 */

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** A JSON Schema object as published in `tools/list`. */
export type JsonSchema = Tool['inputSchema'];

interface ToolDef {
  readonly description: string;
  readonly args: z.ZodObject;
  /** Published instead of the schema derived from `args` (the 2020-12 dialect scenario). */
  readonly listed?: JsonSchema;
  run(args: Record<string, unknown>, extra: Extra, server: Server): Promise<CallToolResult>;
}

const noArgs = z.object({});
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const text = (t: string): CallToolResult => ({ content: [{ type: 'text', text: t }] });

/** A schema in the 2020-12 dialect whose `$schema`, `$defs` and `additionalProperties` must survive listing. */
const DIALECT_2020_12: JsonSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  $defs: { address: { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } } },
  properties: { name: { type: 'string' }, address: { $ref: '#/$defs/address' } },
  additionalProperties: false,
};

/** Three notifications spaced in time, so a client must read them off an open stream. */
async function spaced(extra: Extra, notifications: ServerNotification[]): Promise<void> {
  for (const [i, n] of notifications.entries()) {
    if (i > 0) await sleep(30);
    await extra.sendNotification(n);
  }
}

/** Asks the client for input (`elicitation/create`); a client without the capability gets a tool error. */
async function elicit(server: Server, extra: Extra, params: ElicitRequest['params'], label: string): Promise<CallToolResult> {
  if (!server.getClientCapabilities()?.elicitation) return { isError: true, content: [{ type: 'text', text: 'the client does not support elicitation' }] };
  const r = await extra.sendRequest({ method: 'elicitation/create', params }, ElicitResultSchema);
  return text(`${label}: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
}

const TOOLS: Record<string, ToolDef> = {
  test_simple_text: {
    description: 'Returns one text content item.',
    args: noArgs,
    run: async () => text('This is a simple text response for testing.'),
  },
  test_image_content: {
    description: 'Returns one PNG image content item.',
    args: noArgs,
    run: async () => ({ content: [{ type: 'image', data: PNG_BASE64, mimeType: 'image/png' }] }),
  },
  test_audio_content: {
    description: 'Returns one WAV audio content item.',
    args: noArgs,
    run: async () => ({ content: [{ type: 'audio', data: WAV_BASE64, mimeType: 'audio/wav' }] }),
  },
  test_embedded_resource: {
    description: 'Returns one embedded text resource.',
    args: noArgs,
    run: async () => ({
      content: [{ type: 'resource', resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } }],
    }),
  },
  test_multiple_content_types: {
    description: 'Returns text, image and embedded resource content together.',
    args: noArgs,
    run: async () => ({
      content: [
        { type: 'text', text: 'Multiple content types test:' },
        { type: 'image', data: PNG_BASE64, mimeType: 'image/png' },
        { type: 'resource', resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: JSON.stringify({ test: 'data', value: 123 }) } },
      ],
    }),
  },
  test_tool_with_logging: {
    description: 'Sends three info log notifications while it runs.',
    args: noArgs,
    run: async (_args, extra) => {
      const log = (data: string): ServerNotification => ({ method: 'notifications/message', params: { level: 'info', logger: 'conformance', data } });
      await spaced(extra, [log('Tool execution started'), log('Tool processing data'), log('Tool execution completed')]);
      return text('Tool with logging executed successfully');
    },
  },
  test_tool_with_progress: {
    description: 'Reports progress 0, 50 and 100 of 100 against the request progress token.',
    args: noArgs,
    run: async (_args, extra) => {
      const token = extra._meta?.progressToken;
      if (token === undefined) {
        await sleep(60);
        return text('no progress token: progress not reported');
      }
      const step = (progress: number): ServerNotification => ({
        method: 'notifications/progress',
        params: { progressToken: token, progress, total: 100, message: `Completed ${progress} of 100` },
      });
      await spaced(extra, [step(0), step(50), step(100)]);
      return text(String(token));
    },
  },
  test_error_handling: {
    description: 'Always fails with a tool execution error (isError: true).',
    args: noArgs,
    run: async () => ({ isError: true, content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }] }),
  },
  test_reconnection: {
    description: 'Closes its SSE stream mid-call; the result arrives after the client resumes with Last-Event-ID.',
    args: noArgs,
    run: async (_args, extra) => {
      extra.closeSSEStream?.();
      await sleep(100);
      return text('Reconnection test completed successfully: the result was delivered after the client resumed the stream.');
    },
  },
  test_sampling: {
    description: 'Asks the client for an LLM completion of `prompt` (sampling/createMessage).',
    args: z.object({ prompt: z.string().describe('The prompt to send to the LLM') }),
    run: async (args, extra, server) => {
      if (!server.getClientCapabilities()?.sampling) return { isError: true, content: [{ type: 'text', text: 'the client does not support sampling' }] };
      const r = await extra.sendRequest(
        { method: 'sampling/createMessage', params: { messages: [{ role: 'user', content: { type: 'text', text: String(args.prompt) } }], maxTokens: 100 } },
        CreateMessageResultSchema,
      );
      const reply = r.content.type === 'text' ? r.content.text : `(${r.content.type} content)`;
      return text(`LLM response: ${reply}`);
    },
  },
  test_elicitation: {
    description: 'Asks the client for a username and an email (elicitation/create).',
    args: z.object({ message: z.string().describe('The message to show the user') }),
    run: async (args, extra, server) =>
      elicit(
        server,
        extra,
        {
          message: String(args.message),
          requestedSchema: {
            type: 'object',
            properties: {
              username: { type: 'string', description: "User's response" },
              email: { type: 'string', description: "User's email address" },
            },
            required: ['username', 'email'],
          },
        },
        'User response',
      ),
  },
  test_elicitation_sep1034_defaults: {
    description: 'Elicits a form whose primitive fields all carry defaults (SEP-1034).',
    args: noArgs,
    run: async (_args, extra, server) =>
      elicit(
        server,
        extra,
        {
          message: 'Please review and update the form fields with defaults',
          requestedSchema: {
            type: 'object',
            properties: {
              name: { type: 'string', description: 'User name', default: 'John Doe' },
              age: { type: 'integer', description: 'User age', default: 30 },
              score: { type: 'number', description: 'User score', default: 95.5 },
              status: { type: 'string', description: 'User status', enum: ['active', 'inactive', 'pending'], default: 'active' },
              verified: { type: 'boolean', description: 'Verification status', default: true },
            },
            required: [],
          },
        },
        'Elicitation completed',
      ),
  },
  test_elicitation_sep1330_enums: {
    description: 'Elicits a form with the five enum field variants (SEP-1330).',
    args: noArgs,
    run: async (_args, extra, server) =>
      elicit(
        server,
        extra,
        {
          message: 'Please select options from the enum fields',
          requestedSchema: {
            type: 'object',
            properties: {
              untitledSingle: { type: 'string', description: 'Select one option', enum: ['option1', 'option2', 'option3'] },
              titledSingle: {
                type: 'string',
                description: 'Select one option with titles',
                oneOf: [
                  { const: 'value1', title: 'First Option' },
                  { const: 'value2', title: 'Second Option' },
                  { const: 'value3', title: 'Third Option' },
                ],
              },
              legacyEnum: {
                type: 'string',
                description: 'Select one option (legacy)',
                enum: ['opt1', 'opt2', 'opt3'],
                enumNames: ['Option One', 'Option Two', 'Option Three'],
              },
              untitledMulti: {
                type: 'array',
                description: 'Select multiple options',
                minItems: 1,
                maxItems: 3,
                items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
              },
              titledMulti: {
                type: 'array',
                description: 'Select multiple options with titles',
                minItems: 1,
                maxItems: 3,
                items: {
                  anyOf: [
                    { const: 'value1', title: 'First Choice' },
                    { const: 'value2', title: 'Second Choice' },
                    { const: 'value3', title: 'Third Choice' },
                  ],
                },
              },
            },
            required: [],
          },
        },
        'Elicitation completed',
      ),
  },
  json_schema_2020_12_tool: {
    description: 'Publishes a JSON Schema 2020-12 input schema ($schema, $defs, additionalProperties).',
    args: z.strictObject({
      name: z.string().optional(),
      address: z.object({ street: z.string().optional(), city: z.string().optional() }).optional(),
    }),
    listed: DIALECT_2020_12,
    run: async (args) => text(`JSON Schema 2020-12 tool called with: ${JSON.stringify(args)}`),
  },
};

/** The input schema `tools/list` publishes for each tool, by name. Compiled once. */
export const TOOL_INPUT_SCHEMAS: Readonly<Record<string, JsonSchema>> = Object.fromEntries(
  Object.entries(TOOLS).map(([name, def]) => [name, def.listed ?? (z.toJSONSchema(def.args, { io: 'input' }) as JsonSchema)]),
);

/** `tools/list` and `tools/call` for {@link TOOLS} on a low-level server (which must declare `tools`). */
export function installTools(server: Server): void {
  const listed: Tool[] = Object.entries(TOOLS).map(([name, def]) => ({ name, description: def.description, inputSchema: TOOL_INPUT_SCHEMAS[name] as JsonSchema }));
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: listed }));
  server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    const def = TOOLS[req.params.name];
    if (!def) throw new McpError(ErrorCode.InvalidParams, `unknown tool ${JSON.stringify(req.params.name)}`);
    const parsed = def.args.safeParse(req.params.arguments ?? {});
    // Invalid arguments are a tool execution error the model can correct, not a protocol error.
    if (!parsed.success) return { isError: true, content: [{ type: 'text', text: `invalid arguments: ${z.prettifyError(parsed.error)}` }] };
    return def.run(parsed.data as Record<string, unknown>, extra, server);
  });
}
