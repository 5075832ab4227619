import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decideOpaEnvoy, dropinResponse, dropinSelected, DropinGrpcError, type DropinContext } from '../../../src/authz/dropin.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { ToolRegistry } from '../../../src/tools/registry.js';
import type { GatewayConfig, OpaEnvoyConfig, ToolConfig } from '../../../src/config/types.js';
import type { ProtoCheckRequest } from '../../../src/authz/request.js';
import { buildBundle, writePolicy } from './helpers.js';

/**
 * Drop-in decisions read with the reference's rules, on a real wasm policy whose drop-in path
 * (`dropin/authz/allow`) is a second entrypoint beside the gateway's own decision.
 */

const POLICY = `package dropin.authz

import rego.v1

default allow := false

p := input.parsed_path[0]

allow if p == "yes"
allow := {"allowed": false, "http_status": 418} if p == "teapot"
allow := {"allowed": false, "http_status": 401, "body": "who?", "headers": {"www-authenticate": "Basic"}} if p == "basic"
allow := {"allowed": true, "headers": {"x-user-id": "set-by-policy"}} if p == "sets"
allow := {"allowed": true, "query_parameters_to_set": {"a": ["1", "2"]}, "query_parameters_to_remove": ["b"]} if p == "query"
`;

const GATEWAY = `package envoy.authz

import rego.v1

default allow := false
`;

const MODE: OpaEnvoyConfig = { enabled: true, path: 'dropin/authz/allow', path_prefixes: ['/legacy/'], identity: 'offer' };
let engine: PolicyEngine;

beforeAll(async () => {
  const dir = writePolicy({ 'dropin.rego': POLICY, 'gateway.rego': GATEWAY });
  process.env.POLICY_EXTRA_ENTRYPOINTS = MODE.path;
  try {
    const { path } = buildBundle(dir);
    engine = await PolicyEngine.open({ bundlePath: path, decision: 'envoy/authz/allow', extraDecisions: [MODE.path], watch: false });
  } finally {
    delete process.env.POLICY_EXTRA_ENTRYPOINTS;
  }
});

afterAll(() => engine?.close());

function request(path: string, ext: Record<string, string> = {}): ProtoCheckRequest {
  return { attributes: { request: { http: { method: 'GET', path, headers: {} } }, contextExtensions: ext } };
}

function ctx(over: Partial<DropinContext> = {}): DropinContext {
  return { policy: engine, mode: MODE, dryRun: false, identity: null, decisionId: 'd-1', removeHeaders: [], ...over };
}

