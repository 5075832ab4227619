import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { registry } from '../metrics.js';
import { log } from '../log.js';
import { CONTENT_TYPES, negotiate, render, type MetricFamily } from './exposition.js';
import type { PinsReply } from '../mcp/admin.js';

/** Readiness as reported on `/readyz`. */
export interface Readiness {
  ready: boolean;
  detail: Record<string, unknown>;
}

/** Result of a reload asked for on `POST /reload`. */
export interface ReloadResult {
  /** Whether the new configuration, policy and data are serving now. */
  readonly ok: boolean;
  /** Why not (the last good configuration keeps serving). */
  readonly reason: string | null;
  /** Policy version serving after the attempt. */
  readonly policyVersion: string | null;
}

/** The MCP pins endpoints as the admin port calls them (a primary asks its workers, hence promises). */
export interface AdminPins {
  list(): PinsReply | Promise<PinsReply>;
  /** `body` is the request body as text. */
  approve(body: string): PinsReply | Promise<PinsReply>;
}

/** What the admin port serves. */
export interface AdminOptions {
  readonly host: string;
  readonly port: number;
  /** Readiness now (a primary asks its workers, hence possibly a promise). */
  readonly readiness: () => Readiness | Promise<Readiness>;
  /** Reloads configuration, policy and data now (`POST /reload`). */
  readonly reload: () => Promise<ReloadResult>;
  /**
   * The bearer token required for `/metrics`, `POST /reload` and the details of `/readyz`;
   * null when none is configured (then the port must be on loopback, which config load enforces).
   * Read per request, so a rotated secret applies at once.
   */
  readonly token: () => string | null;
  /** MCP definition pins: `GET /mcp/pins`, `POST /mcp/pins/approve` (token required). */
  readonly mcpPins?: AdminPins;
  /** The `/metrics` families; default: this process' registry (a primary aggregates its workers'). */
  readonly metrics?: () => Promise<readonly MetricFamily[]>;
}

/** This process' metrics. */
async function ownMetrics(): Promise<readonly MetricFamily[]> {
  return (await registry.getMetricsAsJSON()) as unknown as MetricFamily[];
}

/** Largest body accepted on `POST /mcp/pins/approve`. */
const MAX_APPROVE_BYTES = 16 * 1024;

/** Routes the MCP pins endpoints; false when the path is not one of them. */
function servePins(req: IncomingMessage, res: ServerResponse, url: string, pins: AdminPins): boolean {
  if (url === '/mcp/pins') {
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end();
      return true;
    }
    void Promise.resolve(pins.list()).then(
      (r) => json(res, r.status, r.body),
      () => json(res, 500, { error: 'the pins could not be listed' }),
    );
    return true;
  }
  if (url !== '/mcp/pins/approve') return false;
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'POST' }).end();
    return true;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (c: Buffer) => {
    size += c.length;
    if (size <= MAX_APPROVE_BYTES) chunks.push(c);
  });
  req.on('end', () => {
    if (size > MAX_APPROVE_BYTES) return json(res, 413, { error: `the body is larger than ${MAX_APPROVE_BYTES} bytes` });
    void Promise.resolve(pins.approve(Buffer.concat(chunks).toString('utf8'))).then(
      (r) => json(res, r.status, r.body),
      () => json(res, 500, { approved: false, error: 'the approval could not be recorded' }),
    );
  });
  return true;
}

const JSON_TYPE = { 'content-type': 'application/json' };

function digest(v: string): Buffer {
  return createHash('sha256').update(v, 'utf8').digest();
}

/** Whether the request carries the configured bearer token (compared in constant time). */
function authorized(req: IncomingMessage, token: string | null): boolean {
  if (token === null) return true;
  const h = req.headers.authorization;
  if (typeof h !== 'string' || !/^bearer /i.test(h)) return false;
  return timingSafeEqual(digest(h.slice(7).trim()), digest(token));
}

function json(res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  res.writeHead(status, { ...JSON_TYPE, ...extra }).end(JSON.stringify(body));
}

function unauthorized(res: ServerResponse): void {
  json(res, 401, { error: 'a bearer token is required' }, { 'www-authenticate': 'Bearer realm="portcullis-admin"' });
}

/**
 * Admin HTTP endpoints: `/metrics` (Prometheus text, or OpenMetrics when the Accept header asks), `/healthz` (the process serves), `/readyz` (a
 * policy is loaded and the process is not draining), `POST /reload` (configuration, policy and
 * data now; a bad one keeps the last good one and the answer says why). With a token
 * configured, everything but `/healthz` and the bare readiness verdict of `/readyz` (which
 * probes need and which reveal nothing) requires it.
 */
export function startAdminServer(opts: AdminOptions): Promise<Server> {
  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    const token = opts.token();
    if (url === '/reload') {
      if (req.method !== 'POST') {
        res.writeHead(405, { allow: 'POST' }).end();
        return;
      }
      if (!authorized(req, token)) return unauthorized(res);
      // The body is not used; drain it so the connection can be reused.
      req.resume();
      opts.reload().then(
        (r) => json(res, r.ok ? 200 : 422, { reloaded: r.ok, reason: r.reason, policy_version: r.policyVersion }),
        (err: unknown) => {
          log.error({ err: (err as Error)?.message }, 'reload failed');
          json(res, 500, { reloaded: false, reason: 'reload failed' });
        },
      );
      return;
    }
    if (opts.mcpPins && url?.startsWith('/mcp/pins')) {
      if (!authorized(req, token)) return unauthorized(res);
      if (servePins(req, res, url, opts.mcpPins)) return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (url === '/metrics') {
      if (!authorized(req, token)) return unauthorized(res);
      const format = negotiate(req.headers.accept);
      (opts.metrics ?? ownMetrics)()
        .then((families) => res.writeHead(200, { 'content-type': CONTENT_TYPES[format], vary: 'Accept' }).end(render(families, format)))
        .catch((err: unknown) => {
          log.error({ err: (err as Error)?.message }, 'metrics could not be collected');
          res.writeHead(500).end();
        });
      return;
    }
    if (url === '/healthz') {
      res.writeHead(200, JSON_TYPE).end('{"status":"ok"}');
      return;
    }
    if (url === '/readyz') {
      const full = authorized(req, token);
      Promise.resolve()
        .then(() => opts.readiness())
        .then(
          (r) => json(res, r.ready ? 200 : 503, full ? { ready: r.ready, ...r.detail } : { ready: r.ready }),
          () => json(res, 503, { ready: false }),
        );
      return;
    }
    json(res, 404, { error: 'not found' });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve(server));
  });
}
