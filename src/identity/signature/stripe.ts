import { unauthenticated } from '../claim.js';
import type { Presented, Scheme, SignedParts } from './scheme.js';
import { HEX_MAC_RE, REPEATED_HINT, timestampOf } from './scheme.js';

/** More `v1` values than a rotation needs only costs HMAC comparisons. */
const MAX_V1 = 8;
const ELEMENT_RE = /^([a-z0-9_]+)=([^=,\s]*)$/;

const bad = (header: string, why: string): Error =>
  unauthenticated('signature', `header ${header} must be "t=<unix seconds>,v1=<64 hex>" (more v1 elements allowed, v0 ignored): ${why}`);

/**
 * Stripe's `Stripe-Signature: t=...,v1=...`: timestamp and body, one `t`, one or more `v1`
 * (several during a secret roll); `v0` (test-mode SHA-1 era) and unknown elements are ignored.
 * The secret is used as Stripe shows it (`whsec_...` text, not decoded).
 */
export const stripe: Scheme = {
  name: 'stripe',
  defaults: { signature: 'stripe-signature', timestamp: null, id: null },
  form: '"t=<unix seconds>,v1=<64 hex>"',
  label: 'Stripe',
  recognise: (value) => (/(^|,)t=/.test(value) ? 'Stripe' : null),
  timestamped: true,
  read: (value, _headers, names): Presented | null => {
    const elements = value.split(',');
    // Not Stripe's form at all: no "t=" element (another scheme's value in this header).
    if (!elements.some((e) => e.startsWith('t='))) return null;
    let t: string | null = null;
    const macs: Buffer[] = [];
    for (const e of elements) {
      const m = ELEMENT_RE.exec(e);
      if (!m) throw bad(names.signature, `element ${JSON.stringify(e.slice(0, 40))} is not key=value`);
      const [, k, v] = m as unknown as [string, string, string];
      if (k === 't') {
        if (t !== null) throw bad(names.signature, `it carries more than one t= element (${REPEATED_HINT})`);
        t = timestampOf(v, `${names.signature} (t=)`);
      } else if (k === 'v1') {
        if (!HEX_MAC_RE.test(v)) throw bad(names.signature, 'a v1 value is not 64 hex characters');
        if (macs.length === MAX_V1) throw bad(names.signature, `more than ${MAX_V1} v1 values`);
        macs.push(Buffer.from(v, 'hex'));
      }
    }
    if (macs.length === 0) throw bad(names.signature, 'it has no v1 signature (v0 is not accepted)');
    return { macs, timestamp: t, id: null };
  },
  key: (secret) => Buffer.from(secret, 'utf8'),
  content: (p: Presented, req: SignedParts) => [`${p.timestamp as string}.`, req.body],
  covers: 't=<timestamp>,v1=hex(HMAC-SHA256(secret, timestamp + "." + exact request body))',
  refused: {},
};
