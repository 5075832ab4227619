import { Counter } from 'prom-client';
import { registry } from '../metrics.js';

/**
 * What happened to MCP tool definitions during one exchange (learned and pinned, changed,
 * poisoned, unusable), for its audit record, and the metric counting it.
 */

/** One definition event, as audit records carry it (`mcp_definitions`). */
export interface DefinitionEvent {
  /** MCP tool name. */
  readonly name: string;
  /** Hash of the definition seen. */
  readonly hash: string;
  /** `pinned` (first seen), `changed` (differs from its pin), `poisoned`, `invalid` (unusable). */
  readonly event: 'pinned' | 'changed' | 'poisoned' | 'invalid';
  /** What the gateway did: `none`, or the configured `flag`, `hide`, `block`. */
  readonly action: 'none' | 'flag' | 'hide' | 'block';
  /** The pinned hash a changed definition differs from. */
  readonly pinned?: string;
  /** Poisoning rules that matched, or why the definition is unusable. */
  readonly rules?: readonly string[];
}

/** At most this many events are kept per exchange (a list may hold many tools). */
const MAX_EVENTS = 50;

const events = new Counter({
  name: 'portcullis_mcp_definition_events_total',
  help: 'MCP tool definition events (pinned, changed, poisoned, invalid) by logical tool and action',
  labelNames: ['tool', 'event', 'action'] as const,
  registers: [registry],
});

/** Counts events of a logical tool. */
export function countDefinitionEvents(tool: string, list: readonly DefinitionEvent[]): void {
  for (const e of list) events.inc({ tool, event: e.event, action: e.action });
}

/** Events per exchange state object (request or response state), without widening their types. */
const byExchange = new WeakMap<object, DefinitionEvent[]>();

/** Records events against an exchange's state object. */
export function noteDefinitionEvents(holder: object, list: readonly DefinitionEvent[]): void {
  if (list.length === 0) return;
  const have = byExchange.get(holder) ?? [];
  for (const e of list) if (have.length < MAX_EVENTS) have.push(e);
  byExchange.set(holder, have);
}

/** The events recorded against any of the holders, in order; empty when none. */
export function definitionEventsOf(...holders: object[]): DefinitionEvent[] {
  return holders.flatMap((h) => byExchange.get(h) ?? []).slice(0, MAX_EVENTS);
}
