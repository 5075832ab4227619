import { errorBody, rpcErrorBody } from '../errors.js';
import type { HeaderValue } from '../credentials/inject.js';
import { toStruct, type ProtoStruct } from '../server/struct.js';
import type { CheckOutcome } from './check.js';
import { METADATA_KEY, sealHandoff, type HandoffKey } from './handoff.js';
import type { ProtoCheckRequest } from './request.js';
import type { OAuthResources } from '../mcp/oauth.js';
import { dropinResponse, type DropinCheckResponse } from './dropin.js';

export { AUTHZ_METADATA_NAMESPACE, METADATA_KEY } from './handoff.js';

/** `envoy.config.core.v3.HeaderValueOption` in proto-loader object form. */
interface HeaderOption {
  header: { key: string; value: string };
  appendAction: 'APPEND_IF_EXISTS_OR_ADD' | 'OVERWRITE_IF_EXISTS_OR_ADD';
}

/** `envoy.service.auth.v3.CheckResponse` in proto-loader object form. */
export interface CheckResponseObject {
  status: { code: number; message?: string };
  okResponse?: { headers: HeaderOption[]; headersToRemove: string[]; responseHeadersToAdd: HeaderOption[] };
  deniedResponse?: { status: { code: number }; headers: HeaderOption[]; body: string };
  dynamicMetadata: ProtoStruct;
}

const GRPC_OK = 0;
const GRPC_PERMISSION_DENIED = 7;
const GRPC_UNAUTHENTICATED = 16;

function opts(list: readonly HeaderValue[], appendAction: HeaderOption['appendAction']): HeaderOption[] {
  return list.map((h) => ({ header: { key: h.key, value: h.value }, appendAction }));
}

/**
 * Renders a Check outcome as Envoy's CheckResponse: allow with header mutations, or a denial
 * with the JSON error body (a JSON-RPC error when the request was JSON-RPC). The decision handed
 * to ext_proc is signed with `key` (see handoff.ts).
 */
export function toCheckResponse(outcome: CheckOutcome, key: HandoffKey): CheckResponseObject {
  // OPA-Envoy drop-in mode answers as the reference does: no hand-off (ext_proc is off there).
  if (outcome.dropin) return dropinResponse(outcome.dropin) as DropinCheckResponse as CheckResponseObject;
  const metadata: Record<string, unknown> = { [METADATA_KEY]: sealHandoff(outcome.metadata, key) };
  if (outcome.allowed && outcome.replay) {
    // Answered from the idempotency store: Envoy's ext_authz sends a "denied" response as a local
    // reply with whatever status it carries (2xx included), so the tool is not called again.
    const r = outcome.replay;
    return {
      status: { code: GRPC_PERMISSION_DENIED, message: 'idempotency_replayed' },
      deniedResponse: { status: { code: r.status }, headers: opts(r.headers, 'OVERWRITE_IF_EXISTS_OR_ADD'), body: r.body.toString('utf8') },
      dynamicMetadata: toStruct(metadata),
    };
  }
  if (outcome.allowed) {
    if (outcome.policyMetadata) Object.assign(metadata, { policy: outcome.policyMetadata });
    return {
      status: { code: GRPC_OK },
      okResponse: {
        headers: opts(outcome.setHeaders, 'OVERWRITE_IF_EXISTS_OR_ADD'),
        headersToRemove: [...outcome.removeHeaders],
        responseHeadersToAdd: opts(outcome.responseHeadersToAdd, 'APPEND_IF_EXISTS_OR_ADD'),
      },
      dynamicMetadata: toStruct(metadata),
    };
  }
  const { error, metadata: meta } = outcome;
  const headers: HeaderValue[] = [{ key: 'content-type', value: 'application/json' }];
  // A protected resource's 401 names its metadata document (RFC 9728 section 5.1).
  if (error.code === 'unauthenticated') headers.push({ key: 'www-authenticate', value: outcome.challenge ?? 'Bearer realm="portcullis"' });
  if (error.retryAfterS !== undefined) headers.push({ key: 'retry-after', value: String(error.retryAfterS) });
  // The limit that was hit, as draft-ietf-httpapi-ratelimit-headers describes it.
  headers.push(...(outcome.rateLimitHeaders ?? []));
  headers.push(...outcome.policyHeaders.filter((h) => h.key !== 'content-type' || outcome.policyBody !== null));
  const body =
    outcome.policyBody ??
    JSON.stringify(
      outcome.isJsonRpc
        ? rpcErrorBody(error, meta.request_id, { isJsonRpc: true, id: outcome.rpcId, batchIds: outcome.batchIds })
        : errorBody(error, meta.request_id),
    );
  return {
    status: { code: error.code === 'unauthenticated' ? GRPC_UNAUTHENTICATED : GRPC_PERMISSION_DENIED, message: error.code },
    deniedResponse: { status: { code: error.httpStatus }, headers: opts(headers, 'OVERWRITE_IF_EXISTS_OR_ADD'), body },
    dynamicMetadata: toStruct(metadata),
  };
}

/**
 * The local reply for a request to the OAuth protected resource metadata path (see
 * src/mcp/oauth.ts), or null for any other path. Envoy's ext_authz sends a denied response as a
 * local reply with its status, so the document goes back as a "denial" with status 200: the
 * request never reaches a route's upstream, whatever the route.
 */
export function wellKnownResponse(req: ProtoCheckRequest, oauth: OAuthResources): CheckResponseObject | null {
  const http = req.attributes?.request?.http ?? {};
  const headers = http.headers ?? {};
  const answer = oauth.answer(http.method ?? headers[':method'] ?? 'GET', http.path ?? headers[':path'] ?? '/');
  if (!answer) return null;
  if (answer.kind === 'document') {
    return {
      status: { code: GRPC_PERMISSION_DENIED, message: 'oauth_metadata' },
      deniedResponse: { status: { code: answer.status }, headers: opts(answer.headers, 'OVERWRITE_IF_EXISTS_OR_ADD'), body: answer.body },
      dynamicMetadata: toStruct({}),
    };
  }
  const requestId = headers['x-request-id'] ?? http.id ?? null;
  const replyHeaders: HeaderValue[] = [{ key: 'content-type', value: 'application/json' }, ...answer.headers];
  return {
    status: { code: GRPC_PERMISSION_DENIED, message: answer.error.code },
    deniedResponse: { status: { code: answer.error.httpStatus }, headers: opts(replyHeaders, 'OVERWRITE_IF_EXISTS_OR_ADD'), body: JSON.stringify(errorBody(answer.error, requestId)) },
    dynamicMetadata: toStruct({}),
  };
}
