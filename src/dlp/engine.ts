import type { KeywordAutomaton } from './prefilter.js';
import type { DlpAction, DlpCategory } from './types.js';
import type { CheckResult } from './validators.js';

/**
 * Per-rule matching over a window of text that may be a prefix of a longer stream.
 *
 * Each rule runs its own leftmost-first search: find the leftmost start >= `resume` where the
 * pattern matches and the checks pass, record it, continue at its end (or at start + 1 when
 * the checks fail). An attempt at start `s` reads only `text[s - lb, s + maxLen + la)`, so once
 * that much text is present its outcome is final; everything at or beyond the first
 * non-final start is left for the next call. That makes the candidates found on a stream,
 * chunk by chunk, exactly those found on the whole text.
 *
 * Where a rule searches: keyword and trigger rules only in windows around their hits (or in
 * one pass when the windows would cost more); always-run rules together, through the
 * alternation of their patterns, which stops only where one of them can match.
 */

/** A rule ready to run. */
export interface CompiledRule {
  readonly index: number;
  readonly id: string;
  readonly category: DlpCategory;
  readonly action: DlpAction;
  readonly redacts: boolean;
  readonly re: RegExp;
  /** The same pattern with the sticky flag (one attempt at `lastIndex`). */
  readonly reSticky: RegExp;
  readonly hasCapture: boolean;
  readonly maxLen: number;
  /** Characters before a start that an attempt may read (lookbehind, context window). */
  readonly lb: number;
  /** Characters after a match end that an attempt may read. */
  readonly la: number;
  /** Context window length (0 without a context requirement). */
  readonly before: number;
  /** Hit ids (triggers, keywords), or null when the rule always runs. */
  readonly keywords: Int32Array | null;
  /** Largest offset of a keyword occurrence from the match start. */
  readonly kwOffset: number;
  /** Keywords occur only in the context window before the match. */
  readonly kwInContext: boolean;
  /**
   * A keyword occurrence not complete yet (ending beyond the text) can only produce matches
   * starting at or after `end of text + 1 - kwLead`.
   */
  readonly kwLead: number;
  /** Index into {@link CompiledRules.triggers}, or -1 (keyword rule or always-run rule). */
  readonly trigger: number;
  /** Validator and context check, in coordinates of `text`; null when there is none. */
  readonly check: ((text: string, matchStart: number, start: number, end: number) => CheckResult) | null;
  readonly span: CompiledSpan | null;
  /** Code units a match can contain: see {@link Alphabet}. */
  readonly alphabet: Alphabet;
  /** Code units a match can start with. */
  readonly first: Alphabet;
}

/**
 * Membership table of a rule's alphabet: entry `c` (< 128) is 1 when a match can contain
 * code unit `c`, entry 128 when it can contain some non-ASCII one (then none of those is a
 * break). A match cannot span a *break*, a character outside its alphabet, which lets a
 * stream decide early that a start before the last break cannot grow into text to come.
 */
export type Alphabet = Uint8Array;

/** Largest absolute offset in `[from, to)` whose character is a break of `alpha`, or `from - 1`. */
export function lastBreak(buf: string, base: number, from: number, to: number, alpha: Alphabet): number {
  const lo = Math.max(from, base);
  for (let p = to - 1; p >= lo; p--) {
    const ch = buf.charCodeAt(p - base);
    if ((ch < 128 ? alpha[ch] : alpha[128]) === 0) return p;
  }
  return from - 1;
}

/**
 * First offset in `[from, to)` whose character is in `first` (a possible match start), or `to`.
 */
export function nextStart(buf: string, base: number, from: number, to: number, first: Alphabet): number {
  for (let p = Math.max(from, base); p < to; p++) {
    const ch = buf.charCodeAt(p - base);
    if ((ch < 128 ? first[ch] : first[128]) === 1) return p;
  }
  return to;
}

/** Keyword rules whose matches may begin before their keyword, grouped by alphabet. */
export interface IdleSpan {
  readonly alpha: Alphabet;
  readonly first: Alphabet;
  /** Largest `kwOffset` of the group. */
  readonly offset: number;
}

