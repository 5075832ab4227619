import { readdirSync, readFileSync } from 'node:fs';

/** Readers for /proc/<pid> (Linux): resident memory and CPU time of a benchmarked process. */

/** Clock ticks per second for /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

/** Resident set size in bytes, or null when the process is gone. */
export function rssBytes(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** User + system CPU time consumed so far, in microseconds; null when the process is gone. */
export function cpuMicros(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name, which may itself contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
    return ((utime + stime) * 1_000_000) / USER_HZ;
  } catch {
    return null;
  }
}

/** The processes whose parent is `pid` (a primary's workers), from /proc. */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/**
 * CPU time (µs) of `pid` and its child processes together (a primary and its workers); null when
 * `pid` is gone. Read at the start and end of a run with the same workers, the difference is what
 * the whole gateway spent.
 */
export function cpuMicrosTree(pid: number): number | null {
  const own = cpuMicros(pid);
  if (own === null) return null;
  return childPids(pid).reduce((sum, c) => sum + (cpuMicros(c) ?? 0), own);
}

/** Samples one process' RSS on an interval and keeps the maximum per label. */
export class RssSampler {
  private timer: NodeJS.Timeout | null = null;
  private label = 'idle';
  /** Highest RSS seen per label, in bytes. */
  readonly maxByLabel = new Map<string, number>();
  /** Highest RSS seen over the whole run, in bytes. */
  max = 0;

  constructor(private readonly pid: number, private readonly intervalMs = 100) {}

  /** Attributes the following samples to `label`. */
  setLabel(label: string): void {
    this.label = label;
  }

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private sample(): void {
    const rss = rssBytes(this.pid);
    if (rss === null) return;
    this.max = Math.max(this.max, rss);
    this.maxByLabel.set(this.label, Math.max(this.maxByLabel.get(this.label) ?? 0, rss));
  }
}
