import { isIP } from 'node:net';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import type { ServerConfig } from './types.js';

/**
 * What the `server` section means for the two ports, and the rules the schema cannot express.
 *
 * The gRPC port is the trust boundary between Envoy and portcullis: whatever reaches it may ask
 * for tool credentials and write audit records. It is one of
 *  - `mtls`: TLS on `grpc_address:grpc_port`; the client (Envoy) must present a certificate that
 *    chains to `grpc_tls.ca` and carries one of `grpc_tls.client_sans`;
 *  - `unix`: a unix socket (`grpc_address: unix:///path`), file mode `grpc_socket_mode`, for the
 *    sidecar layout where Envoy shares the pod/host;
 *  - `plaintext`: TCP without authentication, only when `grpc_plaintext: true` says so, and only
 *    on a loopback address.
 * The admin port (metrics, health, reload) binds loopback by default and requires
 * `admin_token` when bound elsewhere.
 */

/** The resolved gRPC channel (file paths absolute). */
export type GrpcChannel =
  | { readonly kind: 'mtls'; readonly host: string; readonly port: number; readonly ca: string; readonly cert: string; readonly key: string; readonly clientSans: readonly string[] }
  | { readonly kind: 'unix'; readonly path: string; readonly mode: number }
  | { readonly kind: 'plaintext'; readonly host: string; readonly port: number };

/** A problem in the server section, located by its JSON path. */
export interface ServerProblem {
  readonly path: string;
  readonly message: string;
}

const UNIX_PREFIX = 'unix:';

/** Whether an address is a loopback IP literal (127.0.0.0/8 or ::1); names are not trusted to resolve there. */
export function isLoopback(address: string): boolean {
  const a = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (isIP(a) === 4) return a.startsWith('127.');
  if (isIP(a) === 6) return a === '::1' || a === '0:0:0:0:0:0:0:1';
  return false;
}

/** The socket path of a `unix:` address (`unix:///abs` or `unix:relative`), or null for TCP. */
function unixPath(address: string, baseDir: string): string | null {
  if (!address.startsWith(UNIX_PREFIX)) return null;
  const rest = address.slice(UNIX_PREFIX.length);
  const path = rest.startsWith('//') ? rest.slice(2) : rest;
  return isAbsolute(path) ? path : resolve(baseDir, path);
}

const CHANNEL_HELP =
  'set server.grpc_tls (mTLS, Envoy pinned by its certificate SAN), or grpc_address: unix:///path/to.sock (a unix socket), ' +
  'or grpc_plaintext: true with a loopback grpc_address (127.0.0.1)';

/**
 * Problems of the server section. `requireChannel` also reports a gRPC port with no channel
 * configured at all (what a deployable file must say; fragments parsed in isolation may omit it).
 */
export function serverProblems(server: ServerConfig, requireChannel: boolean): ServerProblem[] {
  const out: ServerProblem[] = [];
  const unix = server.grpc_address.startsWith(UNIX_PREFIX);
  if (unix) {
    if (server.grpc_address.length <= UNIX_PREFIX.length || server.grpc_address === 'unix://') {
      out.push({ path: '$.server.grpc_address', message: 'a unix socket address needs a path: unix:///path/to.sock' });
    }
    if (server.grpc_tls) out.push({ path: '$.server.grpc_tls', message: 'not used with a unix socket address (the socket file mode restricts who connects)' });
    if (server.grpc_plaintext) out.push({ path: '$.server.grpc_plaintext', message: 'not used with a unix socket address' });
  } else if (server.grpc_tls && server.grpc_plaintext) {
    out.push({ path: '$.server.grpc_plaintext', message: 'grpc_tls and grpc_plaintext are exclusive' });
  } else if (server.grpc_plaintext && !isLoopback(server.grpc_address)) {
    out.push({
      path: '$.server.grpc_address',
      message: `plaintext gRPC is only allowed on a loopback address, not "${server.grpc_address}": anything that reaches the port could ask for tool credentials; ${CHANNEL_HELP}`,
    });
  } else if (!server.grpc_tls && !server.grpc_plaintext && requireChannel) {
    out.push({ path: '$.server', message: `the gRPC port from Envoy must be authenticated: ${CHANNEL_HELP}` });
  }
  if (!isLoopback(server.admin_address) && !server.admin_token) {
    out.push({
      path: '$.server.admin_token',
      message: `required when admin_address ("${server.admin_address}") is not a loopback address: metrics and reload must not be open to the network`,
    });
  }
  return out;
}

/** The gRPC channel of a validated server section (see {@link serverProblems}); file paths resolved against `baseDir`. */
export function grpcChannel(server: ServerConfig, baseDir: string): GrpcChannel {
  const path = unixPath(server.grpc_address, baseDir);
  if (path !== null) return { kind: 'unix', path, mode: parseInt(server.grpc_socket_mode, 8) };
  if (server.grpc_tls) {
    const t = server.grpc_tls;
    return {
      kind: 'mtls',
      host: server.grpc_address,
      port: server.grpc_port,
      ca: resolve(baseDir, t.ca),
      cert: resolve(baseDir, t.cert),
      key: resolve(baseDir, t.key),
      clientSans: [...t.client_sans],
    };
  }
  if (!server.grpc_plaintext || !isLoopback(server.grpc_address)) {
    // Validation (serverProblems) refuses this at load; never fall back to an open port.
    throw new Error(`the gRPC port from Envoy must be authenticated: ${CHANNEL_HELP}`);
  }
  return { kind: 'plaintext', host: server.grpc_address, port: server.grpc_port };
}

/**
 * The CPU limit of this process' cgroup in whole cores (rounded up), or null when there is none:
 * in a container with a CPU limit, the cores the machine has are not the cores it may use.
 */
export function cgroupCpuLimit(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): number | null {
  const cores = (quota: number, period: number): number | null => (quota > 0 && period > 0 ? Math.max(1, Math.ceil(quota / period)) : null);
  try {
    // cgroup v2: "<quota> <period>" or "max <period>".
    const [quota, period] = read('/sys/fs/cgroup/cpu.max').trim().split(/\s+/);
    return quota === 'max' ? null : cores(Number(quota), Number(period));
  } catch {
    // Not v2; try v1 below.
  }
  try {
    return cores(Number(read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us').trim()), Number(read('/sys/fs/cgroup/cpu/cpu.cfs_period_us').trim()));
  } catch {
    return null;
  }
}

/**
 * How many worker processes `server.workers` asks for (`auto`: one per core this process may
 * use: the available cores, fewer under a container CPU limit).
 */
export function workerCount(server: Pick<ServerConfig, 'workers'>, cpuLimit: number | null = cgroupCpuLimit()): number {
  if (server.workers !== 'auto') return server.workers;
  const cores = Math.max(1, availableParallelism());
  return cpuLimit === null ? cores : Math.min(cores, cpuLimit);
}
