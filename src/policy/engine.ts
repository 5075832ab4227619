import { readFile, stat } from 'node:fs/promises';
import { fileStamp, watchPath, type FileWatch } from '../files/watch.js';
import { extname } from 'node:path';
import { loadPolicy, type LoadedPolicy } from '@open-policy-agent/opa-wasm';
import { Counter, Gauge } from 'prom-client';
import { parse as parseYaml } from 'yaml';
import { GatewayError } from '../errors.js';
import { log } from '../log.js';
import { registry } from '../metrics.js';
import { deepMerge, parseVerifiedBundle, readBundle, type PolicyBundle } from './bundle.js';
import { beginEvaluation, builtinProblems, HOST_BUILTINS } from './builtins.js';
import type { BundleService } from './bundleService.js';
import type { DecisionLogger } from './decisionLogger.js';
import type { BundleVerifier } from './signatures.js';
import { buildPolicyInput, type PolicyInput } from './input.js';
import { readDecision, type Decision } from './result.js';

/**
 * Quiet period after a change notification before reloading, so the several events of one write
 * cause one load. Short: calls wait for the reload (see {@link PolicyEngine.settled}).
 */
const DEBOUNCE_MS = 10;
/** Longest a call waits for a reload a change notification started before it is decided anyway. */
export const MAX_SETTLE_WAIT_MS = 500;

const reloads = new Counter({
  name: 'portcullis_policy_reloads_total',
  help: 'Policy bundle/data loads by result (success, failure)',
  labelNames: ['result'] as const,
  registers: [registry],
});
const info = new Gauge({
  name: 'portcullis_policy_info',
  help: 'Version of the policy currently serving (value is always 1)',
  labelNames: ['version'] as const,
  registers: [registry],
});
const evalErrors = new Counter({
  name: 'portcullis_policy_evaluation_errors_total',
  help: 'Policy evaluations that failed closed, by kind (exception, malformed, undefined)',
  labelNames: ['kind'] as const,
  registers: [registry],
});

/** How to open a {@link PolicyEngine}. */
export interface PolicyEngineOptions {
  /** Wasm bundle built with `opa build -t wasm` (a file; unused with `remote`). */
  readonly bundlePath?: string;
  /** Bundle signing keys: every bundle must carry a valid `.signatures.json`. */
  readonly verifier?: BundleVerifier | null;
  /** Bundles come from this service instead of a file (the engine starts and closes it). */
  readonly remote?: BundleService | null;
  /** Name of the bundle in decision log events (`bundles.<name>.revision`). */
  readonly bundleName?: string;
  /** Optional JSON or YAML data document merged over the bundle's data. */
  readonly dataPath?: string | undefined;
  /** Decision path, e.g. `envoy/authz/allow`. */
  readonly decision: string;
  /** Further decision paths the bundle must have (OPA-Envoy drop-in mode, {@link PolicyEngine.evaluateAt}). */
  readonly extraDecisions?: readonly string[];
  /** Watch the files (change notification, polling as a fallback) and reload on change. */
  readonly watch: boolean;
}

/** Health of the engine, for `/readyz`, logs and the CLI. */
export interface PolicyStatus {
  /** A policy is loaded and evaluating. */
  readonly ready: boolean;
  /** Manifest revision, else `sha256:<12 hex>` of the bundle; `null` before the first load. */
  readonly version: string | null;
  /** Why the latest load failed; `null` after a successful one. */
  readonly lastError: string | null;
  /** ISO time of the last successful load. */
  readonly loadedAt: string | null;
}

/** A validated, ready-to-evaluate policy. */
interface Loaded {
  readonly policy: LoadedPolicy;
  readonly entrypoint: number;
  readonly version: string;
  /** `bundles` of decision log events. */
  readonly bundles: Record<string, { revision: string }>;
  /** Entrypoint of `system/log/mask` when the bundle was built with it. */
  readonly maskEntrypoint: number | null;
}

/** Decision path of OPA's decision log mask rule. */
const MASK_ENTRYPOINT = 'system/log/mask';

