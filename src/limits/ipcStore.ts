import { GatewayError } from '../errors.js';
import type { IpcBody, IpcPeer } from '../server/ipc.js';
import type { BucketRequest, BucketSpec, BucketTake, CounterHit, Store, StoreStatus } from './store.js';

/**
 * The in-memory store of a process with worker processes: the primary holds the one
 * {@link Store} (so a limit means the same with one worker or eight) and each worker reaches it
 * through this class, one IPC round trip per operation. A primary that does not answer within
 * the timeout, or is gone, rejects with `unavailable` (rule `store.unavailable`): callers fail
 * closed exactly as they do when Redis is away.
 */

/** The message type of store operations. */
export const STORE_MESSAGE = 'store';

/** Default time a worker waits for the primary's answer. */
export const IPC_STORE_TIMEOUT_MS = 1_000;

/** The operations that cross the channel, with their arguments as sent. */
type StoreOp =
  | { op: 'take'; key: string; bucket: BucketSpec; cost: number }
  | { op: 'takeAll'; requests: BucketRequest[] }
  | { op: 'increment'; key: string; windowMs: number; by: number }
  | { op: 'get'; key: string }
  | { op: 'getMany'; keys: string[] }
  | { op: 'setIfAbsent'; key: string; ttlMs: number; value: string }
  | { op: 'set'; key: string; value: string; ttlMs: number }
  | { op: 'swap'; key: string; expected: string; next: string | null; ttlMs: number };

/** {@link Store} of a worker: every operation answered by the primary's store. */
export class IpcStore implements Store {
  private errors = 0;

  constructor(
    private readonly peer: IpcPeer,
    private readonly timeoutMs = IPC_STORE_TIMEOUT_MS,
  ) {}

  take(key: string, bucket: BucketSpec, cost: number): Promise<BucketTake> {
    return this.call({ op: 'take', key, bucket, cost }) as Promise<BucketTake>;
  }

  takeAll(requests: readonly BucketRequest[]): Promise<BucketTake[]> {
    return this.call({ op: 'takeAll', requests: [...requests] }) as Promise<BucketTake[]>;
  }

  increment(key: string, windowMs: number, by = 1): Promise<CounterHit> {
    return this.call({ op: 'increment', key, windowMs, by }) as Promise<CounterHit>;
  }

  get(key: string): Promise<string | null> {
    return this.call({ op: 'get', key }) as Promise<string | null>;
  }

  getMany(keys: readonly string[]): Promise<(string | null)[]> {
    return this.call({ op: 'getMany', keys: [...keys] }) as Promise<(string | null)[]>;
  }

  setIfAbsent(key: string, ttlMs: number, value = '1'): Promise<boolean> {
    return this.call({ op: 'setIfAbsent', key, ttlMs, value }) as Promise<boolean>;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    await this.call({ op: 'set', key, value, ttlMs });
  }

  swap(key: string, expected: string, next: string | null, ttlMs: number): Promise<boolean> {
    return this.call({ op: 'swap', key, expected, next, ttlMs }) as Promise<boolean>;
  }

  status(): StoreStatus {
    const up = this.peer.connected;
    return { kind: 'memory', available: up, state: up ? 'ready' : 'primary_gone', errors: this.errors };
  }

  /** The primary owns the store; a worker has nothing to release. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  private async call(op: StoreOp): Promise<unknown> {
    try {
      return await this.peer.request(STORE_MESSAGE, op, this.timeoutMs);
    } catch (err) {
      // The store's own refusals (a full store) keep their meaning; a channel failure is unavailability.
      if (err instanceof GatewayError) throw err;
      this.errors += 1;
      throw new GatewayError('unavailable', 'the shared state store is unavailable', { rule: 'store.unavailable', retryAfterS: 1, cause: err });
    }
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Answers one store operation a worker sent, on the primary's store. */
export function serveStoreOp(store: Store, body: IpcBody): Promise<unknown> {
  if (!isObj(body)) return Promise.reject(new Error('malformed store operation'));
  const o = body as StoreOp;
  switch (o.op) {
    case 'take':
      return store.take(o.key, o.bucket, o.cost);
    case 'takeAll':
      return store.takeAll(o.requests);
    case 'increment':
      return store.increment(o.key, o.windowMs, o.by);
    case 'get':
      return store.get(o.key);
    case 'getMany':
      return store.getMany(o.keys);
    case 'setIfAbsent':
      return store.setIfAbsent(o.key, o.ttlMs, o.value);
    case 'set':
      return store.set(o.key, o.value, o.ttlMs).then(() => null);
    case 'swap':
      return store.swap(o.key, o.expected, o.next, o.ttlMs);
    default:
      return Promise.reject(new Error(`unknown store operation "${String((o as { op?: unknown }).op)}"`));
  }
}
