import { createHmac, timingSafeEqual } from 'node:crypto';
import type { SignatureConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { log } from '../log.js';
import { SecretStore } from '../credentials/secrets.js';
import { MemoryStore, type SharedStore } from '../limits/store.js';
import { quote, ruleFor, unauthenticated, type IdentityClaim } from './claim.js';

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
  readonly claim: IdentityClaim;
  readonly tools: ReadonlySet<string> | null;
}

/** Signers that share a signature/timestamp header pair (e.g. several webhooks of one provider). */
interface HeaderGroup {
  readonly signatureHeader: string;
  readonly timestampHeader: string;
  readonly signers: readonly Signer[];
}

/**
 * Signature schemes. `slack` (`v0`) covers timestamp and body only, as Slack signs: it cannot
 * bind the method or path, so a signature is accepted once (replay store) and only for the
 * first request it arrives with. `v1` adds the method and path to what is signed, for senders
 * that can compute it: `v1=` + hex(HMAC-SHA256(secret, "v1:" + timestamp + ":" + METHOD + ":" +
 * path + ":" + body)).
 */
export type SignatureScheme = 'slack' | 'v1';

const VERSION_OF: Readonly<Record<SignatureScheme, string>> = { slack: 'v0', v1: 'v1' };
const SIGNATURE_RE = /^(v[01])=([0-9a-f]{64})$/i;
const TIMESTAMP_RE = /^\d{1,12}$/;
const RULE = ruleFor('signature');

/**
 * Seen signatures, shared by every verifier of the process: a configuration reload must not make
 * a signature seen before it acceptable again.
 */
const processReplayStore = new MemoryStore();

/**
 * HMAC request signatures: Slack's `v0=` + hex(HMAC-SHA256(secret, "v0:" + timestamp + ":" +
 * body)), or the `v1` scheme that also signs method and path (see {@link SignatureScheme}).
 * A signature is accepted only while its timestamp is within the signer's window, and only once:
 * every verified signature is recorded in a {@link SharedStore} until its window closes, and a
 * request carrying one already recorded is refused, whatever its method and path. Secrets come
 * from the {@link SecretStore}, so a rotated secret applies without a restart.
 */
export class SignatureVerifier {
  private readonly groups: readonly HeaderGroup[];

  /**
   * Registers every signing secret with the store now, so files are read at load, not per
   * request. `replay` records seen signatures (default: one in-memory store per process).
   */
  constructor(
    signers: readonly SignatureConfig[],
    private readonly secrets: SecretStore,
    private readonly replay: SharedStore = processReplayStore,
  ) {
    const groups = new Map<string, { signatureHeader: string; timestampHeader: string; signers: Signer[] }>();
    for (const cfg of signers) {
      const problem = secrets.prepare(cfg.secret);
      if (problem) log.warn({ signer: cfg.id, secret: SecretStore.describe(cfg.secret), reason: problem }, 'signing secret not available; requests from this signer will be rejected until it is');
      const signatureHeader = cfg.signature_header.toLowerCase();
      const timestampHeader = cfg.timestamp_header.toLowerCase();
      const key = `${signatureHeader}\n${timestampHeader}`;
      let group = groups.get(key);
      if (!group) groups.set(key, (group = { signatureHeader, timestampHeader, signers: [] }));
      group.signers.push({
        cfg,
        claim: { method: 'signature', provenBy: cfg.id, agent: cfg.agent, agentVersion: null, user: null, tenant: cfg.tenant ?? null, roles: cfg.roles ?? [] },
        tools: cfg.tools && cfg.tools.length > 0 ? new Set(cfg.tools) : null,
      });
    }
    this.groups = [...groups.values()];
  }

  /** Whether any signer is configured. */
  get enabled(): boolean {
    return this.groups.length > 0;
  }

  /** Lower-case names of every signature and timestamp header. */
  get headerNames(): readonly string[] {
    return this.groups.flatMap((g) => [g.signatureHeader, g.timestampHeader]);
  }

  /**
   * Verifies every signature present on the request (one per header pair). Returns an empty
   * list when no signature header is present; throws when a present signature does not verify.
   */
  async verify(req: SignedRequest): Promise<IdentityClaim[]> {
    const out: IdentityClaim[] = [];
    for (const group of this.groups) {
      const signature = req.headers[group.signatureHeader];
      if (signature === undefined) continue;
      out.push(await this.verifyGroup(group, signature, req));
    }
    return out;
  }

