import { createHash, createHmac } from 'node:crypto';

/**
 * Request signing towards tools: on every allowed call to a tool with `request_signing`, the
 * gateway adds one header that lets the tool tell a call that passed the gateway from a direct one
 * and bind it to this request:
 *
 *   x-portcullis-signature: v1,t=<unix s>,id=<request id>,agent=<agent>,method=<METHOD>,path=<path>,body=<digest>,sig=<hex>
 *
 * Values are percent-encoded (`encodeURIComponent`); `sig` is hex(HMAC-SHA256(key, "portcullis-v1"
 * + "\n" + t + "\n" + id + "\n" + agent + "\n" + METHOD + "\n" + path + "\n" + body)) over the
 * decoded values, with the tool's signing key from the secrets configuration. What is covered:
 *
 * - `path` is the path with query as the agent sent it and the gateway authorized it (after
 *   Envoy's normalisation, before a route's prefix rewrite: `/tools/weather/forecast?city=Oslo`
 *   reaches the tool as `/weather/forecast?city=Oslo`).
 * - `body` is `sha256:<base64url of SHA-256 of the body>` when ext_authz saw the whole body (an
 *   empty body included), or `partial` when Envoy forwarded only its first bytes to the check
 *   (bodies over `with_request_body.max_request_bytes`): the body is then NOT covered and a tool
 *   that needs it covered must refuse such calls.
 * - `agent` is the verified agent (empty when the caller has none); `id` is Envoy's request id.
 *
 * The recipe a tool uses to verify it is in envoy/README.md.
 */

/** Version tag of the scheme (first item of the header, prefix of the signed string). */
export const SIGNING_VERSION = 'v1';
/** Header used when a tool's `request_signing.header` is not set. */
export const DEFAULT_SIGNING_HEADER = 'x-portcullis-signature';

/** The parts of one call that are signed. */
export interface SignedCall {
  readonly method: string;
  readonly path: string;
  readonly agent: string | null;
  readonly requestId: string | null;
  /** Body bytes as ext_authz forwarded them. */
  readonly body: Buffer | undefined;
  /** True when `body` is the whole body (ext_authz did not cut it). */
  readonly bodyComplete: boolean;
  readonly nowMs: number;
}

/** `sha256:<base64url>` of the body, or `partial` when only part of it was seen. */
export function bodyDigest(body: Buffer | undefined, complete: boolean): string {
  if (!complete) return 'partial';
  return `sha256:${createHash('sha256').update(body ?? Buffer.alloc(0)).digest('base64url')}`;
}

/** The string the HMAC covers, from already computed field values. */
export function signingString(f: { t: string; id: string; agent: string; method: string; path: string; body: string }): string {
  return [`portcullis-${SIGNING_VERSION}`, f.t, f.id, f.agent, f.method, f.path, f.body].join('\n');
}

/** The header value for `call`, signed with `key`. */
export function signCall(key: string, call: SignedCall): string {
  const fields = {
    t: String(Math.floor(call.nowMs / 1000)),
    id: call.requestId ?? '',
    agent: call.agent ?? '',
    method: call.method.toUpperCase(),
    path: call.path,
    body: bodyDigest(call.body, call.bodyComplete),
  };
  const sig = createHmac('sha256', key).update(signingString(fields), 'utf8').digest('hex');
  const items = Object.entries(fields).map(([k, v]) => `${k}=${encodeURIComponent(v)}`);
  return [SIGNING_VERSION, ...items, `sig=${sig}`].join(',');
}
