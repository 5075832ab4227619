import { GatewayError } from '../errors.js';
import type { CredentialConfig, RequestSigningConfig, ToolConfig } from '../config/types.js';
import type { Principal } from '../identity/types.js';
import { compileTemplate, fillTemplate, type CredentialTemplate } from './format.js';
import { SecretStore } from './secrets.js';
import { signCall, type SignedCall } from './signing.js';

export type { SignedCall } from './signing.js';

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
  private readonly signing: ReadonlyMap<string, RequestSigningConfig>;

  constructor(
    tools: readonly ToolConfig[],
    private readonly secrets: SecretStore,
  ) {
    this.byTool = new Map(tools.map((t) => [t.name, t.credentials.map((c) => ({ ...c, template: compileTemplate(c.format) }))]));
    this.signing = new Map(tools.flatMap((t) => (t.request_signing ? [[t.name, t.request_signing] as const] : [])));
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
    for (const [tool, s] of this.signing) {
      const problem = this.secrets.prepare(s.secret);
      if (problem) out.push({ tool, secret: SecretStore.describe(s.secret), problem });
    }
    return out;
  }

  /** Header names this tool's credentials (and request signature) set; they overwrite the caller's. */
  headerNames(tool: string): readonly string[] {
    const names = (this.byTool.get(tool) ?? []).map((c) => c.header);
    const signing = this.signing.get(tool);
    return signing ? [...names, signing.header] : names;
  }

  /**
   * The credential values injected into one call of `tool` for `user` (each header value as
   * sent and the secret it was filled from), for scrubbing them from the tool's response.
   * Values that cannot be read now are left out: such a call was refused at ext_authz.
   */
  injectedValues(tool: string, user: string | null): string[] {
    const out: string[] = [];
    for (const c of this.byTool.get(tool) ?? []) {
      const perUser = user !== null ? c.per_user?.[user] : undefined;
      try {
        const secret = this.secrets.get(perUser ?? c.secret);
        out.push(secret, fillTemplate(c.template, secret));
      } catch {
        // Not readable: ext_authz refused the call, nothing was injected.
      }
    }
    return out;
  }

  /**
   * Credential headers for one call, and its request signature when the tool asks for one
   * (`call` describes the request; without it a signing tool's call is refused). Throws
   * `forbidden` when a per-user credential is required and the caller has none, `unavailable`
   * when a secret cannot be read.
   */
  headersFor(tool: string, principal: Principal | null, call?: SignedCall): HeaderValue[] {
    const creds = this.byTool.get(tool) ?? [];
    const out = creds.map((c) => {
      const user = principal?.user ?? null;
      const perUser = user !== null ? c.per_user?.[user] : undefined;
      if (!perUser && c.require_per_user) {
        throw new GatewayError('forbidden', `no upstream credential is provisioned for this user on tool "${tool}"`, { rule: 'credentials.no_user_credential' });
      }
      const secret = this.secrets.get(perUser ?? c.secret);
      return { key: c.header, value: fillTemplate(c.template, secret) };
    });
    const signing = this.signing.get(tool);
    if (signing) {
      if (!call) throw new GatewayError('internal', `tool "${tool}" requires signed calls and the request could not be described`, { rule: 'credentials.signing' });
      out.push({ key: signing.header, value: signCall(this.secrets.get(signing.secret), call) });
    }
    return out;
  }
}
