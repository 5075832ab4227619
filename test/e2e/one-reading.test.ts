import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { send, startStack, type Reply, type Stack } from '../helpers/index.js';
import { token } from './authz-support.js';

/**
 * One reading of every request, through the real Envoy: the policy, the schema check and the tool
 * see the same body with the same meaning (content types, strict JSON, bodies larger than the
 * Check sees), and nothing reaches a tool that portcullis did not read.
 */

/** The error object of a JSON error body (asserting the gateway's shape). */
function errorOf(r: Reply): Record<string, unknown> {
  expect(r.headers['content-type'], r.text).toMatch(/^application\/json/);
  const body = r.json as { error?: Record<string, unknown> } | null;
  expect(body && typeof body.error === 'object', r.text).toBe(true);
  const e = body!.error!;
  expect(typeof e.type).toBe('string');
  expect(typeof e.message).toBe('string');
  expect(typeof e.retryable).toBe('boolean');
  expect(e.request_id).toBe(r.headers['x-request-id']);
  return e;
}

/** A unique marker to find (or not find) a request at the tool. */
function marker(): string {
  return `m-${randomUUID()}`;
}

/** Whether the tool received any request whose path or body holds `mark`. */
function reached(stack: Stack, mark: string): boolean {
  return stack.tool.received.some((r) => r.body.includes(mark) || r.path.includes(mark));
}

const TICKETS = '/tools/tickets/tenants/acme/tickets';

