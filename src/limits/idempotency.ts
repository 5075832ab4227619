import { createHash, randomBytes } from 'node:crypto';
import { Counter } from 'prom-client';
import { GatewayError } from '../errors.js';
import { log } from '../log.js';
import { registry } from '../metrics.js';
import type { IdempotencyConfig, ToolConfig } from '../config/types.js';
import type { Principal } from '../identity/types.js';
import type { HeaderValue } from '../credentials/inject.js';
import { sessionIdentity } from '../mcp/session.js';
import type { Store } from './store.js';

/**
 * Idempotency keys for mutating calls, on the shared store. A call that carries a key (a header,
 * or values read from its JSON body) claims the key with a `pending` marker before it is
 * forwarded; ext_proc replaces the marker with the delivered response when the exchange ends
 * (src/extproc/idempotency.ts), or removes it when the call failed so a retry runs. A retry
 * while the call runs is refused (409), a retry after it is answered from the store without
 * calling the tool, and the same key on another request is refused (422).
 *
 * The store key is a hash of the tool, the MCP tool called, the caller (issuers, user, agent,
 * tenant) and the key: one caller can never read or block another caller's entry.
 */

const outcomes = new Counter({
  name: 'portcullis_idempotency_total',
  help: 'Idempotency key outcomes by tool: claimed, replayed, in_flight, key_reused, stored, released, store_error',
  labelNames: ['tool', 'outcome'] as const,
  registers: [registry],
});

/** Counts one idempotency outcome (tool names come from configuration: bounded cardinality). */
export function countIdempotency(tool: string, outcome: 'claimed' | 'replayed' | 'in_flight' | 'key_reused' | 'stored' | 'released' | 'store_error'): void {
  outcomes.inc({ tool, outcome });
}

/** Prefix of every idempotency entry in the store. */
const KEY_PREFIX = 'idem:';
/** Longest key accepted, and the characters it may use (printable ASCII). */
const KEY_PATTERN = /^[\x20-\x7e]{1,255}$/;
/** Response header a replayed answer carries. */
export const REPLAYED_HEADER = 'idempotent-replayed';
/** Seconds an agent should wait before retrying a call still in progress. */
const IN_FLIGHT_RETRY_S = 1;

/**
 * Response headers kept with a stored answer and replayed with it: the ones that describe the
 * body or the created resource. Never hop-by-hop headers, cookies or framing.
 */
export const STORED_HEADERS: ReadonlySet<string> = new Set(['content-type', 'content-language', 'location', 'etag', 'last-modified']);

/**
 * Statuses an answer is stored and replayed with: those below 500 that Envoy's `HttpStatus`
 * enum defines (an ext_authz local reply can carry no other). Any other status releases the key.
 */
export const REPLAYABLE_STATUSES: ReadonlySet<number> = new Set([
  200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422,
  423, 424, 426, 428, 429, 431,
]);

/** The pending marker of a call in progress, exactly as stored (ext_proc compares it verbatim). */
export interface PendingMarker {
  readonly state: 'pending';
  /** Random token of the Check that claimed the key. */
  readonly owner: string;
  /** Fingerprint of the request: method, path and body (see {@link requestFingerprint}). */
  readonly body_sha256: string;
  readonly at: number;
}

/** A completed call's answer as stored. */
export interface DoneRecord {
  readonly state: 'done';
  readonly body_sha256: string;
  readonly status: number;
  readonly headers: readonly (readonly [string, string])[];
  /** The response body as delivered (redacted), base64. */
  readonly body: string;
  readonly at: number;
}

/** An answer replayed from the store, ready to render. */
export interface ReplayedResponse {
  readonly status: number;
  readonly headers: readonly HeaderValue[];
  readonly body: Buffer;
}

