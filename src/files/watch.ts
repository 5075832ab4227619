import { statSync, watch, type FSWatcher, type Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { log } from '../log.js';

/**
 * Change notification for the files the gateway reads (config, policy bundle and data, JWKS,
 * secrets). The parent directory is watched (inotify through `fs.watch`), not the file: an atomic
 * replace (write a temporary file, rename it over the old one) gives the path a new inode, which a
 * watch on the old inode never reports, and a Kubernetes secret or ConfigMap update swaps a
 * `..data` symlink next to the file without touching it. On any event in the directory the file
 * is stat'ed (following symlinks) and the callback runs when what the path names has changed.
 * A slow stat poll runs as well, as the fallback where notifications are not delivered (some
 * network and FUSE filesystems, or a directory that does not exist yet).
 */

/** Interval of the fallback poll. */
export const FALLBACK_POLL_MS = 2_000;

/** Stops watching. */
export interface FileWatch {
  close(): void;
}

/** Options of {@link watchPath}. */
export interface WatchOptions {
  /** Fallback poll interval (default {@link FALLBACK_POLL_MS}). */
  readonly pollMs?: number;
}

/** Identity of what a path names now: device, inode, size and times, or `missing`. */
export function fileStamp(st: Pick<Stats, 'dev' | 'ino' | 'size' | 'mtimeMs' | 'ctimeMs'> | null): string {
  return st ? `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}` : 'missing';
}

function stampNow(path: string): string {
  try {
    return fileStamp(statSync(path));
  } catch {
    return 'missing';
  }
}

/**
 * Calls `onChange` (synchronously, from the notification) whenever the file at `path` is not what
 * it was at the previous call or at the start. The callback must not throw; an error it throws is
 * logged. Unref'd: a watch never keeps the process alive.
 */
export function watchPath(path: string, onChange: () => void, opts: WatchOptions = {}): FileWatch {
  let last = stampNow(path);
  let closed = false;
  const check = (stamp: string): void => {
    if (closed || stamp === last) return;
    last = stamp;
    try {
      onChange();
    } catch (err) {
      log.error({ file: path, err: (err as Error).message }, 'file change handler failed');
    }
  };

  let watcher: FSWatcher | null = null;
  try {
    watcher = watch(dirname(path), { persistent: false }, () => check(stampNow(path)));
    watcher.on('error', (err) => {
      log.warn({ file: path, reason: err.message }, 'file change notification failed; polling only');
      watcher?.close();
      watcher = null;
    });
  } catch (err) {
    log.warn({ file: path, dir: dirname(path), reason: (err as Error).message }, 'file change notification unavailable; polling only');
  }

  let polling = false;
  const poller = setInterval(() => {
    if (polling) return;
    polling = true;
    stat(path)
      .then(fileStamp, () => 'missing')
      .then(check)
      .finally(() => {
        polling = false;
      });
  }, opts.pollMs ?? FALLBACK_POLL_MS);
  poller.unref();

  return {
    close(): void {
      closed = true;
      clearInterval(poller);
      watcher?.close();
      watcher = null;
    },
  };
}


/**
 * Wraps `run` so that calls run one at a time, in the order they were made (a reload asked for
 * by a file change and one asked for on the admin port never overlap); each call resolves with
 * its own run's result.
 */
export function oneAtATime<T>(run: () => Promise<T>): () => Promise<T> {
  let last: Promise<unknown> = Promise.resolve();
  return () => {
    const next = last.then(run, run);
    last = next;
    return next;
  };
}
