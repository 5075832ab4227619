import { createHmac, timingSafeEqual } from 'node:crypto';
import type { SecretRef, SignatureConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { log } from '../log.js';
import { SecretStore } from '../credentials/secrets.js';
import { MemoryStore, type SharedStore } from '../limits/store.js';
import { quote, ruleFor, unauthenticated, type IdentityClaim } from './claim.js';
import { SCHEMES, type Presented, type Scheme, type SchemeHeaderNames } from './signature/index.js';
import { REPEATED_HINT } from './signature/scheme.js';

export type { SignatureScheme } from './signature/index.js';

/** The parts of a request a signature covers. */
export interface SignedRequest {
  readonly headers: Readonly<Record<string, string>>;
  /** HTTP method as Envoy reports it; default the `:method` header. */
  readonly method?: string | undefined;
  /** Request path with query, as Envoy reports it (normalised); default the `:path` header. */
  readonly path?: string | undefined;
  readonly rawBody: Buffer | undefined;
  readonly bodyTruncated: boolean;
  readonly toolName: string | null;
  readonly nowMs: number;
}

interface Signer {
  readonly cfg: SignatureConfig;
  readonly secrets: readonly SecretRef[];
  readonly claim: IdentityClaim;
  readonly tools: ReadonlySet<string> | null;
  /** How long a used signature (or message id) stays refused, at least. */
  readonly replayWindowMs: number;
}

/** Signers of one scheme that read the same headers (e.g. several webhooks of one provider). */
interface SchemeGroup {
  readonly scheme: Scheme;
  readonly names: SchemeHeaderNames;
  readonly signers: Signer[];
}

/** Default replay window of a scheme that signs no timestamp (GitHub): one day. */
const UNTIMED_REPLAY_WINDOW_S = 86_400;
const RULE = ruleFor('signature');
/**
 * Replay-key tag of a scheme: Slack's and v1 keep the version tags their keys always had, so a
 * signature recorded before an upgrade (on a shared store) stays recorded after it.
 */
const REPLAY_TAG: Readonly<Partial<Record<Scheme['name'], string>>> = { slack: 'v0', v1: 'v1' };

/**
 * Seen signatures, shared by every verifier of the process: a configuration reload must not make
 * a signature seen before it acceptable again.
 */
const processReplayStore = new MemoryStore();

/**
 * HMAC request signatures of the schemes in {@link SCHEMES} (Slack, the gateway's v1, GitHub,
 * Stripe, Standard Webhooks). A signature is accepted only while its signed timestamp is within
 * the signer's window, and only once: every verified signature (the message id, for Standard
 * Webhooks) is recorded in a {@link SharedStore} and a request carrying one already recorded is
 * refused, whatever its method and path. Secrets come from the {@link SecretStore}, so a rotated
 * secret applies without a restart; a signer may list several (rotation), every one is tried.
 */
export class SignatureVerifier {
  /** Scheme groups by lower-case signature header. */
  private readonly byHeader: ReadonlyMap<string, readonly SchemeGroup[]>;
  /** Headers refused outright when their scheme's own header is absent (GitHub's SHA-1 header). */
  private readonly refused: ReadonlyMap<string, { readonly instead: string; readonly reason: string }>;
  private readonly names: readonly string[];

  /**
   * Registers every signing secret with the store now, so files are read at load, not per
   * request. `replay` records seen signatures (default: one in-memory store per process).
   * Throws an Error naming the signer when a signer's headers do not fit its scheme.
   */
  constructor(
    signers: readonly SignatureConfig[],
    private readonly secrets: SecretStore,
    private readonly replay: SharedStore = processReplayStore,
  ) {
    const byHeader = new Map<string, SchemeGroup[]>();
    const refused = new Map<string, { instead: string; reason: string }>();
    const names = new Set<string>();
    for (const cfg of signers) {
      const scheme = SCHEMES[cfg.scheme ?? 'slack'];
      const headerNames = namesOf(cfg, scheme);
      const refs = [...(cfg.secret ? [cfg.secret] : []), ...(cfg.secrets ?? [])];
      if (refs.length === 0) throw new Error(`signature signer "${cfg.id}" has no secret`);
      for (const ref of refs) {
        const problem = secrets.prepare(ref) ?? keyProblem(scheme, secrets, ref);
        if (problem) log.warn({ signer: cfg.id, secret: SecretStore.describe(ref), reason: problem }, 'signing secret not available; requests from this signer will be rejected until it is');
      }
      const list = byHeader.get(headerNames.signature) ?? [];
      byHeader.set(headerNames.signature, list);
      let group = list.find((g) => g.scheme === scheme && g.names.timestamp === headerNames.timestamp && g.names.id === headerNames.id);
      if (!group) list.push((group = { scheme, names: headerNames, signers: [] }));
      group.signers.push({
        cfg,
        secrets: refs,
        claim: { method: 'signature', provenBy: cfg.id, agent: cfg.agent, agentVersion: null, user: null, tenant: cfg.tenant ?? null, roles: cfg.roles ?? [] },
        tools: cfg.tools && cfg.tools.length > 0 ? new Set(cfg.tools) : null,
        replayWindowMs: (cfg.replay_window_s ?? (scheme.timestamped ? 0 : UNTIMED_REPLAY_WINDOW_S)) * 1000,
      });
      for (const n of [headerNames.signature, headerNames.timestamp, headerNames.id]) if (n) names.add(n);
      for (const [name, reason] of Object.entries(scheme.refused)) {
        refused.set(name, { instead: headerNames.signature, reason });
        names.add(name);
      }
    }
    this.byHeader = byHeader;
    this.refused = refused;
    this.names = [...names];
  }

  /** Whether any signer is configured. */
  get enabled(): boolean {
    return this.byHeader.size > 0;
  }

  /** Lower-case names of every header a signature scheme reads (stripped before the upstream). */
  get headerNames(): readonly string[] {
    return this.names;
  }

  /**
   * Verifies every signature present on the request (one per signature header). Returns an
   * empty list when no signature header is present; throws when a present signature does not
   * verify.
   */
  async verify(req: SignedRequest): Promise<IdentityClaim[]> {
    for (const [name, { instead, reason }] of this.refused) {
      if (req.headers[name] !== undefined && req.headers[instead] === undefined) throw unauthenticated('signature', reason);
    }
    const out: IdentityClaim[] = [];
    for (const [header, groups] of this.byHeader) {
      const value = req.headers[header];
      if (value === undefined) continue;
      out.push(await this.verifyHeader(header, groups, value.trim(), req));
    }
    return out;
  }

  private async verifyHeader(header: string, groups: readonly SchemeGroup[], value: string, req: SignedRequest): Promise<IdentityClaim> {
    let first: unknown = null;
    let matched = false;
    for (const group of groups) {
      const presented = group.scheme.read(value, req.headers, group.names);
      if (!presented) continue;
      matched = true;
      try {
        return await this.verifyGroup(group, presented, req);
      } catch (err) {
        first ??= err;
      }
    }
    if (matched) throw first;
    const forms = [...new Set(groups.map((g) => g.scheme.form))].join(' or ');
    const used = [...new Set(groups.map((g) => g.scheme.label))].join(' or ');
    const seen = Object.values(SCHEMES).map((s) => s.recognise(value)).find((l) => l !== null);
    if (seen && !groups.some((g) => g.scheme.label === seen)) {
      throw unauthenticated('signature', `header ${header} carries a ${seen} signature; the signers of this header use ${used}: it must be ${forms}`);
    }
    throw unauthenticated('signature', `header ${header} must be ${forms}${value.includes(',') ? ` (${REPEATED_HINT})` : ''}; got ${quote(value, 24)}`);
  }

  private async verifyGroup(group: SchemeGroup, presented: Presented, req: SignedRequest): Promise<IdentityClaim> {
    const { scheme } = group;
    let candidates: readonly Signer[] = group.signers;
    if (presented.timestamp !== null) {
      const skewS = Math.abs(req.nowMs / 1000 - Number(presented.timestamp));
      candidates = candidates.filter((s) => skewS <= s.cfg.max_skew_s);
      if (candidates.length === 0) {
        const windowS = Math.max(...group.signers.map((s) => s.cfg.max_skew_s));
        throw unauthenticated('signature', `request timestamp is ${Math.round(skewS)}s away from the gateway clock; signed requests are accepted within ${windowS}s (replay window)`);
      }
    }

    const content = scheme.content(presented, { method: requestMethod(req), path: requestPath(req), body: signedBody(req) });
    let match: { signer: Signer; mac: Buffer } | null = null;
    let unavailable = false;
    // Every secret of every candidate is compared with every presented MAC, without stopping at
    // a match: the time taken says nothing about which one matched.
    for (const signer of candidates) {
      for (const ref of signer.secrets) {
        let key: Buffer;
        try {
          key = scheme.key(this.secrets.get(ref));
        } catch {
          unavailable = true;
          continue;
        }
        const hmac = createHmac('sha256', key);
        for (const part of content) hmac.update(part);
        const mac = hmac.digest();
        for (const presentedMac of presented.macs) {
          const equal = timingSafeEqual(mac, presentedMac);
          match = equal && match === null ? { signer, mac } : match;
        }
      }
    }
    if (!match) {
      if (unavailable) {
        throw new GatewayError('unavailable', 'a request signing secret is not available; the signature cannot be verified', { rule: RULE });
      }
      throw unauthenticated('signature', `the request signature in ${group.names.signature} does not match: it must be ${scheme.covers}`);
    }
    const { signer } = match;
    if (signer.tools && (req.toolName === null || !signer.tools.has(req.toolName))) {
      throw new GatewayError('forbidden', `signer "${signer.cfg.id}" may not call ${req.toolName === null ? 'this route' : `tool "${req.toolName}"`}`, { rule: RULE });
    }
    await this.useOnce(signer, group, presented, match.mac, req.nowMs);
    return signer.claim;
  }

  /**
   * Records what makes this request one-time, or refuses it as a replay: the message id for
   * Standard Webhooks (its specification says to deduplicate by id), the verified MAC for the
   * others. The MAC, not the request line, since most schemes sign neither method nor path.
   * Kept until the signed timestamp leaves the window (plus a second of rounding), or for the
   * signer's replay window when that is longer (always, for a scheme without a timestamp).
   */
  private async useOnce(signer: Signer, group: SchemeGroup, presented: Presented, mac: Buffer, nowMs: number): Promise<void> {
    const untilStale = presented.timestamp === null ? 0 : (Number(presented.timestamp) + signer.cfg.max_skew_s) * 1000 - nowMs + 1000;
    const ttlMs = Math.max(untilStale, signer.replayWindowMs);
    const what = presented.id !== null ? `id\u0000${presented.id}` : `${REPLAY_TAG[group.scheme.name] ?? group.scheme.name}\u0000${mac.toString('base64')}`;
    let fresh: boolean;
    try {
      fresh = await this.replay.setIfAbsent(`sig\u0000${signer.cfg.id}\u0000${what}`, ttlMs);
    } catch (err) {
      // An unreachable shared store is said in this verifier's terms; other refusals pass as they are.
      if (err instanceof GatewayError && err.rule !== 'store.unavailable') throw err;
      throw new GatewayError('unavailable', 'seen request signatures cannot be checked right now; retry later', { rule: RULE, retryAfterS: 1, cause: err });
    }
    if (!fresh) {
      const windowS = Math.round(ttlMs / 1000);
      throw unauthenticated(
        'signature',
        presented.id !== null
          ? `message id ${quote(presented.id, 60)} in ${group.names.id ?? 'the id header'} was already delivered; each message id is accepted once (remembered for at least ${windowS}s)`
          : `this request signature was already used; every signed request must be signed anew (a signature is accepted once, and remembered for at least ${windowS}s)`,
      );
    }
  }
}

/** The header names a signer reads: its own, else its scheme's documented ones. */
function namesOf(cfg: SignatureConfig, scheme: Scheme): SchemeHeaderNames {
  const d = scheme.defaults;
  if (d.timestamp === null && cfg.timestamp_header !== undefined) {
    throw new Error(`signature signer "${cfg.id}": scheme ${scheme.name} has no timestamp header (${scheme.name === 'stripe' ? 'the timestamp is t= inside the signature header' : 'no timestamp is signed'}); remove timestamp_header`);
  }
  if (d.id === null && cfg.id_header !== undefined) {
    throw new Error(`signature signer "${cfg.id}": scheme ${scheme.name} signs no message id; remove id_header`);
  }
  return {
    signature: (cfg.signature_header ?? d.signature).toLowerCase(),
    timestamp: d.timestamp === null ? null : (cfg.timestamp_header ?? d.timestamp).toLowerCase(),
    id: d.id === null ? null : (cfg.id_header ?? d.id).toLowerCase(),
  };
}

/** Why a secret that is available cannot be a key of the scheme (never the secret itself). */
function keyProblem(scheme: Scheme, secrets: SecretStore, ref: SecretRef): string | null {
  try {
    scheme.key(secrets.get(ref));
    return null;
  } catch (err) {
    return err instanceof GatewayError ? 'not readable' : (err as Error).message;
  }
}

function requestMethod(req: SignedRequest): string {
  return (req.method ?? req.headers[':method'] ?? '').toUpperCase();
}

function requestPath(req: SignedRequest): string {
  return req.path ?? req.headers[':path'] ?? '';
}

/** The exact bytes that were signed, or a denial when the gateway did not see all of them. */
function signedBody(req: SignedRequest): Buffer {
  if (req.bodyTruncated) {
    throw unauthenticated('signature', 'the request body was truncated before it reached the gateway, so its signature cannot be verified; send a smaller body');
  }
  if (req.rawBody) return req.rawBody;
  const length = req.headers['content-length'];
  if (length !== undefined && length.trim() !== '0') {
    throw unauthenticated('signature', 'the request body was not forwarded to the gateway, so its signature cannot be verified');
  }
  return Buffer.alloc(0);
}
