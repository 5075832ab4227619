import { compileSafePattern, PatternError } from '../dlp/regex/index.js';
import { base64Instructions } from '../dlp/validators.js';
import { GatewayError } from '../errors.js';

/**
 * Prompt-injection patterns for tool arguments: instruction overrides, system-prompt
 * exfiltration, chat-template role markers, persona hijacks, hidden characters and encoded
 * instruction blobs. Patterns use the DLP safe subset, so detection is linear in the input
 * whatever the arguments contain; extra patterns from config go through the same check.
 */

/** A pattern match: which rule, at which JSON path (`$.a.b[0]`, `$` for a bare string). */
export interface InjectionFinding {
  rule: string;
  path: string;
}

/** Compiled detector; see {@link compileInjectionRules}. */
export interface InjectionDetector {
  readonly ruleCount: number;
  detect(value: unknown): InjectionFinding[];
}

interface RuleDef {
  readonly id: string;
  readonly pattern: string;
  /** One of these must follow the match within `nearAfter` characters (lower case). */
  readonly near?: readonly string[];
  readonly nearAfter?: number;
  readonly check?: (text: string, start: number, end: number) => boolean;
}

const IGNORE_VERBS = 'ignore|disregard|forget|override|bypass|skip|drop';
const TARGETS = ['instruction', 'prompt', 'rule', 'direction', 'guideline', 'context', 'message', 'guardrail', 'polic', 'restriction', 'system'];

