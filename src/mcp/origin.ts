import { GatewayError } from '../errors.js';
import type { ToolConfig } from '../config/types.js';

/**
 * Origin / Host allow-list of an MCP tool, against DNS rebinding: a web page whose name was made
 * to resolve to the gateway must not drive an MCP server through an agent's browser. The
 * transport spec asks servers to validate `Origin`; the tool behind the gateway cannot (Envoy
 * rewrites the Host it sees), so the Check does, before policy.
 *
 * - `Origin` absent passes (non-browser clients send none); present, it must be listed in
 *   `mcp.allowed_origins` (`scheme://host[:port]`, or `*` for any). The default list is empty:
 *   any browser origin is refused.
 * - `Host` (`:authority`) is checked only when `mcp.allowed_hosts` is set: `name` (any port),
 *   `name:port`, `*.suffix` (any subdomain), or `*`.
 */

/** The compiled allow-list of one tool. */
export interface TransportGuard {
  /** Throws a 403 `forbidden` GatewayError when the request's Origin or Host is not allowed. */
  check(headers: Readonly<Record<string, string>>, host: string | undefined): void;
}

interface HostRule {
  readonly name: string;
  readonly port: string | null;
  readonly suffix: boolean;
}

/** `scheme://host[:port]` with default ports dropped and the host lower-cased; null when not an origin. */
export function normalizeOrigin(value: string): string | null {
  const v = value.trim();
  if (v === 'null') return 'null';
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    return null;
  }
  // An origin is scheme, host and port only: a path, credentials or query make it something else.
  if (url.host === '' || url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '' || (url.pathname !== '/' && url.pathname !== '')) return null;
  return `${url.protocol}//${url.host}`;
}

/** Splits `name[:port]` (IPv6 in brackets) into a lower-cased name and a port; null when malformed. */
export function splitHost(value: string): { name: string; port: string | null } | null {
  const v = value.trim().toLowerCase();
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9*](?:[a-z0-9.-]*[a-z0-9])?\.?|\*)(?::(\d{1,5}))?$/.exec(v);
  if (!m) return null;
  const name = m[1] as string;
  return { name: name.endsWith('.') ? name.slice(0, -1) : name, port: m[2] ?? null };
}

function hostRule(entry: string): HostRule {
  const parts = splitHost(entry);
  if (!parts) throw new Error(`mcp.allowed_hosts: "${entry}" is not a host name, host:port, *.suffix or *`);
  const suffix = parts.name.startsWith('*.');
  return { name: suffix ? parts.name.slice(1) : parts.name, port: parts.port, suffix };
}

function hostAllowed(rules: readonly HostRule[], host: string): boolean {
  const h = splitHost(host);
  if (!h) return false;
  return rules.some((r) => {
    if (r.port !== null && r.port !== h.port) return false;
    if (r.name === '*') return true;
    return r.suffix ? h.name.endsWith(r.name) && h.name.length > r.name.length : h.name === r.name;
  });
}

function refused(what: string, message: string): GatewayError {
  return new GatewayError('forbidden', message, { rule: `mcp.${what}` });
}

/**
 * Compiles a tool's allow-list (at configuration load). Throws a descriptive Error for an entry
 * that is not an origin or host.
 */
export function compileTransportGuard(tool: ToolConfig): TransportGuard {
  const mcp = tool.mcp;
  const origins = new Set<string>();
  let anyOrigin = false;
  for (const entry of mcp?.allowed_origins ?? []) {
    if (entry === '*') {
      anyOrigin = true;
      continue;
    }
    const o = normalizeOrigin(entry);
    if (o === null) throw new Error(`tool "${tool.name}": mcp.allowed_origins: "${entry}" is not an origin (scheme://host[:port])`);
    origins.add(o);
  }
  const hosts = mcp?.allowed_hosts?.map(hostRule) ?? null;
  return {
    check(headers, host) {
      const origin = headers['origin'];
      if (origin !== undefined && !anyOrigin) {
        const o = normalizeOrigin(origin);
        if (o === null || !origins.has(o)) {
          throw refused('origin', `requests from origin ${JSON.stringify(origin.slice(0, 200))} may not call MCP tool "${tool.name}" (not in its allowed origins); a browser page cannot reach it from there`);
        }
      }
      if (hosts !== null) {
        const h = host ?? headers[':authority'] ?? headers['host'] ?? '';
        if (!hostAllowed(hosts, h)) {
          throw refused('host', `MCP tool "${tool.name}" is not served under host ${JSON.stringify(h.slice(0, 200))}; call it under one of its allowed host names`);
        }
      }
    },
  };
}

/** Guards per tool configuration (built once per configuration load). */
const guards = new WeakMap<ToolConfig, TransportGuard>();

/** The compiled allow-list of `tool` (compiled on first use of that configuration object). */
export function transportGuard(tool: ToolConfig): TransportGuard {
  let g = guards.get(tool);
  if (!g) {
    g = compileTransportGuard(tool);
    guards.set(tool, g);
  }
  return g;
}
