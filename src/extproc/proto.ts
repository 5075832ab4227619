/**
 * The subset of `envoy.service.ext_proc.v3` messages the gateway reads and writes, in
 * proto-loader object form (lowerCamelCase, bytes as Buffer, oneof name in `request`/`response`).
 */

/** One header as Envoy sends it (value in `rawValue` on current Envoy, `value` on older). */
export interface ProtoHeader {
  key: string;
  value?: string;
  rawValue?: Buffer;
}

/** `HttpHeaders`. */
export interface ProtoHttpHeaders {
  headers?: { headers?: ProtoHeader[] };
  endOfStream?: boolean;
}

/** `HttpBody`. */
export interface ProtoHttpBody {
  body?: Buffer;
  endOfStream?: boolean;
}

/** `ProcessingRequest`. */
export interface ProcessingRequest {
  request?: 'requestHeaders' | 'responseHeaders' | 'requestBody' | 'responseBody' | 'requestTrailers' | 'responseTrailers';
  requestHeaders?: ProtoHttpHeaders;
  responseHeaders?: ProtoHttpHeaders;
  requestBody?: ProtoHttpBody;
  responseBody?: ProtoHttpBody;
  metadataContext?: { filterMetadata?: Record<string, unknown> };
  observabilityMode?: boolean;
}

/** `HeaderValueOption` for mutations; values go in `rawValue`, which Envoy requires for ext_proc. */
export interface ProtoHeaderOption {
  header: { key: string; rawValue: Buffer };
  appendAction?: 'OVERWRITE_IF_EXISTS_OR_ADD' | 'APPEND_IF_EXISTS_OR_ADD';
  /** Legacy flag, which ext_proc reads (unset: overwrite). */
  append?: { value: boolean };
}

/** `HeaderMutation`. */
export interface ProtoHeaderMutation {
  setHeaders?: ProtoHeaderOption[];
  removeHeaders?: string[];
}

/** `CommonResponse`. */
export interface ProtoCommonResponse {
  status?: 'CONTINUE' | 'CONTINUE_AND_REPLACE';
  headerMutation?: ProtoHeaderMutation;
  bodyMutation?: { body: Buffer } | { clearBody: boolean };
}

/** `ProcessingMode` (only the body modes are overridden). */
export interface ProtoProcessingMode {
  requestHeaderMode?: 'DEFAULT' | 'SEND' | 'SKIP';
  responseHeaderMode?: 'DEFAULT' | 'SEND' | 'SKIP';
  requestBodyMode?: 'NONE' | 'STREAMED' | 'BUFFERED' | 'BUFFERED_PARTIAL';
  responseBodyMode?: 'NONE' | 'STREAMED' | 'BUFFERED' | 'BUFFERED_PARTIAL';
  requestTrailerMode?: 'DEFAULT' | 'SEND' | 'SKIP';
  responseTrailerMode?: 'DEFAULT' | 'SEND' | 'SKIP';
}

/** `ImmediateResponse`. */
export interface ProtoImmediateResponse {
  status: { code: number };
  headers?: ProtoHeaderMutation;
  body?: Buffer;
  details?: string;
}

/** `ProcessingResponse`. */
export interface ProcessingResponse {
  requestHeaders?: { response: ProtoCommonResponse };
  responseHeaders?: { response: ProtoCommonResponse };
  requestBody?: { response: ProtoCommonResponse };
  responseBody?: { response: ProtoCommonResponse };
  requestTrailers?: Record<string, never>;
  responseTrailers?: Record<string, never>;
  immediateResponse?: ProtoImmediateResponse;
  modeOverride?: ProtoProcessingMode;
}

/** Header list of a headers message as a lower-case map (last value wins, as HTTP/2 does). */
export function headerMap(h: ProtoHttpHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { key, value, rawValue } of h?.headers?.headers ?? []) {
    out[key.toLowerCase()] = rawValue && rawValue.length > 0 ? rawValue.toString('utf8') : (value ?? '');
  }
  return out;
}

/** A header mutation entry. */
export function setHeader(key: string, value: string): ProtoHeaderOption {
  return { header: { key, rawValue: Buffer.from(value, 'utf8') }, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' };
}
