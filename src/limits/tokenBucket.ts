import { createHash } from 'node:crypto';
import { Counter } from 'prom-client';
import { GatewayError } from '../errors.js';
import { log } from '../log.js';
import { registry } from '../metrics.js';
import type { GatewayConfig, RateLimitDimension, RateLimitRule, ToolConfig } from '../config/types.js';
import type { Principal } from '../identity/types.js';
import type { HeaderValue } from '../credentials/inject.js';
import { MemoryStore, type BucketTake, type Store } from './store.js';
import { dimensionValue } from './dimensions.js';

const fallbacks = new Counter({
  name: 'portcullis_rate_limit_store_fallbacks_total',
  help: 'Rate limit checks the shared store could not answer, by limit and what was done (deny, allow_local)',
  labelNames: ['limit', 'action'] as const,
  registers: [registry],
});

/** One compiled limit: where its buckets live and how a call's key is built. */
interface CompiledRule {
  readonly rule: RateLimitRule;
  /** Key scope: `g` for global limits, `t:<tool>` for a tool's own. */
  readonly scope: string;
  /** The legacy `rate_limit` key: a missing user or tenant falls back to the agent. */
  readonly legacy: boolean;
}

/** The rate limit of one request: what it is, who asks, which calls it carries. */
export interface LimitRequest {
  readonly tool: ToolConfig;
  readonly principal: Principal | null;
  /** HTTP method of the request. */
  readonly httpMethod: string;
  /** JSON-RPC calls of the body (empty for other requests): each call takes one token. */
  readonly calls: readonly { readonly method: string; readonly tool: string | null }[];
  /** Whether the request changes state (the default fallback denies those). */
  readonly mutating: boolean;
}

/** Outcome of an allowed request: the IETF `RateLimit-Policy` / `RateLimit` headers. */
export interface LimitAllowed {
  readonly headers: readonly HeaderValue[];
}

/** `rate_limited` with the rate limit headers of the denial. */
export class RateLimitedError extends GatewayError {
  constructor(
    message: string,
    opts: ConstructorParameters<typeof GatewayError>[2],
    /** `RateLimit-Policy` and `RateLimit` of the limit that was hit. */
    readonly headers: readonly HeaderValue[],
  ) {
    super('rate_limited', message, opts);
  }
}

/** Name the legacy `tools[].rate_limit` key is checked under (`rule: limits.rate`). */
export const LEGACY_LIMIT_NAME = 'rate';

/** One log line per this interval while the store fails; the rest are counted. */
const STORE_LOG_INTERVAL_MS = 10_000;

/** Compiles and checks the rate limits of a configuration (throws on duplicate names). */
function compile(config: GatewayConfig): Map<string, CompiledRule[]> {
  const globals = (config.rate_limits ?? []).map((rule): CompiledRule => ({ rule, scope: 'g', legacy: false }));
  unique(globals.map((c) => c.rule.name), 'rate_limits');
  const byTool = new Map<string, CompiledRule[]>();
  for (const tool of config.tools) {
    const own = (tool.rate_limits ?? []).map((rule): CompiledRule => ({ rule, scope: `t:${tool.name}`, legacy: false }));
    if (tool.rate_limit) {
      const { rps, burst, key } = tool.rate_limit;
      own.push({ rule: { name: LEGACY_LIMIT_NAME, per: [key], rps, burst }, scope: `t:${tool.name}`, legacy: true });
    }
    const names = own.map((c) => c.rule.name);
    unique(names, `tools.${tool.name}.rate_limits (with rate_limit as "${LEGACY_LIMIT_NAME}")`);
    for (const n of names) if (globals.some((g) => g.rule.name === n)) throw new Error(`tools.${tool.name}.rate_limits: "${n}" is also a global rate limit; names must tell denials apart`);
    byTool.set(tool.name, [...globals, ...own]);
  }
  return byTool;
}

function unique(names: readonly string[], where: string): void {
  const seen = new Set<string>();
  for (const n of names) {
    if (seen.has(n)) throw new Error(`${where}: rate limit name "${n}" is used twice`);
    seen.add(n);
  }
}

function dimension(dim: RateLimitDimension, req: LimitRequest, call: LimitRequest['calls'][number] | null): string | null {
  if (dim === 'method') return call?.method ?? req.httpMethod.toUpperCase();
  return dimensionValue(dim, req.tool.name, req.principal, call?.tool ?? null);
}

/** Bounded store key: the values are hashed (they are caller-controlled and unbounded). */
function bucketKey(c: CompiledRule, values: readonly (string | null)[]): string {
  const digest = createHash('sha256').update(JSON.stringify(values)).digest('base64url');
  return `rl:${c.scope}:${c.rule.name}:${digest}`;
}

/** Seconds of a full refill: the window of the `RateLimit-Policy` quota. */
function windowS(rule: RateLimitRule): number {
  return Math.max(1, Math.ceil(rule.burst / rule.rps));
}

function headersFor(taken: readonly { c: CompiledRule; r: BucketTake }[]): HeaderValue[] {
  if (taken.length === 0) return [];
  // draft-ietf-httpapi-ratelimit-headers: a list of policies and of their current state.
  const policy = taken.map(({ c }) => `"${c.rule.name}";q=${c.rule.burst};w=${windowS(c.rule)}`).join(', ');
  const state = taken.map(({ c, r }) => `"${c.rule.name}";r=${r.remaining};t=${Math.ceil((r.allowed ? r.resetMs : r.retryAfterMs) / 1000)}`).join(', ');
  return [
    { key: 'ratelimit-policy', value: policy },
    { key: 'ratelimit', value: state },
  ];
}