/** Version label of a bundle: manifest revision if set, else a short content hash. */
export function bundleVersion(bundle: PolicyBundle): string {
  const revision = bundle.manifest?.revision;
  return revision ? revision : `sha256:${bundle.sha256.slice(0, 12)}`;
}

/** Reads the optional data document (YAML is a superset of JSON; `.json` uses the JSON parser). */
async function readDataFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`policy data ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let value: unknown;
  try {
    value = extname(path).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new Error(`policy data ${path} cannot be parsed (${(err as Error).message})`);
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new Error(`policy data ${path} must be an object (mapping) at the top level`);
  return value as Record<string, unknown>;
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'string') return err;
  if (typeof err === 'object' && err !== null && typeof (err as { message?: unknown }).message === 'string') {
    return (err as { message: string }).message;
  }
  return String(err);
}

/** Input used to prove a new policy evaluates before it replaces the serving one. */
const SMOKE_INPUT: PolicyInput = buildPolicyInput({}, { identity: null, tool: null, mcp: null, body: null });

/**
 * OPA wasm policy engine. Loads the bundle (and optional data file), evaluates the decision
 * synchronously, and reloads when the files change: a new version is loaded, given data and
 * evaluated once before it replaces the serving one, so a broken bundle or data file keeps the
 * last good policy (and `status().lastError` says why). Fails closed: without a loaded policy,
 * or on any evaluation error, {@link evaluate} throws.
 */
export class PolicyEngine {
  private current: Loaded | null = null;
  private lastError: string | null = null;
  private loadedAt: string | null = null;
  private readonly listeners: ((s: PolicyStatus) => void)[] = [];
  /** File signatures taken just before the last load attempt read the files. */
  private seen: string[] = [];
  private watches: FileWatch[] = [];
  private debounce: NodeJS.Timeout | null = null;
  /** Set from a change notification until the reload it caused has finished. */
  private pending: Promise<void> | null = null;
  private settle: (() => void) | null = null;
  private reloading: Promise<PolicyStatus> | null = null;
  private reloadAgain = false;
  private closed = false;
  private decisionLog: DecisionLogger | null = null;

  /** Creates an engine with nothing loaded (`ready: false`); see {@link PolicyEngine.open}. */
  constructor(private readonly opts: PolicyEngineOptions) {}

  /** Loads the policy (the first load must succeed) and starts watching when asked to. */
  static async open(opts: PolicyEngineOptions): Promise<PolicyEngine> {
    const engine = new PolicyEngine(opts);
    if (opts.remote) {
      // From a service the policy arrives later: not ready (and denying) until it does.
      const remote = opts.remote;
      if (opts.watch) {
        remote.onBundle(() => engine.changed());
        remote.start();
        engine.watch();
      } else {
        // One fetch, one load (`portcullis check`).
        await remote.poll();
        await engine.reload();
      }
      return engine;
    }
    const status = await engine.reload();
    if (!status.ready) {
      engine.close();
      throw new GatewayError('internal', `cannot load policy: ${status.lastError ?? 'unknown error'}`, { rule: 'policy.load' });
    }
    if (opts.watch) engine.watch();
    return engine;
  }

  /**
   * Evaluates the decision for one input. Synchronous.
   * @throws GatewayError `unavailable` when no policy is loaded, `internal` when evaluation
   *   fails or the decision is malformed, `forbidden` when it is undefined.
   */
  evaluate(input: PolicyInput, decisionId?: string): Decision {
    const loaded = this.current;
    if (!loaded) {
      this.logDecision(decisionId, null, input, undefined, 0, { code: 'not_loaded', message: 'no policy is loaded' });
      throw new GatewayError('unavailable', 'no policy is loaded; denying by default', { rule: 'policy.not_loaded' });
    }
    let resultSet: unknown;
    const started = process.hrtime.bigint();
    try {
      beginEvaluation();
      resultSet = loaded.policy.evaluate(input, loaded.entrypoint);
    } catch (err) {
      evalErrors.inc({ kind: 'exception' });
      log.error({ err: errorText(err), policy_version: loaded.version }, 'policy evaluation failed; denying');
      this.logDecision(decisionId, loaded, input, undefined, Number(process.hrtime.bigint() - started), { code: 'eval_error', message: errorText(err) });
      throw new GatewayError('internal', 'policy evaluation failed; the call was denied', { rule: 'policy.error', cause: err });
    }
    const evalNs = Number(process.hrtime.bigint() - started);
    try {
      const value = firstResult(resultSet);
      this.logDecision(decisionId, loaded, input, value, evalNs, null);
      return readDecision(value, this.opts.decision);
    } catch (err) {
      evalErrors.inc({ kind: (err as GatewayError).rule === 'policy.undefined' ? 'undefined' : 'malformed' });
      throw err;
    }
  }

  /**
   * OPA-Envoy drop-in mode: evaluates the decision at `path` (an entrypoint the bundle was built
   * with) and returns its value as the policy produced it, `undefined` when undefined; reading
   * it is the caller's job (src/authz/dropin.ts), with the reference's rules.
   * @throws GatewayError `unavailable` when no policy is loaded, `internal` when the bundle has
   *   no such entrypoint or evaluation fails.
   */
  evaluateAt(input: Readonly<Record<string, unknown>>, path: string, decisionId?: string): unknown {
    const loaded = this.current;
    if (!loaded) {
      this.logDecision(decisionId, null, input, undefined, 0, { code: 'not_loaded', message: 'no policy is loaded' }, path);
      throw new GatewayError('unavailable', 'no policy is loaded; denying by default', { rule: 'policy.not_loaded' });
    }
    const entrypoints = loaded.policy.entrypoints as Record<string, number>;
    const entrypoint = Object.hasOwn(entrypoints, path) ? entrypoints[path] : undefined;
    if (typeof entrypoint !== 'number') {
      throw new GatewayError('internal', `the policy bundle has no entrypoint ${path}; build it with -e ${path}`, { rule: 'policy.entrypoint' });
    }
    let resultSet: unknown;
    const started = process.hrtime.bigint();
    try {
      beginEvaluation();
      resultSet = loaded.policy.evaluate(input, entrypoint);
    } catch (err) {
      evalErrors.inc({ kind: 'exception' });
      log.error({ err: errorText(err), policy_version: loaded.version }, 'policy evaluation failed; denying');
      this.logDecision(decisionId, loaded, input, undefined, Number(process.hrtime.bigint() - started), { code: 'eval_error', message: errorText(err) }, path);
      throw new GatewayError('internal', 'policy evaluation failed; the call was denied', { rule: 'policy.error', cause: err });
    }
    const value = firstResult(resultSet);
    this.logDecision(decisionId, loaded, input, value, Number(process.hrtime.bigint() - started), null, path);
    return value;
  }

  /**
   * Null when the serving policy reflects every change notified so far (the usual case, so the
   * request path checks this without awaiting). Otherwise a promise that resolves once the reload
   * a change notification started has finished, or after `maxWaitMs`: a call that arrives right
   * after a data file was replaced (a revocation) is decided by the new data, not the old.
   */
  settled(maxWaitMs = MAX_SETTLE_WAIT_MS): Promise<void> | null {
    const pending = this.pending;
    if (!pending) return null;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, maxWaitMs);
      timer.unref();
      void pending.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Current health. */
  status(): PolicyStatus {
    return {
      ready: this.current !== null,
      version: this.current?.version ?? null,
      lastError: this.lastError,
      loadedAt: this.loadedAt,
    };
  }

  /**
   * Sends an OPA decision log event for every decision evaluated with a decision id from now
   * on (null: stop). The engine does not own the logger: the caller closes it.
   */
  setDecisionLog(logger: DecisionLogger | null): void {
    this.decisionLog = logger;
  }

  private logDecision(
    decisionId: string | undefined,
    loaded: Loaded | null,
    input: unknown,
    result: unknown,
    evalNs: number,
    error: { code: string; message: string } | null,
    path: string = this.opts.decision,
  ): void {
    const logger = this.decisionLog;
    if (!logger || decisionId === undefined) return;
    const mask = loaded?.maskEntrypoint ?? null;
    logger.record(
      {
        decisionId,
        path,
        input,
        ...(result !== undefined ? { result } : {}),
        ...(error ? { error } : {}),
        bundles: loaded?.bundles ?? {},
        evalNs,
      },
      loaded && mask !== null
        ? (event) => {
            beginEvaluation();
            return firstResult(loaded.policy.evaluate(event, mask));
          }
        : null,
    );
  }

  /** Registers a callback run after every load attempt (success or failure). */
  onReload(cb: (s: PolicyStatus) => void): void {
    this.listeners.push(cb);
  }

  /**
   * Loads bundle and data now and swaps them in if they validate; otherwise keeps the serving
   * policy and records the error. Never throws. A call made while a load is running joins it
   * and makes it load once more, so the result reflects the files as they were at the call.
   */
  reload(): Promise<PolicyStatus> {
    if (this.reloading) {
      this.reloadAgain = true;
      return this.reloading;
    }
    this.reloading = this.runReloads().finally(() => {
      this.reloading = null;
    });
    return this.reloading;
  }

  /** Stops watching files and timers; the loaded policy stays usable for in-flight calls. */
  close(): void {
    this.closed = true;
    this.opts.remote?.close();
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = null;
    for (const w of this.watches) w.close();
    this.watches = [];
    this.listeners.length = 0;
    this.settlePending();
  }

  /**
   * Watches the bundle and data files ({@link watchPath}: the directory, so an atomic replace is
   * seen) and reloads when one changes. Compared once with the signatures taken before the last
   * load read the files, so a change made between that load and the watch is not missed either.
   */
  private watch(): void {
    if (this.watches.length > 0 || this.closed) return;
    this.watches = this.paths().map((p) => watchPath(p, () => this.changed()));
    void this.signatures().then((now) => {
      if (now.some((sig, i) => sig !== this.seen[i])) this.changed();
    });
  }

  private paths(): string[] {
    return [this.opts.remote ? undefined : this.opts.bundlePath, this.opts.dataPath].filter((p): p is string => Boolean(p));
  }

  /** Identity of each watched file's current content (inode, size, times), or `missing`. */
  private signatures(): Promise<string[]> {
    return Promise.all(this.paths().map((p) => stat(p).then(fileStamp, () => 'missing')));
  }

  /** A watched file changed: calls wait (bounded) from now until the reload has run. */
  private changed(): void {
    if (this.closed) return;
    if (!this.pending) this.pending = new Promise<void>((resolve) => (this.settle = resolve));
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = null;
      void this.reload().then(() => {
        // Another change during the load started a new quiet period; its reload settles.
        if (!this.debounce) this.settlePending();
      });
    }, DEBOUNCE_MS);
    this.debounce.unref();
  }

  private settlePending(): void {
    const settle = this.settle;
    this.pending = null;
    this.settle = null;
    settle?.();
  }

  private async runReloads(): Promise<PolicyStatus> {
    let status: PolicyStatus;
    do {
      this.reloadAgain = false;
      status = await this.loadOnce();
    } while (this.reloadAgain && !this.closed);
    return status;
  }

  private async loadOnce(): Promise<PolicyStatus> {
    this.seen = await this.signatures();
    try {
      const next = await this.prepare();
      if (this.closed) return this.status();
      const previous = this.current?.version ?? null;
      this.current = next;
      this.lastError = null;
      this.loadedAt = new Date().toISOString();
      reloads.inc({ result: 'success' });
      info.reset();
      info.set({ version: next.version }, 1);
      log.info({ policy_version: next.version, previous_version: previous, bundle: this.source() }, 'policy loaded');
    } catch (err) {
      if (this.closed) return this.status();
      this.lastError = errorText(err);
      reloads.inc({ result: 'failure' });
      log.error(
        { err: this.lastError, bundle: this.source(), data: this.opts.dataPath ?? null, serving: this.current?.version ?? null },
        this.current ? 'policy reload failed; keeping the last good policy' : 'policy load failed',
      );
    }
    const status = this.status();
    for (const cb of this.listeners) {
      try {
        cb(status);
      } catch (err) {
        log.error({ err: errorText(err) }, 'policy reload listener failed');
      }
    }
    return status;
  }

  /** Where bundles come from, for messages. */
  private source(): string {
    return this.opts.remote?.url ?? this.opts.bundlePath ?? '(none)';
  }

  /** The bundle from the service (last accepted archive) or the file, signature checked. */
  private async readSource(): Promise<PolicyBundle> {
    const remote = this.opts.remote;
    if (!remote) {
      if (!this.opts.bundlePath) throw new Error('no policy bundle is configured');
      return readBundle(this.opts.bundlePath, this.opts.verifier ?? null);
    }
    const archive = remote.latest();
    if (!archive) throw new Error(`no policy bundle received yet from ${remote.url}${remote.error() ? ` (${remote.error()})` : ''}`);
    return parseVerifiedBundle(archive, remote.url, this.opts.verifier ?? null);
  }

  /** Reads, instantiates, feeds and smoke-tests a policy without touching the serving one. */
  private async prepare(): Promise<Loaded> {
    const [bundle, extra] = await Promise.all([this.readSource(), this.opts.dataPath ? readDataFile(this.opts.dataPath) : Promise.resolve(null)]);
    let policy: LoadedPolicy;
    try {
      policy = await loadPolicy(bundle.wasm, undefined, HOST_BUILTINS);
    } catch (err) {
      throw new Error(`policy bundle ${this.source()}: /policy.wasm cannot be instantiated (${errorText(err)})`);
    }
    // Fail at load, not on every request, when the policy needs a built-in no one provides.
    const missing = builtinProblems(policy, bundle.wasm);
    if (missing.length > 0) {
      throw new Error(`policy bundle ${this.source()} uses built-in functions the wasm runtime does not provide: ${missing.join('; ')}`);
    }
    const entrypoints = policy.entrypoints as Record<string, number>;
    const entrypoint = entrypoints[this.opts.decision];
    if (typeof entrypoint !== 'number' || !Object.hasOwn(entrypoints, this.opts.decision)) {
      const known = Object.keys(entrypoints).join(', ') || 'none';
      throw new Error(`policy bundle ${this.source()} has no entrypoint ${this.opts.decision} (it has: ${known}); build it with -e ${this.opts.decision}`);
    }
    for (const path of this.opts.extraDecisions ?? []) {
      if (!Object.hasOwn(entrypoints, path)) {
        throw new Error(`policy bundle ${this.opts.bundlePath} has no entrypoint ${path} (OPA-Envoy drop-in mode's opa_envoy.path); build it with -e ${path}`);
      }
    }
    try {
      policy.setData(extra ? deepMerge(bundle.data, extra) : bundle.data);
    } catch (err) {
      throw new Error(`policy data cannot be loaded into the policy (${errorText(err)})`);
    }
    let smoke: unknown;
    try {
      beginEvaluation();
      smoke = policy.evaluate(SMOKE_INPUT, entrypoint);
    } catch (err) {
      throw new Error(`policy ${this.opts.decision} fails to evaluate (${errorText(err)})`);
    }
    const value = firstResult(smoke);
    // An undefined decision is a legitimate default deny; a malformed one is a broken policy.
    if (value !== undefined) readDecision(value, this.opts.decision);
    const maskEntrypoint = Object.hasOwn(entrypoints, MASK_ENTRYPOINT) ? (entrypoints[MASK_ENTRYPOINT] ?? null) : null;
    const revision = bundle.manifest?.revision ?? '';
    return { policy, entrypoint, version: bundleVersion(bundle), bundles: { [this.opts.bundleName ?? 'authz']: { revision } }, maskEntrypoint };
  }
}

/** The decision value from an opa-wasm result set (`[{result}]`, or `[]` when undefined). */
function firstResult(resultSet: unknown): unknown {
  if (!Array.isArray(resultSet)) {
    throw new GatewayError('internal', 'policy evaluation returned no result set', { rule: 'policy.malformed' });
  }
  const first: unknown = resultSet[0];
  if (first === undefined) return undefined;
  return typeof first === 'object' && first !== null ? (first as { result?: unknown }).result : undefined;
}