/** End marker of a block rule. */
export interface CompiledSpan {
  readonly re: RegExp;
  readonly maxLen: number;
  readonly minLen: number;
  readonly la: number;
  readonly maxSpan: number;
}

/**
 * Cheap pattern that every accepted match of its rules overlaps (e.g. `:hex:hex:hex:` for
 * IPv6). Its matches are hits like keyword hits; hit id = trigger index.
 */
export interface CompiledTrigger {
  readonly re: RegExp;
  readonly maxLen: number;
  readonly la: number;
  readonly alphabet: Alphabet;
}

/** Everything a scan needs, shared by all scans of one scanner. */
export interface CompiledRules {
  readonly rules: readonly CompiledRule[];
  readonly automaton: KeywordAutomaton;
  /** Trigger patterns; their hit ids come first, keyword `k` of the automaton has id `triggers.length + k`. */
  readonly triggers: readonly CompiledTrigger[];
  /** Hit lengths by id (a trigger hit counts as its longest match). */
  readonly keywordLength: Int32Array;
  /** Rules by keyword id. */
  readonly rulesByKeyword: readonly Int32Array[];
  /** Rules without keywords. */
  readonly always: Int32Array;
  /** Always-run rules searched together (each rule in at most one group). */
  readonly groups: readonly CompiledGroup[];
  /** Per rule: whether it belongs to a group. */
  readonly grouped: Uint8Array;
  /** Largest context window. */
  readonly maxBefore: number;
  /** Largest `kwLead` of keyword rules, and of `kwLead + lb` (bounds for idle rules). */
  readonly idleKwLead: number;
  readonly idleKwNeed: number;
  /** Per trigger: largest `maxLen - 1` of its rules, and of `maxLen - 1 + lb`. */
  readonly triggerLag: readonly number[];
  readonly triggerNeed: readonly number[];
  /** Keyword rules (not context, not trigger) with `kwOffset > 0`, by alphabet. */
  readonly idleSpans: readonly IdleSpan[];
  /** Per trigger: union of its rules' alphabets, and of their first code units. */
  readonly triggerAlpha: readonly Alphabet[];
  readonly triggerFirst: readonly Alphabet[];
}

/**
 * Always-run rules sharing one search: `re` is the alternation of their patterns, so it
 * matches at a position exactly when one of them does. Its hits are the only starts at
 * which the members' own (sticky) patterns are tried.
 */
export interface CompiledGroup {
  readonly re: RegExp;
  readonly members: Int32Array;
  /** Smallest `maxLen + la` of the members: no member decides a start at or after `end - minReach + 1`. */
  readonly minReach: number;
}

/** A rule match before overlap resolution. `end` is -1 while a block is still open. */
export interface Candidate {
  readonly rule: number;
  readonly start: number;
  end: number;
  /** Lower bound of `end` while open. */
  minEnd: number;
  readonly redacts: boolean;
  readonly isSpan: boolean;
}

interface OpenSpan {
  readonly cand: Candidate;
  /** END attempts before this are known to fail. */
  endFrom: number;
}

/** Windows narrower than this try each start with the sticky regex. */
const STICKY_WINDOW = 24;

/**
 * Fixed cost of searching one window, in characters of a plain search: when the windows of a
 * rule would cost more than searching the rest of the text in one go, it does that instead.
 */
const WINDOW_COST = 64;

/** Growable list of keyword hit end offsets, oldest first. */
class HitList {
  ends = new Float64Array(8);
  head = 0;
  size = 0;

  push(end: number): void {
    if (this.size === this.ends.length) {
      if (this.head > this.size / 2) {
        this.ends.copyWithin(0, this.head, this.size);
        this.size -= this.head;
        this.head = 0;
      } else {
        const n = new Float64Array(this.ends.length * 2);
        n.set(this.ends);
        this.ends = n;
      }
    }
    this.ends[this.size++] = end;
  }

  dropBefore(pos: number): void {
    this.head = this.firstAtLeast(pos);
    if (this.head === this.size) this.head = this.size = 0;
  }

