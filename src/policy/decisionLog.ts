import { randomUUID } from 'node:crypto';

/**
 * OPA-compatible decision log events: one per policy decision, in the shape OPA's decision log
 * plugin reports (`decision_id`, `path`, `input`, `result`, `bundles`, `labels`, `timestamp`,
 * `metrics`, `requested_by`, `req_id`, `erased`, `masked`), so pipelines built for OPA read
 * them unchanged. Masking follows OPA: JSON pointers under `/input` or `/result` are removed
 * (listed in `erased`), `{op: "upsert", path, value}` rules replace or add (listed in `masked`).
 */

/** One decision log event (OPA's field names). */
export interface DecisionEvent {
  labels: Record<string, string>;
  decision_id: string;
  bundles: Record<string, { revision: string }>;
  path: string;
  input?: unknown;
  result?: unknown;
  error?: { code: string; message: string };
  requested_by: string;
  timestamp: string;
  metrics: Record<string, number>;
  req_id: number;
  erased?: string[];
  masked?: string[];
}

/** One masking rule: remove a pointer, or upsert a value at it. */
export type MaskRule = { readonly op: 'remove'; readonly path: string } | { readonly op: 'upsert'; readonly path: string; readonly value: unknown };

/**
 * Pointers removed unless `decision_logs.mask_defaults` is false: credentials in request
 * headers and the request body (raw and parsed), which may carry secrets the DLP would catch.
 */
export const DEFAULT_MASK: readonly string[] = [
  '/input/attributes/request/http/headers/authorization',
  '/input/attributes/request/http/headers/proxy-authorization',
  '/input/attributes/request/http/headers/cookie',
  '/input/attributes/request/http/headers/x-api-key',
  '/input/attributes/request/http/body',
  '/input/attributes/request/http/raw_body',
  '/input/parsed_body',
  '/input/mcp/arguments',
];

/** Headers of configured identity methods that carry credentials, as mask pointers. */
export function headerPointers(names: readonly string[]): string[] {
  return names.map((n) => `/input/attributes/request/http/headers/${escapePointer(n.toLowerCase())}`);
}

function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

