import { unauthenticated } from '../claim.js';
import type { Presented, Scheme, SignedParts } from './scheme.js';
import { REPEATED_HINT, required, timestampOf } from './scheme.js';

/** Bounds the HMAC comparisons a list can ask for. */
const MAX_ENTRIES = 16;
/** `<version>,<base64>`: one comma, standard base64 alphabet. */
const ENTRY_RE = /^(v[0-9]+[a-z]*),([A-Za-z0-9+/]+={0,2})$/;
/** Canonical padded base64 of 32 bytes: anything else (base64url, no padding, trailing bits) is refused. */
const MAC_B64_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
/** Printable ASCII without ".", "," or spaces: "." would make `id.timestamp.body` ambiguous. */
const ID_RE = /^[\x21-\x2b\x2d\x2f-\x7e]{1,256}$/;
const SECRET_B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

const FORM = 'a space-separated list of "v1,<base64 HMAC-SHA256>"';

/**
 * Standard Webhooks (symmetric): `webhook-signature` lists `v1,<base64>` entries (several during
 * a rotation; entries of other versions, such as asymmetric `v1a`, are skipped), over
 * `webhook-id.webhook-timestamp.body`. The secret is `whsec_` + base64 of the key bytes.
 */
export const standardWebhooks: Scheme = {
  name: 'standard_webhooks',
  defaults: { signature: 'webhook-signature', timestamp: 'webhook-timestamp', id: 'webhook-id' },
  form: FORM,
  label: 'Standard Webhooks',
  recognise: (value) => (/^v[0-9]+[a-z]*,/.test(value) ? 'Standard Webhooks' : null),
  timestamped: true,
  read: (value, headers, names): Presented | null => {
    const entries = value.split(/ +/);
    if (!entries.every((e) => e.includes(',')) || !entries.some((e) => /^v[0-9]/.test(e))) return null;
    if (entries.length > MAX_ENTRIES) throw unauthenticated('signature', `header ${names.signature} lists more than ${MAX_ENTRIES} signatures`);
    const macs: Buffer[] = [];
    for (const e of entries) {
      const m = ENTRY_RE.exec(e);
      if (!m) {
        const why = e.split(',').length > 2 ? ` (${REPEATED_HINT})` : '';
        throw unauthenticated('signature', `header ${names.signature} must be ${FORM}; entry ${JSON.stringify(e.slice(0, 60))} is not "<version>,<base64>"${why}`);
      }
      if (m[1] !== 'v1') continue;
      if (!MAC_B64_RE.test(m[2] as string)) {
        throw unauthenticated('signature', `header ${names.signature}: a v1 entry must be the padded standard base64 of a 32-byte HMAC-SHA256 (44 characters)`);
      }
      macs.push(Buffer.from(m[2] as string, 'base64'));
    }
    if (macs.length === 0) throw unauthenticated('signature', `header ${names.signature} has no "v1," signature (only symmetric v1 signatures are accepted)`);
    const idHeader = names.id as string;
    const id = required(headers, idHeader, 'the signed message id');
    if (!ID_RE.test(id)) {
      const why = id.includes(',') ? ` (${REPEATED_HINT})` : '';
      throw unauthenticated('signature', `header ${idHeader} must be 1-256 printable characters without ".", "," or spaces${why}`);
    }
    const tsHeader = names.timestamp as string;
    return { macs, timestamp: timestampOf(required(headers, tsHeader, 'the signed Unix time'), tsHeader), id };
  },
  key: (secret) => {
    const b64 = secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret;
    if (!SECRET_B64_RE.test(b64)) throw new Error('a standard_webhooks secret must be "whsec_" followed by standard base64');
    const key = Buffer.from(b64, 'base64');
    if (key.length < 24 || key.length > 64) throw new Error('a standard_webhooks secret must decode to 24 to 64 bytes');
    return key;
  },
  content: (p: Presented, req: SignedParts) => [`${p.id as string}.${p.timestamp as string}.`, req.body],
  covers: 'v1,base64(HMAC-SHA256(base64-decoded secret, webhook-id + "." + webhook-timestamp + "." + exact request body))',
  refused: {},
};
