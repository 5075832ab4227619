import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { startStack, type Stack } from '../helpers/index.js';
import { call, token } from './authz-support.js';

/**
 * portcullis' admin port with a bearer token configured: who may read metrics and push a
 * reload, and what a reload (good or bad) answers.
 */

const ADMIN_TOKEN = 'admin-token-for-the-admin-e2e-suite-0123456789';
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    env: { PORTCULLIS_ADMIN_TOKEN: ADMIN_TOKEN },
    editConfig: (cfg) => {
      (cfg.server as Record<string, unknown>).admin_token = { env: 'PORTCULLIS_ADMIN_TOKEN' };
    },
  });
});
afterAll(async () => stack?.stop());

const bearer = (t: string): RequestInit => ({ headers: { authorization: `Bearer ${t}` } });
const post = (t: string | null): RequestInit => ({ method: 'POST', ...(t ? bearer(t) : {}) });

describe('admin port with a token', () => {
  it('serves /metrics only with the token', async () => {
    const none = await call(`${stack.adminUrl}/metrics`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(none.text).not.toContain('portcullis_');
    expect((await call(`${stack.adminUrl}/metrics`, bearer('wrong'))).status).toBe(401);
    const ok = await call(`${stack.adminUrl}/metrics`, bearer(ADMIN_TOKEN));
    expect(ok.status).toBe(200);
    expect(ok.text).toContain('portcullis_authz_decisions_total');
  });

  it('keeps /healthz and the /readyz verdict open for probes, details only with the token', async () => {
    expect((await call(`${stack.adminUrl}/healthz`)).status).toBe(200);
    const bare = await call(`${stack.adminUrl}/readyz`);
    expect(bare.status).toBe(200);
    expect(JSON.parse(bare.text)).toEqual({ ready: true });
    const full = JSON.parse((await call(`${stack.adminUrl}/readyz`, bearer(ADMIN_TOKEN))).text) as Record<string, unknown>;
    expect(full).toMatchObject({ ready: true, draining: false, config_reload_error: null });
  });

  it('POST /reload needs the token and is the only method there', async () => {
    expect((await call(`${stack.adminUrl}/reload`, post(null))).status).toBe(401);
    expect((await call(`${stack.adminUrl}/reload`, post('wrong'))).status).toBe(401);
    expect((await call(`${stack.adminUrl}/reload`, bearer(ADMIN_TOKEN))).status).toBe(405);
  });

  it('POST /reload applies a pushed configuration now, and a bad one is refused with the reason while the last good one serves', async () => {
    const original = readFileSync(stack.configPath, 'utf8');
    const jwt = await token(stack, { agent: 'reporter', user: 'bob', roles: ['viewer'] });
    const weather = `${stack.envoyUrl}/tools/weather/forecast?city=Oslo`;
    expect((await call(weather, bearer(jwt))).status).toBe(200);
    try {
      // A push that turns weather into a dry-run-free tool with a strict limit: one call, then 429.
      const cfg = parse(original) as { tools: { name: string; rate_limit?: unknown }[] };
      cfg.tools.find((t) => t.name === 'weather')!.rate_limit = { rps: 0.001, burst: 1, key: 'agent' };
      writeFileSync(stack.configPath, stringify(cfg));
      const ok = await call(`${stack.adminUrl}/reload`, post(ADMIN_TOKEN));
      expect(ok.status, ok.text).toBe(200);
      expect(JSON.parse(ok.text)).toMatchObject({ reloaded: true, reason: null });
      expect((await call(weather, bearer(jwt))).status).toBe(200);
      expect((await call(weather, bearer(jwt))).status).toBe(429);

      writeFileSync(stack.configPath, 'tools: [ this is: not valid');
      const bad = await call(`${stack.adminUrl}/reload`, post(ADMIN_TOKEN));
      expect(bad.status).toBe(422);
      const body = JSON.parse(bad.text) as { reloaded: boolean; reason: string };
      expect(body.reloaded).toBe(false);
      expect(body.reason).toMatch(/^configuration: /);
      // The last good configuration (with the strict limit) still serves.
      expect((await call(weather, bearer(jwt))).status).toBe(429);
    } finally {
      writeFileSync(stack.configPath, original);
      await call(`${stack.adminUrl}/reload`, post(ADMIN_TOKEN));
    }
  });
});
