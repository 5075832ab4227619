import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { GatewayConfig } from '../config/types.js';
import { BundleService } from './bundleService.js';
import { openDecisionLogger, type DecisionLogger } from './decisionLogger.js';
import { PolicyEngine } from './engine.js';
import { compileVerifier, type BundleVerifier } from './signatures.js';

/**
 * Opening the policy side of a configuration: the engine with its bundle source (file or
 * bundle service) and signing keys, the decision logger, and the problems `portcullis check`
 * reports.
 */

/** Key that changes when any policy setting the engine depends on changes. */
export function policySettings(config: GatewayConfig): string {
  const p = config.policy;
  return JSON.stringify({
    bundle: p.bundle ? resolve(config.base_dir, p.bundle) : null,
    data: p.data ? resolve(config.base_dir, p.data) : null,
    decision: p.decision,
    name: p.bundle_name,
    signing: p.signing ?? null,
    service: p.bundle_service ?? null,
    extra: extraDecisions(config),
  });
}

/** Decision paths the bundle must also have (OPA-Envoy drop-in mode decides at its own path). */
function extraDecisions(config: GatewayConfig): string[] {
  return config.opa_envoy?.enabled ? [config.opa_envoy.path] : [];
}

function verifierOf(config: GatewayConfig): BundleVerifier | null {
  return config.policy.signing ? compileVerifier(config.policy.signing, config.base_dir) : null;
}

/**
 * Opens the policy engine for a configuration. From a file, the first load must succeed; from a
 * bundle service, the engine opens at once and is not ready until the first good bundle arrives.
 */
export async function openPolicyEngine(config: GatewayConfig, watch: boolean): Promise<PolicyEngine> {
  const p = config.policy;
  const verifier = verifierOf(config);
  const svc = p.bundle_service;
  const remote = svc
    ? new BundleService({
        url: svc.url,
        headers: svc.headers,
        timeoutMs: svc.timeout_s * 1000,
        minDelayMs: svc.polling.min_delay_seconds * 1000,
        maxDelayMs: Math.max(svc.polling.min_delay_seconds, svc.polling.max_delay_seconds) * 1000,
        longPollS: svc.polling.long_polling_timeout_seconds ?? null,
        verifier,
      })
    : null;
  const engine = await PolicyEngine.open({
    ...(p.bundle && !remote ? { bundlePath: resolve(config.base_dir, p.bundle) } : {}),
    dataPath: p.data ? resolve(config.base_dir, p.data) : undefined,
    decision: p.decision,
    extraDecisions: extraDecisions(config),
    watch,
    verifier,
    remote,
    bundleName: p.bundle_name,
  });
  // Give the service one request timeout to deliver: a reload that switches to a service then
  // swaps in a serving engine, not one that denies until its first poll returns.
  if (svc && watch && !engine.status().ready) await firstLoad(engine, svc.timeout_s * 1000);
  return engine;
}

function firstLoad(engine: PolicyEngine, maxWaitMs: number): Promise<void> {
  return new Promise((done) => {
    const timer = setTimeout(done, maxWaitMs);
    timer.unref();
    engine.onReload((s) => {
      if (!s.ready) return;
      clearTimeout(timer);
      done();
    });
  });
}

/** Names of identity headers that carry credentials (API keys, request signatures). */
function credentialHeaders(value: unknown, out: Set<string> = new Set()): Set<string> {
  if (Array.isArray(value)) for (const v of value) credentialHeaders(v, out);
  else if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      if (typeof v === 'string' && /(^|_)(api_key|signature)_header$/.test(k)) out.add(v);
      else credentialHeaders(v, out);
    }
  }
  return out;
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * The decision logger of the configuration in force, kept across reloads while
 * `decision_logs` does not change (so buffered events and the instance id survive).
 */
export class DecisionLogs {
  private logger: DecisionLogger | null = null;
  private key: string | null = null;

  /** Opens (or keeps) the logger for `config` and attaches it to `policy`. */
  apply(config: GatewayConfig, policy: PolicyEngine): void {
    const key = JSON.stringify([config.decision_logs ?? null, config.base_dir, [...credentialHeaders(config.identity)]]);
    if (key !== this.key) {
      const next = openDecisionLogger(config.decision_logs, config.base_dir, packageVersion(), [...credentialHeaders(config.identity)]);
      void this.logger?.close();
      this.logger = next;
      this.key = key;
    }
    policy.setDecisionLog(this.logger);
  }

  /** Writes out what the sinks buffer and stops them. */
  async close(): Promise<void> {
    await this.logger?.close();
    this.logger = null;
  }
}

/**
 * What `portcullis check` reports about an engine it opened without watching: a bundle service
 * whose one fetch brought no loadable bundle (unreachable, unsigned, tampered...). Problems of a
 * bundle file (signature, missing built-ins with their call sites) already fail the open.
 */
export function policyProblems(engine: PolicyEngine): string[] {
  const status = engine.status();
  return status.ready ? [] : [status.lastError ?? 'no policy is loaded'];
}