describe('one reading of every request', () => {
  let stack: Stack;
  let support: string;
  let viewer: string;

  beforeAll(async () => {
    stack = await startStack();
    support = await token(stack);
    viewer = await token(stack, { agent: 'reporter', user: 'victor', roles: ['viewer'] });
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });

  describe('content type: a JSON tool reads JSON only', () => {
    const cases: [string, string | null][] = [
      ['text/plain', 'text/plain'],
      ['no content type', null],
      ['form-urlencoded', 'application/x-www-form-urlencoded'],
      ['application/x-json', 'application/x-json'],
      ['text/json', 'text/json'],
      ['JSON in another charset', 'application/json; charset=iso-8859-1'],
    ];
    for (const [label, ct] of cases) {
      it(`a ticket for another tenant sent as ${label} is 415, never created`, async () => {
        const title = marker();
        const r = await send(stack, TICKETS, { bearer: support, body: JSON.stringify({ title, priority: 'low', tenant: 'globex' }), headers: { 'content-type': ct } });
        expect(r.status, r.text).toBe(415);
        expect(errorOf(r)).toMatchObject({ type: 'invalid_request', rule: 'inspect.content_type' });
        expect(reached(stack, title)).toBe(false);
      });
    }

    it('the same ticket as application/json is the policy\'s 403 tenant.mismatch', async () => {
      const title = marker();
      const r = await send(stack, TICKETS, { bearer: support, body: JSON.stringify({ title, priority: 'low', tenant: 'globex' }) });
      expect(r.status, r.text).toBe(403);
      expect(errorOf(r)).toMatchObject({ type: 'forbidden', rule: 'tenant.mismatch' });
      expect(reached(stack, title)).toBe(false);
    });

    it('application/json with a charset and +json types are JSON', async () => {
      for (const ct of ['application/json; charset=utf-8', 'application/merge-patch+json']) {
        const title = marker();
        const r = await send(stack, TICKETS, { bearer: support, body: JSON.stringify({ title, priority: 'low' }), headers: { 'content-type': ct } });
        expect(r.status, `${ct}: ${r.text}`).toBe(201);
        expect(reached(stack, title)).toBe(true);
      }
    });

    it('an MCP call sent as text/plain is 415 (a JSON-RPC error), never reaches the server', async () => {
      const id = marker();
      const body = JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'delete_doc', arguments: { doc_id: 'd-1', tenant: 'acme' } } });
      const r = await send(stack, '/tools/docs/', { bearer: viewer, body, headers: { 'content-type': 'text/plain' } });
      expect(r.status, r.text).toBe(415);
      expect(reached(stack, id)).toBe(false);
    });

    it('a byte order mark before the JSON is 400, not a truncated body the policy cannot read', async () => {
      const title = marker();
      const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ title, priority: 'low', tenant: 'globex' }))]);
      const r = await send(stack, TICKETS, { bearer: support, body });
      expect(r.status, r.text).toBe(400);
      expect(errorOf(r)).toMatchObject({ type: 'invalid_request', rule: 'inspect.json', details: { problem: 'bom' } });
      expect(reached(stack, title)).toBe(false);
    });
  });

  describe('strict JSON: a body that means different things to different parsers is 400', () => {
    it('a duplicate priority never passes the schema on its last value', async () => {
      const title = marker();
      const r = await send(stack, TICKETS, { bearer: support, body: `{"title":"${title}","priority":"urgent-drop-tables","priority":"low"}` });
      expect(r.status, r.text).toBe(400);
      expect(errorOf(r)).toMatchObject({ type: 'invalid_request', rule: 'inspect.json', details: { problem: 'duplicate_key' } });
      expect(reached(stack, title)).toBe(false);
    });

    it('a duplicate tenant never slips past tenant scoping', async () => {
      for (const body of [
        (t: string) => `{"title":"${t}","priority":"low","tenant":"globex","tenant":"acme"}`,
        (t: string) => `{"title":"${t}","priority":"low","tenant":"acme","\\u0074enant":"globex"}`,
      ]) {
        const title = marker();
        const r = await send(stack, TICKETS, { bearer: support, body: body(title) });
        expect(r.status, r.text).toBe(400);
        expect(errorOf(r)).toMatchObject({ rule: 'inspect.json', details: { problem: 'duplicate_key' } });
        expect(reached(stack, title)).toBe(false);
      }
    });

    const rpcBodies: [string, (id: string) => string][] = [
      ['method', (id) => `{"jsonrpc":"2.0","id":"${id}","method":"tools/call","method":"tools/list","params":{"name":"delete_doc","arguments":{"doc_id":"d-1","tenant":"acme"}}}`],
      ['params', (id) => `{"jsonrpc":"2.0","id":"${id}","method":"tools/call","params":{"name":"delete_doc","arguments":{"doc_id":"d-1","tenant":"acme"}},"params":{"name":"search_docs","arguments":{"query":"q","tenant":"acme"}}}`],
      ['name', (id) => `{"jsonrpc":"2.0","id":"${id}","method":"tools/call","params":{"name":"delete_doc","name":"search_docs","arguments":{"doc_id":"d-1","query":"q","tenant":"acme"}}}`],
    ];
    for (const [what, body] of rpcBodies) {
      it(`a duplicate JSON-RPC ${what} (delete_doc first) from a read-only viewer never reaches the MCP server`, async () => {
        const id = marker();
        const r = await send(stack, '/tools/docs/', { bearer: viewer, body: body(id) });
        expect(r.status, r.text).toBe(400);
        // Refused as ambiguous JSON, not by luck of the schema (last-wins readers saw a valid call).
        expect(r.json).toMatchObject({ jsonrpc: '2.0', id, error: { data: { type: 'invalid_request', rule: 'inspect.json', details: { problem: 'duplicate_key' } } } });
        expect(reached(stack, id)).toBe(false);
      });
    }

    it('a lone surrogate is 400', async () => {
      const title = marker();
      const r = await send(stack, TICKETS, { bearer: support, body: `{"title":"${title}\\ud800","priority":"low"}` });
      expect(r.status, r.text).toBe(400);
      expect(errorOf(r)).toMatchObject({ rule: 'inspect.json', details: { problem: 'lone_surrogate' } });
      expect(reached(stack, title)).toBe(false);
    });
  });
});

