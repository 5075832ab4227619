import type { Presented, Scheme, SchemeHeaderNames, SignedParts } from './scheme.js';
import { required, timestampOf } from './scheme.js';

const utf8 = (secret: string): Buffer => Buffer.from(secret, 'utf8');

/** `<version>=<64 hex>` exactly, the whole value (a repeated header, joined with ",", is not). */
function prefixedHex(value: string, version: string): Buffer | null {
  const m = new RegExp(`^${version}=([0-9a-f]{64})$`, 'i').exec(value);
  return m ? Buffer.from(m[1] as string, 'hex') : null;
}

function withTimestamp(mac: Buffer | null, headers: Readonly<Record<string, string>>, names: SchemeHeaderNames): Presented | null {
  if (!mac) return null;
  const ts = names.timestamp as string;
  return { macs: [mac], timestamp: timestampOf(required(headers, ts, 'the signed Unix time'), ts), id: null };
}

/** Slack's v0: timestamp and body; method and path are not signed. */
export const slack: Scheme = {
  name: 'slack',
  defaults: { signature: 'x-slack-signature', timestamp: 'x-slack-request-timestamp', id: null },
  form: '"v0=" followed by 64 hex characters',
  label: '"v0"',
  recognise: (value) => (/^v0=/i.test(value) ? '"v0"' : null),
  timestamped: true,
  read: (value, headers, names) => withTimestamp(prefixedHex(value, 'v0'), headers, names),
  key: utf8,
  content: (p: Presented, req: SignedParts) => [`v0:${p.timestamp as string}:`, req.body],
  covers: 'v0=hex(HMAC-SHA256(secret, "v0:" + timestamp + ":" + exact request body))',
  refused: {},
};

/** The gateway's own v1: timestamp, method, path and body. */
export const v1: Scheme = {
  name: 'v1',
  defaults: { signature: 'x-slack-signature', timestamp: 'x-slack-request-timestamp', id: null },
  form: '"v1=" followed by 64 hex characters',
  label: '"v1"',
  recognise: (value) => (/^v1=/i.test(value) ? '"v1"' : null),
  timestamped: true,
  read: (value, headers, names) => withTimestamp(prefixedHex(value, 'v1'), headers, names),
  key: utf8,
  content: (p: Presented, req: SignedParts) => [`v1:${p.timestamp as string}:${req.method}:${req.path}:`, req.body],
  covers: 'v1=hex(HMAC-SHA256(secret, "v1:" + timestamp + ":" + METHOD + ":" + path + ":" + exact request body))',
  refused: {},
};

/**
 * GitHub's X-Hub-Signature-256: the body only. No timestamp is signed and X-GitHub-Delivery is
 * not signed either, so the one replay protection possible is to accept each signature (that is,
 * each body under this secret) once, for as long as the signer's replay window says.
 */
export const github: Scheme = {
  name: 'github',
  defaults: { signature: 'x-hub-signature-256', timestamp: null, id: null },
  form: '"sha256=" followed by 64 hex characters',
  label: '"sha256"',
  recognise: (value) => (/^sha256=/i.test(value) ? '"sha256"' : /^sha1=/i.test(value) ? '"sha1" (GitHub\'s SHA-1, never accepted)' : null),
  timestamped: false,
  read: (value) => {
    const mac = prefixedHex(value, 'sha256');
    return mac ? { macs: [mac], timestamp: null, id: null } : null;
  },
  key: utf8,
  content: (_p: Presented, req: SignedParts) => [req.body],
  covers: 'sha256=hex(HMAC-SHA256(secret, exact request body))',
  refused: {
    'x-hub-signature': 'GitHub\'s SHA-1 signature (X-Hub-Signature, "sha1=...") is not accepted; the request must carry X-Hub-Signature-256 ("sha256=" + hex HMAC-SHA256 of the body)',
  },
};
