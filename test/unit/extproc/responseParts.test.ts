import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../../src/config/load.js';
import { compileScrubber, SCRUB_MARKER } from '../../../src/credentials/scrub.js';
import { MemoryBudget, Reservation } from '../../../src/extproc/response/budget.js';
import { inspectResponseHeaders } from '../../../src/extproc/response/headers.js';
import { compilePipeline, type TransformContext } from '../../../src/extproc/response/pipeline.js';
import { SseInspector } from '../../../src/extproc/response/sse.js';
import { compileFieldFilter } from '../../../src/extproc/fieldFilter.js';
import { newResponseState } from '../../../src/extproc/state.js';
import { compileCatalog } from '../../../src/dlp/index.js';

/** The pieces of the response pipeline on their own: scrub, budget, byte views, headers, SSE. */

const AWS_KEY = 'AKIA2OGYBAH6TQWERTYU';
const scanner = compileCatalog(undefined);

function context(over: Partial<TransformContext> = {}): TransformContext {
  return { tool: 't', jsonRpc: false, res: newResponseState(), scanner, scrubber: compileScrubber([]), ...over };
}

describe('injected-credential scrubber', () => {
  const secret = 'tok-9bb2f0c4e1d7a3';
  const s = compileScrubber([secret, `Bearer ${secret}`, 'short']);

  it('replaces the raw value, the whole header value, and its base64, base64url, URL and JSON forms', () => {
    const weird = compileScrubber(['a b/c+d"e\\f=g?h']);
    for (const form of ['a b/c+d"e\\f=g?h', Buffer.from('a b/c+d"e\\f=g?h').toString('base64'), Buffer.from('a b/c+d"e\\f=g?h').toString('base64url'), encodeURIComponent('a b/c+d"e\\f=g?h'), JSON.stringify('a b/c+d"e\\f=g?h').slice(1, -1)]) {
      expect(weird.scrub(`x ${form} y`).text).toBe(`x ${SCRUB_MARKER} y`);
    }
    expect(s.scrub(`auth: Bearer ${secret}`)).toEqual({ text: `auth: ${SCRUB_MARKER}`, count: 1 });
    expect(s.scrub(`${secret}${secret}`).count).toBe(2);
  });

  it('ignores values too short to be told from ordinary text, and finds positions for in-place masking', () => {
    expect(s.scrub('a short note').text).toBe('a short note');
    expect(s.find(`ab${secret}`)).toContainEqual({ start: 2, end: 2 + secret.length });
    expect(compileScrubber(['tiny']).empty).toBe(true);
  });
});

describe('response memory budget', () => {
  it('refuses what exceeds the limit, keeps a quarter for bodies that are not large, and gives back on release', () => {
    const b = new MemoryBudget(1000);
    const big = new Reservation(b);
    expect(big.grow(700, true)).toBe(true);
    expect(big.grow(100, true)).toBe(false); // past 3/4 for large bodies
    const small = new Reservation(b);
    expect(small.grow(250)).toBe(true); // ordinary answers still fit
    expect(small.grow(100)).toBe(false); // past the whole limit
    big.release();
    big.release();
    expect(b.inUse).toBe(250);
    expect(new Reservation(b).grow(500, true)).toBe(true);
  });
});

describe('response headers', () => {
  it('rewrites only the header names that changed, every value of a repeated name kept in order', () => {
    const ctx = context({ scrubber: compileScrubber(['secret-value-1234']) });
    const m = inspectResponseHeaders(
      { headers: { headers: [{ key: ':status', value: '200' }, { key: 'set-cookie', value: 'a=1' }, { key: 'set-cookie', value: `b=${AWS_KEY}` }, { key: 'x-echo', rawValue: Buffer.from('got secret-value-1234') }, { key: 'x-fine', value: 'ok' }] } },
      ctx,
    );
    expect(m.removeHeaders?.sort()).toEqual(['set-cookie', 'x-echo']);
    const set = (m.setHeaders ?? []).map((h) => [h.header.key, h.header.rawValue.toString(), h.append?.value]);
    expect(set).toEqual([
      ['set-cookie', 'a=1', false],
      ['set-cookie', 'b=[REDACTED:aws.access_key_id]', true],
      ['x-echo', `got ${SCRUB_MARKER}`, false],
    ]);
    expect(ctx.res.scrubbed).toBe(1);
    expect(inspectResponseHeaders({ headers: { headers: [{ key: 'x-fine', value: 'ok' }] } }, context())).toEqual({});
  });
});