/** The ext_authz http filter's config in a parsed envoy.yaml. */
function extAuthzFilter(cfg: Record<string, unknown>): Record<string, unknown> {
  type Node = Record<string, unknown>;
  const listener = ((cfg.static_resources as Node).listeners as Node[]).find((l) => l.name === 'agents')!;
  const hcm = (((listener.filter_chains as Node[])[0]!.filters as Node[])[0]!.typed_config as Node);
  const filter = (hcm.http_filters as Node[]).find((f) => f.name === 'envoy.filters.http.ext_authz')!;
  return filter.typed_config as Node;
}

/** A viewer's delete_doc call with `pad` spaces between the id and the method. */
function paddedDelete(id: string, pad: number): string {
  return `{"jsonrpc":"2.0","id":"${id}",${' '.repeat(pad)}"method":"tools/call","params":{"name":"delete_doc","arguments":{"doc_id":"d-1","tenant":"acme"}}}`;
}

/** A ticket for another tenant with `pad` spaces before the tenant. */
function paddedTicket(title: string, pad: number): string {
  return `{"title":"${title}",${' '.repeat(pad)}"priority":"low","tenant":"globex"}`;
}

describe('no decision on a truncated body: tools left at their default body limit', () => {
  let stack: Stack;
  let support: string;
  let viewer: string;

  beforeAll(async () => {
    stack = await startStack({
      editConfig: (cfg) => {
        for (const t of cfg.tools as Record<string, Record<string, unknown>>[]) delete t.request?.max_body_bytes;
      },
    });
    support = await token(stack);
    viewer = await token(stack, { agent: 'reporter', user: 'victor', roles: ['viewer'] });
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });

  for (const chunked of [false, true]) {
    const how = chunked ? 'chunked' : 'with content-length';
    it(`a viewer's delete_doc padded past 64 KiB (${how}) is 413, never deleted`, async () => {
      const id = marker();
      const r = await send(stack, '/tools/docs/', { bearer: viewer, body: paddedDelete(id, 70_000), chunked });
      expect(r.status, r.text.slice(0, 300)).toBe(413);
      expect(JSON.stringify(r.json)).toMatch(/payload_too_large/);
      expect(reached(stack, id)).toBe(false);
    });

    it(`a ticket for another tenant padded past 64 KiB (${how}) is 413, never created`, async () => {
      const title = marker();
      const r = await send(stack, TICKETS, { bearer: support, body: paddedTicket(title, 70_000), chunked });
      expect(r.status, r.text.slice(0, 300)).toBe(413);
      expect(errorOf(r)).toMatchObject({ type: 'payload_too_large' });
      expect(reached(stack, title)).toBe(false);
    });
  }

  it('the same calls unpadded are still decided by the policy (403) and a small ticket is created', async () => {
    const id = marker();
    const del = await send(stack, '/tools/docs/', { bearer: viewer, body: paddedDelete(id, 10) });
    expect(del.status, del.text).toBe(403);
    expect(reached(stack, id)).toBe(false);
    const title = marker();
    const ok = await send(stack, TICKETS, { bearer: support, body: JSON.stringify({ title, priority: 'low' }) });
    expect(ok.status, ok.text).toBe(201);
    expect(reached(stack, title)).toBe(true);
  });
});

