import { copyFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PolicyEngine, type PolicyStatus } from '../../../src/policy/engine.js';
import { buildPolicyInput, type PolicyInput, type PolicyTool } from '../../../src/policy/input.js';
import { GatewayError } from '../../../src/errors.js';
import { registry } from '../../../src/metrics.js';
import type { Principal } from '../../../src/identity/types.js';
import type { McpCall } from '../../../src/inspect/mcp.js';
import { buildBundle, copyShippedPolicy, tempDir, writePolicy } from './helpers.js';

const DECISION = 'envoy/authz/allow';

function principal(agent: string, roles: string[], user = 'alice', tenant: string | null = 'acme'): Principal {
  return { agent, agent_version: '1.0.0', user, tenant, roles, methods: ['jwt'], proven_by: ['https://issuer.example'] };
}

function tool(name: string, mutating = false): PolicyTool {
  return { name, mutating, external: false, upstream: `tool_${name}` };
}

function input(identity: Principal | null, t: PolicyTool | null, opts: { method?: string; path?: string; mcp?: McpCall | null } = {}): PolicyInput {
  return buildPolicyInput(
    { attributes: { request: { http: { method: opts.method ?? 'GET', path: opts.path ?? '/tools/x', headers: {} } } } },
    { identity, tool: t, mcp: opts.mcp ?? null, body: null },
  );
}

function thrown(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return err as GatewayError;
  }
  throw new Error('expected a GatewayError');
}

async function openError(p: Promise<unknown>): Promise<GatewayError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return err as GatewayError;
  }
  throw new Error('expected open to fail');
}

function nextReload(engine: PolicyEngine): Promise<PolicyStatus> {
  return new Promise((resolve) => engine.onReload(resolve));
}

async function metricValue(name: string, labels: Record<string, string>): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return 0;
  const { values } = await metric.get();
  const hit = values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return hit?.value ?? 0;
}

/** Replaces a file the way deploy tools do: write beside it, then rename over it. */
function replaceFile(target: string, content: Buffer | string): void {
  const tmp = `${target}.tmp`;
  writeFileSync(tmp, content);
  renameSync(tmp, target);
}

let shipped: string;
let shippedV2: string;
let custom: string;
let malformedSmoke: string;

beforeAll(() => {
  shipped = buildBundle(copyShippedPolicy()).path;
  shippedV2 = buildBundle(copyShippedPolicy(), { revision: 'v2' }).path;
  custom = buildBundle(
    writePolicy({
      'p.rego': [
        'package envoy.authz',
        '',
        'allow := {"allowed": true, "rule": "custom.ok"} if input.identity.user == "ok"',
        '',
        'allow := {"allowed": "yes"} if input.identity.user == "bad"',
        '',
        'allow := {"allowed": true} if input.identity.user == "boom"',
        '',
        'allow := {"allowed": false} if input.identity.user == "boom"',
        '',
      ].join('\n'),
    }),
  ).path;
  malformedSmoke = buildBundle(writePolicy({ 'p.rego': 'package envoy.authz\n\nallow := 5\n' })).path;
});

const open: PolicyEngine[] = [];
afterEach(() => {
  for (const e of open.splice(0)) e.close();
});

async function engineFor(opts: { bundlePath: string; dataPath?: string; watch?: boolean; decision?: string }): Promise<PolicyEngine> {
  const e = await PolicyEngine.open({ decision: DECISION, watch: false, ...opts });
  open.push(e);
  return e;
}

describe('PolicyEngine before a policy is loaded', () => {
  it('is not ready and denies', () => {
    const e = new PolicyEngine({ bundlePath: shipped, decision: DECISION, watch: false });
    expect(e.status()).toEqual({ ready: false, version: null, lastError: null, loadedAt: null });
    const err = thrown(() => e.evaluate(input(principal('reporter', ['viewer']), tool('weather'))));
    expect(err.code).toBe('unavailable');
    expect(err.rule).toBe('policy.not_loaded');
  });

  it('becomes ready after reload()', async () => {
    const e = new PolicyEngine({ bundlePath: shipped, decision: DECISION, watch: false });
    open.push(e);
    const s = await e.reload();
    expect(s.ready).toBe(true);
    expect(e.evaluate(input(principal('reporter', ['viewer']), tool('weather'))).allowed).toBe(true);
  });

  it('stays not ready when the first load fails, and says why', async () => {
    const e = new PolicyEngine({ bundlePath: join(tempDir(), 'missing.tar.gz'), decision: DECISION, watch: false });
    const s = await e.reload();
    expect(s.ready).toBe(false);
    expect(s.lastError).toMatch(/missing\.tar\.gz: cannot be read \(ENOENT\)/);
  });
});

