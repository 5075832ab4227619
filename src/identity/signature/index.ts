import { github, slack, v1 } from './hexSchemes.js';
import type { Scheme, SignatureScheme } from './scheme.js';
import { standardWebhooks } from './standardWebhooks.js';
import { stripe } from './stripe.js';

export type { Presented, Scheme, SchemeHeaderNames, SignatureScheme, SignedParts } from './scheme.js';

/** Every scheme by its configuration name. */
export const SCHEMES: Readonly<Record<SignatureScheme, Scheme>> = {
  slack,
  v1,
  github,
  stripe,
  standard_webhooks: standardWebhooks,
};