describe('no decision on a truncated body: Envoy forwards less to the Check than portcullis was told', () => {
  let stack: Stack;
  let support: string;
  let viewer: string;

  beforeAll(async () => {
    // A drifted deployment: Envoy sends 1 KiB to the Check, portcullis still assumes 64 KiB.
    stack = await startStack({ editEnvoy: (cfg) => ((extAuthzFilter(cfg).with_request_body as Record<string, unknown>).max_request_bytes = 1024) });
    support = await token(stack);
    viewer = await token(stack, { agent: 'reporter', user: 'victor', roles: ['viewer'] });
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it('a padded delete_doc the Check sees cut is 413, never deleted', async () => {
    const id = marker();
    const r = await send(stack, '/tools/docs/', { bearer: viewer, body: paddedDelete(id, 2_000) });
    expect(r.status, r.text.slice(0, 300)).toBe(413);
    expect(JSON.stringify(r.json)).toMatch(/inspect\.body_window/);
    expect(reached(stack, id)).toBe(false);
  });

  it('a padded ticket for another tenant the Check sees cut is 413, never created', async () => {
    const title = marker();
    const r = await send(stack, TICKETS, { bearer: support, body: paddedTicket(title, 2_000) });
    expect(r.status, r.text.slice(0, 300)).toBe(413);
    expect(errorOf(r)).toMatchObject({ type: 'payload_too_large', rule: 'inspect.body_window' });
    expect(reached(stack, title)).toBe(false);
  });
});

describe('no decision on a truncated body: Envoy sends the Check no body at all', () => {
  let stack: Stack;
  let support: string;

  beforeAll(async () => {
    // A deployment that dropped with_request_body: the Check sees headers only.
    stack = await startStack({ editEnvoy: (cfg) => delete extAuthzFilter(cfg).with_request_body });
    support = await token(stack);
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it('a ticket for another tenant with content-length is 413 at the Check, never created', async () => {
    const title = marker();
    const r = await send(stack, TICKETS, { bearer: support, body: JSON.stringify({ title, priority: 'low', tenant: 'globex' }) });
    expect(r.status, r.text).toBe(413);
    expect(errorOf(r)).toMatchObject({ type: 'payload_too_large', rule: 'inspect.body_window' });
    expect(reached(stack, title)).toBe(false);
  });

  it('a chunked one (no length for the Check to see) is refused by ext_proc: not the body decided on', async () => {
    const title = marker();
    const r = await send(stack, TICKETS, { bearer: support, body: JSON.stringify({ title, priority: 'low', tenant: 'globex' }), chunked: true });
    expect(r.status, r.text).toBe(400);
    expect(errorOf(r)).toMatchObject({ type: 'invalid_request', rule: 'inspect.body_mismatch' });
    expect(reached(stack, title)).toBe(false);
  });
});

/** The routes of the `tools` virtual host in a parsed envoy.yaml. */
function routes(cfg: Record<string, unknown>): Record<string, unknown>[] {
  type Node = Record<string, unknown>;
  const listener = ((cfg.static_resources as Node).listeners as Node[]).find((l) => l.name === 'agents')!;
  const hcm = ((listener.filter_chains as Node[])[0]!.filters as Node[])[0]!.typed_config as Node;
  return ((hcm.route_config as Node).virtual_hosts as Node[])[0]!.routes as Node[];
}

const TOOL_NAMES = ['weather', 'tickets', 'docs'];

describe('unauthenticated callers learn nothing about the inventory', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack();
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it('an unknown tool, a real tool and a path outside /tools/ all answer the same 401 without credentials', async () => {
    const answers = [];
    for (const path of ['/tools/payroll/', '/tools/weather/forecast?city=Oslo', '/tools/tickets/tenants/acme/tickets', '/admin']) {
      const r = await send(stack, path, {});
      expect(r.status, `${path}: ${r.text}`).toBe(401);
      expect(r.headers['www-authenticate']).toMatch(/^Bearer realm="portcullis"/);
      const e = errorOf(r);
      expect(e).toMatchObject({ type: 'unauthenticated', rule: 'identity.required' });
      expect(e.details).toBeUndefined();
      for (const name of TOOL_NAMES) expect(r.text).not.toContain(name);
      answers.push({ ...e, request_id: null });
    }
    expect(new Set(answers.map((a) => JSON.stringify(a))).size).toBe(1);
  });

  it('without credentials, a JSON tool\'s content type and size rules are not revealed either', async () => {
    const wrongType = await send(stack, '/tools/docs/', { body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}', headers: { 'content-type': 'text/plain' } });
    expect(wrongType.status, wrongType.text).toBe(401);
    const tooBig = await send(stack, TICKETS, { body: JSON.stringify({ title: 'x'.repeat(70_000), priority: 'low' }) });
    expect(tooBig.status, tooBig.text.slice(0, 200)).toBe(401);
  });

  it('an authenticated caller asking for an unknown tool gets 404 without the tool list', async () => {
    const r = await send(stack, '/tools/payroll/', { bearer: await token(stack) });
    expect(r.status, r.text).toBe(404);
    const e = errorOf(r);
    expect(e).toMatchObject({ type: 'unknown_tool', rule: 'tool.unknown' });
    expect(e.details).toBeUndefined();
    for (const name of TOOL_NAMES) expect(r.text).not.toContain(name);
  });
});

describe('route binding: a mis-edited Envoy route never gets another tool\'s credentials', () => {
  let stack: Stack;
  let support: string;

  beforeAll(async () => {
    stack = await startStack({
      editEnvoy: (cfg) => {
        type Node = Record<string, unknown>;
        for (const route of routes(cfg)) {
          const perFilter = route.typed_per_filter_config as Node | undefined;
          const authz = perFilter?.['envoy.filters.http.ext_authz'] as Node | undefined;
          // docs: the route says it carries tickets; tickets: the route names no tool at all.
          if (route.name === 'docs') ((authz!.check_settings as Node).context_extensions as Node).route_tool = 'tickets';
          if (route.name === 'tickets') delete perFilter!['envoy.filters.http.ext_authz'];
        }
      },
    });
    support = await token(stack);
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it('a route bound to another tool than the path names is 403, never forwarded', async () => {
    const id = marker();
    const body = JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'vpn', tenant: 'acme' } } });
    const r = await send(stack, '/tools/docs/', { bearer: support, body });
    expect(r.status, r.text).toBe(403);
    expect(JSON.stringify(r.json)).toContain('tool.route_mismatch');
    expect(reached(stack, id)).toBe(false);
  });

  it('a tool route that sends no route_tool is 403, never forwarded', async () => {
    const title = marker();
    const r = await send(stack, TICKETS, { bearer: support, body: JSON.stringify({ title, priority: 'low' }) });
    expect(r.status, r.text).toBe(403);
    expect(errorOf(r)).toMatchObject({ type: 'forbidden', rule: 'tool.route_mismatch' });
    expect(reached(stack, title)).toBe(false);
  });

  it('correctly bound routes still work', async () => {
    const r = await send(stack, '/tools/weather/forecast?city=Oslo', { bearer: support });
    expect(r.status, r.text).toBe(200);
  });
});

/** Sends a raw HTTP/1.1 request (absolute-form target, exact bytes) and returns status and body. */
function rawRequest(stack: Stack, head: string, body = ''): Promise<{ status: number; text: string }> {
  const url = new URL(stack.envoyUrl);
  return new Promise((resolve, reject) => {
    import('node:net')
      .then(({ connect }) => {
        const socket = connect(Number(url.port), url.hostname, () => socket.write(`${head}\r\n\r\n${body}`));
        const chunks: Buffer[] = [];
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text });
        });
        socket.on('error', reject);
        socket.setTimeout(15_000, () => socket.destroy(new Error('raw request timed out')));
      })
      .catch(reject);
  });
}