/**
 * Rate limits by descriptor: one token bucket per limit and combination of its `per` values,
 * in the shared {@link Store} so every replica draws from the same buckets. Each JSON-RPC call
 * of a batch takes a token (a batch is no way around a limit). When the store cannot answer,
 * each limit does what it says (`on_store_error`): deny, or draw from a bucket of this replica
 * (`allow_local`); by default mutating calls are denied and read-only ones fall back.
 * Buckets outlive reloads: a config change must not hand every caller a fresh burst.
 */
export class RateLimiter {
  private readonly compiled = new WeakMap<GatewayConfig, Map<string, CompiledRule[]>>();
  /** Buckets used while the shared store is away (unused with the memory store). */
  private readonly local = new MemoryStore();
  private lastStoreLog = 0;
  private suppressed = 0;

  constructor(readonly store: Store = new MemoryStore()) {}

  /** Compiles a configuration's limits now (config load); throws on a configuration that cannot be told apart. */
  prepare(config: GatewayConfig): void {
    if (!this.compiled.has(config)) this.compiled.set(config, compile(config));
  }

  /**
   * Takes the request's tokens from every limit that applies; resolves with the headers of the
   * tightest, or rejects with {@link RateLimitedError} naming the limit that was hit (or
   * `unavailable` when a limit that denies without the store cannot be checked).
   */
  async check(config: GatewayConfig, req: LimitRequest): Promise<LimitAllowed> {
    this.prepare(config);
    const rules = this.compiled.get(config)?.get(req.tool.name) ?? [];
    if (rules.length === 0) return { headers: [] };
    const calls = req.calls.length > 0 ? req.calls : [null];
    const takes: { c: CompiledRule; key: string; cost: number }[] = [];
    for (const c of rules) {
      const costs = new Map<string, number>();
      for (const call of calls) {
        const values = c.rule.per.map((d) => dimension(d, req, call) ?? (c.legacy ? (req.principal?.agent ?? 'anonymous') : null));
        const key = bucketKey(c, values);
        costs.set(key, (costs.get(key) ?? 0) + 1);
      }
      for (const [key, cost] of costs) takes.push({ c, key, cost });
    }
    const results = await this.takeAll(takes, req.mutating);
    const taken = takes.map((t, i) => ({ c: t.c, cost: t.cost, r: results[i] as BucketTake }));
    const hit = taken.filter((t) => !t.r.allowed).sort((a, b) => b.r.retryAfterMs - a.r.retryAfterMs)[0];
    if (hit) {
      const { rule } = hit.c;
      const retryAfterS = Math.max(1, Math.ceil(hit.r.retryAfterMs / 1000));
      const per = rule.per.length > 0 ? `per ${rule.per.join(' and ')}` : 'for all callers';
      const batch = hit.cost > 1 ? ` (this request carries ${hit.cost} calls)` : '';
      const never = hit.cost > rule.burst ? `; it can never pass: send at most ${rule.burst} calls per request` : `; retry in ${retryAfterS} s`;
      throw new RateLimitedError(
        `rate limit "${rule.name}" of ${rule.rps}/s (burst ${rule.burst}) ${per} exceeded for tool "${req.tool.name}"${batch}${never}`,
        { retryAfterS, rule: `limits.${rule.name}`, details: { limit: rule.name, rps: rule.rps, burst: rule.burst, per: [...rule.per] } },
        headersFor([hit]),
      );
    }
    // The tightest limit first: what an agent should pace itself by.
    taken.sort((a, b) => a.r.remaining / a.c.rule.burst - b.r.remaining / b.c.rule.burst);
    return { headers: headersFor(taken.slice(0, 1)) };
  }

  /**
   * Every bucket of the request in one atomic step (one round trip): a request refused by one
   * limit costs nothing in the others. When the store cannot answer, a limit that denies
   * without it refuses the request; otherwise this replica's own buckets decide.
   */
  private async takeAll(takes: readonly { c: CompiledRule; key: string; cost: number }[], mutating: boolean): Promise<BucketTake[]> {
    const requests = takes.map((t) => ({ key: t.key, bucket: { capacity: t.c.rule.burst, ratePerS: t.c.rule.rps }, cost: t.cost }));
    try {
      return await this.store.takeAll(requests);
    } catch (err) {
      const rules = [...new Set(takes.map((t) => t.c.rule))];
      const actionOf = (r: RateLimitRule): 'deny' | 'allow_local' => r.on_store_error ?? (mutating ? 'deny' : 'allow_local');
      for (const r of rules) fallbacks.inc({ limit: r.name, action: actionOf(r) });
      const denying = rules.find((r) => actionOf(r) === 'deny');
      this.logStoreError(denying?.name ?? rules.map((r) => r.name).join(','), denying ? 'deny' : 'allow_local', err);
      if (denying) {
        throw new GatewayError('unavailable', `rate limit "${denying.name}" cannot be checked right now (the shared state store is unavailable), so the call is refused; retry shortly`, {
          rule: 'limits.store_unavailable',
          retryAfterS: 1,
          details: { limit: denying.name },
        });
      }
      return this.local.takeAllNow(requests);
    }
  }

  private logStoreError(limit: string, action: string, err: unknown): void {
    const now = Date.now();
    if (now - this.lastStoreLog < STORE_LOG_INTERVAL_MS) {
      this.suppressed++;
      return;
    }
    const cause = err instanceof GatewayError && err.cause instanceof Error ? err.cause.message : (err as Error)?.message;
    log.warn({ limit, action, cause, suppressed: this.suppressed, store: this.store.status() }, 'rate limit store unavailable');
    this.lastStoreLog = now;
    this.suppressed = 0;
  }
}