/** What the Check knows about a request, for the idempotency stage. */
export interface IdempotencyRequest {
  readonly tool: ToolConfig;
  readonly principal: Principal | null;
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  /** The body the Check saw (undefined when none). */
  readonly rawBody: Buffer | undefined;
  /** The body was cut (the Check saw part of it) or not sent at all although announced. */
  readonly incomplete: boolean;
  /** The body as the policy saw it (strict JSON value, form, or null). */
  readonly parsedBody: unknown;
  /** Whether the body is a JSON-RPC message (not a batch): its `id` is not part of the fingerprint. */
  readonly rpcSingle: boolean;
  /** The JSON-RPC id of the request, rewritten into a replayed JSON-RPC answer. */
  readonly rpcId: string | number | null;
  /** MCP tool named by the (first) call, part of the store key. */
  readonly mcpTool: string | null;
  readonly mutating: boolean;
}

/** Outcome of the idempotency stage. */
export type IdempotencyOutcome =
  | { readonly kind: 'untracked' }
  | { readonly kind: 'claimed'; readonly key: string; readonly claim: string }
  | { readonly kind: 'replay'; readonly key: string; readonly response: ReplayedResponse };

/** Compiled `key_from` paths per tool config (built once per config object). */
const compiledPaths = new WeakMap<IdempotencyConfig, readonly (readonly string[])[]>();

function pathsOf(cfg: IdempotencyConfig): readonly (readonly string[])[] {
  let paths = compiledPaths.get(cfg);
  if (!paths) {
    paths = (cfg.key_from ?? []).map((p) => p.split('.'));
    compiledPaths.set(cfg, paths);
  }
  return paths;
}

function at(value: unknown, path: readonly string[]): unknown {
  let cur = value;
  for (const seg of path) {
    if (Array.isArray(cur)) {
      if (!/^\d+$/.test(seg)) return undefined;
      cur = cur[Number(seg)];
    } else if (typeof cur === 'object' && cur !== null && Object.prototype.hasOwnProperty.call(cur, seg)) {
      cur = (cur as Record<string, unknown>)[seg];
    } else return undefined;
  }
  return cur;
}

function badKey(message: string): GatewayError {
  return new GatewayError('invalid_request', message, { rule: 'idempotency.key' });
}

/**
 * The caller's idempotency key: the `key_from` values when every one is present in the body,
 * else the header, else null. Keys from the two sources never collide (each is tagged). Throws
 * 400 `idempotency.key` for a key that is empty, too long, not printable, or a body value that
 * is not a string, number or boolean.
 */
export function idempotencyKey(cfg: IdempotencyConfig, headers: Readonly<Record<string, string>>, parsedBody: unknown, fromBody: boolean): string | null {
  const paths = pathsOf(cfg);
  if (fromBody && paths.length > 0) {
    const values = paths.map((p) => at(parsedBody, p));
    if (values.every((v) => v !== undefined)) {
      const parts = values.map((v, i) => {
        const name = (cfg.key_from ?? [])[i];
        if (typeof v === 'number' && Number.isFinite(v)) return String(v);
        if (typeof v === 'boolean') return String(v);
        if (typeof v !== 'string') throw badKey(`the idempotency key field "${name}" must be a string, number or boolean`);
        if (!KEY_PATTERN.test(v)) throw badKey(`the idempotency key field "${name}" must be 1 to 255 printable ASCII characters`);
        return v;
      });
      return JSON.stringify(['body', parts]);
    }
  }
  const header = headers[cfg.header];
  if (header === undefined) return null;
  if (!KEY_PATTERN.test(header)) throw badKey(`the ${cfg.header} header must be 1 to 255 printable ASCII characters`);
  return JSON.stringify(['header', header]);
}

/**
 * The store key of (tool, MCP tool, caller, key): a hash, so caller-controlled values are
 * bounded and never readable in the store. The caller is every issuer that vouched for it, the
 * user, the agent and the tenant (a user id is unique only within its issuer).
 */
export function idempotencyStoreKey(tool: string, mcpTool: string | null, principal: Principal | null, key: string): string {
  const digest = createHash('sha256').update(JSON.stringify([tool, mcpTool, sessionIdentity(principal), key])).digest('base64url');
  return `${KEY_PREFIX}${digest}`;
}

/**
 * Fingerprint of the request a key was first used with: method, path (with query) and body. A
 * single JSON-RPC message is fingerprinted without its `id` (a retry may carry a new id and
 * still be the same call); anything else byte for byte.
 */