describe('headers the tool should not get', () => {
  let stack: Stack;
  let support: string;
  let viewer: string;

  beforeAll(async () => {
    stack = await startStack();
    support = await token(stack);
    viewer = await token(stack, { agent: 'reporter', user: 'victor', roles: ['viewer'] });
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });

  const spoofed: Record<string, string> = {
    'x-auth-request-user': 'admin',
    'x-auth-request-email': 'admin@globex.example',
    'x-forwarded-preferred-username': 'admin',
    'x-forwarded-groups': 'admins',
    'remote-user': 'admin',
    'x-webauth-user': 'admin',
    'x-tenant-id': 'globex',
    'x-goog-authenticated-user-email': 'accounts.google.com:admin@globex.example',
    'x-ms-client-principal': 'eyJ1c2VySWQiOiJhZG1pbiJ9',
    'x-ms-client-principal-name': 'admin@globex.example',
    'x-amzn-oidc-identity': 'admin',
    'x-amzn-oidc-data': 'eyJhbGciOiJFUzI1NiJ9.e30.sig',
    'cf-access-authenticated-user-email': 'admin@globex.example',
    'x-http-method-override': 'DELETE',
    'x-http-method': 'DELETE',
    'x-method-override': 'DELETE',
    'x-forwarded-host': 'admin.globex.example',
    forwarded: 'host=admin.globex.example;proto=https',
    'x-original-url': '/admin/delete-everything',
  };

  it('identity, method-override and routing headers never reach the tool; the Host is the tool\'s own', async () => {
    const mark = marker();
    const r = await send(stack, `/tools/weather/forecast?city=Oslo&m=${mark}`, { bearer: support, headers: { ...spoofed, host: 'evil.example', 'x-note': 'kept' } });
    expect(r.status, r.text).toBe(200);
    const got = stack.tool.received.find((q) => q.path.includes(mark));
    expect(got).toBeDefined();
    for (const name of Object.keys(spoofed)) expect(got!.headers[name], name).toBeUndefined();
    expect(got!.headers.host).toBe('weather.tools.internal');
    expect(got!.headers['x-note']).toBe('kept');
    expect(got!.method).toBe('GET');
  });

  it('an absolute-form request target does not choose the Host the tool sees', async () => {
    const mark = marker();
    const r = await rawRequest(stack, [`GET http://evil.example/tools/weather/forecast?city=Oslo&m=${mark} HTTP/1.1`, 'Host: evil.example', `Authorization: Bearer ${support}`, 'Connection: close'].join('\r\n'));
    expect(r.status, r.text.slice(0, 300)).toBe(200);
    const got = stack.tool.received.find((q) => q.path.includes(mark));
    expect(got!.headers.host).toBe('weather.tools.internal');
  });

  it('a _method query parameter is 400, so a read-only GET cannot become a DELETE', async () => {
    for (const q of ['_method=DELETE', '_METHOD=delete', '%5Fmethod=DELETE', 'a=1&_method=PUT']) {
      const mark = marker();
      const r = await send(stack, `/tools/tickets/tenants/acme/tickets/T-1001?${q}&m=${mark}`, { bearer: viewer });
      expect(r.status, `${q}: ${r.text}`).toBe(400);
      expect(errorOf(r)).toMatchObject({ type: 'invalid_request', rule: 'request.method_override' });
      expect(reached(stack, mark)).toBe(false);
    }
  });
});