  /** Index of the first hit whose end is >= `pos` (binary search; ends are sorted). */
  firstAtLeast(pos: number): number {
    let lo = this.head;
    let hi = this.size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ends[mid]! < pos) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** Search state of all rules over one text or stream. */
export class ScanState {
  private readonly resume: Float64Array;
  private readonly tResume: Float64Array;
  private readonly prevTResume: Float64Array;
  /** Rules that must run on the next call: always-run, with relevant hits, or with an open block. */
  private readonly active: number[];
  private readonly isActive: Uint8Array;
  /** Ids whose hit list exists. */
  private readonly hitIds: number[] = [];
  private readonly open: (OpenSpan | null)[];
  private readonly hits: (HitList | undefined)[];
  /** Largest hit end per rule (-1: none yet). */
  private readonly lastHit: Float64Array;
  private acState = 0;
  private acPos = 0;
  private prevEnd = 0;
  private readonly windows: number[] = [];
  /** Scratch for {@link scanGroup}: first undecided start per member. */
  private readonly undecided: Float64Array;
  /** Earliest start a keyword (trigger) hit not seen yet could allow, as of the last call. */
  private idleBound = 0;
  private readonly trigBound: Float64Array;
  /** Scratch for {@link scanGroup}: last break per member. */
  private readonly breaks: Float64Array;

  constructor(private readonly c: CompiledRules) {
    const n = c.rules.length;
    this.resume = new Float64Array(n);
    this.open = new Array<OpenSpan | null>(n).fill(null);
    this.hits = new Array<HitList | undefined>(c.triggers.length + c.automaton.keywords.length);
    this.tResume = new Float64Array(c.triggers.length);
    this.prevTResume = new Float64Array(c.triggers.length);
    this.trigBound = new Float64Array(c.triggers.length);
    this.lastHit = new Float64Array(n).fill(-1);
    this.undecided = new Float64Array(c.groups.reduce((m, g) => Math.max(m, g.members.length), 0));
    this.breaks = new Float64Array(this.undecided.length);
    this.active = Array.from(c.always);
    this.isActive = new Uint8Array(n);
    for (const r of c.always) this.isActive[r] = 1;
  }

  /** Returns to the state of a new scan (cheaper than a new instance for short texts). */
  reset(): void {
    const c = this.c;
    this.resume.fill(0);
    this.tResume.fill(0);
    this.prevTResume.fill(0);
    this.open.fill(null);
    this.lastHit.fill(-1);
    for (const id of this.hitIds) this.hits[id] = undefined;
    this.hitIds.length = 0;
    this.isActive.fill(0);
    this.active.length = 0;
    for (const r of c.always) {
      this.active.push(r);
      this.isActive[r] = 1;
    }
    this.acState = 0;
    this.acPos = 0;
    this.prevEnd = 0;
    this.idleBound = 0;
    this.trigBound.fill(0);
  }

  /**
   * Scans `buf` (which starts at absolute offset `base` and must hold everything from
   * {@link needFrom} on) and appends the candidates that became final. With `final`, the
   * text ends at the end of `buf` and every search completes.
   */
  advance(buf: string, base: number, final: boolean, out: Candidate[]): void {
    const c = this.c;
    const e = base + buf.length;
    this.prevTResume.set(this.tResume);
    // Keywords in the text not seen before; their rules become active.
    const { hits, state } = c.automaton.run(buf, this.acPos - base, base, this.acState);
    this.acState = state;
    this.acPos = e;
    const kwBase = c.triggers.length;
    for (let i = 0; i < hits.count; i++) this.addHit(kwBase + hits.kw[i]!, hits.end[i]!);
    for (let t = 0; t < c.triggers.length; t++) this.scanTrigger(t, buf, base, final);
    for (const g of c.groups) this.scanGroup(g, buf, base, final, out);
    const list = this.active;
    let keep = 0;
    for (let i = 0; i < list.length; i++) {
      const r = list[i]!;
      if (c.grouped[r] === 1) {
        list[keep++] = r;
        continue;
      }
      const rule = c.rules[r]!;
      let from = this.resume[r]!;
      const open = this.open[r];
      if (open) {
        if (!this.searchEnd(rule, open, buf, base, final)) {
          list[keep++] = r;
          continue;
        }
        this.open[r] = null;
        from = open.cand.end;
      }
      if (rule.keywords !== null && this.lastHit[r]! <= from - rule.before) {
        // No keyword seen can be part of a match from here on; only future ones can.
        this.resume[r] = final ? e : Math.max(from, this.futureStart(rule, e));
        this.isActive[r] = 0;
        continue;
      }
      const resume = this.scanRule(rule, buf, base, from, final, out);
      this.resume[r] = resume;
      if (rule.keywords !== null && this.open[r] === null && this.lastHit[r]! <= resume - rule.before) this.isActive[r] = 0;
      else list[keep++] = r;
    }
    list.length = keep;
    this.prevEnd = e;
    if (!final) this.futureBounds(buf, base, e);
  }

