import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AuthzMetadata } from './check.js';
import type { ProtoStruct, ProtoValue } from '../server/struct.js';
import { toValue } from '../server/struct.js';

/**
 * The ext_authz → ext_proc hand-off: what Check decided travels to ext_proc as Envoy dynamic
 * metadata (namespace {@link AUTHZ_METADATA_NAMESPACE}, key {@link METADATA_KEY}), so any
 * replica can serve any phase. This module owns its type, its encoding and its signature.
 *
 * The fields stay a plain struct (Envoy's access log reads `tool`, `agent`, ... from it) and two
 * fields are added: `iat` (ms since the epoch, when it was signed) and `sig`
 * (`v1.<base64url HMAC-SHA256>`) over a canonical encoding of every field, in a fixed order, with
 * its type. ext_proc accepts a hand-off only when every field has its type, the signature
 * verifies under the shared key and it is fresh; anything else is "no decision".
 */

/** Envoy dynamic metadata namespace ext_authz writes CheckResponse.dynamic_metadata under. */
export const AUTHZ_METADATA_NAMESPACE = 'envoy.filters.http.ext_authz';
/** Key under which portcullis' own hand-off lives inside that namespace. */
export const METADATA_KEY = 'portcullis';

/** Signature scheme tag; a change of the canonical encoding gets a new tag. */
const VERSION = 'v1';
/** Oldest hand-off accepted: covers a tool that takes long to send its response headers. */
export const HANDOFF_MAX_AGE_MS = 5 * 60 * 1000;
/** Clock difference between replicas tolerated for `iat` in the future. */
const HANDOFF_FUTURE_SKEW_MS = 30 * 1000;
/** Shortest accepted key (bytes): an HMAC-SHA256 key should carry 256 bits. */
export const HANDOFF_MIN_KEY_BYTES = 32;

type Kind = 'string' | 'string?' | 'boolean' | 'number' | 'string[]';

/**
 * Every field of the hand-off with its type. Typed against {@link AuthzMetadata}, so a field
 * added there does not compile until it is given a type here (and is then signed).
 */
const FIELDS: Readonly<Record<keyof AuthzMetadata, Kind>> = {
  request_id: 'string?',
  traceparent: 'string?',
  method: 'string',
  path: 'string',
  tool: 'string?',
  agent: 'string?',
  agent_version: 'string?',
  user: 'string?',
  tenant: 'string?',
  auth_methods: 'string[]',
  roles: 'string[]',
  auth_error: 'string?',
  forwarded_recorded: 'boolean',
  allowed: 'boolean',
  dry_run: 'boolean',
  rule: 'string?',
  reason: 'string?',
  policy_version: 'string?',
  mcp_method: 'string?',
  mcp_tool: 'string?',
  mcp_prompt: 'string?',
  mcp_resource: 'string?',
  mcp_session: 'string?',
  mcp_protocol_version: 'string?',
  proven_by: 'string[]',
  jti: 'string?',
  authz_ms: 'number',
  body_sha256: 'string?',
  mcp_decided_on: 'string?',
  idempotency_key: 'string?',
  idempotency_claim: 'string?',
  fact_records: 'string[]',
  budget_records: 'string[]',
};

/** Field names in signing order (sorted, so declaration order does not matter). */
const ORDER = (Object.keys(FIELDS) as (keyof AuthzMetadata)[]).sort();

/** Why a hand-off was not accepted (also the audit rule suffix: `handoff.<reason>`). */
export type HandoffProblem = 'absent' | 'malformed' | 'unsigned' | 'forged' | 'expired';

/** A verified hand-off, or why there is none. */
export type HandoffResult = { readonly ok: true; readonly meta: AuthzMetadata } | { readonly ok: false; readonly problem: HandoffProblem };

/**
 * The shared HMAC key. `current` is read on every use (a rotated secret file applies at once);
 * the value before the last rotation is still accepted for verification, so calls in flight
 * across a rotation are not denied.
 */
export class HandoffKey {
  private last: string | null = null;
  private key: Buffer = Buffer.alloc(0);
  private previous: Buffer | null = null;

  /** @param current returns the key's current value (a secret); throws when it is unavailable. */
  constructor(private readonly current: () => string) {}

  /** A key that exists only in this process: hand-offs verify only on the replica that signed them. */
  static ephemeral(): HandoffKey {
    const value = randomBytes(32).toString('base64url');
    return new HandoffKey(() => value);
  }

  /** Signs a canonical encoding. */
  sign(data: string): string {
    return `${VERSION}.${mac(this.resolve(), data).toString('base64url')}`;
  }

  /** Whether `sig` is a valid signature of `data` (current key, or the one before a rotation). */
  verify(data: string, sig: string): boolean {
    if (!sig.startsWith(`${VERSION}.`)) return false;
    const given = Buffer.from(sig.slice(VERSION.length + 1), 'base64url');
    const key = this.resolve();
    if (given.length !== 32) return false;
    if (timingSafeEqual(given, mac(key, data))) return true;
    return this.previous !== null && timingSafeEqual(given, mac(this.previous, data));
  }