function segments(pointer: string): string[] | null {
  if (!pointer.startsWith('/')) return null;
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** Reads a mask rule as OPA accepts it (a pointer string or an op object); null when malformed. */
export function readMaskRule(v: unknown): MaskRule | null {
  if (typeof v === 'string') return validPath(v) ? { op: 'remove', path: v } : null;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  const op = o.op ?? 'remove';
  if (typeof o.path !== 'string' || !validPath(o.path)) return null;
  if (op === 'remove') return { op, path: o.path };
  if (op === 'upsert' && Object.hasOwn(o, 'value')) return { op, path: o.path, value: o.value };
  return null;
}

function validPath(p: string): boolean {
  const s = segments(p);
  return s !== null && s.length >= 1 && (s[0] === 'input' || s[0] === 'result');
}

function isContainer(v: unknown): v is Record<string, unknown> | unknown[] {
  return typeof v === 'object' && v !== null;
}

function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

/**
 * Applies rules to the event's `input` and `result` (which must be its own copies) and records
 * what was erased or masked. Removing a pointer that does not exist is not recorded; an upsert
 * creates missing objects on its way, as OPA does.
 */
export function applyMask(event: DecisionEvent, rules: readonly MaskRule[]): void {
  const erased: string[] = [];
  const masked: string[] = [];
  const doc = event as unknown as Record<string, unknown>;
  for (const rule of rules) {
    const segs = segments(rule.path);
    if (!segs) continue;
    const last = segs[segs.length - 1] as string;
    if (segs.length === 1) {
      // The whole input or result.
      if (rule.op === 'remove') {
        if (Object.hasOwn(doc, last)) {
          delete doc[last];
          erased.push(rule.path);
        }
      } else {
        doc[last] = clone(rule.value);
        masked.push(rule.path);
      }
      continue;
    }
    let parent: unknown = doc;
    let ok = true;
    for (const seg of segs.slice(0, -1)) {
      if (Array.isArray(parent)) {
        const i = Number(seg);
        parent = Number.isInteger(i) ? parent[i] : undefined;
      } else if (isContainer(parent)) {
        const obj = parent as Record<string, unknown>;
        if (!Object.hasOwn(obj, seg) && rule.op === 'upsert') Object.defineProperty(obj, seg, { value: {}, enumerable: true, writable: true, configurable: true });
        parent = Object.hasOwn(obj, seg) ? obj[seg] : undefined;
      } else parent = undefined;
      if (!isContainer(parent)) {
        ok = false;
        break;
      }
    }
    if (!ok || !isContainer(parent)) continue;
    if (Array.isArray(parent)) {
      const i = Number(last);
      if (!Number.isInteger(i) || i < 0 || i >= parent.length) continue;
      if (rule.op === 'remove') {
        parent.splice(i, 1);
        erased.push(rule.path);
      } else {
        parent[i] = clone(rule.value);
        masked.push(rule.path);
      }
      continue;
    }
    const obj = parent as Record<string, unknown>;
    if (rule.op === 'remove') {
      if (Object.hasOwn(obj, last)) {
        delete obj[last];
        erased.push(rule.path);
      }
    } else {
      Object.defineProperty(obj, last, { value: clone(rule.value), enumerable: true, writable: true, configurable: true });
      masked.push(rule.path);
    }
  }
  if (erased.length > 0) event.erased = [...(event.erased ?? []), ...erased];
  if (masked.length > 0) event.masked = [...(event.masked ?? []), ...masked];
}

/** RFC 3339 time with nanoseconds, as OPA writes `timestamp`. */
export function rfc3339Nanos(epochNs: bigint): string {
  const ms = Number(epochNs / 1_000_000n);
  const iso = new Date(ms).toISOString(); // ...ss.mmmZ
  const nanos = (epochNs % 1_000_000_000n).toString().padStart(9, '0');
  return `${iso.slice(0, 19)}.${nanos}Z`;
}

/** Wall clock in nanoseconds (sub-millisecond digits from the monotonic clock). */
export function nowEpochNs(): bigint {
  const t = performance.timeOrigin + performance.now();
  return BigInt(Math.floor(t * 1000)) * 1000n;
}

/** What {@link DecisionEventBuilder.build} needs from one evaluation. */
export interface DecisionFacts {
  readonly decisionId: string;
  readonly path: string;
  readonly input: unknown;
  /** The decision value; absent when undefined or on error. */
  readonly result?: unknown;
  readonly error?: { readonly code: string; readonly message: string };
  readonly bundles: Record<string, { revision: string }>;
  readonly evalNs: number;
  readonly requestedBy: string;
}

/** Stamps events with this process' labels and request counter. */
export class DecisionEventBuilder {
  private reqId = 0;
  private readonly labels: Record<string, string>;

  /**
   * @param labels configured labels; `id` (this instance) and `version` (portcullis) are added
   *   unless configured.
   */
  constructor(labels: Readonly<Record<string, string>>, version: string) {
    this.labels = { id: randomUUID(), version, ...labels };
  }

  /** A new event whose `input` and `result` are copies (masking never touches the live values). */
  build(f: DecisionFacts): DecisionEvent {
    this.reqId += 1;
    const event: DecisionEvent = {
      labels: this.labels,
      decision_id: f.decisionId,
      bundles: f.bundles,
      path: f.path,
      input: clone(f.input),
      requested_by: f.requestedBy,
      timestamp: rfc3339Nanos(nowEpochNs()),
      metrics: { timer_rego_query_eval_ns: f.evalNs },
      req_id: this.reqId,
    };
    if (f.result !== undefined) event.result = clone(f.result);
    if (f.error) event.error = { code: f.error.code, message: f.error.message };
    return event;
  }
}
