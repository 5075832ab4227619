import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSampleTool, type SampleTool } from '../../../src/demo/sampleTool.js';

let tool: SampleTool;
let base: string;

beforeAll(async () => {
  tool = await startSampleTool({ port: 0 });
  base = `http://127.0.0.1:${tool.port}`;
});
afterAll(() => tool.close());

const post = (path: string, body: unknown): Promise<Response> =>
  fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });

describe('sample tool: payments, exports, metered llm', () => {
  it('sends a transfer and refuses malformed ones', async () => {
    const ok = await post('/payments/transfers', { counterparty: 'initech', amount: 12.5 });
    expect(ok.status).toBe(201);
    expect(((await ok.json()) as { transfer: unknown }).transfer).toMatchObject({ counterparty: 'initech', amount: 12.5, status: 'sent' });
    expect((await post('/payments/transfers', { amount: 1 })).status).toBe(400);
    expect((await post('/payments/transfers', 'not json')).status).toBe(400);
    expect((await fetch(`${base}/payments/transfers`)).status).toBe(405);
    expect((await post('/payments/other', {})).status).toBe(404);
  });

  it('exports transactions on GET only', async () => {
    const r = await fetch(`${base}/exports/transactions`);
    expect(r.status).toBe(200);
    expect(((await r.json()) as { rows: unknown[] }).rows.length).toBeGreaterThan(0);
    expect((await post('/exports/transactions', {})).status).toBe(405);
  });

  it('reports usage: one token per prompt word plus max_tokens (default 16), in the JSON body or the last event', async () => {
    const r = await post('/llm/completions', { prompt: 'three little words', max_tokens: 5 });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { usage: unknown }).usage).toEqual({ prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 });
    const d = await post('/llm/completions', { prompt: 'hi' });
    expect(((await d.json()) as { usage: { total_tokens: number } }).usage.total_tokens).toBe(17);
    const s = await post('/llm/completions', { prompt: 'a b', max_tokens: 2, stream: true });
    expect(s.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = (await s.text()).split('\n\n').filter((e) => e.startsWith('data: {'));
    const last = JSON.parse(events[events.length - 1]!.slice(6)) as { usage: { total_tokens: number } };
    expect(last.usage.total_tokens).toBe(4);
    expect(events.slice(0, -1).every((e) => !e.includes('usage'))).toBe(true);
  });
});