  /**
   * A key for another purpose (e.g. MCP session bindings), derived from this one by HMAC over
   * `label`, so a value signed for one purpose never verifies for another. Returns the key
   * derived from the current value and, after a rotation, the one from the value before.
   */
  derive(label: string): { readonly current: Buffer; readonly previous: Buffer | null } {
    const key = this.resolve();
    return { current: mac(key, label), previous: this.previous === null ? null : mac(this.previous, label) };
  }

  private resolve(): Buffer {
    const value = this.current();
    if (value !== this.last) {
      if (this.last !== null) this.previous = this.key;
      this.last = value;
      this.key = Buffer.from(value, 'utf8');
    }
    return this.key;
  }
}

function mac(key: Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/** The canonical text that is signed: version, `iat`, then every field's value in {@link ORDER}. */
function canonical(meta: AuthzMetadata, iat: number): string {
  const values: unknown[] = [VERSION, iat];
  for (const k of ORDER) values.push(meta[k]);
  return JSON.stringify(values);
}

/**
 * The hand-off as written into CheckResponse.dynamic_metadata (`portcullis` key): the fields,
 * `iat` and `sig`.
 */
export function sealHandoff(meta: AuthzMetadata, key: HandoffKey, nowMs: number = Date.now()): Record<string, unknown> {
  const iat = Math.floor(nowMs);
  return { ...meta, iat, sig: key.sign(canonical(meta, iat)) };
}

/** Reads one `google.protobuf.Value` (proto-loader object form) as the expected kind, or undefined. */
function read(v: unknown, kind: Kind): unknown {
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Partial<Record<'stringValue' | 'numberValue' | 'boolValue' | 'nullValue' | 'listValue', unknown>>;
  switch (kind) {
    case 'string':
      return typeof o.stringValue === 'string' ? o.stringValue : undefined;
    case 'string?':
      if (typeof o.stringValue === 'string') return o.stringValue;
      return o.nullValue !== undefined && o.nullValue !== null ? null : undefined;
    case 'boolean':
      return typeof o.boolValue === 'boolean' ? o.boolValue : undefined;
    case 'number':
      return typeof o.numberValue === 'number' && Number.isFinite(o.numberValue) ? o.numberValue : undefined;
    case 'string[]': {
      const values = (o.listValue as { values?: unknown } | null | undefined)?.values ?? (o.listValue ? [] : undefined);
      if (!Array.isArray(values)) return undefined;
      const out: string[] = [];
      for (const item of values) {
        const s = read(item, 'string');
        if (typeof s !== 'string') return undefined;
        out.push(s);
      }
      return out;
    }
  }
}

function fieldsOf(v: unknown): Record<string, unknown> | null {
  if (typeof v !== 'object' || v === null) return null;
  const fields = (v as { fields?: unknown }).fields;
  return typeof fields === 'object' && fields !== null && !Array.isArray(fields) ? (fields as Record<string, unknown>) : null;
}

/**
 * Reads and verifies the hand-off from a ProcessingRequest's `metadataContext.filterMetadata`
 * (proto-loader object form). Never throws: whatever the input, the answer is a verified
 * decision or the reason there is none. One HMAC per call.
 */
export function readHandoff(filterMetadata: unknown, key: HandoffKey, nowMs: number = Date.now()): HandoffResult {
  if (typeof filterMetadata !== 'object' || filterMetadata === null) return { ok: false, problem: 'absent' };
  const ns = (filterMetadata as Record<string, unknown>)[AUTHZ_METADATA_NAMESPACE];
  if (ns === undefined || ns === null) return { ok: false, problem: 'absent' };
  const outer = fieldsOf(ns);
  if (!outer) return { ok: false, problem: 'malformed' };
  const entry = outer[METADATA_KEY];
  if (entry === undefined) return { ok: false, problem: 'absent' };
  const fields = fieldsOf((entry as { structValue?: unknown } | null)?.structValue);
  if (!fields) return { ok: false, problem: 'malformed' };
  const sig = read(fields.sig, 'string');
  const iat = read(fields.iat, 'number');
  if (sig === undefined && iat === undefined) return { ok: false, problem: 'unsigned' };
  if (typeof sig !== 'string' || typeof iat !== 'number' || !Number.isSafeInteger(iat)) return { ok: false, problem: 'malformed' };
  const meta: Record<string, unknown> = {};
  for (const k of ORDER) {
    const value = read(fields[k], FIELDS[k]);
    if (value === undefined) return { ok: false, problem: 'malformed' };
    meta[k] = value;
  }
  const typed = meta as unknown as AuthzMetadata;
  if (!key.verify(canonical(typed, iat), sig)) return { ok: false, problem: 'forged' };
  if (iat < nowMs - HANDOFF_MAX_AGE_MS || iat > nowMs + HANDOFF_FUTURE_SKEW_MS) return { ok: false, problem: 'expired' };
  return { ok: true, meta: typed };
}

/** The sealed hand-off as a protobuf Struct entry (for tests and tools that build requests). */
export function handoffStruct(sealed: Readonly<Record<string, unknown>>): ProtoStruct {
  return { fields: { [METADATA_KEY]: toValue(sealed) as ProtoValue } };
}
