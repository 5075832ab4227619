import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { expect } from 'vitest';
import { mintToken } from '../../src/identity/mint.js';
import { readAuditFile, type Stack } from '../helpers/index.js';

/**
 * Shared helpers for the ext_authz end-to-end suites: token minting, Slack-style signing, and the
 * assertions every denial must pass (status, JSON error shape, request id, WWW-Authenticate).
 */

/** Issuer and audience of the demo configuration. */
export const ISSUER = 'https://issuer.demo.portcullis';
export const AUDIENCE = 'portcullis';

/** The error body every denial carries. */
export interface ErrorJson {
  error: {
    type: string;
    message: string;
    retryable: boolean;
    retry_after_s: number | null;
    request_id: string | null;
    rule?: string;
    details?: Record<string, unknown>;
  };
}

/** A fetched response with its text read once. */
export interface Reply {
  status: number;
  headers: Headers;
  text: string;
}

/** fetch + read the body, with a timeout so a hung gateway fails the test instead of the run. */
export async function call(url: string, init: RequestInit = {}): Promise<Reply> {
  const res = await fetch(url, { ...init, signal: init.signal ?? AbortSignal.timeout(15_000) });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** A demo JWT for `agent`/`user` (defaults: helpdesk, alice, acme, support). */
export function token(stack: Stack, o: { agent?: string; user?: string; tenant?: string; roles?: string[] } = {}): Promise<string> {
  return mintToken({
    issuer: ISSUER,
    audience: AUDIENCE,
    agent: o.agent ?? 'helpdesk',
    user: o.user ?? 'alice',
    tenant: o.tenant ?? 'acme',
    roles: o.roles ?? ['support'],
    ttlS: 300,
    privateJwkPath: stack.prepared.privateJwkPath,
  });
}

/** Headers of a request signed as the `alerts-webhook` signer (Slack style). */
export function slackHeaders(stack: Stack, body: string, opts: { ts?: number; secret?: string } = {}): Record<string, string> {
  const secret = opts.secret ?? secretValue(stack, 'secrets/webhook-signing-secret');
  const ts = String(opts.ts ?? Math.floor(Date.now() / 1000));
  const mac = createHmac('sha256', secret).update(`v0:${ts}:${body}`).digest('hex');
  return { 'x-slack-signature': `v0=${mac}`, 'x-slack-request-timestamp': ts };
}

/** The value prepare wrote for a secret file (relative to the stack folder). */
export function secretValue(stack: Stack, file: string): string {
  const v = stack.prepared.secrets[file];
  if (v === undefined) throw new Error(`no prepared secret ${file}; have: ${Object.keys(stack.prepared.secrets).join(', ')}`);
  return v;
}

/** Every secret value the stack knows (files and env), to prove none leaks. */
export function allSecrets(stack: Stack): string[] {
  return [...Object.values(stack.prepared.secrets), ...Object.values(stack.prepared.env)];
}

/**
 * Asserts a denial: status, `content-type: application/json`, the JSON error shape, the type,
 * the rule when given, a non-trivial message, and `request_id` equal to the `x-request-id`
 * response header. 401s must carry `WWW-Authenticate`. Returns the parsed body.
 */
export function expectDenial(r: Reply, status: number, type: string, rule?: string | RegExp, opts: { requestIdOptional?: boolean } = {}): ErrorJson {
  const context = `HTTP ${r.status}: ${r.text.slice(0, 500)}`;
  expect(r.status, context).toBe(status);
  expect(r.headers.get('content-type') ?? '', context).toMatch(/^application\/json/);
  const body = JSON.parse(r.text) as ErrorJson;
  expect(Object.keys(body), context).toEqual(['error']);
  const e = body.error;
  expect(e.type, context).toBe(type);
  expect(typeof e.message, context).toBe('string');
  expect(e.message.length, context).toBeGreaterThan(10);
  expect(typeof e.retryable, context).toBe('boolean');
  expect(e.retry_after_s === null || typeof e.retry_after_s === 'number', context).toBe(true);
  const rid = r.headers.get('x-request-id');
  if (!opts.requestIdOptional) expect(rid, 'x-request-id response header').toBeTruthy();
  expect(e.request_id, context).toBe(rid);
  if (rule !== undefined) {
    if (typeof rule === 'string') expect(e.rule, context).toBe(rule);
    else expect(e.rule ?? '', context).toMatch(rule);
  }
  if (status === 401) expect(r.headers.get('www-authenticate') ?? '', context).toMatch(/^Bearer realm="portcullis"/);
  else expect(r.headers.get('www-authenticate'), context).toBeNull();
  return body;
}

/** Audit records written so far (the config's `audit.file`, relative to the prepared folder). */
export function auditRecords(stack: Stack): Record<string, unknown>[] {
  return readAuditFile(resolve(stack.configPath, '..', 'audit.log'));
}

/** Raw audit file text (for secret grepping). */
export function auditText(stack: Stack): string {
  try {
    return readFileSync(resolve(stack.configPath, '..', 'audit.log'), 'utf8');
  } catch {
    return '';
  }
}

/** Polls `probe` until it returns true or `timeoutMs` passes; returns whether it did. */
export async function eventually(probe: () => Promise<boolean>, timeoutMs: number, stepMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return probe();
}

/** The value of one Prometheus sample (labels matched as a subset), or 0 when absent. */
export function metricValue(text: string, name: string, labels: Record<string, string>): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const m = /^[^{]+\{(.*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const have: Record<string, string> = {};
    for (const lm of (m[1] as string).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have[lm[1] as string] = lm[2] as string;
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) total += Number(m[2]);
  }
  return total;
}
