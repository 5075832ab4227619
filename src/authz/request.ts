/**
 * The subset of Envoy's `envoy.service.auth.v3.CheckRequest` the gateway reads, as decoded by
 * proto-loader with lowerCamelCase (protojson) names, longs as strings, bytes as Buffers.
 */

/** `envoy.config.core.v3.Address` (socket form only). */
export interface ProtoAddress {
  socketAddress?: { address?: string; portValue?: number };
}

/** `AttributeContext.Peer`. */
export interface ProtoPeer {
  address?: ProtoAddress;
  service?: string;
  labels?: Record<string, string>;
  principal?: string;
  certificate?: string;
}

/** `AttributeContext.HttpRequest`. */
export interface ProtoHttpRequest {
  id?: string;
  method?: string;
  headers?: Record<string, string>;
  path?: string;
  host?: string;
  scheme?: string;
  query?: string;
  fragment?: string;
  size?: string;
  protocol?: string;
  body?: string;
  rawBody?: Buffer;
}

/** `AttributeContext`. */
export interface ProtoAttributeContext {
  source?: ProtoPeer;
  destination?: ProtoPeer;
  request?: {
    time?: { seconds?: string; nanos?: number };
    http?: ProtoHttpRequest;
  };
  contextExtensions?: Record<string, string>;
  metadataContext?: unknown;
  routeMetadataContext?: unknown;
  tlsSession?: { sni?: string };
}

/** `CheckRequest`. */
export interface ProtoCheckRequest {
  attributes?: ProtoAttributeContext;
}