  /**
   * Where a match that needs a keyword or trigger hit not seen yet can start. Such a keyword
   * starts no earlier than the pending keyword prefix at the end of the text (`k`), and the
   * match holds everything from its own start to the keyword; likewise a match overlapping a
   * future trigger hit holds everything up to that hit. Neither can start at or before a
   * break of its alphabet in that stretch.
   */
  private futureBounds(buf: string, base: number, e: number): void {
    const c = this.c;
    const k = e - c.automaton.pendingDepth(this.acState);
    let f = k;
    for (const g of c.idleSpans) {
      const from = k - g.offset;
      const after = Math.max(from, lastBreak(buf, base, from, k, g.alpha) + 1);
      f = Math.min(f, nextStart(buf, base, after, k, g.first));
    }
    this.idleBound = f;
    for (let t = 0; t < c.triggers.length; t++) {
      // A match overlapping a future hit (at or after tResume) contains [start, tResume].
      const at = this.tResume[t]!;
      const from = at - c.triggerLag[t]!;
      const to = Math.min(at + 1, e);
      const after = Math.max(from, lastBreak(buf, base, from, to, c.triggerAlpha[t]!) + 1);
      this.trigBound[t] = nextStart(buf, base, after, at, c.triggerFirst[t]!);
    }
  }

  private addHit(id: number, end: number): void {
    let list = this.hits[id];
    if (list === undefined) {
      list = new HitList();
      this.hits[id] = list;
      this.hitIds.push(id);
    }
    list.push(end);
    for (const r of this.c.rulesByKeyword[id]!) {
      if (end > this.lastHit[r]!) this.lastHit[r] = end;
      if (this.isActive[r] === 0) {
        // Idle until now: nothing could start before what the last call left undecided.
        const rule = this.c.rules[r]!;
        const lead = rule.trigger >= 0 ? this.prevTResume[rule.trigger]! - rule.maxLen + 1 : this.prevEnd + 1 - rule.kwLead;
        this.resume[r] = Math.max(this.resume[r]!, lead);
        this.isActive[r] = 1;
        this.active.push(r);
      }
    }
  }

  /**
   * Runs an always-run group: every hit of the alternation is a start where some member
   * matches; each member whose search has reached it tries its own pattern there. That
   * visits, per member, exactly the starts its own leftmost-first search would accept or
   * reject, in one pass over the text instead of one per member.
   */
  private scanGroup(g: CompiledGroup, buf: string, base: number, final: boolean, out: Candidate[]): void {
    const c = this.c;
    const e = base + buf.length;
    const members = g.members;
    const resume = this.resume;
    const undecided = this.undecided;
    let from = Infinity;
    for (let k = 0; k < members.length; k++) {
      from = Math.min(from, resume[members[k]!]!);
      undecided[k] = Infinity;
    }
    // No member decides a start at or after this before more text arrives, except where a
    // break of its alphabet lies between the start and the text's end (its match must stop
    // before the break, so the attempt reads only text that is here).
    const breaks = this.breaks;
    let stop = final ? Infinity : e - g.minReach + 1;
    if (!final) {
      for (let k = 0; k < members.length; k++) {
        const rule = c.rules[members[k]!]!;
        const to = e - rule.la + 1;
        breaks[k] = lastBreak(buf, base, to - rule.maxLen, to, rule.alphabet);
        stop = Math.max(stop, breaks[k]! + 1);
      }
    }
    const re = g.re;
    re.lastIndex = from - base;
    while (true) {
      const m = re.exec(buf);
      if (m === null) break;
      const p = base + m.index;
      if (p >= stop) break;
      for (let k = 0; k < members.length; k++) {
        const r = members[k]!;
        if (resume[r]! > p || undecided[k]! !== Infinity) continue;
        const rule = c.rules[r]!;
        if (!final && p >= e - rule.maxLen - rule.la + 1 && p > breaks[k]!) {
          undecided[k] = p;
          continue;
        }
        const end = this.tryAt(rule, buf, base, m.index, out);
        if (end >= 0) resume[r] = end;
      }
      re.lastIndex = m.index + 1;
    }
    for (let k = 0; k < members.length; k++) {
      const r = members[k]!;
      const rule = c.rules[r]!;
      resume[r] = final ? e : Math.min(undecided[k]!, Math.max(resume[r]!, e - rule.maxLen - rule.la + 1, breaks[k]! + 1));
    }
  }