describe('PolicyEngine with the shipped policy', () => {
  it('reports version, load time and metrics', async () => {
    const before = await metricValue('portcullis_policy_reloads_total', { result: 'success' });
    const e = await engineFor({ bundlePath: shipped });
    const s = e.status();
    const hash = createHash('sha256').update(readFileSync(shipped)).digest('hex');
    expect(s.ready).toBe(true);
    expect(s.version).toBe(`sha256:${hash.slice(0, 12)}`);
    expect(s.lastError).toBeNull();
    expect(Number.isNaN(Date.parse(s.loadedAt ?? ''))).toBe(false);
    expect(await metricValue('portcullis_policy_reloads_total', { result: 'success' })).toBe(before + 1);
    expect(await metricValue('portcullis_policy_info', { version: s.version as string })).toBe(1);
  });

  it('uses the manifest revision as version', async () => {
    const e = await engineFor({ bundlePath: shippedV2 });
    expect(e.status().version).toBe('v2');
  });

  it('allows and denies with the decision object', () => {
    return engineFor({ bundlePath: shipped }).then((e) => {
      expect(e.evaluate(input(principal('reporter', ['viewer']), tool('weather')))).toEqual({
        allowed: true,
        headers: { 'x-portcullis-tenant': 'acme' },
        responseHeadersToAdd: null,
        requestHeadersToRemove: null,
        body: null,
        httpStatus: null,
        dynamicMetadata: null,
        reason: 'A role of the caller grants this tool.',
        rule: 'allow.role',
      });
      const anon = e.evaluate(input(null, tool('weather')));
      expect(anon).toMatchObject({ allowed: false, httpStatus: 403, rule: 'identity.required' });
      const del = e.evaluate(input(principal('reporter', ['viewer']), tool('docs'), { method: 'POST', mcp: { method: 'tools/call', id: 1, tool: 'delete_doc', arguments: {} } }));
      expect(del).toMatchObject({ allowed: false, rule: 'role.read_only' });
      const tenant = e.evaluate(input(principal('helpdesk', ['support']), tool('tickets'), { path: '/tools/tickets/tenants/globex/items' }));
      expect(tenant).toMatchObject({ allowed: false, rule: 'tenant.mismatch', reason: 'The request names tenant "globex" but the caller belongs to tenant "acme".' });
    });
  });

  it('gives the same answers in wasm as the Rego tests on edge cases', async () => {
    const e = await engineFor({ bundlePath: shipped });
    const empty = e.evaluate({} as PolicyInput);
    expect(empty).toMatchObject({ allowed: false, rule: 'identity.required' });
    const unknownMcp = e.evaluate(input(principal('reporter', ['viewer']), tool('docs'), { mcp: { method: 'tools/call', id: 2, tool: 'drop_everything', arguments: {} } }));
    expect(unknownMcp).toMatchObject({ allowed: false, rule: 'role.read_only' });
    const search = e.evaluate(input(principal('reporter', ['viewer']), tool('docs'), { mcp: { method: 'tools/call', id: 3, tool: 'search_docs', arguments: { tenant: 'acme' } } }));
    expect(search.allowed).toBe(true);
    const several = e.evaluate(input(principal('reporter', ['viewer']), tool('tickets', true), { method: 'POST', path: '/tools/tickets/tenants/globex/items' }));
    expect(several).toMatchObject({ allowed: false, rule: 'agent.not_bound', reason: 'Agent "reporter" is not allowed to use tool "tickets".' });
    const noTenant = e.evaluate(input(principal('helpdesk', ['admin'], 'bob', null), tool('tickets', true), { method: 'POST' }));
    expect(noTenant).toMatchObject({ allowed: true, headers: {} });
  });

  it('merges a YAML data file over the bundle data', async () => {
    const dataPath = join(tempDir(), 'data.yaml');
    writeFileSync(dataPath, 'portcullis:\n  agents:\n    reporter:\n      tools: [weather, docs, tickets]\n');
    const e = await engineFor({ bundlePath: shipped, dataPath });
    expect(e.evaluate(input(principal('reporter', ['viewer']), tool('tickets'))).allowed).toBe(true);
    // Untouched parts of the bundle data remain.
    expect(e.evaluate(input(principal('helpdesk', ['viewer']), tool('tickets'))).allowed).toBe(true);
  });

  it('merges a JSON data file', async () => {
    const dataPath = join(tempDir(), 'data.json');
    writeFileSync(dataPath, JSON.stringify({ portcullis: { roles: { viewer: { tools: [] } } } }));
    const e = await engineFor({ bundlePath: shipped, dataPath });
    expect(e.evaluate(input(principal('reporter', ['viewer']), tool('weather')))).toMatchObject({ allowed: false, rule: 'role.not_allowed' });
  });
});

