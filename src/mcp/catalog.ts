import { resolve } from 'node:path';
import type { GatewayConfig, McpConfig, ToolConfig } from '../config/types.js';
import type { CredentialInjector } from '../credentials/inject.js';
import { GatewayError } from '../errors.js';
import type { InjectionFinding } from '../inspect/injection.js';
import { compileLearnedSchema, type ArgumentValidator, type SchemaResult, type SchemaSet } from '../inspect/schema.js';
import { log } from '../log.js';
import { countDefinitionEvents, type DefinitionEvent } from './definitionEvents.js';
import { mutatingFromAnnotations, parseDefinition, type HashedDefinition } from './definition.js';
import { fetchToolList } from './discovery.js';
import { PinStore, type Pin } from './pins.js';
import { entryKey, scanEntry } from './poisoning.js';

/**
 * The in-process catalog of MCP tool definitions, one per process, kept across configuration
 * reloads and shared by the Check (is a call mutating) and ext_proc (may it be called, are its
 * arguments valid). Definitions are learned from every `tools/list` answer passing through, or
 * fetched from `mcp.server_url` when a call names a tool not known yet. Each definition is
 * scanned for poisoning and compared with its pin; the configured `on_change` and `poisoning`
 * actions decide what agents see and may call.
 */

/** A definition as learned, with what the gateway found in it. */
interface Learned {
  readonly def: HashedDefinition;
  /** Identity of the whole entry that was scanned (see poisoning.ts). */
  readonly scanned: string;
  readonly findings: readonly InjectionFinding[];
}

/** What is known of one logical tool's server. */
interface ToolState {
  readonly defs: Map<string, Learned>;
  /** Names whose latest entry could not be read, with why. */
  readonly invalid: Map<string, string>;
  /** A list answer was seen or fetched. */
  listed: boolean;
  /** Time of the last completed fetch (ms), and of the last failed one. */
  fetchedAt: number;
  failedAt: number;
  lastError: string | null;
  inflight: Promise<DefinitionEvent[]> | null;
}

/** A logical tool's MCP settings as configured now. */
interface Settings {
  readonly tool: ToolConfig;
  readonly mcp: McpConfig;
  readonly store: PinStore;
}

/** What reading one list decided. */
export interface IngestResult {
  readonly events: DefinitionEvent[];
  /** MCP tool names to remove from the list the agent receives. */
  readonly hidden: ReadonlySet<string>;
  /** Set when the whole list must be refused (poisoning `block`). */
  readonly refusal: GatewayError | null;
}

/** One MCP tool as the pins endpoint and CLI show it. */
export interface PinView {
  readonly tool: string;
  readonly name: string;
  /** The accepted hash and where it comes from (`config` or the pin's `by`). */
  readonly pinned: { readonly hash: string; readonly by: string; readonly since: string } | null;
  /** The hash last seen from the server, if any. */
  readonly current: string | null;
  readonly status: 'ok' | 'changed' | 'poisoned' | 'invalid' | 'not_seen';
}

/** A known tool that was not fetched again after a fetch this recent is not asked for again (ms). */
const NOT_OFFERED_COOLDOWN_MS = 5_000;
/** After a failed fetch, calls are refused without a new fetch for this long (ms). */
const FAILURE_COOLDOWN_MS = 1_000;
/** Definitions kept per logical tool; a server listing more has the rest withheld. */
export const MAX_TOOLS_PER_SERVER = 2_000;
/** Compiled argument validators kept (by definition hash). */
const MAX_VALIDATORS = 1_000;

const OK: SchemaResult = { ok: true };

/** See the module comment. */
export class McpCatalog {
  private settings = new Map<string, Settings>();
  private readonly states = new Map<string, ToolState>();
  private stores = new Map<string, PinStore>();
  private credentials: CredentialInjector | null = null;
  private readonly validators = new Map<string, ArgumentValidator | string>();