export function requestFingerprint(method: string, path: string, rawBody: Buffer | undefined, parsedBody: unknown, rpcSingle: boolean): string {
  let body: string;
  if (rpcSingle && typeof parsedBody === 'object' && parsedBody !== null && !Array.isArray(parsedBody)) {
    const { id: _id, ...rest } = parsedBody as Record<string, unknown>;
    body = `rpc:${JSON.stringify(rest)}`;
  } else {
    body = `raw:${createHash('sha256').update(rawBody ?? Buffer.alloc(0)).digest('hex')}`;
  }
  return createHash('sha256').update(JSON.stringify([method.toUpperCase(), path, body])).digest('hex');
}

/** The pending marker text for a new claim. */
export function pendingMarker(fingerprint: string, nowMs: number, owner: string = randomBytes(18).toString('base64url')): string {
  const m: PendingMarker = { state: 'pending', owner, body_sha256: fingerprint, at: nowMs };
  return JSON.stringify(m);
}

function isHex64(v: unknown): v is string {
  return typeof v === 'string' && /^[0-9a-f]{64}$/.test(v);
}

function corrupt(): GatewayError {
  return new GatewayError('unavailable', 'the stored state of this idempotency key cannot be read; the call was not run', { rule: 'idempotency.stored_invalid', retryAfterS: IN_FLIGHT_RETRY_S });
}

/**
 * Reads a stored entry. Anything that is not exactly a pending marker or a done record throws
 * (fail closed: a value the gateway cannot read is never taken for "absent").
 */
export function parseEntry(text: string): PendingMarker | DoneRecord {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw corrupt();
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw corrupt();
  const o = v as Record<string, unknown>;
  if (!isHex64(o.body_sha256) || typeof o.at !== 'number') throw corrupt();
  if (o.state === 'pending') {
    if (typeof o.owner !== 'string' || o.owner.length === 0) throw corrupt();
    return { state: 'pending', owner: o.owner, body_sha256: o.body_sha256, at: o.at };
  }
  if (o.state !== 'done') throw corrupt();
  if (typeof o.status !== 'number' || !REPLAYABLE_STATUSES.has(o.status)) throw corrupt();
  if (typeof o.body !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(o.body)) throw corrupt();
  if (!Array.isArray(o.headers)) throw corrupt();
  const headers: [string, string][] = [];
  for (const h of o.headers as unknown[]) {
    if (!Array.isArray(h) || h.length !== 2 || typeof h[0] !== 'string' || typeof h[1] !== 'string') throw corrupt();
    // Only the headers that may be replayed, whatever the store holds.
    if (!STORED_HEADERS.has(h[0]) || /[\r\n\0]/.test(h[1])) throw corrupt();
    headers.push([h[0], h[1]]);
  }
  return { state: 'done', body_sha256: o.body_sha256, status: o.status, headers, body: o.body, at: o.at };
}

/** The done record text for a delivered answer. */
export function doneRecord(fingerprint: string, status: number, headers: readonly (readonly [string, string])[], body: Buffer, nowMs: number): string {
  const d: DoneRecord = { state: 'done', body_sha256: fingerprint, status, headers: headers.filter(([k]) => STORED_HEADERS.has(k)), body: body.toString('base64'), at: nowMs };
  return JSON.stringify(d);
}

/**
 * The stored body with the current request's JSON-RPC id (a retry may use a new id). A body
 * that is not one JSON-RPC response object is replayed as stored.
 */
function withRpcId(body: Buffer, req: IdempotencyRequest): Buffer {
  if (!req.rpcSingle) return body;
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    return body;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v) || (v as Record<string, unknown>).jsonrpc !== '2.0') return body;
  return Buffer.from(JSON.stringify({ ...(v as Record<string, unknown>), id: req.rpcId }), 'utf8');
}

function replayOf(done: DoneRecord, req: IdempotencyRequest): ReplayedResponse {
  return {
    status: done.status,
    headers: [...done.headers.map(([key, value]) => ({ key, value })), { key: REPLAYED_HEADER, value: 'true' }],
    body: withRpcId(Buffer.from(done.body, 'base64'), req),
  };
}