  /**
   * One attempt of `rule` at `buf[at]` with its sticky pattern: on an accepted match, appends
   * the candidate and returns the match end (absolute); otherwise -1.
   */
  private tryAt(rule: CompiledRule, buf: string, base: number, at: number, out: Candidate[]): number {
    const rx = rule.reSticky;
    rx.lastIndex = at;
    const m = rx.exec(buf);
    if (m === null) return -1;
    const s = base + at;
    const mEnd = s + m[0].length;
    let fs = s;
    let fe = mEnd;
    if (rule.hasCapture) {
      const gi = m.indices?.[1];
      if (gi) {
        fs = base + gi[0];
        fe = base + gi[1];
      }
    }
    if (rule.check) {
      const ok = rule.check(buf, at, fs - base, fe - base);
      if (ok === false) return -1;
      if (ok !== true) {
        fs = base + ok[0];
        fe = base + ok[1];
      }
    }
    out.push({ rule: rule.index, start: fs, end: fe, minEnd: fe, redacts: rule.redacts, isSpan: false });
    return mEnd;
  }

  /** Runs a trigger pattern over the new text; a match at p is recorded as a hit ending at p + maxLen. */
  private scanTrigger(t: number, buf: string, base: number, final: boolean): void {
    const trig = this.c.triggers[t]!;
    const e = base + buf.length;
    let frontier = final ? Infinity : e - trig.maxLen - trig.la + 1;
    if (!final) {
      // A hit cannot span a break of the trigger's alphabet: starts up to one are decided.
      const to = e - trig.la + 1;
      frontier = Math.max(frontier, lastBreak(buf, base, to - trig.maxLen, to, trig.alphabet) + 1);
    }
    const re = trig.re;
    let pos = this.tResume[t]!;
    re.lastIndex = pos - base;
    while (true) {
      const m = re.exec(buf);
      if (m === null) break;
      const p = base + m.index;
      if (p >= frontier) break;
      this.addHit(t, p + trig.maxLen);
      pos = p + m[0].length;
    }
    this.tResume[t] = final ? e : Math.max(pos, frontier);
  }

  /**
   * Start of the earliest candidate that may still be found (everything before is known):
   * the resume offsets of active rules, and for idle rules the earliest start a keyword or
   * trigger hit not seen yet could allow.
   */
  knownUntil(): number {
    let f = this.idleBound;
    for (let t = 0; t < this.tResume.length; t++) f = Math.min(f, this.trigBound[t]!);
    for (const r of this.active) {
      const open = this.open[r];
      f = Math.min(f, open ? open.endFrom : this.resume[r]!);
    }
    return f;
  }

