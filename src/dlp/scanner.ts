import { Ajv, type ErrorObject } from 'ajv';
import { GatewayError } from '../errors.js';
import { BUILTIN_RULES } from './catalog/index.js';
import { dlpConfigSchema, type DlpConfig, type DlpConfigProblem } from './config.js';
import { ScanState, type Alphabet, type Candidate, type CompiledGroup, type CompiledRule, type CompiledRules, type CompiledSpan, type CompiledTrigger } from './engine.js';
import { KeywordAutomaton } from './prefilter.js';
import { compileSafePattern, PatternError } from './regex/index.js';
import { compareCandidates, Resolver, type Resolved } from './resolve.js';
import type { DlpAction, Finding, RuleSpec, Scanner } from './types.js';
import { NAMED_VALIDATORS, type CheckResult } from './validators.js';

/** Default stream hold-back (UTF-16 code units). */
export const DEFAULT_MAX_HOLDBACK = 4096;
/** Longest match any single regex rule may produce. */
const MAX_MATCH = 8192;

let validateConfig: ((v: unknown) => boolean) & { errors?: ErrorObject[] | null } = Object.assign(() => true, { errors: null });
let validatorReady = false;

function schemaProblems(cfg: unknown): DlpConfigProblem[] {
  if (!validatorReady) {
    validateConfig = new Ajv({ allErrors: true, strict: false }).compile(dlpConfigSchema);
    validatorReady = true;
  }
  if (validateConfig(cfg)) return [];
  return (validateConfig.errors ?? []).map((e) => ({
    path: `$${e.instancePath.replace(/\/(\d+)/g, '[$1]').replace(/\//g, '.')}`,
    message: e.message ?? 'invalid',
  }));
}

/** A compiled catalog; use {@link compileCatalog}. */
export class DlpScanner implements Scanner {
  readonly ruleCount: number;
  /** Rule ids in catalog order (enabled rules only). */
  readonly ruleIds: readonly string[];
  /** Hold-back for stream redactors created without an explicit size. */
  readonly maxHoldback: number;
  /** Smallest hold-back that keeps streaming output equal to whole-text output. */
  readonly minHoldback: number;

  /** @internal */
  constructor(
    readonly compiled: CompiledRules,
    maxHoldback: number,
    minHoldback: number,
  ) {
    this.ruleCount = compiled.rules.length;
    this.ruleIds = compiled.rules.map((r) => r.id);
    this.maxHoldback = maxHoldback;
    this.minHoldback = minHoldback;
  }

  /** Search state kept between scans; taken while a scan runs. */
  private spare: ScanState | null = null;

  /** Non-overlapping findings in `text`, sorted by start. */
  scan(text: string): Finding[] {
    const state = this.spare ?? new ScanState(this.compiled);
    this.spare = null;
    const cands: Candidate[] = [];
    state.advance(text, 0, true, cands);
    state.reset();
    this.spare = state;
    if (cands.length === 0) return [];
    cands.sort(compareCandidates);
    const res = new Resolver();
    for (const c of cands) res.feed(c);
    res.finish();
    return this.findings(res.reds, res.flags, 0, 0, res.reds.length, res.flags.length);
  }

  /** @internal Merges resolved redactions `reds[ri, re)` and flags `flags[fi, fe)` into findings. */
  findings(reds: readonly Resolved[], flags: readonly Resolved[], ri: number, fi: number, re: number, fe: number): Finding[] {
    const out: Finding[] = [];
    while (ri < re || fi < fe) {
      const r = ri < re ? reds[ri] : undefined;
      const f = fi < fe ? flags[fi] : undefined;
      const take = r !== undefined && (f === undefined || r.start <= f.start) ? r : f!;
      if (take === r) ri++;
      else fi++;
      out.push(this.finding(take));
    }
    return out;
  }

  /** @internal */
  finding(x: Resolved): Finding {
    const rule = this.compiled.rules[x.rule]!;
    return { rule: rule.id, category: rule.category, action: rule.action, start: x.start, end: x.end };
  }
}

/** Membership table of an alphabet (see {@link Alphabet}). */
function alphabetTable(set: readonly number[]): Alphabet {
  const t = new Uint8Array(129);
  for (let i = 0; i < set.length; i += 2) {
    const lo = set[i]!;
    const hi = set[i + 1]!;
    for (let c = lo; c <= Math.min(hi, 127); c++) t[c] = 1;
    if (hi >= 128) t[128] = 1;
  }
  return t;
}