describe('PolicyEngine.open failures', () => {
  it('names a corrupt bundle', async () => {
    const p = join(tempDir(), 'bad.tar.gz');
    writeFileSync(p, 'garbage');
    const err = await openError(PolicyEngine.open({ bundlePath: p, decision: DECISION, watch: false }));
    expect(err.code).toBe('internal');
    expect(err.message).toMatch(/^cannot load policy: policy bundle .*bad\.tar\.gz: not a readable gzip archive/);
  });

  it('names a missing entrypoint and lists the ones there are', async () => {
    const err = await openError(PolicyEngine.open({ bundlePath: shipped, decision: 'envoy/authz/nope', watch: false }));
    expect(err.message).toContain('has no entrypoint envoy/authz/nope (it has: envoy/authz/allow)');
  });

  it('rejects a policy whose decision is malformed', async () => {
    const err = await openError(PolicyEngine.open({ bundlePath: malformedSmoke, decision: DECISION, watch: false }));
    expect(err.message).toContain('policy decision envoy/authz/allow is malformed: expected a boolean or an object with "allowed", got number 5');
  });

  it('names an unparsable or non-object data file', async () => {
    const bad = join(tempDir(), 'data.yaml');
    writeFileSync(bad, 'a: [unclosed\n');
    expect((await openError(PolicyEngine.open({ bundlePath: shipped, dataPath: bad, decision: DECISION, watch: false }))).message).toMatch(/policy data .*data\.yaml cannot be parsed/);
    const list = join(tempDir(), 'data.json');
    writeFileSync(list, '[1,2]');
    expect((await openError(PolicyEngine.open({ bundlePath: shipped, dataPath: list, decision: DECISION, watch: false }))).message).toMatch(/must be an object \(mapping\) at the top level/);
  });
});

describe('PolicyEngine evaluation failures fail closed', () => {
  it('reads a custom decision', async () => {
    const e = await engineFor({ bundlePath: custom });
    expect(e.evaluate(input(principal('a', [], 'ok'), null))).toMatchObject({ allowed: true, rule: 'custom.ok' });
  });

  it('turns an evaluation exception into an internal error', async () => {
    const e = await engineFor({ bundlePath: custom });
    const before = await metricValue('portcullis_policy_evaluation_errors_total', { kind: 'exception' });
    const err = thrown(() => e.evaluate(input(principal('a', [], 'boom'), null)));
    expect(err.code).toBe('internal');
    expect(err.rule).toBe('policy.error');
    expect(await metricValue('portcullis_policy_evaluation_errors_total', { kind: 'exception' })).toBe(before + 1);
    // The instance keeps working after an aborted evaluation.
    expect(e.evaluate(input(principal('a', [], 'ok'), null)).allowed).toBe(true);
  });

  it('rejects a malformed decision', async () => {
    const e = await engineFor({ bundlePath: custom });
    const err = thrown(() => e.evaluate(input(principal('a', [], 'bad'), null)));
    expect(err.code).toBe('internal');
    expect(err.rule).toBe('policy.malformed');
    expect(err.message).toContain('"allowed" must be a boolean, got string "yes"');
  });

  it('denies an undefined decision', async () => {
    const e = await engineFor({ bundlePath: custom });
    const err = thrown(() => e.evaluate(input(principal('a', [], 'nobody'), null)));
    expect(err.code).toBe('forbidden');
    expect(err.rule).toBe('policy.undefined');
  });
});