const BUILTIN: readonly RuleDef[] = [
  {
    id: 'injection.ignore_instructions',
    pattern: `(?<![a-z])(?:${IGNORE_VERBS})\\s{1,3}(?:all|any|every|the|your|previous|prior|above|earlier|preceding|initial|original|system|these|those)(?![a-z])`,
    near: TARGETS,
    nearAfter: 60,
  },
  {
    id: 'injection.new_instructions',
    pattern: '(?<![a-z])(?:new|updated|real|actual|true|revised|override)\\s{1,3}(?:system\\s{1,3})?(?:instructions|prompt|directive|rules)\\s{0,3}:',
  },
  {
    id: 'injection.system_prompt_exfiltration',
    pattern:
      '(?<![a-z])(?:reveal|show|print|repeat|output|display|dump|leak|disclose|tell\\s{1,3}me|give\\s{1,3}me|what\\s{1,3}(?:is|are))\\s{1,3}(?:me\\s{1,3})?(?:your|the)\\s{1,3}(?:full\\s{1,3}|entire\\s{1,3}|exact\\s{1,3})?(?:system|initial|hidden|original|secret|developer)\\s{1,3}(?:prompt|instructions|message|rules)',
  },
  {
    id: 'injection.verbatim_above',
    pattern: '(?<![a-z])(?:repeat|print|output|copy)\\s{1,3}(?:everything|all|the\\s{1,3}(?:text|words))\\s{1,3}(?:above|before|prior)',
  },
  {
    id: 'injection.chat_template_marker',
    pattern:
      '<\\|(?:im_start|im_end|im_sep|system|user|assistant|endoftext|start_header_id|end_header_id|eot_id|begin_of_text)\\|>|\\[/?INST\\]|<</?SYS>>|<start_of_turn>|<end_of_turn>',
  },
  {
    id: 'injection.role_tag',
    pattern: '</?(?:system|assistant|developer)(?:_prompt|_message)?>|(?<![a-z])###\\s{0,3}(?:system|instruction|assistant)\\s{0,3}:|(?<![a-z])(?:system|developer)\\s{0,2}:\\s{0,2}you\\s{1,3}(?:are|must|will)',
  },
  {
    id: 'injection.persona_hijack',
    pattern: '(?<![a-z])(?:you\\s{1,3}are\\s{1,3}now|from\\s{1,3}now\\s{1,3}on\\s{1,3}you)(?![a-z])',
    near: ['dan', 'unrestricted', 'jailbr', 'no longer', 'without', 'ignore', 'free', 'mode', 'evil', 'rules', 'restrict', 'filter', 'persona', 'character', 'root', 'admin', 'developer', 'system', 'an ai', 'a different'],
    nearAfter: 60,
  },
  {
    id: 'injection.roleplay_override',
    pattern: '(?<![a-z])(?:pretend\\s{1,3}(?:to\\s{1,3}be|you\\s{1,3}are)|act\\s{1,3}as\\s{1,3}(?:if\\s{1,3}you|an?\\s{1,3}unrestricted|dan))(?![a-z])',
  },
  {
    id: 'injection.jailbreak_mode',
    pattern: '(?<![a-z])(?:developer|god|jailbreak|dan|unrestricted|sudo)\\s{1,3}mode(?![a-z])',
  },
  {
    id: 'injection.do_anything_now',
    pattern: '(?<![a-z])do\\s{1,3}anything\\s{1,3}now(?![a-z])',
  },
  {
    id: 'injection.exfiltrate_to_url',
    pattern: '(?<![a-z])(?:send|post|upload|exfiltrate|forward|transmit|leak)\\s{1,3}(?:it|this|them|the|all|your|every|any)(?![a-z])',
    near: ['http://', 'https://', 'webhook', 'attacker', 'curl ', '@'],
    nearAfter: 120,
  },
  {
    id: 'injection.markdown_image_exfiltration',
    pattern: '!\\[[^\\]\\n]{0,200}\\]\\(https?://[^)\\s?]{1,300}\\?[^)\\s]{1,600}\\)',
  },
  {
    id: 'injection.tool_call_smuggling',
    pattern: '(?<![a-z])(?:call|invoke|run|execute|use)\\s{1,3}(?:the\\s{1,3}(?:tool|function)|tool|function)\\s{1,3}["\'`]?[a-z_][a-z0-9_.-]{0,60}["\'`]?\\s{1,3}(?:with|using)(?![a-z])',
    near: ['without', 'do not tell', "don't tell", 'silently', 'secretly', 'ignore', 'instead'],
    nearAfter: 160,
  },
  {
    id: 'injection.hidden_unicode_tags',
    // Unicode tag characters (U+E0000 block, as surrogate pairs) used for invisible text.
    pattern: '\\uDB40[\\uDC00-\\uDC7F]',
  },
  {
    id: 'injection.invisible_characters',
    pattern: '[\\u200B-\\u200D\\u2060\\u2062-\\u2064\\uFEFF]{4}',
  },
  {
    id: 'injection.bidi_override',
    pattern: '[\\u202A-\\u202E\\u2066-\\u2069]',
  },
  {
    id: 'injection.base64_instructions',
    pattern: '(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{40,4096}',
    check: (text, start, end) => base64Instructions(text, start, end) === true,
  },
];

/**
 * Patterns aimed at the model through a tool's own definition (tool poisoning): hidden
 * directive tags, orders to keep something from the user, to read credentials files, or to
 * send data elsewhere. Scanned in tool descriptions with the argument rules above.
 */
const SENSITIVE_FILES = ['~/.ssh', '.ssh/', 'id_rsa', 'id_ed25519', 'id_ecdsa', '.env', '/etc/passwd', '/etc/shadow', '.aws/credentials', '.netrc', '.npmrc', '.pypirc', '.git-credentials', 'mcp.json', '.kube/config', 'private key'];