  /** Earliest absolute offset of text later calls still read; drops keyword hits before it. */
  needFrom(): number {
    const c = this.c;
    let need = this.prevEnd + 1 - c.idleKwNeed;
    let minResume = this.prevEnd + 1 - c.idleKwLead;
    for (let t = 0; t < this.tResume.length; t++) {
      need = Math.min(need, this.tResume[t]! - c.triggerNeed[t]!, this.tResume[t]! - 1);
      minResume = Math.min(minResume, this.tResume[t]! - c.triggerLag[t]!);
    }
    for (const r of this.active) {
      const open = this.open[r];
      const at = open ? open.endFrom : this.resume[r]!;
      need = Math.min(need, at - (open ? 1 : c.rules[r]!.lb));
      minResume = Math.min(minResume, at);
    }
    const drop = minResume - c.maxBefore;
    for (const id of this.hitIds) this.hits[id]!.dropBefore(drop);
    return Math.max(0, need);
  }

  /** Earliest start of a match that a keyword or trigger hit not seen yet could allow. */
  private futureStart(rule: CompiledRule, e: number): number {
    return rule.trigger >= 0 ? this.tResume[rule.trigger]! - rule.maxLen + 1 : e + 1 - rule.kwLead;
  }

  /**
   * Builds the start windows of a keyword rule; returns false when searching all of
   * `[from, e)` is cheaper.
   */
  private buildWindows(rule: CompiledRule, from: number, e: number): boolean {
    const w = this.windows;
    w.length = 0;
    const kws = rule.keywords!;
    const budget = e - from;
    let cost = 0;
    for (const kw of kws) {
      const list = this.hits[kw];
      if (list === undefined) continue;
      const len = this.c.keywordLength[kw]!;
      // First hit whose window can reach `from` (window ends grow with hit ends).
      const skip = rule.trigger >= 0 ? 1 : rule.kwInContext ? len - rule.before : len;
      for (let i = list.firstAtLeast(from + skip); i < list.size; i++) {
        const h1 = list.ends[i]!;
        const h0 = h1 - len;
        // Context keywords sit in [start - before, start); other keywords start within kwOffset
        // of it; a trigger match [h0, h0 + len) overlaps the match.
        const lo = rule.trigger >= 0 ? h0 - rule.maxLen + 1 : rule.kwInContext ? h1 : h0 - rule.kwOffset;
        const hi = rule.trigger >= 0 ? h1 - 1 : rule.kwInContext ? h0 + rule.before : h0;
        if (hi < from) continue;
        cost += Math.min(hi, e) - Math.max(from, lo) + rule.maxLen + WINDOW_COST;
        if (cost > budget) return false;
        w.push(Math.max(from, lo), hi);
      }
    }
    if (kws.length > 1 && w.length > 2) {
      const pairs: [number, number][] = [];
      for (let i = 0; i < w.length; i += 2) pairs.push([w[i]!, w[i + 1]!]);
      pairs.sort((a, b) => a[0] - b[0]);
      w.length = 0;
      for (const [a, b] of pairs) w.push(a, b);
    }
    // Merge overlapping or touching windows (hits of one keyword arrive sorted).
    let k = 0;
    for (let i = 0; i < w.length; i += 2) {
      if (k > 0 && w[i]! <= w[k - 1]! + 1) w[k - 1] = Math.max(w[k - 1]!, w[i + 1]!);
      else {
        w[k++] = w[i]!;
        w[k++] = w[i + 1]!;
      }
    }
    w.length = k;
    return true;
  }

