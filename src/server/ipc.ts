import { GatewayError, type ErrorCode } from '../errors.js';

/**
 * Requests and notes between the primary and its workers over the IPC channel of
 * `node:cluster` (one JSON message each). Every request carries an id and a timeout; a reply
 * that never comes, or a channel that closes, rejects what waits on it, so a caller always
 * gets an answer it can fail closed on.
 */

/** What may travel in a message body (JSON). */
export type IpcBody = unknown;

/** A message of this protocol; other messages on the channel (cluster's own) are ignored. */
interface Message {
  readonly pc: 1;
  readonly kind: 'req' | 'res' | 'note' | 'batch';
  readonly t: string;
  readonly id?: number;
  readonly body?: IpcBody;
  readonly ok?: boolean;
  readonly error?: WireError;
  /** `batch`: the messages one turn of the event loop produced, in order. */
  readonly items?: readonly Message[];
}

/** An error as it crosses the channel. */
interface WireError {
  readonly message: string;
  readonly code?: ErrorCode;
  readonly rule?: string;
  readonly retryAfterS?: number;
}

/** Handles one kind of request or note; what it returns (or resolves) is the reply. */
export type IpcHandler = (body: IpcBody) => unknown;

/** Sends one message; false when the channel is closed. */
export type IpcSend = (message: object) => boolean;

interface Pending {
  readonly resolve: (v: IpcBody) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

function toWire(err: unknown): WireError {
  if (err instanceof GatewayError) {
    return { message: err.message, code: err.code, ...(err.rule ? { rule: err.rule } : {}), ...(err.retryAfterS !== undefined ? { retryAfterS: err.retryAfterS } : {}) };
  }
  return { message: (err as Error)?.message ?? String(err) };
}

function fromWire(e: WireError | undefined): Error {
  if (e?.code) return new GatewayError(e.code, e.message, { ...(e.rule ? { rule: e.rule } : {}), ...(e.retryAfterS !== undefined ? { retryAfterS: e.retryAfterS } : {}) });
  return new Error(e?.message ?? 'the other process failed');
}

function isMessage(m: unknown): m is Message {
  return typeof m === 'object' && m !== null && (m as { pc?: unknown }).pc === 1 && typeof (m as { t?: unknown }).t === 'string';
}

/** Raised when the other side cannot be reached or does not answer in time. */
export class IpcUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IpcUnavailable';
  }
}

/** One end of the channel: sends requests and notes, answers the other side's. */
export class IpcPeer {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly handlers = new Map<string, IpcHandler>();
  private closedReason: string | null = null;
  /** Messages waiting for the end of this turn of the event loop: one channel write for all. */
  private outbox: Message[] = [];
  private flushing = false;
  private readonly flush = (): void => {
    this.flushing = false;
    const items = this.outbox;
    this.outbox = [];
    if (items.length === 0) return;
    let ok = false;
    try {
      ok = this.send(items.length === 1 ? (items[0] as Message) : { pc: 1, kind: 'batch', t: 'batch', items });
    } catch {
      ok = false;
    }
    if (!ok) for (const m of items) if (m.kind === 'req' && m.id !== undefined) this.fail(m.id, this.closedReason ?? 'the channel is closed');
  };

  /** @param send writes one message to the channel (false: closed). */
  constructor(private readonly send: IpcSend) {}

  /** Whether messages can still be sent. */
  get connected(): boolean {
    return this.closedReason === null;
  }

  /** Registers the handler of requests and notes of type `t` (one per type). */
  handle(t: string, handler: IpcHandler): void {
    this.handlers.set(t, handler);
  }

  /** Sends a request; resolves with the reply, rejects on the other side's error, timeout or a closed channel. */
  request(t: string, body: IpcBody, timeoutMs: number): Promise<IpcBody> {
    if (this.closedReason !== null) return Promise.reject(new IpcUnavailable(this.closedReason));
    const id = this.nextId++;
    return new Promise<IpcBody>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new IpcUnavailable(`no answer to "${t}" within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.pending.set(id, { resolve, reject, timer });
      this.enqueue({ pc: 1, kind: 'req', t, id, body });
    });
  }

  private fail(id: number, reason: string): void {
    const p = this.pending.get(id);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(id);
    p.reject(new IpcUnavailable(reason));
  }

  /** Sends a note (no reply); false when the channel is closed. */
  notify(t: string, body: IpcBody): boolean {
    if (this.closedReason !== null) return false;
    this.enqueue({ pc: 1, kind: 'note', t, body });
    return true;
  }

  /** Feeds one message received from the channel. */
  receive(raw: unknown): void {
    if (!isMessage(raw)) return;
    if (raw.kind === 'batch') {
      for (const m of raw.items ?? []) this.receive(m);
      return;
    }
    if (raw.kind === 'res') {
      const p = raw.id === undefined ? undefined : this.pending.get(raw.id);
      if (!p || raw.id === undefined) return;
      this.pending.delete(raw.id);
      clearTimeout(p.timer);
      if (raw.ok) p.resolve(raw.body);
      else p.reject(fromWire(raw.error));
      return;
    }
    const handler = this.handlers.get(raw.t);
    if (raw.kind === 'note') {
      if (handler) void Promise.resolve().then(() => handler(raw.body)).catch(() => undefined);
      return;
    }
    const id = raw.id;
    if (id === undefined) return;
    if (!handler) {
      this.enqueue({ pc: 1, kind: 'res', t: raw.t, id, ok: false, error: { message: `no handler for "${raw.t}"` } });
      return;
    }
    Promise.resolve()
      .then(() => handler(raw.body))
      .then(
        (body: unknown) => this.enqueue({ pc: 1, kind: 'res', t: raw.t, id, ok: true, body: body ?? null }),
        (err: unknown) => this.enqueue({ pc: 1, kind: 'res', t: raw.t, id, ok: false, error: toWire(err) }),
      );
  }

  /** The channel is gone: everything waiting is rejected and later requests fail at once. */
  close(reason: string): void {
    if (this.closedReason !== null) return;
    this.closedReason = reason;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(new IpcUnavailable(reason));
    }
  }

  /** Queues a message; the queue goes out as one write once this turn's other work is done. */
  private enqueue(m: Message): void {
    if (this.closedReason !== null) {
      if (m.kind === 'req' && m.id !== undefined) queueMicrotask(() => this.fail(m.id as number, this.closedReason ?? 'the channel is closed'));
      return;
    }
    this.outbox.push(m);
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(this.flush);
    }
  }
}

/** The peer of a worker process: its channel to the primary (rejects everything once the primary is gone). */
export function primaryPeer(): IpcPeer {
  const proc = process;
  const peer = new IpcPeer((m) => {
    if (!proc.connected || !proc.send) return false;
    proc.send(m, undefined, {}, (err: Error | null) => {
      if (err) peer.close(`the primary process cannot be reached (${err.message})`);
    });
    return true;
  });
  proc.on('message', (m: unknown) => peer.receive(m));
  proc.on('disconnect', () => peer.close('the primary process is gone'));
  return peer;
}