describe('SSE inspection', () => {
  const pipeline = compilePipeline(compileFieldFilter(['result.internal_notes']));

  it('releases each event when its blank line arrives, filtered and redacted, and holds an unfinished one', () => {
    const sse = new SseInspector(pipeline, context({ jsonRpc: true }), 'r1');
    const first = sse.push(Buffer.from(`event: message\ndata: {"jsonrpc":"2.0","id":1,"result":{"internal_notes":"x","ok":1}}\n\ndata: key ${AWS_KEY.slice(0, 8)}`), false);
    expect(first.text).toBe('event: message\ndata: {"jsonrpc":"2.0","id":1,"result":{"ok":1}}\n\n');
    const second = sse.push(Buffer.from(`${AWS_KEY.slice(8)}\n\n`), true);
    expect(second.text).toBe('data: key [REDACTED:aws.access_key_id]\n\n');
  });

  it('catches a key streamed token by token across events, without holding events of ordinary text', () => {
    const sse = new SseInspector(compilePipeline(compileFieldFilter([])), context(), 'r3');
    const ev = (delta: string): Buffer => Buffer.from(`data: ${JSON.stringify({ type: 'delta', delta })}\n\n`);
    // Ordinary text leaves with its own chunk.
    expect(sse.push(ev('The forecast for Paris'), false).text).toBe(`data: {"type":"delta","delta":"The forecast for Paris"}\n\n`);
    // A piece that may start a key waits for the next event, then both leave redacted.
    const parts = ['deploy key AKI', 'A2OGYB', 'AH6TQWERTYU', ' done'].map((d) => sse.push(ev(d), false).text);
    parts.push(sse.push(Buffer.alloc(0), true).text);
    const all = parts.join('');
    for (const piece of ['AKI', 'A2OGYB', 'AH6TQWERTYU']) expect(all).not.toContain(piece);
    expect(all).not.toMatch(/AKI|2OGYB|AH6TQ/);
    expect(all).toContain('[REDACTED:aws.access_key_id]');
    expect(all.match(/^data: /gm)).toHaveLength(4);
    // The event ending in `AKI` waited for the ones that complete the key.
    expect(parts[0]).toBe('');
  });

  it('takes each string of an event by its JSON path, leaving structure fields intact', () => {
    const ctx = context();
    const sse = new SseInspector(compilePipeline(compileFieldFilter([])), ctx, 'r4');
    const ev = (text: string): Buffer => Buffer.from(`event: delta\ndata: ${JSON.stringify({ choices: [{ index: 0, delta: { content: text } }], model: 'm-1' })}\n\n`);
    const out = [sse.push(ev('key AKIA2OG'), false).text, sse.push(ev('YBAH6TQWERTYU!'), false).text, sse.push(Buffer.alloc(0), true).text].join('');
    const events = out.split('\n\n').filter(Boolean).map((e) => JSON.parse(/data: (.*)/.exec(e)![1]!) as { choices: { delta: { content: string } }[]; model: string });
    expect(events.map((e) => e.model)).toEqual(['m-1', 'm-1']);
    expect(events.map((e) => e.choices[0]!.delta.content).join('')).toBe('key [REDACTED:aws.access_key_id]!');
    expect(ctx.res.dlp.rules).toEqual(new Set(['aws.access_key_id']));
  });

  it('never holds an event after which the server waits for the agent (a JSON-RPC request) or is done (a response)', () => {
    const sse = new SseInspector(compilePipeline(compileFieldFilter([])), context({ jsonRpc: true }), 'r5');
    const progress = (message: string): Buffer => Buffer.from(`data: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/progress', params: { message } })}\n\n`);
    // A notification ending like the start of a key waits, as in any token stream ...
    expect(sse.push(progress('checking AKI'), false).text).toBe('');
    // ... until a server request arrives: the server now waits for the agent's reply, so both go out.
    const ask = { jsonrpc: '2.0', id: 7, method: 'elicitation/create', params: { message: 'Which key? sk-ant', requestedSchema: { type: 'object' } } };
    const out = sse.push(Buffer.from(`data: ${JSON.stringify(ask)}\n\n`), false).text;
    expect(out.match(/^data: /gm)).toHaveLength(2);
    expect(out).toContain('checking AKI');
    expect(out).toContain('elicitation/create');
    // A final response ending in a prefix is not held either.
    const done = sse.push(Buffer.from(`data: ${JSON.stringify({ jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'token ghp_' }] } })}\n\n`), false).text;
    expect(done).toContain('token ghp_');
    // The streams start afresh: a key split over the next notifications is still caught.
    const rest = [sse.push(progress('key AKIA2OG'), false).text, sse.push(progress('YBAH6TQWERTYU'), false).text, sse.push(Buffer.alloc(0), true).text].join('');
    expect(rest).not.toMatch(/2OG|AH6TQ/);
    expect(rest).toContain('[REDACTED:aws.access_key_id]');
  });

  it('ends the stream with an error event on a block and delivers nothing after it', () => {
    const sse = new SseInspector(pipeline, context(), 'r2');
    const r = sse.push(Buffer.from('data: ok\n\ndata: -----BEGIN PRIVATE KEY-----\ndata: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\ndata: -----END PRIVATE KEY-----\n\n'), false);
    expect(r.error?.code).toBe('blocked_content');
    expect(r.text.startsWith('data: ok\n\nevent: error\n')).toBe(true);
    expect(r.text).not.toContain('MIIEvQ');
    expect(sse.push(Buffer.from('data: more\n\n'), true).text).toBe('');
  });
});

describe('per-tool response DLP overrides', () => {
  it('are checked against the rule catalog with their path', () => {
    const text = `
policy: { bundle: b.tar.gz }
tools:
  - { name: crm, upstream: u, response: { dlp_overrides: { pii.email: { action: flag }, pii.nope: { action: flag } } } }
`;
    let problems: string[] = [];
    try {
      parseConfig(text, 'test.yaml');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      problems = (err as ConfigError).problems.map((p) => `${p.path}: ${p.message}`);
    }
    expect(problems).toEqual(['$.tools[0].response.dlp_overrides.pii.nope: unknown rule id "pii.nope"']);
  });
});