describe('PolicyEngine reload', () => {
  it('reloads when the bundle file changes', async () => {
    const bundlePath = join(tempDir(), 'bundle.tar.gz');
    copyFileSync(shipped, bundlePath);
    const e = await engineFor({ bundlePath, watch: true });
    const first = e.status().version;
    const reloaded = nextReload(e);
    replaceFile(bundlePath, readFileSync(shippedV2));
    const s = await reloaded;
    expect(first).not.toBe('v2');
    expect(s).toMatchObject({ ready: true, version: 'v2', lastError: null });
    expect(e.status().version).toBe('v2');
    expect(await metricValue('portcullis_policy_info', { version: 'v2' })).toBe(1);
    expect(e.evaluate(input(principal('reporter', ['viewer']), tool('weather'))).allowed).toBe(true);
  });

  it('keeps the last good policy when the new bundle is broken, and recovers', async () => {
    const bundlePath = join(tempDir(), 'bundle.tar.gz');
    copyFileSync(shippedV2, bundlePath);
    const e = await engineFor({ bundlePath, watch: true });
    const failuresBefore = await metricValue('portcullis_policy_reloads_total', { result: 'failure' });

    let reloaded = nextReload(e);
    replaceFile(bundlePath, 'not a bundle');
    let s = await reloaded;
    expect(s.ready).toBe(true);
    expect(s.version).toBe('v2');
    expect(s.lastError).toMatch(/bundle\.tar\.gz: not a readable gzip archive/);
    expect(e.status().lastError).toBe(s.lastError);
    expect(await metricValue('portcullis_policy_reloads_total', { result: 'failure' })).toBe(failuresBefore + 1);
    expect(e.evaluate(input(principal('reporter', ['viewer']), tool('weather'))).allowed).toBe(true);

    reloaded = nextReload(e);
    replaceFile(bundlePath, readFileSync(malformedSmoke));
    s = await reloaded;
    expect(s.version).toBe('v2');
    expect(s.lastError).toContain('is malformed');

    reloaded = nextReload(e);
    replaceFile(bundlePath, readFileSync(shipped));
    s = await reloaded;
    expect(s.lastError).toBeNull();
    expect(s.version).toMatch(/^sha256:[0-9a-f]{12}$/);
  });

  it('reloads when the data file changes and keeps the last good data when it breaks', async () => {
    const dataPath = join(tempDir(), 'data.yaml');
    writeFileSync(dataPath, 'portcullis: {}\n');
    const e = await engineFor({ bundlePath: shipped, dataPath, watch: true });
    const reporterTickets = (): boolean => e.evaluate(input(principal('reporter', ['viewer']), tool('tickets'))).allowed;
    expect(reporterTickets()).toBe(false);

    let reloaded = nextReload(e);
    replaceFile(dataPath, 'portcullis:\n  agents:\n    reporter: {tools: [tickets]}\n');
    expect((await reloaded).lastError).toBeNull();
    expect(reporterTickets()).toBe(true);

    reloaded = nextReload(e);
    replaceFile(dataPath, 'portcullis: [unclosed\n');
    const s = await reloaded;
    expect(s.ready).toBe(true);
    expect(s.lastError).toMatch(/data\.yaml cannot be parsed/);
    expect(reporterTickets()).toBe(true);
  });

  it('from a change notification until its reload is done, settled() makes calls wait for the new data', async () => {
    const dataPath = join(tempDir(), 'data.json');
    writeFileSync(dataPath, JSON.stringify({ portcullis: { agents: { reporter: { tools: ['tickets'] } } } }));
    const e = await engineFor({ bundlePath: shipped, dataPath, watch: true });
    const reporterTickets = (): boolean => e.evaluate(input(principal('reporter', ['viewer']), tool('tickets'))).allowed;
    expect(reporterTickets()).toBe(true);
    expect(e.settled()).toBeNull();
    replaceFile(dataPath, '{}');
    // The notification arrives on a later turn of the event loop; from then on calls wait.
    const deadline = Date.now() + 5_000;
    let pending = e.settled();
    while (pending === null && Date.now() < deadline) {
      await new Promise((r) => setImmediate(r));
      pending = e.settled();
    }
    expect(pending).not.toBeNull();
    // Still the old data while the reload runs; the new data once it has settled.
    expect(reporterTickets()).toBe(true);
    await pending;
    expect(reporterTickets()).toBe(false);
    expect(e.settled()).toBeNull();
  });

  it('shares one load between concurrent reload() calls', async () => {
    const e = await engineFor({ bundlePath: shipped });
    const [a, b] = await Promise.all([e.reload(), e.reload()]);
    expect(a.ready && b.ready).toBe(true);
    expect(a.version).toBe(b.version);
  });
});