  /**
   * Applies a configuration: each MCP tool's settings and pin store (pin files are read here;
   * an unreadable one throws and nothing changes). Learned definitions of tools that remain are kept.
   */
  configure(config: GatewayConfig, credentials: CredentialInjector): void {
    const stores = new Map<string, PinStore>();
    const settings = new Map<string, Settings>();
    try {
      for (const tool of config.tools) {
        if (!tool.mcp) continue;
        const path = tool.mcp.pins_file ? resolve(config.base_dir, tool.mcp.pins_file) : null;
        // Tools without a file share nothing: each keeps its pins in its own memory store.
        const key = path ?? `memory:${tool.name}`;
        let store = stores.get(key) ?? this.stores.get(key);
        if (!store) store = new PinStore(path);
        stores.set(key, store);
        settings.set(tool.name, { tool, mcp: tool.mcp, store });
      }
    } catch (err) {
      for (const [key, s] of stores) if (!this.stores.has(key)) s.close();
      throw new Error(`mcp.pins_file: ${(err as Error).message}`);
    }
    for (const [key, s] of this.stores) if (!stores.has(key)) s.close();
    for (const [name, st] of this.states) {
      const next = settings.get(name);
      if (!next) this.states.delete(name);
      // What the last fetch found (or that it failed) was about another server: ask the new one.
      else if (next.mcp.server_url !== this.settings.get(name)?.mcp.server_url) Object.assign(st, { fetchedAt: 0, failedAt: 0, lastError: null });
    }
    this.stores = stores;
    this.settings = settings;
    this.credentials = credentials;
  }

  /** Stops watching pin files. */
  close(): void {
    for (const s of this.stores.values()) s.close();
  }

  private state(tool: string): ToolState {
    let st = this.states.get(tool);
    if (!st) {
      st = { defs: new Map(), invalid: new Map(), listed: false, fetchedAt: 0, failedAt: 0, lastError: null, inflight: null };
      this.states.set(tool, st);
    }
    return st;
  }

  private pinOf(s: Settings, name: string): Pin | undefined {
    const configured = s.mcp.pins[name];
    if (configured !== undefined) return { hash: configured, since: '', by: 'config' };
    return s.store.get(s.tool.name, name);
  }

  /**
   * Reads the entries of one `tools/list` answer of `tool`'s server (passing through, or
   * fetched): learns each definition, pins a first-seen one, and applies `poisoning` and
   * `on_change`. Returns what the agent's copy of the list must lose, or its refusal.
   */
  ingest(tool: string, entries: readonly unknown[]): IngestResult {
    const s = this.settings.get(tool);
    const events: DefinitionEvent[] = [];
    const hidden = new Set<string>();
    let refusal: GatewayError | null = null;
    if (!s) return { events, hidden, refusal };
    const st = this.state(tool);
    st.listed = true;
    const fresh: DefinitionEvent[] = [];
    const newPins: Record<string, Pin> = {};
    const since = new Date().toISOString();
    const seen = new Map<string, number>();
    for (const entry of entries) {
      const n = (entry as { name?: unknown } | null)?.name;
      if (typeof n === 'string') seen.set(n, (seen.get(n) ?? 0) + 1);
    }
    for (const entry of entries) {
      let parsed = parseDefinition(entry);
      // Two definitions under one name: which one a client uses is anyone's guess, so neither is offered.
      if (parsed.ok && (seen.get(parsed.def.name) ?? 0) > 1) parsed = { ok: false, name: parsed.def.name, problem: 'the server lists this name more than once' };
      if (!parsed.ok) {
        if (parsed.name === null) continue;
        // Nothing to validate arguments against: the tool is withheld rather than passed unchecked.
        hidden.add(parsed.name);
        if (st.invalid.get(parsed.name) !== parsed.problem) fresh.push({ name: parsed.name, hash: '', event: 'invalid', action: 'hide', rules: [parsed.problem] });
        if (st.invalid.has(parsed.name) || st.invalid.size < MAX_TOOLS_PER_SERVER) st.invalid.set(parsed.name, parsed.problem);
        st.defs.delete(parsed.name);
        events.push({ name: parsed.name, hash: '', event: 'invalid', action: 'hide', rules: [parsed.problem] });
        continue;
      }
      const def = parsed.def;
      const prev = st.defs.get(def.name);
      if (!prev && st.defs.size >= MAX_TOOLS_PER_SERVER) {
        // Memory stays bounded whatever a server lists.
        hidden.add(def.name);
        const problem = `the server lists more than ${MAX_TOOLS_PER_SERVER} tools`;
        if (st.invalid.size < MAX_TOOLS_PER_SERVER) st.invalid.set(def.name, problem);
        events.push({ name: def.name, hash: def.hash, event: 'invalid', action: 'hide', rules: [problem] });
        continue;
      }
      const scanned = entryKey(entry);
      const isNew = prev?.def.hash !== def.hash || prev.scanned !== scanned;
      const findings = isNew ? scanEntry(entry) : prev.findings;
      st.defs.set(def.name, { def, scanned, findings });
      st.invalid.delete(def.name);
      const note = (e: DefinitionEvent): void => {
        events.push(e);
        if (isNew) fresh.push(e);
      };
      if (findings.length > 0) {
        const action = s.mcp.poisoning;
        note({ name: def.name, hash: def.hash, event: 'poisoned', action, rules: [...new Set(findings.map((f) => f.rule))] });
        if (action === 'block') refusal ??= poisonedList(tool, def.name, findings);
        if (action !== 'flag') {
          hidden.add(def.name);
          continue;
        }
      }
      const pin = newPins[def.name] ?? this.pinOf(s, def.name);
      if (!pin) {
        newPins[def.name] = { hash: def.hash, since, by: 'first_seen' };
        note({ name: def.name, hash: def.hash, event: 'pinned', action: 'none' });
        continue;
      }
      if (pin.hash === def.hash) continue;
      const action = s.mcp.on_change;
      note({ name: def.name, hash: def.hash, event: 'changed', action, pinned: pin.hash });
      if (action === 'flag' && pin.by !== 'config') newPins[def.name] = { hash: def.hash, since, by: 'on_change_flag' };
      if (action === 'hide') hidden.add(def.name);
    }
    if (Object.keys(newPins).length > 0) this.recordPins(s, newPins);
    this.report(tool, fresh);
    return { events, hidden, refusal };
  }

