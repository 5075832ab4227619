import { GatewayError } from '../errors.js';
import type { CredentialConfig, ToolConfig } from '../config/types.js';
import type { Principal } from '../identity/types.js';
import { compileTemplate, fillTemplate, type CredentialTemplate } from './format.js';
import { SecretStore } from './secrets.js';

/** A header to set on the upstream request. */
export interface HeaderValue {
  readonly key: string;
  readonly value: string;
}

/** One configured credential with its header template compiled. */
interface Credential extends CredentialConfig {
  readonly template: CredentialTemplate;
}

/**
 * Computes the upstream credential headers of each tool. Secret files are registered (read and
 * watched) at construction and header templates compiled; per request this only fills in the
 * current value.
 */
export class CredentialInjector {
  private readonly byTool: ReadonlyMap<string, readonly Credential[]>;

  constructor(
    tools: readonly ToolConfig[],
    private readonly secrets: SecretStore,
  ) {
    this.byTool = new Map(tools.map((t) => [t.name, t.credentials.map((c) => ({ ...c, template: compileTemplate(c.format) }))]));
  }

  /** Problems with secrets as currently mounted (for `check` and start-up warnings). */
  problems(): { tool: string; secret: string; problem: string }[] {
    const out: { tool: string; secret: string; problem: string }[] = [];
    for (const [tool, creds] of this.byTool) {
      for (const c of creds) {
        for (const ref of [c.secret, ...Object.values(c.per_user ?? {})]) {
          const problem = this.secrets.prepare(ref);
          if (problem) out.push({ tool, secret: SecretStore.describe(ref), problem });
        }
      }
    }
    return out;
  }

  /** Header names this tool's credentials set (they overwrite whatever the caller sent). */
  headerNames(tool: string): readonly string[] {
    return (this.byTool.get(tool) ?? []).map((c) => c.header);
  }

  /**
   * Credential headers for one call. Throws `forbidden` when a per-user credential is required
   * and the caller has none, `unavailable` when a secret cannot be read.
   */
  headersFor(tool: string, principal: Principal | null): HeaderValue[] {
    const creds = this.byTool.get(tool);
    if (!creds || creds.length === 0) return [];
    return creds.map((c) => {
      const user = principal?.user ?? null;
      const perUser = user !== null ? c.per_user?.[user] : undefined;
      if (!perUser && c.require_per_user) {
        throw new GatewayError('forbidden', `no upstream credential is provisioned for this user on tool "${tool}"`, { rule: 'credentials.no_user_credential' });
      }
      const secret = this.secrets.get(perUser ?? c.secret);
      return { key: c.header, value: fillTemplate(c.template, secret) };
    });
  }
}