function makeCheck(spec: RuleSpec): CompiledRule['check'] {
  const v = spec.validator;
  const ctx = spec.context;
  if (!v && !ctx) return null;
  const words = ctx?.words.map((w) => w.toLowerCase()) ?? [];
  const before = ctx?.before ?? 0;
  return (text, matchStart, start, end): CheckResult => {
    if (ctx) {
      const window = text.slice(Math.max(0, matchStart - before), matchStart).toLowerCase();
      if (!words.some((w) => window.includes(w))) return false;
    }
    return v ? v(text, start, end) : true;
  };
}

interface Entry {
  readonly spec: RuleSpec;
  readonly path: string;
}

/** Applies config to the built-in catalog; returns enabled rules or the problems found. */
function selectRules(cfg: DlpConfig, problems: DlpConfigProblem[]): Entry[] {
  const entries: Entry[] = BUILTIN_RULES.map((spec, i) => ({ spec, path: `builtin[${i}]` }));
  const ids = new Set(entries.map((e) => e.spec.id));
  (cfg.rules ?? []).forEach((r, i) => {
    const path = `$.rules[${i}]`;
    if (ids.has(r.id)) {
      problems.push({ path: `${path}.id`, message: `rule id "${r.id}" is already defined; use overrides to change a built-in rule` });
      return;
    }
    ids.add(r.id);
    const spec: RuleSpec = {
      id: r.id,
      category: r.category ?? 'secret',
      description: r.description ?? `custom rule ${r.id}`,
      action: r.action,
      pattern: r.pattern,
      ignoreCase: r.ignore_case === true,
      ...(r.keywords ? { keywords: r.keywords } : r.context ? { keywords: r.context.words, keywordsInContext: true } : {}),
      ...(r.validator ? { validator: NAMED_VALIDATORS[r.validator]! } : {}),
      ...(r.context ? { context: { words: r.context.words, before: r.context.before ?? 80 } } : {}),
    };
    entries.push({ spec, path });
  });
  const disabled = new Set(cfg.disabled_categories ?? []);
  const overrides = cfg.overrides ?? {};
  for (const id of Object.keys(overrides)) {
    if (!ids.has(id)) problems.push({ path: `$.overrides.${id}`, message: `unknown rule id "${id}"` });
  }
  const out: Entry[] = [];
  for (const e of entries) {
    const o = overrides[e.spec.id];
    if (o?.enabled === false) continue;
    if (o?.enabled !== true && disabled.has(e.spec.category)) continue;
    out.push(o?.action ? { ...e, spec: { ...e.spec, action: o.action as DlpAction } } : e);
  }
  return out;
}

/**
 * Groups the always-run rules (those without keywords or trigger, and without a block span)
 * that share regex flags, so that one search of their alternation finds the starts where any
 * of them matches. The alternation only locates starts; each member's own pattern decides.
 * Its cost per start is the sum of the members' (each in the safe subset), so the search stays
 * linear.
 */
function groupAlways(rules: readonly CompiledRule[], always: readonly number[]): { groups: CompiledGroup[]; grouped: Uint8Array } {
  const grouped = new Uint8Array(rules.length);
  const byFlags = new Map<string, number[]>();
  for (const r of always) {
    const rule = rules[r]!;
    if (rule.span) continue;
    const flags = rule.re.ignoreCase ? 'gmi' : 'gm';
    const list = byFlags.get(flags);
    if (list) list.push(r);
    else byFlags.set(flags, [r]);
  }
  const groups: CompiledGroup[] = [];
  for (const [flags, members] of byFlags) {
    if (members.length < 2) continue;
    const source = members.map((r) => `(?:${rules[r]!.re.source})`).join('|');
    for (const r of members) grouped[r] = 1;
    groups.push({
      re: new RegExp(source, flags),
      members: Int32Array.from(members),
      minReach: Math.min(...members.map((r) => rules[r]!.maxLen + rules[r]!.la)),
    });
  }
  return { groups, grouped };
}

/**
 * Validates a `dlp` config section and compiles every rule, reporting all problems (schema,
 * unknown override ids, duplicate ids, patterns outside the safe subset, hold-back too small).
 * Returns the problems and, when there are none, the compiled scanner.
 */