const POISONING: readonly RuleDef[] = [
  {
    id: 'poisoning.directive_tag',
    pattern: '</?\\s{0,2}(?:important|critical|secret|hidden|instructions?|system_instructions?|ai_instructions?|note_to_(?:ai|model|assistant)|admin)\\s{0,2}>',
  },
  // One id, three shapes: "do not tell the user", "without telling the user", "hide it from the user".
  {
    id: 'poisoning.conceal_from_user',
    pattern: "(?<![a-z])(?:do\\s{1,3}not|don't|never|must\\s{1,3}not)\\s{1,3}(?:tell|inform|mention|reveal|show|notify|alert|disclose)(?![a-z])",
    near: ['user', 'human'],
    nearAfter: 40,
  },
  {
    id: 'poisoning.conceal_from_user',
    pattern: '(?<![a-z])without\\s{1,3}(?:telling|informing|notifying|alerting|asking)(?![a-z])',
    near: ['user', 'human'],
    nearAfter: 30,
  },
  {
    id: 'poisoning.conceal_from_user',
    pattern: '(?<![a-z])(?:hide|conceal)\\s{1,3}(?:this|it|that)\\s{1,3}from(?![a-z])',
    near: ['user', 'human'],
    nearAfter: 30,
  },
  {
    id: 'poisoning.read_sensitive_file',
    pattern: '(?<![a-z])(?:read|open|cat|load|include|attach|upload|access|fetch|get|copy|pass|send)(?![a-z])',
    near: SENSITIVE_FILES,
    nearAfter: 80,
  },
  {
    id: 'poisoning.sensitive_path',
    pattern: '~/\\.ssh|\\.ssh/(?:id_|authorized_keys)|(?<![a-z0-9_])id_(?:rsa|ed25519|ecdsa)(?![a-z0-9_])|/etc/(?:passwd|shadow)|\\.aws/credentials|~/\\.(?:netrc|npmrc|git-credentials|kube)|~/\\.cursor/',
  },
  {
    id: 'poisoning.before_using',
    pattern: '(?<![a-z])(?:before|prior\\s{1,3}to)\\s{1,3}(?:using|calling|invoking|running|executing)\\s{1,3}(?:this|the|any|other)(?![a-z])',
    // Only with something a tool never needs from the model; "call list_x first" is ordinary advice.
    near: ['~/', '.ssh', '.env', 'id_rsa', 'credential', 'secret', 'password', 'private key', 'mcp.json', 'sidenote', 'conversation', 'system prompt'],
    nearAfter: 120,
  },
  {
    id: 'poisoning.redirect_data',
    pattern: '(?<![a-z])(?:always|must|should)\\s{1,3}(?:also\\s{1,3})?(?:send|forward|copy|bcc|cc|redirect)(?![a-z])',
    near: ['@', 'http://', 'https://', 'webhook', 'attacker', 'proxy number', 'instead'],
    nearAfter: 120,
  },
  {
    id: 'poisoning.tool_shadowing',
    // Instructions about how to use other tools: rewrite their arguments, replace their results.
    pattern: '(?<![a-z])(?:when|whenever)\\s{1,3}(?:the\\s{1,3})?(?:user|you|agent|assistant|model)\\s{1,3}(?:calls?|uses?|invokes?|runs?)(?![a-z])',
    near: ['instead', 'change the', 'replace', 'redirect', 'also send', 'always send', 'bcc', 'must be sent'],
    nearAfter: 120,
  },
];

interface Compiled {
  readonly id: string;
  readonly re: RegExp;
  readonly near: readonly string[] | null;
  readonly nearAfter: number;
  readonly check: ((text: string, start: number, end: number) => boolean) | null;
}

function compileRule(def: RuleDef): Compiled {
  let p;
  try {
    p = compileSafePattern(def.pattern, { ignoreCase: true, maxMatch: 8192 });
  } catch (err) {
    if (err instanceof PatternError) throw new PatternError(`${def.id}: ${err.message}`, -1);
    throw err;
  }
  return { id: def.id, re: p.re, near: def.near ?? null, nearAfter: def.nearAfter ?? 0, check: def.check ?? null };
}