  private recordPins(s: Settings, pins: Record<string, Pin>): void {
    try {
      s.store.setMany(s.tool.name, pins);
    } catch (err) {
      // The pins hold in memory; the next write tries the file again.
      log.error({ tool: s.tool.name, mcp_tools: Object.keys(pins).slice(0, 20), file: s.store.path, reason: (err as Error).message }, 'MCP pins could not be written');
    }
  }

  private report(tool: string, fresh: readonly DefinitionEvent[]): void {
    countDefinitionEvents(tool, fresh);
    for (const e of fresh) {
      if (e.event === 'pinned') log.info({ tool, mcp_tool: e.name, hash: e.hash }, 'MCP tool definition pinned (first seen)');
      else log.warn({ tool, mcp_tool: e.name, hash: e.hash, pinned: e.pinned, action: e.action, rules: e.rules }, `MCP tool definition ${e.event}`);
    }
  }

  /**
   * Makes sure a call of `name` on `tool` can be judged: when the definition is not known (and
   * no configured schema stands in for it) and a `server_url` is configured, the server's list
   * is fetched now (one fetch per tool at a time, bounded by its timeout). A known definition
   * older than `refresh_s` is fetched again in the background. Returns the definition events
   * of a fetch made for this call. Throws `unavailable` when the fetch that was needed failed.
   */
  async ensure(tool: string, name: string): Promise<DefinitionEvent[]> {
    const s = this.settings.get(tool);
    if (!s || !s.mcp.server_url) return [];
    const st = this.state(tool);
    const now = Date.now();
    if (st.defs.has(name) || st.invalid.has(name)) {
      if (now - st.fetchedAt > s.mcp.refresh_s * 1000 && now - st.failedAt > FAILURE_COOLDOWN_MS) void this.refresh(s).catch(() => undefined);
      return [];
    }
    const override = s.mcp.tools[name];
    if (override?.input_schema) return [];
    if (now - st.failedAt < FAILURE_COOLDOWN_MS && st.lastError !== null) {
      if (override) return [];
      throw discoveryFailed(tool, name, st.lastError);
    }
    if (now - st.fetchedAt < NOT_OFFERED_COOLDOWN_MS) return [];
    try {
      return await this.refresh(s);
    } catch (err) {
      if (override) return [];
      throw discoveryFailed(tool, name, (err as Error).message);
    }
  }