describe('decideOpaEnvoy', () => {
  it('answers a boolean allow with a bare OK and the decision id, a boolean deny with PERMISSION_DENIED only', () => {
    expect(dropinResponse(decideOpaEnvoy(request('/yes'), ctx()))).toEqual({ status: {}, dynamicMetadata: { fields: { decision_id: { stringValue: 'd-1' } } } });
    expect(dropinResponse(decideOpaEnvoy(request('/no'), ctx()))).toEqual({ status: { code: 7 }, dynamicMetadata: { fields: { decision_id: { stringValue: 'd-1' } } } });
  });

  it('answers a status outside Envoy StatusCode with the reference gRPC error', () => {
    const answer = decideOpaEnvoy(request('/teapot'), ctx());
    expect(answer).toMatchObject({ kind: 'error', grpcCode: 2, message: 'failed to get response http status: Invalid HTTP status code 418' });
    expect(() => dropinResponse(answer)).toThrow(DropinGrpcError);
  });

  it('sends the policy status, body and headers of a denial (append unset)', () => {
    const r = dropinResponse(decideOpaEnvoy(request('/basic'), ctx()));
    expect(r.deniedResponse).toEqual({ status: { code: 401 }, body: 'who?', headers: [{ header: { key: 'www-authenticate', value: 'Basic' } }] });
  });

  it('sets and removes query parameters as the policy says', () => {
    const ok = dropinResponse(decideOpaEnvoy(request('/query'), ctx())).okResponse;
    expect(ok?.queryParametersToSet).toEqual([{ key: 'a', value: '1' }, { key: 'a', value: '2' }]);
    expect(ok?.queryParametersToRemove).toEqual(['b']);
  });

  it('removes caller-supplied identity headers on allow but never one the policy sets', () => {
    const bare = dropinResponse(decideOpaEnvoy(request('/yes'), ctx({ removeHeaders: ['x-portcullis-user'] })));
    expect(bare.okResponse?.headersToRemove).toEqual(['x-portcullis-user']);
    const sets = dropinResponse(decideOpaEnvoy(request('/sets'), ctx({ removeHeaders: ['x-user-id', 'x-portcullis-user'] })));
    expect(sets.okResponse?.headersToRemove).toEqual(['x-portcullis-user']);
    expect(sets.okResponse?.headers).toEqual([{ header: { key: 'x-user-id', value: 'set-by-policy' } }]);
  });

  it('in dry run answers a denial with an empty OK, as the reference dry-run does', () => {
    const answer = decideOpaEnvoy(request('/basic'), ctx({ dryRun: true }));
    expect(answer).toMatchObject({ kind: 'response', allowed: true, rule: 'opa_envoy.dry_run_deny' });
    expect(dropinResponse(answer).deniedResponse).toBeUndefined();
  });

  it('answers a gRPC error for a path the bundle was not built with (fail closed)', () => {
    expect(decideOpaEnvoy(request('/yes'), ctx({ mode: { ...MODE, path: 'nope/allow' } }))).toMatchObject({ kind: 'error', rule: 'opa_envoy.error' });
  });

  it('refuses at load a bundle without the drop-in path', async () => {
    const dir = writePolicy({ 'gateway.rego': GATEWAY });
    const { path } = buildBundle(dir);
    await expect(PolicyEngine.open({ bundlePath: path, decision: 'envoy/authz/allow', extraDecisions: [MODE.path], watch: false })).rejects.toThrow(/no entrypoint dropin\/authz\/allow/);
  });
});

describe('dropinSelected', () => {
  const tool = { name: 'weather' } as ToolConfig;
  const tools = new ToolRegistry([tool]);
  const config = (mode: OpaEnvoyConfig | undefined): GatewayConfig => ({ opa_envoy: mode }) as GatewayConfig;

  it('selects a route that opts in, or a configured prefix, for a request that names no tool', () => {
    expect(dropinSelected(config(MODE), request('/api/x', { portcullis_mode: 'opa-envoy' }), tools, '/api/x')).toBe(true);
    expect(dropinSelected(config(MODE), request('/legacy/x'), tools, '/legacy/x?y=1')).toBe(true);
    expect(dropinSelected(config(MODE), request('/other'), tools, '/other')).toBe(false);
  });

  it('keeps tool processing for a request that names a tool, even on a drop-in route', () => {
    expect(dropinSelected(config(MODE), request('/tools/weather/x', { portcullis_mode: 'opa-envoy' }), tools, '/tools/weather/x')).toBe(false);
  });

  it('denies a route that asks for drop-in mode when the configuration does not enable it, or for an unknown mode', () => {
    expect(() => dropinSelected(config(undefined), request('/x', { portcullis_mode: 'opa-envoy' }), tools, '/x')).toThrow(/does not enable/);
    expect(() => dropinSelected(config({ ...MODE, enabled: false }), request('/x', { portcullis_mode: 'opa-envoy' }), tools, '/x')).toThrow(/does not enable/);
    expect(() => dropinSelected(config(MODE), request('/x', { portcullis_mode: 'other' }), tools, '/x')).toThrow(/unknown mode/);
    // A disabled configuration never selects by prefix.
    expect(dropinSelected(config({ ...MODE, enabled: false }), request('/legacy/x'), tools, '/legacy/x')).toBe(false);
  });
});