function matches(rule: Compiled, text: string): boolean {
  const re = rule.re;
  re.lastIndex = 0;
  while (true) {
    const m = re.exec(text);
    if (m === null) return false;
    const end = m.index + m[0].length;
    let ok = true;
    if (rule.near) {
      const after = text.slice(end, end + rule.nearAfter).toLowerCase();
      ok = rule.near.some((w) => after.includes(w));
    }
    if (ok && rule.check) ok = rule.check(text, m.index, end);
    if (ok) return true;
    re.lastIndex = m.index + 1;
  }
}

/**
 * The detector for tool definitions (descriptions, schema property descriptions): the argument
 * rules plus the tool-poisoning rules.
 */
export function compileToolPoisoningRules(): InjectionDetector {
  // Saying where a tool sends data is what many tool descriptions are for; telling the model
  // to send it elsewhere is poisoning.redirect_data.
  return detector([...BUILTIN.filter((r) => !DEFINITION_EXEMPT.has(r.id)), ...POISONING].map(compileRule));
}

/** Argument rules that describe ordinary tool descriptions too. */
const DEFINITION_EXEMPT = new Set(['injection.exfiltrate_to_url']);

/** Deepest nesting walked; deeper values are reported as a finding rather than skipped. */
const MAX_DEPTH = 64;

/**
 * Compiles the built-in prompt-injection rules plus `extra` ones (`{id, pattern}`, matched
 * case-insensitively). A bad extra pattern throws a {@link GatewayError} naming the rule.
 */
export function compileInjectionRules(extra: readonly { id: string; pattern: string }[] = []): InjectionDetector {
  const rules: Compiled[] = BUILTIN.map(compileRule);
  const ids = new Set(rules.map((r) => r.id));
  const problems: string[] = [];
  for (const x of extra) {
    if (ids.has(x.id)) {
      problems.push(`rule "${x.id}": duplicate id`);
      continue;
    }
    ids.add(x.id);
    try {
      rules.push(compileRule({ id: x.id, pattern: x.pattern }));
    } catch (err) {
      problems.push(`rule "${x.id}": ${err instanceof PatternError ? err.message : String(err)}`);
    }
  }
  if (problems.length > 0) {
    throw new GatewayError('internal', `invalid injection pattern: ${problems.join('; ')}`, { rule: 'inspect.injection.config', details: { problems } });
  }
  return detector(rules);
}

function detector(rules: readonly Compiled[]): InjectionDetector {
  return {
    ruleCount: rules.length,
    detect(value: unknown): InjectionFinding[] {
      const out: InjectionFinding[] = [];
      const seen = new Set<string>();
      const scan = (text: string, path: string): void => {
        for (const r of rules) {
          if (!matches(r, text)) continue;
          const key = `${r.id}\u0000${path}`;
          if (seen.has(key)) continue;
          seen.add(key);
          out.push({ rule: r.id, path });
        }
      };
      // Iterative walk: hostile nesting cannot exhaust the stack.
      const stack: { v: unknown; path: string; depth: number; key: string | null }[] = [{ v: value, path: '$', depth: 0, key: null }];
      while (stack.length > 0) {
        const { v, path, depth, key } = stack.pop()!;
        if (key !== null) scan(key, path);
        if (typeof v === 'string') {
          scan(v, path);
          continue;
        }
        if (typeof v !== 'object' || v === null) continue;
        if (depth >= MAX_DEPTH) {
          out.push({ rule: 'injection.excessive_nesting', path });
          continue;
        }
        if (Array.isArray(v)) {
          for (let i = v.length - 1; i >= 0; i--) stack.push({ v: v[i], path: `${path}[${i}]`, depth: depth + 1, key: null });
          continue;
        }
        const keys = Object.keys(v);
        for (let i = keys.length - 1; i >= 0; i--) {
          const k = keys[i]!;
          const child = /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(k) ? `${path}.${k}` : `${path}[${JSON.stringify(k)}]`;
          stack.push({ v: (v as Record<string, unknown>)[k], path: child, depth: depth + 1, key: k });
        }
      }
      return out;
    },
  };
}
