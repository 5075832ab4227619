import type { MtlsAgentConfig } from '../config/types.js';
import type { IdentityClaim } from './claim.js';

/**
 * Maps the mTLS peer identity Envoy verified (`attributes.source.principal`: the client
 * certificate's URI SAN, usually a SPIFFE id, or its subject) to a configured agent.
 * Envoy already validated the certificate chain; this only names the workload.
 */
export class MtlsVerifier {
  private readonly byPrincipal: ReadonlyMap<string, IdentityClaim>;

  /** Throws if a principal is configured twice (the mapping would be ambiguous). */
  constructor(agents: readonly MtlsAgentConfig[]) {
    const map = new Map<string, IdentityClaim>();
    agents.forEach((a, i) => {
      if (map.has(a.principal)) throw new Error(`identity.mtls[${i}]: principal "${a.principal}" is configured twice`);
      map.set(a.principal, {
        method: 'mtls',
        provenBy: a.principal,
        agent: a.agent,
        agentVersion: a.agent_version ?? null,
        user: null,
        tenant: a.tenant ?? null,
        roles: a.roles ?? [],
      });
    });
    this.byPrincipal = map;
  }

  /** Whether any peer principal is mapped. */
  get enabled(): boolean {
    return this.byPrincipal.size > 0;
  }

  /**
   * The agent a peer principal maps to, or null. An unmapped peer is not an error: a verified
   * certificate that names no agent simply proves nothing the gateway uses.
   */
  verify(sourcePrincipal: string | undefined): IdentityClaim | null {
    if (!sourcePrincipal) return null;
    return this.byPrincipal.get(sourcePrincipal) ?? null;
  }
}
