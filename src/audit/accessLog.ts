import { toValue, type ProtoStruct } from '../server/struct.js';

/**
 * What Envoy's access log may print about a request, handed over as ext_authz dynamic metadata
 * under its own key, beside (not inside) the decision handed to ext_proc: the access log reads
 * `%DYNAMIC_METADATA(envoy.filters.http.ext_authz:portcullis_log:path)%`.
 */

/** Key in ext_authz's dynamic metadata namespace. */
export const ACCESS_LOG_KEY = 'portcullis_log';

/** Fields for the access log; every value is already free of secrets. */
export interface AccessLogFields {
  /** The request path after {@link import('./record.js').redactPath}. */
  readonly path: string;
}

/** Adds the access log fields to a CheckResponse's dynamic metadata struct. */
export function addAccessLogFields(metadata: ProtoStruct, fields: AccessLogFields): void {
  metadata.fields[ACCESS_LOG_KEY] = toValue({ path: fields.path });
}
