import { describe, expect, it } from 'vitest';
import { BUILTIN_RULES } from '../../../src/dlp/catalog/index.js';
import { compileCatalog } from '../../../src/dlp/index.js';
import { compileSafePattern } from '../../../src/dlp/regex/index.js';
import { cardIssuer, entropy, ibanMod97, luhn } from '../../../src/dlp/validators.js';
import { NEGATIVES, sampleFor } from './samples.js';

const scanner = compileCatalog();

describe('built-in catalog', () => {
  it('has at least 150 rules with unique ids, a category, an action and a description', () => {
    expect(BUILTIN_RULES.length).toBeGreaterThanOrEqual(150);
    expect(scanner.ruleCount).toBe(BUILTIN_RULES.length);
    const ids = BUILTIN_RULES.map((r) => r.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const r of BUILTIN_RULES) {
      expect(r.id).toMatch(/^[a-z0-9_]+(?:\.[a-z0-9_]+)*$/);
      expect(['secret', 'pii']).toContain(r.category);
      expect(['redact', 'block', 'flag']).toContain(r.action);
      expect(r.description.length).toBeGreaterThan(5);
    }
  });

  it('covers the required families', () => {
    const ids = new Set(BUILTIN_RULES.map((r) => r.id));
    for (const id of [
      'aws.access_key_id', 'aws.secret_access_key', 'gcp.api_key', 'gcp.service_account_private_key', 'azure.storage_account_key',
      'azure.shared_access_key', 'azure.sas_signature', 'github.pat', 'github.fine_grained_pat', 'gitlab.pat', 'bitbucket.app_password',
      'circleci.personal_token', 'travis.api_token', 'npm.access_token', 'pypi.upload_token', 'dockerhub.pat', 'slack.bot_token',
      'slack.webhook_url', 'discord.webhook_url', 'discord.bot_token', 'teams.webhook_url', 'stripe.secret_key', 'square.access_token',
      'twilio.api_key', 'sendgrid.api_key', 'mailgun.api_key', 'openai.project_key', 'anthropic.api_key', 'private_key.rsa',
      'private_key.ec', 'private_key.dsa', 'private_key.openssh', 'private_key.pgp', 'jwt', 'db.postgres_uri_password',
      'db.mysql_uri_password', 'db.mongodb_uri_password', 'db.redis_uri_password', 'broker.amqp_uri_password', 'generic.password',
      'generic.secret', 'pii.email', 'pii.phone_e164', 'pii.phone_nanp', 'pii.us_ssn', 'pii.credit_card', 'pii.iban', 'pii.ipv4',
      'pii.ipv6', 'pii.internal_hostname', 'pii.unix_home_path', 'pii.windows_user_path',
    ]) {
      expect(ids.has(id), id).toBe(true);
    }
    expect(BUILTIN_RULES.find((r) => r.id === 'aws.secret_access_key')!.context).toBeDefined();
  });

  it('finds every rule in its positive sample', () => {
    const missing: string[] = [];
    for (const rule of BUILTIN_RULES) {
      const text = sampleFor(rule);
      const f = scanner.scan(text).find((x) => x.rule === rule.id);
      if (!f) missing.push(rule.id);
      else {
        expect(f.category).toBe(rule.category);
        expect(f.action).toBe(rule.action);
        expect(f.end).toBeGreaterThan(f.start);
      }
    }
    expect(missing).toEqual([]);
  });

  it('finds every rule in a second, differently generated sample', () => {
    const missing = BUILTIN_RULES.filter((rule) => !scanner.scan(sampleFor(rule, 99)).some((x) => x.rule === rule.id)).map((r) => r.id);
    expect(missing).toEqual([]);
  });

  it('keywords are sound: every sample match holds a keyword at most keywordOffset from its start', () => {
    for (const rule of BUILTIN_RULES) {
      if (!rule.keywords || rule.trigger) continue;
      const text = sampleFor(rule);
      const re = compileSafePattern(rule.pattern, { ignoreCase: rule.ignoreCase === true }).re;
      re.lastIndex = 0;
      const m = re.exec(text);
      expect(m, rule.id).not.toBeNull();
      const lower = text.toLowerCase();
      if (rule.keywordsInContext) {
        const before = lower.slice(Math.max(0, m!.index - rule.context!.before), m!.index);
        expect(rule.keywords.some((k) => before.includes(k)), rule.id).toBe(true);
        continue;
      }
      const offsets = rule.keywords.map((k) => lower.indexOf(k, m!.index) - m!.index).filter((o) => o >= 0 && o < m![0].length);
      expect(offsets.length, rule.id).toBeGreaterThan(0);
      if (rule.keywordOffset !== undefined) expect(Math.min(...offsets), rule.id).toBeLessThanOrEqual(rule.keywordOffset);
    }
  });

  it('checksum and structure checks reject look-alikes', () => {
    for (const [id, texts] of Object.entries(NEGATIVES)) {
      for (const t of texts) expect(scanner.scan(t).map((f) => f.rule), `${id}: ${t}`).not.toContain(id);
    }
  });

  it('redacts a Luhn-valid card of each network and leaves invalid ones', () => {
    const valid = ['4111111111111111', '5555555555554444', '378282246310005', '6011111111111117', '3530111333300000', '30569309025904', '2223003122003222'];
    for (const pan of valid) {
      expect(cardIssuer(pan), pan).not.toBeNull();
      expect(luhn(pan)).toBe(true);
      expect(scanner.scan(`pan ${pan} end`).map((f) => f.rule)).toEqual(['pii.credit_card']);
      const broken = pan.slice(0, -1) + String((Number(pan.at(-1)) + 1) % 10);
      expect(scanner.scan(`pan ${broken} end`).map((f) => f.rule)).not.toContain('pii.credit_card');
    }
  });

  it('validator primitives', () => {
    expect(ibanMod97('GB82WEST12345698765432')).toBe(true);
    expect(ibanMod97('GB82WEST12345698765433')).toBe(false);
    expect(entropy('aaaa')).toBe(0);
    expect(entropy('abcd')).toBe(2);
    expect(cardIssuer('1234567812345670')).toBeNull();
  });
});
