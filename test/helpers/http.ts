import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { Stack } from './stack.js';

/** A reply read whole, its body also parsed as JSON when it is JSON. */
export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: unknown;
}

/** What {@link send} sends besides the path. */
export interface SendOptions {
  method?: string;
  /** Body bytes, sent as is. */
  body?: string | Buffer;
  /** Extra or replacing headers; a header set to `null` is not sent. */
  headers?: Record<string, string | null>;
  /** Send without content-length (chunked). */
  chunked?: boolean;
  /** A bearer token for `authorization`. */
  bearer?: string | null;
}

/**
 * One HTTP/1.1 request through the stack's Envoy with exact control of headers and body framing
 * (content-length, or chunked in two writes). A body defaults to `content-type: application/json`.
 */
export function send(stack: Stack, path: string, opts: SendOptions = {}): Promise<Reply> {
  const url = new URL(path, stack.envoyUrl);
  const headers: Record<string, string> = {};
  if (opts.bearer) headers.authorization = `Bearer ${opts.bearer}`;
  const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body, 'utf8');
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    // Explicit, since Node does not chunk a GET body by default.
    if (opts.chunked) headers['transfer-encoding'] = 'chunked';
    else headers['content-length'] = String(body.length);
  }
  for (const [k, v] of Object.entries(opts.headers ?? {})) {
    if (v === null) delete headers[k];
    else headers[k] = v;
  }
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: opts.method ?? (body === undefined ? 'GET' : 'POST'), headers, agent: false, timeout: 15_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown = null;
        try {
          json = JSON.parse(text);
        } catch {
          json = null;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    if (body !== undefined && opts.chunked) {
      const half = Math.floor(body.length / 2);
      req.write(body.subarray(0, half));
      req.end(body.subarray(half));
    } else {
      req.end(body);
    }
  });
}
