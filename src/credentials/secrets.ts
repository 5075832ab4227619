import { readFileSync, statSync, type Stats } from 'node:fs';
import { resolve } from 'node:path';
import { GatewayError } from '../errors.js';
import { watchPath, type FileWatch } from '../files/watch.js';
import { log } from '../log.js';
import type { SecretRef } from '../config/types.js';
import { countFileReload } from '../metrics.js';

interface Entry {
  value: string | null;
  error: string | null;
  /** Identity of the file version that was read (inode, mtime, size); null if it was missing. */
  stamp: string | null;
}

function stampOf(st: Pick<Stats, 'ino' | 'mtimeMs' | 'size'> | null): string | null {
  return st && st.ino !== 0 ? `${st.ino}:${st.mtimeMs}:${st.size}` : null;
}

/**
 * Secret provider for mounted files and environment variables. File secrets are read once
 * and re-read when the file changes (change notification, see {@link watchPath}), so a rotated
 * secret applies to the next request without a restart. Values are never logged; errors name the reference, not the content.
 */
export class SecretStore {
  private readonly files = new Map<string, Entry>();
  private readonly watches = new Map<string, FileWatch>();

  constructor(private readonly baseDir: string) {}

  /** Human-readable name of a reference, safe for logs and errors. */
  static describe(ref: SecretRef): string {
    return 'file' in ref ? `file ${ref.file}` : `env ${ref.env}`;
  }

  /**
   * Registers a reference so file secrets are loaded and watched now (at config load), not on
   * the request path. Returns an error message if the secret is not currently available.
   */
  prepare(ref: SecretRef): string | null {
    if ('env' in ref) return process.env[ref.env] ? null : `environment variable ${ref.env} is not set`;
    const path = resolve(this.baseDir, ref.file);
    let entry = this.files.get(path);
    if (!entry) {
      entry = this.read(path);
      this.files.set(path, entry);
      const refresh = (cur: Pick<Stats, 'ino' | 'mtimeMs' | 'size'> | null): void => {
        const known = this.files.get(path);
        if (!known || stampOf(cur) === known.stamp) return;
        const next = this.read(path);
        this.files.set(path, next);
        if (next.error) log.warn({ secret: `file ${ref.file}`, reason: next.error }, 'secret file unreadable after change');
        else log.info({ secret: `file ${ref.file}` }, 'secret file reloaded');
        countFileReload('secret', next.error ? 'failure' : 'success');
      };
      // Change notification on the directory (kubelet swaps a ..data symlink; deployments rename
      // over the file), then one comparison with the version that was read: a file rotated
      // between the read and the start of the watch would otherwise never be reported.
      this.watches.set(path, watchPath(path, () => refresh(this.statOrNull(path))));
      refresh(this.statOrNull(path));
    }
    return entry.error;
  }

  /**
   * Current value of a secret. Throws `unavailable` if it cannot be read: a call must not go
   * upstream without the credential it needs.
   */
  get(ref: SecretRef): string {
    if ('env' in ref) {
      const v = process.env[ref.env];
      if (!v) throw new GatewayError('unavailable', 'an upstream credential is not available', { rule: 'credentials.missing' });
      return v;
    }
    const path = resolve(this.baseDir, ref.file);
    let entry = this.files.get(path);
    if (!entry) {
      this.prepare(ref);
      entry = this.files.get(path);
    }
    if (!entry || entry.value === null) {
      throw new GatewayError('unavailable', 'an upstream credential is not available', { rule: 'credentials.missing' });
    }
    return entry.value;
  }

  /** Stops watching every file (shutdown, or replacing the store on reload). */
  close(): void {
    for (const w of this.watches.values()) w.close();
    this.watches.clear();
    this.files.clear();
  }

  private statOrNull(path: string): Stats | null {
    try {
      return statSync(path);
    } catch {
      return null;
    }
  }

  private read(path: string): Entry {
    // Stat first: if the file changes between the stat and the read, the next poll re-reads it.
    const stamp = stampOf(this.statOrNull(path));
    try {
      // Mounted secrets conventionally end with a newline that is not part of the secret.
      const value = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
      if (value.length === 0) return { value: null, error: 'file is empty', stamp };
      return { value, error: null, stamp };
    } catch (err) {
      return { value: null, error: (err as NodeJS.ErrnoException).code ?? 'unreadable', stamp };
    }
  }
}
