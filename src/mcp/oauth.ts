/**
 * OAuth discovery for MCP clients: each tool with an `oauth` block is an OAuth 2.0 protected
 * resource. The gateway publishes its protected resource metadata (RFC 9728) at the well-known
 * path derived from the configured resource, names that document in every 401 for the tool
 * (`WWW-Authenticate: Bearer resource_metadata="..."`), and accepts for the tool only JWTs issued
 * for that resource (RFC 8707 audience binding, see src/identity/jwt.ts).
 *
 * Everything is compiled once per configuration; a request only looks a path up in a map.
 */

import type { GatewayConfig, ToolConfig, ToolOAuthConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import type { HeaderValue } from '../credentials/inject.js';
import type { ResourceBinding } from '../identity/index.js';

/** Path prefix of RFC 9728 protected resource metadata. */
export const WELL_KNOWN_PREFIX = '/.well-known/oauth-protected-resource';

/** How long clients and caches may keep a metadata document (seconds). */
export const METADATA_MAX_AGE_S = 3600;

/** The HTTP methods the metadata path answers. */
const METADATA_METHODS = 'GET, HEAD, OPTIONS';

/**
 * What the gateway answers itself on the well-known path (no tool is called): the status,
 * headers and body of the local reply. Errors carry the gateway's error instead of a body.
 */
export type WellKnownAnswer =
  | { readonly kind: 'document'; readonly status: 200 | 204; readonly headers: readonly HeaderValue[]; readonly body: string }
  | { readonly kind: 'error'; readonly error: GatewayError; readonly headers: readonly HeaderValue[] };

/** One compiled protected resource (a tool with `oauth`). */
export interface ProtectedResource {
  /** Name of the tool. */
  readonly tool: string;
  /** The resource identifier, as configured (canonical form, checked at load). */
  readonly resource: string;
  /** Absolute URL of the metadata document, built from the configured resource only. */
  readonly metadataUrl: string;
  /** Path of the metadata document (RFC 9728 section 3.1). */
  readonly metadataPath: string;
  /** The metadata document, serialised once. */
  readonly document: string;
  /** `WWW-Authenticate` of a 401 without a token, and of one whose token failed. */
  readonly challenge: string;
  readonly invalidTokenChallenge: string;
  /** What the identity stage enforces for this tool's JWTs. */
  readonly binding: ResourceBinding;
}

/** Loopback host names an `http:` resource or authorization server may use. */
function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(\.\d{1,3}){3}$/.test(hostname);
}

/**
 * Why `value` is not an acceptable absolute URL for `what`, or null: https (http only on a
 * loopback host), no fragment, no query, no user info, written in canonical form (lower-case
 * scheme and host, no default port, no dot segments), so the string clients send back, e.g. as
 * a token audience, is exactly this one.
 */
export function urlProblem(value: string, what: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `${what} must be an absolute URL`;
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) {
    return `${what} must use https (http is accepted only for localhost, 127.0.0.0/8 and [::1])`;
  }
  if (value.includes('#')) return `${what} must not have a fragment`;
  if (value.includes('?')) return `${what} must not have a query`;
  if (url.username !== '' || url.password !== '') return `${what} must not carry user information`;
  // An origin alone may be written without the "/" of its empty path (https://mcp.example.com).
  const canonical = url.href === value || (url.pathname === '/' && url.href === `${value}/`);
  if (!canonical) return `${what} must be written in canonical form: ${JSON.stringify(url.pathname === '/' ? url.origin : url.href)}`;
  return null;
}

/** RFC 9728 section 3.1: the well-known string goes between the host and the path. */
function metadataPathOf(resource: URL): string {
  return resource.pathname === '/' ? WELL_KNOWN_PREFIX : `${WELL_KNOWN_PREFIX}${resource.pathname}`;
}

/** The RFC 9728 document of one resource: only what is configured. */
function metadataDocument(oauth: ToolOAuthConfig): string {
  const doc: Record<string, unknown> = {
    resource: oauth.resource,
    authorization_servers: [...oauth.authorization_servers],
  };
  if (oauth.scopes.length > 0) doc.scopes_supported = [...oauth.scopes];
  // Tokens are read from the Authorization header only (RFC 6750 section 2.1).
  doc.bearer_methods_supported = ['header'];
  if (oauth.resource_name !== undefined) doc.resource_name = oauth.resource_name;
  return JSON.stringify(doc);
}