  private async verifyGroup(group: HeaderGroup, signature: string, req: SignedRequest): Promise<IdentityClaim> {
    const sigMatch = SIGNATURE_RE.exec(signature.trim());
    if (!sigMatch) throw unauthenticated('signature', `header ${group.signatureHeader} must be "v0=" or "v1=" followed by 64 hex characters`);
    const version = (sigMatch[1] as string).toLowerCase();
    const presented = Buffer.from((sigMatch[2] as string).toLowerCase(), 'hex');

    const timestamp = req.headers[group.timestampHeader]?.trim();
    if (timestamp === undefined || timestamp === '') {
      throw unauthenticated('signature', `signed request is missing header ${group.timestampHeader}`);
    }
    if (!TIMESTAMP_RE.test(timestamp)) {
      throw unauthenticated('signature', `header ${group.timestampHeader} must be a Unix time in seconds, got ${quote(timestamp, 40)}`);
    }
    const skewS = Math.abs(req.nowMs / 1000 - Number(timestamp));
    const ofVersion = group.signers.filter((s) => VERSION_OF[s.cfg.scheme ?? 'slack'] === version);
    if (ofVersion.length === 0) {
      const expected = [...new Set(group.signers.map((s) => VERSION_OF[s.cfg.scheme ?? 'slack']))].join('" or "');
      throw unauthenticated('signature', `header ${group.signatureHeader} carries a "${version}" signature; the signers of this header use "${expected}"`);
    }
    const fresh = ofVersion.filter((s) => skewS <= s.cfg.max_skew_s);
    if (fresh.length === 0) {
      const windowS = Math.max(...ofVersion.map((s) => s.cfg.max_skew_s));
      throw unauthenticated('signature', `request timestamp is ${Math.round(skewS)}s away from the gateway clock; signed requests are accepted within ${windowS}s (replay window)`);
    }

    const body = signedBody(req);
    const prefix = version === 'v1' ? `v1:${timestamp}:${requestMethod(req)}:${requestPath(req)}:` : `v0:${timestamp}:`;
    let match: Signer | null = null;
    let unavailable = false;
    // Every candidate secret is tried, without stopping at a match.
    for (const signer of fresh) {
      let secret: string;
      try {
        secret = this.secrets.get(signer.cfg.secret);
      } catch {
        unavailable = true;
        continue;
      }
      const mac = createHmac('sha256', secret).update(prefix, 'utf8').update(body).digest();
      const equal = timingSafeEqual(mac, presented);
      match = equal && match === null ? signer : match;
    }
    if (!match) {
      if (unavailable) {
        throw new GatewayError('unavailable', 'a request signing secret is not available; the signature cannot be verified', { rule: RULE });
      }
      const covered = version === 'v1' ? '"v1:" + timestamp + ":" + METHOD + ":" + path + ":" + exact request body' : '"v0:" + timestamp + ":" + exact request body';
      throw unauthenticated('signature', `the request signature in ${group.signatureHeader} does not match: it must be ${version}=hex(HMAC-SHA256(secret, ${covered}))`);
    }
    if (match.tools && (req.toolName === null || !match.tools.has(req.toolName))) {
      throw new GatewayError('forbidden', `signer "${match.cfg.id}" may not call ${req.toolName === null ? 'this route' : `tool "${req.toolName}"`}`, { rule: RULE });
    }
    await this.useOnce(match, version, presented, Number(timestamp), req.nowMs);
    return match.claim;
  }

  /**
   * Records the signature until its timestamp leaves the window (plus a second of rounding), or
   * refuses it as a replay. The key is the signature itself, not the request line: a v0
   * signature does not cover method and path, so it must not be accepted again elsewhere.
   */
  private async useOnce(signer: Signer, version: string, mac: Buffer, timestampS: number, nowMs: number): Promise<void> {
    const ttlMs = (timestampS + signer.cfg.max_skew_s) * 1000 - nowMs + 1000;
    let fresh: boolean;
    try {
      fresh = await this.replay.setIfAbsent(`sig\u0000${signer.cfg.id}\u0000${version}\u0000${mac.toString('base64')}`, ttlMs);
    } catch (err) {
      // An unreachable shared store is said in this verifier's terms; other refusals pass as they are.
      if (err instanceof GatewayError && err.rule !== 'store.unavailable') throw err;
      throw new GatewayError('unavailable', 'seen request signatures cannot be checked right now; retry later', { rule: RULE, retryAfterS: 1, cause: err });
    }
    if (!fresh) {
      throw unauthenticated('signature', `this request signature was already used; every signed request must be signed anew (within the ${signer.cfg.max_skew_s}s window a signature is accepted once)`);
    }
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