  /** Fetches the server's list once (joined by concurrent callers) and ingests it. */
  private refresh(s: Settings): Promise<DefinitionEvent[]> {
    const st = this.state(s.tool.name);
    if (st.inflight) return st.inflight;
    const run = async (): Promise<DefinitionEvent[]> => {
      const headers: Record<string, string> = {};
      for (const h of this.credentials?.headersFor(s.tool.name, null) ?? []) headers[h.key] = h.value;
      const entries = await fetchToolList({ url: s.mcp.server_url!, headers, timeoutMs: s.mcp.discovery_timeout_ms });
      return this.ingest(s.tool.name, entries).events;
    };
    st.inflight = run().then(
      (events) => {
        st.fetchedAt = Date.now();
        st.lastError = null;
        return events;
      },
      (err: unknown) => {
        st.failedAt = Date.now();
        st.lastError = (err as Error)?.message ?? String(err);
        log.warn({ tool: s.tool.name, reason: st.lastError }, 'fetching the MCP tool list failed');
        throw err;
      },
    );
    const done = st.inflight;
    void done.finally(() => {
      if (st.inflight === done) st.inflight = null;
    }).catch(() => undefined);
    return done;
  }

  /**
   * Judges one `tools/call` of `name` on `tool`: refuses a tool the gateway does not know, a
   * poisoned one (unless `poisoning: flag`), one whose definition changed since it was pinned
   * (unless `on_change: flag`); otherwise validates the arguments against the configured
   * `input_schema`, else the advertised `inputSchema` (closed), else (a configured tool the
   * server has not described) accepts them.
   */
  validateCall(tool: ToolConfig, name: string, args: unknown, schemas: SchemaSet): SchemaResult {
    const s = this.settings.get(tool.name);
    if (!s) return schemas.validateMcpArguments(tool.name, name, args);
    const st = this.state(tool.name);
    const override = s.mcp.tools[name];
    const invalid = st.invalid.get(name);
    if (invalid !== undefined) {
      throw new GatewayError('forbidden', `MCP tool "${name}" of tool "${tool.name}" cannot be called: the server's definition of it is unusable (${invalid})`, { rule: 'mcp.definition_invalid' });
    }
    const learned = st.defs.get(name);
    if (learned) {
      if (learned.findings.length > 0 && s.mcp.poisoning !== 'flag') throw poisonedTool(tool.name, name, learned.findings);
      const pin = this.pinOf(s, name);
      if (pin && pin.hash !== learned.def.hash && s.mcp.on_change !== 'flag') {
        throw new GatewayError(
          'forbidden',
          `MCP tool "${name}" of tool "${tool.name}": tool definition changed since it was pinned; an operator must approve hash ${learned.def.hash} (pinned ${pin.hash}) before it can be called`,
          { rule: 'mcp.definition_changed', details: { mcp_tool: name, hash: learned.def.hash, pinned: pin.hash } },
        );
      }
    }
    if (override?.input_schema) return schemas.validateMcpArguments(tool.name, name, args);
    if (learned) return this.validator(learned.def)(args);
    if (override) return OK;
    throw this.unknown(s, st, name);
  }

  private unknown(s: Settings, st: ToolState, name: string): GatewayError {
    const tool = s.tool.name;
    if (s.mcp.server_url && st.lastError !== null && !st.listed) return discoveryFailed(tool, name, st.lastError);
    if (st.listed) {
      return new GatewayError('unknown_tool', `MCP tool "${name.slice(0, 128)}" is not offered by the MCP server of tool "${tool}" (it is in no tools/list answer of the server)`, { rule: 'mcp.unknown_tool' });
    }
    return new GatewayError(
      'unknown_tool',
      `MCP tool "${name.slice(0, 128)}" of tool "${tool}" is not known to the gateway: no tools/list answer of the server has been seen yet and no mcp.server_url is configured to ask the server; call tools/list first`,
      { rule: 'mcp.unknown_tool' },
    );
  }

