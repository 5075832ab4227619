/**
 * Caller headers a tool must never receive. Tools often sit behind, or were built for, an
 * authenticating proxy and believe the headers such proxies set; some frameworks let a header or
 * query parameter change the HTTP method. A caller could send any of them itself, so the gateway
 * removes them before the upstream, whatever the policy decided.
 */

/**
 * Identity asserted by authenticating proxies and platforms (exact names, lower case):
 * oauth2-proxy, Authelia/Authentik, Apache/nginx `REMOTE_USER` conventions, Grafana auth proxy,
 * Kong, Traefik/forward-auth, Google IAP and ESP/API Gateway, Azure App Service, AWS ALB,
 * Cloudflare Access, Tailscale, Pomerium, plus generic user/tenant headers.
 */
export const IDENTITY_HEADERS: readonly string[] = [
  // Generic and the gateway's long-standing list.
  'x-user',
  'x-user-id',
  'x-user-name',
  'x-user-email',
  'x-user-groups',
  'x-user-roles',
  'x-username',
  'x-email',
  'x-groups',
  'x-roles',
  'x-tenant',
  'x-tenant-id',
  'x-org-id',
  'x-account-id',
  'x-authenticated-user',
  'x-authenticated-userid',
  'x-authenticated-groups',
  'x-authenticated-scope',
  'x-remote-user',
  'x-remote-group',
  'x-remote-email',
  'remote-user',
  'remote-groups',
  'remote-name',
  'remote-email',
  'x-webauth-user',
  'x-webauth-email',
  'x-webauth-name',
  'x-webauth-groups',
  // oauth2-proxy and forward-auth proxies.
  'x-forwarded-user',
  'x-forwarded-email',
  'x-forwarded-preferred-username',
  'x-forwarded-groups',
  'x-forwarded-access-token',
  'x-auth-request-user',
  'x-auth-request-email',
  'x-auth-request-preferred-username',
  'x-auth-request-groups',
  'x-auth-request-access-token',
  'x-auth-user',
  'x-auth-email',
  // Kong.
  'x-consumer-id',
  'x-consumer-custom-id',
  'x-consumer-username',
  'x-consumer-groups',
  'x-credential-identifier',
  'x-anonymous-consumer',
  // Google IAP, Cloud Endpoints / API Gateway.
  'x-goog-authenticated-user-email',
  'x-goog-authenticated-user-id',
  'x-goog-iap-jwt-assertion',
  'x-endpoint-api-userinfo',
  'x-apigateway-api-userinfo',
  // Azure App Service authentication.
  'x-ms-client-principal',
  'x-ms-client-principal-id',
  'x-ms-client-principal-name',
  'x-ms-client-principal-idp',
  // Client certificates asserted by a TLS-terminating proxy.
  'x-forwarded-client-cert',
  'x-client-cert',
  'x-client-dn',
  'x-client-verify',
  'x-ssl-client-cert',
  'x-ssl-client-dn',
  'x-ssl-client-s-dn',
  'x-ssl-client-verify',
  'ssl-client-cert',
  'ssl-client-verify',
  // JWT payloads forwarded by other gateways.
  'x-jwt-assertion',
  'x-jwt-payload',
  'x-jwt-claims',
  'teleport-jwt-assertion',
];

/** Families of identity headers, matched by prefix (AWS ALB, Cloudflare Access, Azure tokens, ...). */
export const IDENTITY_HEADER_PREFIXES: readonly string[] = [
  'x-amzn-oidc-',
  'cf-access-',
  'x-ms-client-principal',
  'x-ms-token-',
  'x-pomerium-',
  'tailscale-user-',
  'x-vouch-',
  'x-auth-request-',
  'x-forwarded-client-',
];

/** Hints that make some frameworks treat a request as another HTTP method. */
export const METHOD_OVERRIDE_HEADERS: readonly string[] = ['x-http-method-override', 'x-http-method', 'x-method-override', 'x-original-method'];

/** Query parameter some frameworks read as the HTTP method. */
export const METHOD_OVERRIDE_PARAM = '_method';

/**
 * Whether a request target carries the method-override query parameter (any case, any
 * escaping of its name). Such a request is refused: the tool might run it as another method.
 */
export function hasMethodOverrideParam(target: string): boolean {
  const hash = target.indexOf('#');
  const t = hash === -1 ? target : target.slice(0, hash);
  const q = t.indexOf('?');
  if (q === -1) return false;
  for (const pair of t.slice(q + 1).split(/[&;]/)) {
    const eq = pair.indexOf('=');
    let name = eq === -1 ? pair : pair.slice(0, eq);
    if (name.includes('%') || name.includes('+')) {
      try {
        name = decodeURIComponent(name.replace(/\+/g, ' '));
      } catch {
        // An undecodable name cannot be "_method" to a framework either.
      }
    }
    if (name.trim().toLowerCase() === METHOD_OVERRIDE_PARAM) return true;
  }
  return false;
}

/** Headers that let a caller choose the host, path or client address a tool believes it saw. */
export const ROUTING_HEADERS: readonly string[] = [
  'x-forwarded-host',
  'x-forwarded-server',
  'x-forwarded-prefix',
  'x-forwarded-port',
  'forwarded',
  'x-original-url',
  'x-rewrite-url',
  'x-original-host',
  'x-host',
  'x-real-ip',
  'true-client-ip',
  'x-client-ip',
  'x-cluster-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
];

/** Every header name removed by default. */
export const DEFAULT_STRIPPED_HEADERS: readonly string[] = [...IDENTITY_HEADERS, ...METHOD_OVERRIDE_HEADERS, ...ROUTING_HEADERS];

/** Settings of {@link HeaderHygiene}. */
export interface HeaderHygieneOptions {
  /** Extra names to remove (`strip_headers`). */
  readonly strip: readonly string[];
  /** Extra prefixes to remove (`inspect.strip_header_prefixes`). */
  readonly stripPrefixes: readonly string[];
  /** Default names or prefixes to forward after all (`inspect.forward_headers`). */
  readonly forward: readonly string[];
  /** Headers identity verification consumed (credentials): always removed, never forwardable. */
  readonly credentials: readonly string[];
}

/**
 * The removal rules for one configuration, compiled once per (re)load. Only headers a request
 * actually carries need removing, so each allow names just those (a short list for Envoy).
 */
export class HeaderHygiene {
  private readonly names: ReadonlySet<string>;
  private readonly prefixes: readonly string[];

  constructor(opts: HeaderHygieneOptions) {
    const forward = new Set(opts.forward);
    this.names = new Set<string>([...DEFAULT_STRIPPED_HEADERS.filter((h) => !forward.has(h)), ...opts.strip, ...opts.credentials]);
    this.prefixes = [...IDENTITY_HEADER_PREFIXES.filter((p) => !forward.has(p)), ...opts.stripPrefixes];
  }

  /** Whether a header (lower-case name) never reaches a tool. */
  strips(name: string): boolean {
    if (this.names.has(name)) return true;
    for (const p of this.prefixes) if (name.startsWith(p)) return true;
    return false;
  }

  /** The names of `headers` to remove before the upstream. */
  removals(headers: Readonly<Record<string, string>>): string[] {
    const out: string[] = [];
    for (const name of Object.keys(headers)) if (this.strips(name)) out.push(name);
    return out;
  }
}
