import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import { runChecks, type ProblemProducer } from '../../../src/config/check.js';

const config = parseConfig('policy: { bundle: b.tar.gz }\ntools: [{ name: weather, upstream: tool_weather }]\n', '/etc/portcullis/gateway.yaml');

describe('runChecks', () => {
  it('runs every producer in order and keeps every problem; a producer that throws is a problem, not a pass', async () => {
    const seen: string[] = [];
    const producers: ProblemProducer[] = [
      { name: 'first', run: () => (seen.push('first'), [{ path: '$.a', message: 'one' }]) },
      {
        name: 'broken',
        run: () => {
          seen.push('broken');
          throw new Error('boom');
        },
      },
      { name: 'later', run: async (ctx) => (seen.push('later'), ctx.notes.set('policy', 'v1'), [{ path: '$.b', message: 'two' }]) },
    ];
    const r = await runChecks(config, producers);
    expect(seen).toEqual(['first', 'broken', 'later']);
    expect(r.problems).toEqual([
      { path: '$.a', message: 'one' },
      { path: '$', message: 'broken check failed: boom' },
      { path: '$.b', message: 'two' },
    ]);
    expect(r.notes.get('policy')).toBe('v1');
  });

  it('later producers see what earlier ones found unavailable', async () => {
    let skipped: boolean | undefined;
    await runChecks(config, [
      { name: 'files', run: (ctx) => (ctx.missing.add('$.policy.bundle'), []) },
      { name: 'policy', run: (ctx) => ((skipped = ctx.missing.has('$.policy.bundle')), []) },
    ]);
    expect(skipped).toBe(true);
  });
});
