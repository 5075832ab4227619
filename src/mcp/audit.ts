import type { AuditMcp } from '../audit/record.js';
import type { McpExchange } from './exchange.js';

/**
 * The MCP part of an exchange record: what the Check recorded of the call, the session headers
 * ext_proc saw when the Check had none, and the list counts (`hidden`, and `would_hide` in dry
 * run) when the exchange asked for a list.
 */
export function exchangeMcp(base: AuditMcp | null, ex: McpExchange, dryRun: boolean): AuditMcp | null {
  if (!base) return null;
  return {
    ...base,
    session: base.session ?? ex.session,
    protocol_version: base.protocol_version ?? ex.protocolVersion,
    hidden: ex.hasList ? ex.hidden : null,
    would_hide: ex.hasList && dryRun ? ex.wouldHide : null,
  };
}