const AWS_KEY = 'AKIAIOSFODNN7EXAMPLF';
const GITHUB_TOKEN = `ghp_${'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8'}`;

/** One HTTP/2 (prior knowledge) request; Envoy's listener speaks both codecs. */
async function sendH2(stack: Stack, path: string, opts: { method: string; bearer: string; body?: string }): Promise<{ status: number; text: string }> {
  const { connect } = await import('node:http2');
  const client = connect(stack.envoyUrl);
  try {
    return await new Promise((resolve, reject) => {
      client.on('error', reject);
      const req = client.request({ ':method': opts.method, ':path': path, authorization: `Bearer ${opts.bearer}` }, { endStream: opts.body === undefined });
      let status = 0;
      const chunks: Buffer[] = [];
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => resolve({ status, text: Buffer.concat(chunks).toString('utf8') }));
      req.on('error', reject);
      req.setTimeout(15_000, () => req.close());
      if (opts.body !== undefined) req.end(opts.body);
    });
  } finally {
    client.close();
  }
}

describe('complete mediation: nothing leaves for an external tool uninspected', () => {
  let stack: Stack;
  let support: string;

  beforeAll(async () => {
    stack = await startStack();
    support = await token(stack);
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });

  const leaked = (): boolean => stack.tool.received.some((r) => JSON.stringify(r).includes(AWS_KEY) || JSON.stringify(r).includes(GITHUB_TOKEN));

  it('a GET with a body and content-length takes the inspected route: the key is redacted before the external tool', async () => {
    const mark = marker();
    const r = await send(stack, `/tools/weather/forecast?city=Oslo&m=${mark}`, { method: 'GET', bearer: support, body: `notes ${AWS_KEY}`, headers: { 'content-type': 'text/plain' } });
    expect(r.status, r.text).toBe(200);
    expect(stack.tool.received.find((q) => q.path.includes(mark))!.body).toBe('notes [REDACTED:aws.access_key_id]');
    expect(leaked()).toBe(false);
  });

  it('a chunked GET body (framing Envoy does not show the route) is refused on the route without a request phase', async () => {
    const mark = marker();
    const r = await send(stack, `/tools/weather/forecast?city=Oslo&m=${mark}`, { method: 'GET', bearer: support, body: `notes ${AWS_KEY}`, chunked: true, headers: { 'content-type': 'text/plain' } });
    expect(r.status, r.text).toBe(400);
    expect(errorOf(r)).toMatchObject({ type: 'invalid_request', rule: 'request.unexpected_body' });
    expect(reached(stack, mark)).toBe(false);
    expect(leaked()).toBe(false);
  });

  it('an HTTP/2 GET with a body but no content-length, on the route without a request phase, is 400', async () => {
    const mark = marker();
    const r = await sendH2(stack, `/tools/weather/forecast?city=Oslo&m=${mark}`, { method: 'GET', bearer: support, body: `notes ${AWS_KEY}` });
    expect(r.status, r.text).toBe(400);
    expect(JSON.parse(r.text)).toMatchObject({ error: { type: 'invalid_request', rule: 'request.unexpected_body' } });
    expect(reached(stack, mark)).toBe(false);
    expect(leaked()).toBe(false);
  });

  it('a secret in a query value is refused (403 blocked_content), never sent', async () => {
    for (const q of [`note=${AWS_KEY}`, `note=${encodeURIComponent(`key: ${AWS_KEY}`)}`, `n%6Fte=${AWS_KEY.slice(0, 4)}%${AWS_KEY.charCodeAt(4).toString(16)}${AWS_KEY.slice(5)}`]) {
      const r = await send(stack, `/tools/weather/forecast?city=Oslo&${q}`, { bearer: support });
      expect(r.status, `${q}: ${r.text}`).toBe(403);
      expect(errorOf(r)).toMatchObject({ type: 'blocked_content', rule: 'dlp.request' });
    }
    expect(leaked()).toBe(false);
  });

  it('a secret in a path segment or a non-credential header is refused, never sent', async () => {
    const inPath = await send(stack, `/tools/weather/forecast/${AWS_KEY}?city=Oslo`, { bearer: support });
    expect(inPath.status, inPath.text).toBe(403);
    const inHeader = await send(stack, '/tools/weather/forecast?city=Oslo', { bearer: support, headers: { 'x-note': GITHUB_TOKEN } });
    expect(inHeader.status, inHeader.text).toBe(403);
    expect(errorOf(inHeader)).toMatchObject({ type: 'blocked_content', rule: 'dlp.request' });
    expect(leaked()).toBe(false);
  });

  it('clean reads still pass, and internal tools are not subject to exfiltration DLP', async () => {
    const clean = await send(stack, '/tools/weather/forecast?city=Oslo&note=hello', { bearer: support, headers: { 'x-note': 'nothing secret' } });
    expect(clean.status, clean.text).toBe(200);
    const internal = await send(stack, `/tools/tickets/tenants/acme/tickets?note=${AWS_KEY}`, { bearer: support });
    expect(internal.status, internal.text).toBe(200);
  });
});

