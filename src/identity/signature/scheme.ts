import { unauthenticated } from '../claim.js';

/**
 * Signature schemes a signer may use:
 * - `slack`: Slack's `v0=` + hex(HMAC-SHA256(secret, "v0:" + timestamp + ":" + body)).
 * - `v1`: the gateway's own, which also signs method and path.
 * - `github`: GitHub's `X-Hub-Signature-256: sha256=` + hex(HMAC-SHA256(secret, body)); no timestamp is signed.
 * - `stripe`: `Stripe-Signature: t=<timestamp>,v1=<hex>[,v1=<hex>...]` over `timestamp + "." + body`.
 * - `standard_webhooks`: the Standard Webhooks `webhook-signature: v1,<base64> ...` over
 *   `webhook-id + "." + webhook-timestamp + "." + body`, with a `whsec_` base64 secret.
 */
export type SignatureScheme = 'slack' | 'v1' | 'github' | 'stripe' | 'standard_webhooks';

/** Header names a scheme reads; null where the scheme has no such header. */
export interface SchemeHeaderNames {
  readonly signature: string;
  readonly timestamp: string | null;
  readonly id: string | null;
}

/** What a request presents under one scheme, parsed and checked for form. */
export interface Presented {
  /** Every candidate MAC of the scheme's version (32 bytes each); one must match. */
  readonly macs: readonly Buffer[];
  /** The signed timestamp text exactly as sent, or null for a scheme that signs none. */
  readonly timestamp: string | null;
  /** The signed message id (standard_webhooks), else null. */
  readonly id: string | null;
}

/** The request parts a MAC may cover. */
export interface SignedParts {
  readonly method: string;
  readonly path: string;
  readonly body: Buffer;
}

/** One scheme: how its headers read and what its MAC covers. Stateless; secrets are passed in. */
export interface Scheme {
  readonly name: SignatureScheme;
  /** Documented header names, used when a signer does not name its own. */
  readonly defaults: SchemeHeaderNames;
  /** The header form, as told to a sender whose header is not of it. */
  readonly form: string;
  /** How a value of this scheme is named in messages (`"v0"`, `Stripe`, ...). */
  readonly label: string;
  /**
   * The label of a value that looks like one of this scheme's (a cheap test of its prefix), or
   * null: tells a sender which scheme it used when the header's signers use another.
   */
  recognise(value: string): string | null;
  /** Whether a timestamp is signed (and so a replay window applies). */
  readonly timestamped: boolean;
  /**
   * Parses the signature header value (and the scheme's other headers). Returns null when the
   * value is not of this scheme's form at all; throws `unauthenticated` when it is, but is
   * broken (missing timestamp, repeated element, malformed id), with a message naming the header.
   */
  read(value: string, headers: Readonly<Record<string, string>>, names: SchemeHeaderNames): Presented | null;
  /** The HMAC key from the configured secret text; throws a plain Error when it is not of the scheme's form. */
  key(secret: string): Buffer;
  /** The bytes signed, in order. */
  content(p: Presented, req: SignedParts): readonly (string | Buffer)[];
  /** What the MAC covers, for the mismatch message. */
  readonly covers: string;
  /** Headers of the scheme that are refused outright, with the reason (e.g. GitHub's SHA-1 header). */
  readonly refused: Readonly<Record<string, string>>;
}

/** Unix time in seconds, as schemes send it. */
export const TIMESTAMP_RE = /^\d{1,12}$/;
/** Lower-case or upper-case hex of a SHA-256 MAC. */
export const HEX_MAC_RE = /^[0-9a-f]{64}$/i;

/** A hint for the commas Envoy puts between the values of a repeated header. */
export const REPEATED_HINT = 'a header sent twice reaches the gateway as one value joined with ","';

/** Reads a required header of a scheme, refusing it when missing or empty. */
export function required(headers: Readonly<Record<string, string>>, name: string, what: string): string {
  const v = headers[name]?.trim();
  if (v === undefined || v === '') throw unauthenticated('signature', `signed request is missing header ${name} (${what})`);
  return v;
}

/** Checks a timestamp's form; the window is the verifier's to check. */
export function timestampOf(value: string, header: string): string {
  if (!TIMESTAMP_RE.test(value)) {
    const why = value.includes(',') ? ` (${REPEATED_HINT})` : '';
    throw unauthenticated('signature', `header ${header} must be a Unix time in seconds, got ${JSON.stringify(value.slice(0, 40))}${why}`);
  }
  return value;
}