function storeDown(err: unknown): GatewayError {
  return new GatewayError('unavailable', 'the idempotency store is unavailable, so this call cannot be protected against running twice and was not run; retry shortly', {
    rule: 'idempotency.store_unavailable',
    retryAfterS: IN_FLIGHT_RETRY_S,
    cause: err,
  });
}

/**
 * The idempotency stage of the Check: untracked (no config, not mutating, no key), claimed
 * (forward the call; ext_proc settles the claim), or answered from the store. Throws 409
 * `idempotency.in_flight` while the first call runs, 422 `idempotency.key_reused` for the same
 * key on another request, 400 for a bad or missing required key, 413 when the body could not
 * be fingerprinted whole, 503 when the store cannot answer (never forwarded unprotected).
 */
export async function claimIdempotency(store: Store, req: IdempotencyRequest, nowMs: number = Date.now()): Promise<IdempotencyOutcome> {
  const cfg = req.tool.idempotency;
  if (!cfg || !req.mutating) return { kind: 'untracked' };
  const key = idempotencyKey(cfg, req.headers, req.parsedBody, req.rpcSingle || !Array.isArray(req.parsedBody));
  if (key === null) {
    if (cfg.required) {
      const from = cfg.key_from ? ` or the body fields ${cfg.key_from.join(', ')}` : '';
      throw new GatewayError('invalid_request', `tool "${req.tool.name}" requires an idempotency key for calls that change state: send the ${cfg.header} header${from}`, { rule: 'idempotency.key_required' });
    }
    return { kind: 'untracked' };
  }
  if (req.incomplete) {
    throw new GatewayError('payload_too_large', `a call with an idempotency key is checked against its whole body, which the gateway could not read whole here; send a smaller body`, { rule: 'idempotency.body_window' });
  }
  const storeKey = idempotencyStoreKey(req.tool.name, req.mcpTool, req.principal, key);
  const fingerprint = requestFingerprint(req.method, req.path, req.rawBody, req.parsedBody, req.rpcSingle);
  const claim = pendingMarker(fingerprint, nowMs);
  let existing: string | null = null;
  try {
    // One round trip for a new key; a second one reads what holds it (it may expire in between: claim again once).
    for (let attempt = 0; attempt < 2; attempt++) {
      if (await store.setIfAbsent(storeKey, cfg.in_flight_ttl_s * 1000, claim)) {
        countIdempotency(req.tool.name, 'claimed');
        return { kind: 'claimed', key: storeKey, claim };
      }
      existing = await store.get(storeKey);
      if (existing !== null) break;
    }
  } catch (err) {
    countIdempotency(req.tool.name, 'store_error');
    log.warn({ tool: req.tool.name, cause: (err as Error)?.message }, 'idempotency store unavailable; denying');
    throw storeDown(err);
  }
  if (existing === null) {
    countIdempotency(req.tool.name, 'in_flight');
    throw inFlight(req.tool.name);
  }
  const entry = parseEntry(existing);
  if (entry.body_sha256 !== fingerprint) {
    countIdempotency(req.tool.name, 'key_reused');
    throw new GatewayError('invalid_request', 'this idempotency key was already used for a different request (method, path or body); use a new key for a new call', {
      rule: 'idempotency.key_reused',
      httpStatus: 422,
    });
  }
  if (entry.state === 'pending') {
    countIdempotency(req.tool.name, 'in_flight');
    throw inFlight(req.tool.name);
  }
  countIdempotency(req.tool.name, 'replayed');
  return { kind: 'replay', key: storeKey, response: replayOf(entry, req) };
}

function inFlight(tool: string): GatewayError {
  return new GatewayError('conflict', `a call to tool "${tool}" with this idempotency key is still in progress; retry shortly to get its answer`, {
    rule: 'idempotency.in_flight',
    retryAfterS: IN_FLIGHT_RETRY_S,
  });
}

/** Releases a claim the Check made but did not hand on (a later stage denied): a retry may run. */
export function releaseClaim(store: Store, key: string, claim: string, tool: string): void {
  store.swap(key, claim, null, 0).then(
    () => countIdempotency(tool, 'released'),
    (err: unknown) => {
      countIdempotency(tool, 'store_error');
      log.warn({ tool, cause: (err as Error)?.message }, 'idempotency claim could not be released; it expires on its own');
    },
  );
}