/** `WWW-Authenticate` values for one resource (RFC 6750 section 3, RFC 9728 section 5.1). */
function challenges(metadataUrl: string, scopes: readonly string[]): { challenge: string; invalidTokenChallenge: string } {
  // The realm stays first: clients that only know the gateway's realm read the header as before.
  let base = `Bearer realm="portcullis", resource_metadata="${metadataUrl}"`;
  if (scopes.length > 0) base += `, scope="${scopes.join(' ')}"`;
  return { challenge: base, invalidTokenChallenge: `${base}, error="invalid_token"` };
}

/** A configuration problem of an `oauth` block, located by its JSON path. */
export interface OAuthProblem {
  readonly path: string;
  readonly message: string;
}

/**
 * The protected resources of a configuration, compiled at load. {@link OAuthResources.compile}
 * reports every problem at once; the lookups used per request never throw.
 */
export class OAuthResources {
  private constructor(
    private readonly byTool: ReadonlyMap<string, ProtectedResource>,
    private readonly byPath: ReadonlyMap<string, ProtectedResource>,
  ) {}

  /** No protected resources (no tool has `oauth`). */
  static readonly EMPTY = new OAuthResources(new Map(), new Map());

  /** Problems of every tool's `oauth` block: URLs, duplicates, authorization servers the gateway does not trust. */
  static problems(config: Pick<GatewayConfig, 'tools' | 'identity'>): OAuthProblem[] {
    return OAuthResources.build(config).problems;
  }

  /**
   * Compiles every tool's `oauth` block. Throws an Error listing every problem (with its path)
   * when one cannot be served as configured.
   */
  static compile(config: Pick<GatewayConfig, 'tools' | 'identity'>): OAuthResources {
    const { resources, problems } = OAuthResources.build(config);
    if (problems.length > 0) throw new Error(`invalid oauth configuration: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`);
    return resources;
  }

  private static build(config: Pick<GatewayConfig, 'tools' | 'identity'>): { resources: OAuthResources; problems: OAuthProblem[] } {
    const problems: OAuthProblem[] = [];
    const byTool = new Map<string, ProtectedResource>();
    const byPath = new Map<string, ProtectedResource>();
    const byResource = new Map<string, string>();
    const issuers = new Set(config.identity.jwt.map((j) => j.issuer));
    config.tools.forEach((tool: ToolConfig, i) => {
      const oauth = tool.oauth;
      if (!oauth) return;
      const where = `$.tools[${i}].oauth`;
      const before = problems.length;
      const resourceProblem = urlProblem(oauth.resource, 'resource');
      if (resourceProblem) problems.push({ path: `${where}.resource`, message: resourceProblem });
      oauth.authorization_servers.forEach((as, j) => {
        const p = urlProblem(as, 'an authorization server (its issuer identifier)');
        if (p) problems.push({ path: `${where}.authorization_servers[${j}]`, message: p });
        // Clients get their tokens where the document sends them: a server whose tokens the
        // gateway would refuse is a dead end.
        else if (!issuers.has(as)) problems.push({ path: `${where}.authorization_servers[${j}]`, message: `"${as}" is not a configured identity.jwt issuer, so its tokens would be refused` });
      });
      // A resource among an issuer's audiences would make its tokens good for every other tool.
      for (const j of config.identity.jwt) {
        if (j.audiences.includes(oauth.resource)) {
          problems.push({ path: `${where}.resource`, message: `"${oauth.resource}" is also an audience of issuer "${j.issuer}", so its tokens would be accepted by every tool; remove it from identity.jwt audiences` });
        }
      }
      if (problems.length > before) return;
      const other = byResource.get(oauth.resource);
      if (other !== undefined) {
        problems.push({ path: `${where}.resource`, message: `resource "${oauth.resource}" is also the resource of tool "${other}"` });
        return;
      }
      const url = new URL(oauth.resource);
      const metadataPath = metadataPathOf(url);
      const metadataUrl = `${url.origin}${metadataPath}`;
      const clash = byPath.get(metadataPath);
      if (clash) {
        problems.push({ path: `${where}.resource`, message: `its metadata path ${metadataPath} is also that of tool "${clash.tool}"` });
        return;
      }
      const resource: ProtectedResource = {
        tool: tool.name,
        resource: oauth.resource,
        metadataUrl,
        metadataPath,
        document: metadataDocument(oauth),
        ...challenges(metadataUrl, oauth.scopes),
        binding: Object.freeze({ resource: oauth.resource, issuers: Object.freeze([...oauth.authorization_servers]) }),
      };
      byResource.set(oauth.resource, tool.name);
      byTool.set(tool.name, resource);
      byPath.set(metadataPath, resource);
    });
    // The path clients compute from the resource URL drops a trailing slash (the MCP SDK does):
    // serve that form too, unless it is itself another resource's path.
    for (const r of [...byPath.values()]) {
      if (r.metadataPath.endsWith('/')) {
        const bare = r.metadataPath.slice(0, -1);
        if (!byPath.has(bare)) byPath.set(bare, r);
      }
    }
    return { resources: new OAuthResources(byTool, byPath), problems };
  }