export function checkDlpConfig(cfg: DlpConfig | undefined): { problems: DlpConfigProblem[]; scanner: DlpScanner | null } {
  const problems = schemaProblems(cfg ?? {});
  if (problems.length > 0) return { problems, scanner: null };
  const c: DlpConfig = cfg ?? {};
  const entries = selectRules(c, problems);
  const maxHoldback = c.max_holdback_bytes ?? DEFAULT_MAX_HOLDBACK;
  // Triggers first: their hit ids precede keyword ids.
  const triggers: CompiledTrigger[] = [];
  const triggerIds = new Map<string, number>();
  for (const { spec, path } of entries) {
    if (!spec.trigger || triggerIds.has(spec.trigger)) continue;
    try {
      const t = compileSafePattern(spec.trigger, { maxMatch: 256 });
      triggerIds.set(spec.trigger, triggers.length);
      triggers.push({ re: t.re, maxLen: t.maxLength, la: 1, alphabet: alphabetTable(t.alphabet) });
    } catch (err) {
      problems.push({ path: `${path}.trigger`, message: `rule "${spec.id}": ${err instanceof PatternError ? err.message : String(err)}` });
    }
  }
  const keywordIds = new Map<string, number>();
  const rulesByKeyword: number[][] = triggers.map(() => []);
  const always: number[] = [];
  const rules: CompiledRule[] = [];
  let minHoldback = 0;
  let longest = '';
  let maxBefore = 0;
  for (const { spec, path } of entries) {
    const fail = (where: string, err: unknown): void => {
      const msg = err instanceof PatternError ? err.message : String(err);
      problems.push({ path: `${path}.${where}`, message: `rule "${spec.id}": ${msg}` });
    };
    let re;
    try {
      re = compileSafePattern(spec.pattern, { ignoreCase: spec.ignoreCase === true, maxMatch: MAX_MATCH });
    } catch (err) {
      fail('pattern', err);
      continue;
    }
    let span: CompiledSpan | null = null;
    if (spec.span) {
      try {
        const end = compileSafePattern(spec.span.end, { maxMatch: 1024 });
        span = { re: end.re, maxLen: end.maxLength, minLen: end.minLength, la: 1, maxSpan: spec.span.maxLength };
      } catch (err) {
        fail('span.end', err);
        continue;
      }
    }
    const index = rules.length;
    const before = spec.context?.before ?? 0;
    const lb = Math.max(1, before, spec.lookbehind ?? 1);
    const la = Math.max(1, spec.lookahead ?? 1);
    let kwIds: Int32Array | null = null;
    const trigger = spec.trigger ? (triggerIds.get(spec.trigger) ?? -1) : -1;
    if (spec.trigger && trigger < 0) continue;
    if (trigger >= 0) {
      kwIds = Int32Array.from([trigger]);
      rulesByKeyword[trigger]!.push(index);
    } else if (spec.keywords && spec.keywords.length > 0) {
      const list: number[] = [];
      for (const k of spec.keywords) {
        const lower = k.toLowerCase();
        if (!/^[\x20-\x7e]+$/.test(lower)) {
          fail('keywords', `keyword "${k}" must be printable ASCII`);
          continue;
        }
        let id = keywordIds.get(lower);
        if (id === undefined) {
          id = triggers.length + keywordIds.size;
          keywordIds.set(lower, id);
          rulesByKeyword.push([]);
        }
        if (!list.includes(id)) {
          list.push(id);
          rulesByKeyword[id]!.push(index);
        }
      }
      kwIds = Int32Array.from(list);
    } else {
      always.push(index);
    }
    const kwInContext = kwIds !== null && trigger < 0 && spec.keywordsInContext === true;
    const words = trigger >= 0 ? [] : (spec.keywords ?? []);
    const minKw = words.length === 0 ? 0 : Math.min(...words.map((k) => k.length));
    const maxKw = words.length === 0 ? 0 : Math.max(...words.map((k) => k.length));
    const kwOffset = Math.max(0, spec.keywordOffset ?? re.maxLength - minKw);
    const kwLead = kwIds === null ? re.maxLength + la : kwInContext ? 0 : maxKw + kwOffset;
    const trig = trigger >= 0 ? triggers[trigger]! : null;
    const need = Math.max(
      re.maxLength + la + lb,
      span ? span.maxLen + span.la + 1 : 0,
      trig ? trig.maxLen + trig.la + 1 + re.maxLength + lb : 0,
      kwLead + lb,
    );
    if (need > minHoldback) {
      minHoldback = need;
      longest = spec.id;
    }
    maxBefore = Math.max(maxBefore, before);
    rules.push({
      index,
      id: spec.id,
      category: spec.category,
      action: spec.action,
      redacts: spec.action !== 'flag',
      re: re.re,
      reSticky: new RegExp(re.re.source, re.re.flags.replace('g', 'y')),
      hasCapture: re.hasCapture,
      maxLen: re.maxLength,
      lb,
      la,
      before,
      keywords: kwIds,
      kwOffset,
      kwInContext,
      kwLead,
      trigger,
      check: makeCheck(spec),
      span,
      alphabet: alphabetTable(re.alphabet),
      first: alphabetTable(re.first),
    });
  }
  if (maxHoldback < minHoldback) {
    problems.push({
      path: '$.max_holdback_bytes',
      message: `must be at least ${minHoldback}: rule "${longest}" can match that much text, and a stream must hold back the longest match`,
    });
  }
  if (problems.length > 0) return { problems, scanner: null };
  const keywords = [...keywordIds.keys()];
  let idleKwLead = 0;
  let idleKwNeed = 0;
  const triggerLag = triggers.map(() => 0);
  const triggerNeed = triggers.map(() => 0);
  for (const r of rules) {
    if (r.keywords === null) continue;
    if (r.trigger >= 0) {
      triggerLag[r.trigger] = Math.max(triggerLag[r.trigger]!, r.maxLen - 1);
      triggerNeed[r.trigger] = Math.max(triggerNeed[r.trigger]!, r.maxLen - 1 + r.lb);
    } else {
      idleKwLead = Math.max(idleKwLead, r.kwLead);
      idleKwNeed = Math.max(idleKwNeed, r.kwLead + r.lb);
    }
  }
  // Future-hit bounds: keyword rules whose match may begin before the keyword, by alphabet;
  // triggers by the union of their rules' alphabets.
  const spans = new Map<string, { alpha: Alphabet; first: Alphabet; offset: number }>();
  const triggerAlpha = triggers.map(() => new Uint8Array(129));
  const triggerFirst = triggers.map(() => new Uint8Array(129));
  for (const r of rules) {
    if (r.keywords === null) continue;
    if (r.trigger >= 0) {
      const a = triggerAlpha[r.trigger]!;
      const f = triggerFirst[r.trigger]!;
      for (let i = 0; i < 129; i++) {
        a[i]! |= r.alphabet[i]!;
        f[i]! |= r.first[i]!;
      }
    } else if (!r.kwInContext && r.kwOffset > 0) {
      const key = `${r.alphabet.join('')}/${r.first.join('')}`;
      const g = spans.get(key);
      if (g) g.offset = Math.max(g.offset, r.kwOffset);
      else spans.set(key, { alpha: r.alphabet, first: r.first, offset: r.kwOffset });
    }
  }
  const { groups, grouped } = groupAlways(rules, always);
  const compiled: CompiledRules = {
    rules,
    automaton: new KeywordAutomaton(keywords),
    triggers,
    keywordLength: Int32Array.from([...triggers.map((t) => t.maxLen), ...keywords.map((k) => k.length)]),
    rulesByKeyword: rulesByKeyword.map((l) => Int32Array.from(l)),
    always: Int32Array.from(always),
    groups,
    grouped,
    maxBefore,
    idleKwLead,
    idleKwNeed,
    triggerLag,
    triggerNeed,
    idleSpans: [...spans.values()],
    triggerAlpha,
    triggerFirst,
  };
  return { problems, scanner: new DlpScanner(compiled, maxHoldback, minHoldback) };
}

/**
 * Compiles the built-in catalog plus `cfg` into a {@link Scanner}. Everything is prepared
 * here (patterns checked and compiled, keyword automaton built); scanning only runs them.
 * Throws a {@link GatewayError} listing every problem, each naming its rule.
 */
export function compileCatalog(cfg?: DlpConfig): Scanner {
  const { problems, scanner } = checkDlpConfig(cfg);
  if (!scanner) {
    const text = problems.map((p) => `${p.path}: ${p.message}`).join('; ');
    throw new GatewayError('internal', `invalid DLP configuration: ${text}`, { rule: 'dlp.config', details: { problems } });
  }
  return scanner;
}
