import { createHash, timingSafeEqual } from 'node:crypto';
import type { ApiKeyConfig } from '../config/types.js';
import { unauthenticated, type IdentityClaim } from './claim.js';

interface StoredKey {
  readonly hash: Buffer;
  readonly claim: IdentityClaim;
}

/**
 * API keys, configured as the hex SHA-256 of the key so the configuration never holds the key.
 * The presented key is hashed once and compared with every stored hash in constant time.
 */
export class ApiKeyVerifier {
  private readonly keys: readonly StoredKey[];

  /** Throws if a hash is malformed or configured twice (a key must map to one agent). */
  constructor(keys: readonly ApiKeyConfig[]) {
    const seen = new Set<string>();
    this.keys = keys.map((k, i) => {
      const hex = k.sha256.toLowerCase();
      if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`identity.api_keys[${i}] (${k.id}): sha256 must be 64 hex characters`);
      if (seen.has(hex)) throw new Error(`identity.api_keys[${i}] (${k.id}): the same key hash is configured twice`);
      seen.add(hex);
      return {
        hash: Buffer.from(hex, 'hex'),
        claim: {
          method: 'api_key',
          provenBy: k.id,
          agent: k.agent,
          agentVersion: k.agent_version ?? null,
          user: null,
          tenant: k.tenant ?? null,
          roles: k.roles ?? [],
        },
      };
    });
  }

  /** Whether any key is configured. */
  get enabled(): boolean {
    return this.keys.length > 0;
  }

  /** Verifies a presented key; throws `unauthenticated` if it matches no configured key. */
  verify(presented: string): IdentityClaim {
    const key = presented.trim();
    if (key.length === 0) throw unauthenticated('api_key', 'the API key header is empty');
    const digest = createHash('sha256').update(key, 'utf8').digest();
    // Compare against every key without stopping at a match, so timing reveals neither
    // whether nor where a key matched.
    let match = -1;
    for (let i = 0; i < this.keys.length; i++) {
      const equal = timingSafeEqual(digest, (this.keys[i] as StoredKey).hash);
      match = equal && match < 0 ? i : match;
    }
    if (match < 0) throw unauthenticated('api_key', 'the API key is not recognized');
    return (this.keys[match] as StoredKey).claim;
  }
}