  /** Whether any tool is a protected resource. */
  get enabled(): boolean {
    return this.byTool.size > 0;
  }

  /** The protected resource of a tool, if it has one. */
  forTool(name: string | null | undefined): ProtectedResource | undefined {
    return name ? this.byTool.get(name) : undefined;
  }

  /**
   * The `WWW-Authenticate` value of a 401 for `tool`: the resource metadata challenge for a
   * protected resource (with `error="invalid_token"` when a presented token failed), else null.
   */
  challengeFor(tool: string | null | undefined, invalidToken: boolean): string | null {
    const r = this.forTool(tool);
    if (!r) return null;
    return invalidToken ? r.invalidTokenChallenge : r.challenge;
  }

  /**
   * Answers a request for the well-known metadata path, or returns null when `path` is not under
   * it (the request then goes through the ordinary Check). Needs no identity: the document is
   * public and names only configured things.
   */
  answer(method: string, path: string): WellKnownAnswer | null {
    const end = path.search(/[?#]/);
    const bare = end === -1 ? path : path.slice(0, end);
    if (bare !== WELL_KNOWN_PREFIX && !bare.startsWith(`${WELL_KNOWN_PREFIX}/`)) return null;
    const found = this.byPath.get(bare);
    if (!found) {
      return {
        kind: 'error',
        error: new GatewayError('unknown_tool', 'no protected resource metadata is published at this path', { rule: 'oauth.no_metadata' }),
        headers: [],
      };
    }
    const cors: HeaderValue[] = [{ key: 'access-control-allow-origin', value: '*' }];
    const m = method.toUpperCase();
    if (m === 'GET' || m === 'HEAD') {
      return {
        kind: 'document',
        status: 200,
        headers: [{ key: 'content-type', value: 'application/json' }, { key: 'cache-control', value: `public, max-age=${METADATA_MAX_AGE_S}` }, ...cors],
        body: found.document,
      };
    }
    if (m === 'OPTIONS') {
      // CORS preflight of browser-based clients, which send MCP-Protocol-Version with the GET.
      return {
        kind: 'document',
        status: 204,
        headers: [
          ...cors,
          { key: 'access-control-allow-methods', value: METADATA_METHODS },
          { key: 'access-control-allow-headers', value: 'mcp-protocol-version' },
          { key: 'access-control-max-age', value: String(METADATA_MAX_AGE_S) },
        ],
        body: '',
      };
    }
    return {
      kind: 'error',
      error: new GatewayError('invalid_request', `the protected resource metadata is read with GET; ${m.slice(0, 16)} is not accepted here`, {
        rule: 'oauth.metadata_method',
        httpStatus: 405,
      }),
      headers: [{ key: 'allow', value: METADATA_METHODS }],
    };
  }
}

/** Compiled resources per configuration object: compiled once, at load, shared by every user of that configuration. */
const compiled = new WeakMap<object, OAuthResources>();

/**
 * The protected resources of a configuration, compiled on first use and remembered for that
 * configuration object. Throws (see {@link OAuthResources.compile}) when the configuration is invalid.
 */
export function oauthResources(config: Pick<GatewayConfig, 'tools' | 'identity'>): OAuthResources {
  let r = compiled.get(config);
  if (!r) {
    r = config.tools.some((t) => t.oauth) ? OAuthResources.compile(config) : OAuthResources.EMPTY;
    compiled.set(config, r);
  }
  return r;
}

/**
 * The `WWW-Authenticate` value of a 401 for `tool` under a configuration (see
 * {@link OAuthResources.challengeFor}), or null. Never throws: it is called while a denial is
 * rendered, and a configuration that cannot be compiled never got past load anyway.
 */
export function challengeFor(config: Pick<GatewayConfig, 'tools' | 'identity'>, tool: string | null | undefined, invalidToken: boolean): string | null {
  try {
    return oauthResources(config).challengeFor(tool, invalidToken);
  } catch {
    return null;
  }
}