/** A batch of `n` search_docs calls with ids `${prefix}-0` ... */
function searchBatch(prefix: string, n: number, extra: Record<string, unknown>[] = []): string {
  const calls = Array.from({ length: n }, (_, i) => ({ jsonrpc: '2.0', id: `${prefix}-${i}`, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'q', tenant: 'acme' } } }));
  return JSON.stringify([...calls, ...extra]);
}

describe('JSON-RPC batches: bounded, each call judged on its own', () => {
  let stack: Stack;
  let support: string;
  let viewer: string;

  beforeAll(async () => {
    stack = await startStack();
    support = await token(stack);
    viewer = await token(stack, { agent: 'reporter', user: 'victor', roles: ['viewer'] });
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it('a 529-call batch is refused at once with a JSON-RPC error for every id, never forwarded', async () => {
    const calls = Array.from({ length: 529 }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'q', tenant: 'acme' } } }));
    const body = JSON.stringify(calls);
    expect(body.length).toBeLessThan(65_536);
    const before = stack.tool.received.filter((q) => q.path.startsWith('/mcp')).length;
    const t0 = Date.now();
    const r = await send(stack, '/tools/docs/', { bearer: support, body });
    const ms = Date.now() - t0;
    expect(r.status, r.text.slice(0, 300)).toBe(413);
    const answers = r.json as { id: number; error: { code: number; data: { type: string; rule: string } } }[];
    expect(answers.map((a) => a.id)).toEqual(calls.map((c) => c.id));
    expect(answers.every((a) => a.error.code === -32600 && a.error.data.type === 'payload_too_large' && a.error.data.rule === 'inspect.batch_size')).toBe(true);
    expect(stack.tool.received.filter((q) => q.path.startsWith('/mcp')).length).toBe(before);
    expect(ms).toBeLessThan(900);
  });

  it('other agents keep being served while large batches arrive', async () => {
    const reporter = await token(stack, { agent: 'reporter', user: 'rita', roles: ['support'] });
    const batch = JSON.stringify(Array.from({ length: 529 }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'q', tenant: 'acme' } } })));
    const batches = Array.from({ length: 4 }, () => send(stack, '/tools/docs/', { bearer: support, body: batch }));
    const reads = Array.from({ length: 20 }, (_, i) => send(stack, `/tools/weather/forecast?city=c${i}`, { bearer: reporter }));
    const [b, w] = await Promise.all([Promise.all(batches), Promise.all(reads)]);
    expect(b.map((x) => x.status)).toEqual([413, 413, 413, 413]);
    expect(w.map((x) => x.status)).toEqual(Array(20).fill(200));
  });

  it('a batch at the limit is forwarded when every call is allowed', async () => {
    const prefix = marker();
    const r = await send(stack, '/tools/docs/', { bearer: support, body: searchBatch(prefix, 16) });
    expect(r.status, r.text.slice(0, 300)).toBe(200);
    expect(reached(stack, prefix)).toBe(true);
  });

  it('a read-only viewer\'s delete_doc inside a batch is still caught, call by call', async () => {
    const prefix = marker();
    const del = { jsonrpc: '2.0', id: `${prefix}-del`, method: 'tools/call', params: { name: 'delete_doc', arguments: { doc_id: 'd-1', tenant: 'acme' } } };
    const r = await send(stack, '/tools/docs/', { bearer: viewer, body: searchBatch(prefix, 15, [del]) });
    expect(r.status, r.text.slice(0, 300)).toBe(403);
    const answers = r.json as { id: string; error: { data: { rule: string }; message: string } }[];
    expect(answers).toHaveLength(16);
    expect(answers.find((a) => a.id === `${prefix}-del`)!.error.data.rule).toBe('role.read_only');
    expect(reached(stack, prefix)).toBe(false);
  });

  it('a batch over the configured limit is refused even when small', async () => {
    const prefix = marker();
    const r = await send(stack, '/tools/docs/', { bearer: support, body: searchBatch(prefix, 17) });
    expect(r.status, r.text.slice(0, 300)).toBe(413);
    expect(reached(stack, prefix)).toBe(false);
  });
});
