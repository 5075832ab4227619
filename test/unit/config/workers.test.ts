import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../../src/config/load.js';
import { cgroupCpuLimit, workerCount } from '../../../src/config/server.js';

/** `server.workers`: a whole number of worker processes, or auto (one per core, the default). */

const REST = `
policy: { bundle: b }
tools: [{ name: t, upstream: u }]
`;

function parse(workers: string | null): { workers: number | 'auto' } | string[] {
  try {
    const server = workers === null ? '{ grpc_plaintext: true }' : `{ grpc_plaintext: true, workers: ${workers} }`;
    return parseConfig(`server: ${server}\n${REST}`, 'c.yaml').server;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.problems.map((p) => `${p.path}: ${p.message}`);
  }
}

describe('server.workers', () => {
  it('defaults to auto: one worker per available core', () => {
    const server = parse(null) as { workers: number | 'auto' };
    expect(server.workers).toBe('auto');
    expect(workerCount(server, null)).toBe(availableParallelism());
  });

  it('auto counts the cores a container CPU limit allows, not the machine\'s', () => {
    const files = (m: Record<string, string>) => (p: string): string => {
      const v = m[p];
      if (v === undefined) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return v;
    };
    expect(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu.max': '150000 100000\n' }))).toBe(2);
    expect(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu.max': '50000 100000' }))).toBe(1);
    expect(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu.max': 'max 100000' }))).toBeNull();
    expect(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '300000', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' }))).toBe(3);
    expect(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' }))).toBeNull();
    expect(cgroupCpuLimit(files({}))).toBeNull();
    expect(workerCount({ workers: 'auto' }, 1)).toBe(1);
    expect(workerCount({ workers: 'auto' }, 1000)).toBe(availableParallelism());
    // An explicit count is the operator's choice.
    expect(workerCount({ workers: 3 }, 1)).toBe(3);
  });

  it('takes a whole number from 1; 1 is one process', () => {
    expect(workerCount(parse('1') as { workers: number })).toBe(1);
    expect(workerCount(parse('4') as { workers: number })).toBe(4);
  });

  it.each(['0', '-2', '1.5', 'two', '"2"', 'true', '1000'])('refuses %s', (v) => {
    const problems = parse(v);
    expect(Array.isArray(problems), JSON.stringify(problems)).toBe(true);
    expect((problems as string[]).join('\n')).toMatch(/workers/);
  });
});