  /** Runs one rule from `from`; returns the new resume offset. */
  private scanRule(rule: CompiledRule, buf: string, base: number, from: number, final: boolean, out: Candidate[]): number {
    const e = base + buf.length;
    let frontier = final ? Infinity : e - rule.maxLen - rule.la + 1;
    if (!final) {
      // A start at or before a break of the rule's alphabet that lies `la` before the end is
      // decided now: its match stops before the break and its reads stay in the text.
      const to = e - rule.la + 1;
      frontier = Math.max(frontier, lastBreak(buf, base, to - rule.maxLen, to, rule.alphabet) + 1);
    }
    const w = this.windows;
    let future = frontier;
    if (rule.keywords === null || !this.buildWindows(rule, from, e)) {
      w.length = 0;
      w.push(from, Infinity);
    } else if (!final) {
      future = this.futureStart(rule, e);
    }
    const re = rule.re;
    let pos = from;
    // First start left undecided because its attempt would read past the end of the text.
    let undecided = Infinity;
    for (let wi = 0; wi < w.length; wi += 2) {
      const a = Math.max(w[wi]!, pos);
      if (w[wi + 1]! >= frontier && undecided === Infinity) undecided = Math.max(a, frontier);
      const hi = Math.min(w[wi + 1]!, frontier - 1);
      if (a > hi) {
        if (w[wi + 1]! >= frontier) break;
        continue;
      }
      const subStart = Math.max(base, a - rule.lb);
      const subEnd = hi === Infinity ? e : Math.min(e, hi + rule.maxLen + rule.la);
      const text = subStart === base && subEnd === e ? buf : buf.slice(subStart - base, subEnd - base);
      // Narrow windows: try each start with the sticky regex, which cannot run ahead past `hi`.
      const sticky = hi - a < STICKY_WINDOW;
      const rx = sticky ? rule.reSticky : re;
      const hiRel = hi - subStart;
      let at = a - subStart;
      while (true) {
        let m: RegExpExecArray | null = null;
        if (sticky) {
          for (; at <= hiRel; at++) {
            rx.lastIndex = at;
            m = rx.exec(text);
            if (m !== null) break;
          }
        } else {
          rx.lastIndex = at;
          m = rx.exec(text);
          if (m !== null && m.index > hiRel) m = null;
        }
        if (m === null) break;
        const s = subStart + m.index;
        const mEnd = s + m[0].length;
        let fs = s;
        let fe = mEnd;
        if (rule.hasCapture) {
          const g = m.indices?.[1];
          if (g) {
            fs = subStart + g[0];
            fe = subStart + g[1];
          }
        }
        let ok: CheckResult = true;
        if (rule.check) ok = rule.check(text, s - subStart, fs - subStart, fe - subStart);
        if (ok === false) {
          at = m.index + 1;
          continue;
        }
        if (ok !== true) {
          fs = subStart + ok[0];
          fe = subStart + ok[1];
        }
        if (rule.span) {
          const cand: Candidate = { rule: rule.index, start: fs, end: -1, minEnd: mEnd, redacts: rule.redacts, isSpan: true };
          out.push(cand);
          const open: OpenSpan = { cand, endFrom: mEnd };
          if (!this.searchEnd(rule, open, buf, base, final)) {
            this.open[rule.index] = open;
            return mEnd;
          }
          pos = cand.end;
          if (pos > hi || pos >= subEnd) break;
          at = pos - subStart;
          continue;
        }
        out.push({ rule: rule.index, start: fs, end: fe, minEnd: fe, redacts: rule.redacts, isSpan: false });
        pos = mEnd;
        at = m.index + m[0].length;
      }
      pos = Math.max(pos, hi + 1);
    }
    return final ? e : Math.max(pos, Math.min(undecided, future));
  }

  /** Looks for the end marker of an open block; true once the block's end is known. */
  private searchEnd(rule: CompiledRule, open: OpenSpan, buf: string, base: number, final: boolean): boolean {
    const span = rule.span!;
    const cand = open.cand;
    const e = base + buf.length;
    const limit = cand.start + span.maxSpan;
    const frontier = final ? Infinity : e - span.maxLen - span.la + 1;
    const lastUseful = limit - span.minLen;
    const re = span.re;
    re.lastIndex = open.endFrom - base;
    while (true) {
      const m = re.exec(buf);
      const t = m === null ? Infinity : base + m.index;
      if (m === null || t >= frontier || t > lastUseful) break;
      const te = t + m[0].length;
      if (te <= limit) {
        cand.end = te;
        cand.minEnd = te;
        return true;
      }
      re.lastIndex = m.index + 1;
    }
    if (final) {
      cand.end = Math.min(limit, e);
      cand.minEnd = cand.end;
      return true;
    }
    open.endFrom = Math.max(open.endFrom, Math.min(frontier, lastUseful + 1));
    if (open.endFrom > lastUseful && e >= limit) {
      cand.end = limit;
      cand.minEnd = limit;
      return true;
    }
    cand.minEnd = Math.min(limit, open.endFrom + span.minLen);
    return false;
  }
}
