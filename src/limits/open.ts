import type { StoreConfig } from '../config/types.js';
import { log } from '../log.js';
import { RedisStore } from './redisStore.js';
import { MemoryStore, type Store } from './store.js';

/**
 * The store a configuration names: in memory (one replica), or on Redis (shared by replicas).
 * Opened once per process: buckets and one-time values outlive reloads, and a changed `store`
 * section applies at the next restart.
 */
export function openStore(cfg: StoreConfig | undefined): Store {
  if (cfg?.kind !== 'redis') return new MemoryStore();
  const r = cfg.redis;
  if (!r) throw new Error('store.redis is required when store.kind is "redis"');
  const store = new RedisStore({ url: r.url, keyPrefix: r.key_prefix, timeoutMs: r.timeout_ms, connectTimeoutMs: r.connect_timeout_ms, maxRetries: r.max_retries });
  // The URL may carry a password: only the host is logged.
  log.info({ store: 'redis', host: safeHost(r.url), key_prefix: r.key_prefix }, 'shared state on redis');
  return store;
}

/** The URL's host and port, never its credentials. */
export function safeHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return 'unparsable url';
  }
}

/** What a reload cannot change about the store (compared to warn that it applies at restart). */
export function storeSettings(cfg: StoreConfig | undefined): string {
  return JSON.stringify(cfg ?? null);
}