  private validator(def: HashedDefinition): ArgumentValidator {
    let v = this.validators.get(def.hash);
    if (v === undefined) {
      try {
        v = compileLearnedSchema(def.inputSchema);
      } catch (err) {
        v = (err as Error).message;
      }
      if (this.validators.size >= MAX_VALIDATORS) this.validators.delete(this.validators.keys().next().value!);
    } else {
      // Most recently used last: the oldest entry is the one evicted.
      this.validators.delete(def.hash);
    }
    this.validators.set(def.hash, v);
    if (typeof v === 'string') {
      throw new GatewayError('forbidden', `MCP tool "${def.name}" cannot be called: the server's inputSchema cannot be used to check its arguments (${v.slice(0, 200)})`, {
        rule: 'mcp.definition_invalid',
      });
    }
    return v;
  }

  /**
   * Whether a call of `name` changes state: the configured `mutating`, else the learned
   * annotations (`readOnlyHint: true` only means read-only); undefined when neither says.
   */
  mutating(tool: string, name: string): boolean | undefined {
    const s = this.settings.get(tool);
    if (!s) return undefined;
    const configured = s.mcp.tools[name]?.mutating;
    if (configured !== undefined) return configured;
    const learned = this.states.get(tool)?.defs.get(name);
    return learned ? mutatingFromAnnotations(learned.def) : undefined;
  }

  /** Every pinned or learned MCP tool, with its status. */
  pins(): PinView[] {
    const out: PinView[] = [];
    for (const s of this.settings.values()) {
      const st = this.states.get(s.tool.name);
      const names = new Set([...Object.keys(s.mcp.pins), ...Object.keys(s.store.all().pins[s.tool.name] ?? {}), ...(st?.defs.keys() ?? []), ...(st?.invalid.keys() ?? [])]);
      for (const name of [...names].sort()) {
        const pin = this.pinOf(s, name);
        const learned = st?.defs.get(name);
        let status: PinView['status'] = 'not_seen';
        if (st?.invalid.has(name)) status = 'invalid';
        else if (learned && learned.findings.length > 0) status = 'poisoned';
        else if (learned) status = pin && pin.hash !== learned.def.hash ? 'changed' : 'ok';
        out.push({ tool: s.tool.name, name, pinned: pin ? { hash: pin.hash, by: pin.by, since: pin.since } : null, current: learned?.def.hash ?? null, status });
      }
    }
    return out;
  }

  /**
   * An operator's approval of `hash` for MCP tool `name` of `tool`: the new pin (written to the
   * pin file when there is one). Throws an Error saying why it cannot be recorded.
   */
  approve(tool: string, name: string, hash: string, by: string): Pin {
    const s = this.settings.get(tool);
    if (!s) throw new Error(`tool "${tool}" is not an MCP tool of this configuration`);
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new Error('hash must be a sha256 hex digest (64 lower-case hex characters)');
    if (s.mcp.pins[name] !== undefined) throw new Error(`MCP tool "${name}" of tool "${tool}" is pinned in the configuration (mcp.pins); change it there`);
    const pin: Pin = { hash, since: new Date().toISOString(), by };
    s.store.set(tool, name, pin);
    log.warn({ tool, mcp_tool: name, hash, by }, 'MCP tool definition approved');
    return pin;
  }
}

function discoveryFailed(tool: string, name: string, reason: string): GatewayError {
  return new GatewayError('unavailable', `the definition of MCP tool "${name.slice(0, 128)}" is not available: asking the MCP server of tool "${tool}" for its tools failed (${reason.slice(0, 200)})`, {
    rule: 'mcp.discovery_failed',
    retryAfterS: 1,
  });
}

function ruleList(findings: readonly InjectionFinding[]): string {
  return [...new Set(findings.map((f) => f.rule))].join(', ');
}

function poisonedTool(tool: string, name: string, findings: readonly InjectionFinding[]): GatewayError {
  return new GatewayError('blocked_content', `MCP tool "${name}" of tool "${tool}" cannot be called: its definition carries instructions aimed at the model (${ruleList(findings)})`, {
    rule: 'mcp.poisoning',
    details: { mcp_tool: name, findings: findings.slice(0, 20) },
  });
}

function poisonedList(tool: string, name: string, findings: readonly InjectionFinding[]): GatewayError {
  return new GatewayError('blocked_content', `the tool list of tool "${tool}" was refused: the definition of MCP tool "${name}" carries instructions aimed at the model (${ruleList(findings)})`, {
    rule: 'mcp.poisoning',
    details: { mcp_tool: name, findings: findings.slice(0, 20) },
  });
}
