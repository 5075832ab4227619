
/**
 * Asks an MCP server for its tools (`initialize`, then `tools/list` page by page) with the
 * official SDK client over streamable HTTP. The entries come back as the server sent them: the
 * catalog parses, hashes and scans them itself, exactly as it does a list passing through.
 * The SDK (and zod) are loaded on the first fetch: a gateway whose MCP tools have no
 * `server_url` never holds them in memory.
 */

/** Pages followed at most; a server that never stops paginating is cut off here. */
const MAX_PAGES = 50;

/** The SDK client pieces and the result schema, loaded once. */
async function sdk() {
  const [{ Client }, { StreamableHTTPClientTransport }, { z }] = await Promise.all([
    import('@modelcontextprotocol/sdk/client/index.js'),
    import('@modelcontextprotocol/sdk/client/streamableHttp.js'),
    import('zod'),
  ]);
  // Loose on purpose: the SDK's own tool schema strips fields the pin hash covers.
  const ListResult = z.looseObject({ tools: z.array(z.unknown()), nextCursor: z.string().optional() });
  return { Client, StreamableHTTPClientTransport, ListResult };
}
let loaded: ReturnType<typeof sdk> | null = null;

/** How to reach one server. */
export interface DiscoveryTarget {
  readonly url: string;
  /** Headers sent with every request (the tool's upstream credentials). */
  readonly headers: Readonly<Record<string, string>>;
  /** Bound on the whole exchange (connect and every page). */
  readonly timeoutMs: number;
}

/** Fetches every tool entry the server lists. Rejects with an Error saying what failed. */
export async function fetchToolList(target: DiscoveryTarget): Promise<unknown[]> {
  const { Client, StreamableHTTPClientTransport, ListResult } = await (loaded ??= sdk());
  const signal = AbortSignal.timeout(target.timeoutMs);
  // Credentials must not follow a redirect to another origin.
  const transport = new StreamableHTTPClientTransport(new URL(target.url), { requestInit: { headers: { ...target.headers }, redirect: 'error' } });
  // The gateway lists on behalf of any agent: servers that offer some tools only to clients with
  // these capabilities must list those too. Nothing is asked of this client before it closes.
  const client = new Client({ name: 'portcullis', version: '1' }, { capabilities: { sampling: {}, elicitation: {}, roots: {} } });
  try {
    await client.connect(transport, { timeout: target.timeoutMs, signal });
    const tools: unknown[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      const r = await client.request({ method: 'tools/list', params: cursor === undefined ? {} : { cursor } }, ListResult, { timeout: target.timeoutMs, signal });
      tools.push(...r.tools);
      cursor = r.nextCursor;
      if (cursor === undefined) return tools;
    }
    throw new Error(`the server paginated tools/list past ${MAX_PAGES} pages`);
  } finally {
    await client.close().catch(() => undefined);
  }
}
