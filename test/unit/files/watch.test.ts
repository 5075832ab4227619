import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { watchPath, type FileWatch } from '../../../src/files/watch.js';

const open: FileWatch[] = [];
afterEach(() => {
  for (const w of open.splice(0)) w.close();
});

/** Resolves with the number of calls once `calls()` is at least `n`, or after `ms`. */
async function until(calls: () => number, n: number, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  while (calls() < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return calls();
}

/** A watch whose fallback poll is too slow to matter: only a change notification can report. */
function notified(path: string): { count: () => number } {
  let n = 0;
  open.push(watchPath(path, () => n++, { pollMs: 3_600_000 }));
  return { count: () => n };
}

describe('watchPath', () => {
  it('reports an atomic rename-replace through change notification', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pc-watch-'));
    const file = join(dir, 'data.json');
    writeFileSync(file, '{"a":1}');
    const w = notified(file);
    writeFileSync(`${file}.next`, '{"a":2}');
    renameSync(`${file}.next`, file);
    expect(await until(w.count, 1, 5_000)).toBeGreaterThanOrEqual(1);
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports a Kubernetes-style ..data symlink swap, and ignores other files of the directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pc-watch-'));
    mkdirSync(join(dir, 'v1'));
    mkdirSync(join(dir, 'v2'));
    writeFileSync(join(dir, 'v1', 'token'), 'one');
    writeFileSync(join(dir, 'v2', 'token'), 'two');
    symlinkSync('v1', join(dir, '..data'));
    symlinkSync('..data/token', join(dir, 'token'));
    const w = notified(join(dir, 'token'));
    writeFileSync(join(dir, 'unrelated'), 'x');
    await new Promise((r) => setTimeout(r, 200));
    expect(w.count()).toBe(0);
    symlinkSync('v2', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    expect(await until(w.count, 1, 5_000)).toBeGreaterThanOrEqual(1);
    rmSync(dir, { recursive: true, force: true });
  });

  it('falls back to polling where the directory cannot be watched', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pc-watch-'));
    const file = join(dir, 'later', 'secret');
    let n = 0;
    open.push(watchPath(file, () => n++, { pollMs: 50 }));
    mkdirSync(join(dir, 'later'));
    writeFileSync(file, 's');
    expect(await until(() => n, 1, 5_000)).toBeGreaterThanOrEqual(1);
    rmSync(dir, { recursive: true, force: true });
  });

  it('stops reporting once closed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pc-watch-'));
    const file = join(dir, 'f');
    writeFileSync(file, '1');
    let n = 0;
    const w = watchPath(file, () => n++, { pollMs: 20 });
    w.close();
    writeFileSync(file, '22');
    await new Promise((r) => setTimeout(r, 200));
    expect(n).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  });
});
