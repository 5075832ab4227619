import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { relayLines } from '../../../src/server/relay.js';

/** Worker output relayed by the primary: only whole lines are written, however the bytes arrive. */
describe('relayLines', () => {
  it('writes whole lines only, across chunk and multi-byte boundaries; an unterminated tail ends as a line', async () => {
    const from = new PassThrough();
    const writes: string[] = [];
    const done = relayLines(from, (t) => writes.push(t));
    const text = '{"a":"é"}\n{"b":2}\n{"c":"ü';
    const bytes = Buffer.from(text, 'utf8');
    // One byte at a time: every split point, the middle of "é" included.
    for (const b of bytes) from.write(Buffer.from([b]));
    from.end();
    await done;
    for (const w of writes) expect(w.endsWith('\n')).toBe(true);
    expect(writes.join('')).toBe(`${text}\n`);
    expect(writes.join('').split('\n').slice(0, 2).map((l) => JSON.parse(l) as unknown)).toEqual([{ a: 'é' }, { b: 2 }]);
  });
});
