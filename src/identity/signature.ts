import { createHmac, timingSafeEqual } from 'node:crypto';
import type { SignatureConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { log } from '../log.js';
import { SecretStore } from '../credentials/secrets.js';
import { quote, ruleFor, unauthenticated, type IdentityClaim } from './claim.js';

/** The parts of a request a signature covers. */
export interface SignedRequest {
  readonly headers: Readonly<Record<string, string>>;
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

const SIGNATURE_RE = /^v0=([0-9a-f]{64})$/i;
const TIMESTAMP_RE = /^\d{1,12}$/;
const RULE = ruleFor('signature');

/**
 * Slack-style request signatures: `v0=` + hex(HMAC-SHA256(secret, "v0:" + timestamp + ":" + body)),
 * accepted only while the timestamp is within the signer's replay window. Secrets come from the
 * {@link SecretStore}, so a rotated secret applies without a restart.
 */
export class SignatureVerifier {
  private readonly groups: readonly HeaderGroup[];

  /** Registers every signing secret with the store now, so files are read at load, not per request. */
  constructor(signers: readonly SignatureConfig[], private readonly secrets: SecretStore) {
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
  verify(req: SignedRequest): IdentityClaim[] {
    const out: IdentityClaim[] = [];
    for (const group of this.groups) {
      const signature = req.headers[group.signatureHeader];
      if (signature === undefined) continue;
      out.push(this.verifyGroup(group, signature, req));
    }
    return out;
  }

  private verifyGroup(group: HeaderGroup, signature: string, req: SignedRequest): IdentityClaim {
    const sigMatch = SIGNATURE_RE.exec(signature.trim());
    if (!sigMatch) throw unauthenticated('signature', `header ${group.signatureHeader} must be "v0=" followed by 64 hex characters`);
    const presented = Buffer.from((sigMatch[1] as string).toLowerCase(), 'hex');

    const timestamp = req.headers[group.timestampHeader]?.trim();
    if (timestamp === undefined || timestamp === '') {
      throw unauthenticated('signature', `signed request is missing header ${group.timestampHeader}`);
    }
    if (!TIMESTAMP_RE.test(timestamp)) {
      throw unauthenticated('signature', `header ${group.timestampHeader} must be a Unix time in seconds, got ${quote(timestamp, 40)}`);
    }
    const skewS = Math.abs(req.nowMs / 1000 - Number(timestamp));
    const fresh = group.signers.filter((s) => skewS <= s.cfg.max_skew_s);
    if (fresh.length === 0) {
      const windowS = Math.max(...group.signers.map((s) => s.cfg.max_skew_s));
      throw unauthenticated('signature', `request timestamp is ${Math.round(skewS)}s away from the gateway clock; signed requests are accepted within ${windowS}s (replay window)`);
    }

    const body = signedBody(req);
    const prefix = `v0:${timestamp}:`;
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
      throw unauthenticated('signature', `the request signature in ${group.signatureHeader} does not match: it must be v0=hex(HMAC-SHA256(secret, "v0:" + timestamp + ":" + exact request body))`);
    }
    if (match.tools && (req.toolName === null || !match.tools.has(req.toolName))) {
      throw new GatewayError('forbidden', `signer "${match.cfg.id}" may not call ${req.toolName === null ? 'this route' : `tool "${req.toolName}"`}`, { rule: RULE });
    }
    return match.claim;
  }
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
