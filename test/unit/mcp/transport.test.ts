import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/load.js';
import type { GatewayConfig } from '../../../src/config/types.js';
import type { AuthzMetadata } from '../../../src/authz/check.js';
import { HandoffKey } from '../../../src/authz/handoff.js';
import type { ExtprocDeps } from '../../../src/extproc/deps.js';
import { newRequestState, newStreamState, type RequestState, type StreamState } from '../../../src/extproc/state.js';
import type { ProtoHeaderMutation, ProtoHttpHeaders } from '../../../src/extproc/proto.js';
import { GatewayError } from '../../../src/errors.js';
import { readRequestBody } from '../../../src/inspect/requestBody.js';
import type { Principal } from '../../../src/identity/types.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { bindResponseSession, checkMcpBody, noteMcpRequestHeaders } from '../../../src/mcp/transport.js';
import { sessionBinder, sessionIdentity } from '../../../src/mcp/session.js';
import { repoPath } from '../../helpers/paths.js';

/** ext_proc's MCP rules with the demo configuration and the demo policy bundle (built). */

const ALICE: Principal = { agent: 'helpdesk', agent_version: null, user: 'alice', tenant: 'acme', roles: ['support'], methods: ['jwt'], proven_by: ['https://issuer.demo.portcullis'] };
const KEY = new HandoffKey(() => 'exchange-test-key-0123456789abcdef012345');

let config: GatewayConfig;
let policy: PolicyEngine;

beforeAll(async () => {
  config = loadConfig(repoPath('scripts', 'demo', 'portcullis.yaml'));
  policy = await PolicyEngine.open({ bundlePath: repoPath('policies', 'build', 'bundle.tar.gz'), decision: config.policy.decision, watch: false });
});
afterAll(() => policy?.close());

function deps(over: Partial<GatewayConfig> = {}): ExtprocDeps {
  return { config: { ...config, ...over }, policy, handoff: KEY } as unknown as ExtprocDeps;
}

function meta(over: Partial<AuthzMetadata> = {}): AuthzMetadata {
  return {
    request_id: 'r-1', traceparent: null, method: 'POST', path: '/tools/docs/', tool: 'docs', agent: ALICE.agent, agent_version: null, user: ALICE.user, tenant: ALICE.tenant,
    auth_methods: ['jwt'], roles: ['support'], auth_error: null, forwarded_recorded: false, allowed: true, dry_run: false, rule: null, reason: null, policy_version: null,
    mcp_method: 'tools/call', mcp_tool: 'search_docs', body_sha256: null, authz_ms: 1, mcp_prompt: null, mcp_resource: null, mcp_session: null, mcp_protocol_version: null, proven_by: [...ALICE.proven_by], jti: null, mcp_decided_on: 'headers', idempotency_key: null, idempotency_claim: null, fact_records: [], budget_records: [], ...over,
  };
}

function headers(h: [string, string][]): ProtoHttpHeaders {
  return { headers: { headers: h.map(([key, value]) => ({ key, rawValue: Buffer.from(value) })) } };
}

function exchange(m: AuthzMetadata, h: [string, string][]): { st: StreamState; req: RequestState } {
  const st = newStreamState();
  const req = newRequestState();
  st.meta = m;
  st.tool = config.tools.find((t) => t.name === 'docs')!;
  req.method = 'POST';
  req.path = '/tools/docs/';
  noteMcpRequestHeaders(st, req, headers([[':method', 'POST'], [':path', '/tools/docs/'], ...h]));
  return { st, req };
}

function body(value: unknown) {
  return readRequestBody(Buffer.from(JSON.stringify(value)), 'application/json', config.tools.find((t) => t.name === 'docs')!);
}

const search = (tenant: string, id = 1): unknown => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'search_docs', arguments: { query: 'q', tenant } } });
const CALL_HEADERS: [string, string][] = [['mcp-method', 'tools/call'], ['mcp-name', 'search_docs']];

function refusal(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(GatewayError);
    return e as GatewayError;
  }
  throw new Error('expected a refusal');
}

describe('ext_proc: a call decided on its headers is decided again on its body', () => {
  it('the demo policy allows the agreeing call of the caller\'s own tenant', () => {
    const { st, req } = exchange(meta(), CALL_HEADERS);
    checkMcpBody(deps(), st, req, body(search('acme')));
  });

  it('a condition on arguments holds: another tenant is refused, with the call\'s id', () => {
    const { st, req } = exchange(meta(), CALL_HEADERS);
    const e = refusal(() => checkMcpBody(deps(), st, req, body(search('globex', 9))));
    expect(e.rule).toBe('tenant.mismatch');
    expect(e.code).toBe('forbidden');
    expect(req.rpc).toMatchObject({ isJsonRpc: true, id: 9 });
  });

  it('in dry run the refusal is only logged', () => {
    const { st, req } = exchange(meta(), CALL_HEADERS);
    checkMcpBody(deps({ policy: { ...config.policy, dry_run: true } }), st, req, body(search('globex')));
  });

  it('the body must be the call decided on: another tool, a batch, a reply or no body is refused', () => {
    const cases: unknown[] = [
      { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'delete_doc', arguments: { doc_id: 'd', tenant: 'acme' } } },
      [search('acme', 1), search('acme', 2)],
      { jsonrpc: '2.0', id: 1, result: {} },
    ];
    for (const c of cases) {
      const { st, req } = exchange(meta(), CALL_HEADERS);
      expect(refusal(() => checkMcpBody(deps(), st, req, body(c))).rule, JSON.stringify(c)).toBe('mcp.header_mismatch');
    }
    const { st, req } = exchange(meta(), CALL_HEADERS);
    expect(refusal(() => checkMcpBody(deps(), st, req, null)).rule).toBe('mcp.header_mismatch');
  });

  it('headers that changed since the decision do not carry it over to another call', () => {
    const { st, req } = exchange(meta({ mcp_tool: 'search_docs' }), [['mcp-method', 'tools/call'], ['mcp-name', 'delete_doc']]);
    const del = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'delete_doc', arguments: { doc_id: 'd', tenant: 'acme' } } };
    expect(refusal(() => checkMcpBody(deps(), st, req, body(del))).rule).toBe('mcp.header_mismatch');
  });
});

describe('ext_proc: the standard headers it forwards must agree with the body', () => {
  it('on any route: a lying header is refused even when the Check decided on the body', () => {
    const { st, req } = exchange(meta({ mcp_decided_on: null }), [['mcp-method', 'tools/list']]);
    expect(refusal(() => checkMcpBody(deps(), st, req, body(search('acme')))).rule).toBe('mcp.header_mismatch');
  });

  it('a repeated standard header is refused when the headers arrive, in any case spelling', () => {
    const st = newStreamState();
    const req = newRequestState();
    st.meta = meta();
    st.tool = config.tools.find((t) => t.name === 'docs')!;
    const e = refusal(() => noteMcpRequestHeaders(st, req, headers([['Mcp-Method', 'tools/call'], ['mcp-method', 'tools/call']])));
    expect(e.rule).toBe('mcp.header_mismatch');
    expect(req.rpc.isJsonRpc).toBe(true);
  });
});

describe('ext_proc: the server\'s session id becomes a binding to the caller', () => {
  function bind(h: [string, string][], mutation: ProtoHeaderMutation = {}, m: AuthzMetadata = meta()): ProtoHeaderMutation {
    const st = newStreamState();
    st.meta = m;
    st.tool = config.tools.find((t) => t.name === 'docs')!;
    bindResponseSession(deps(), st, headers([[':status', '200'], ...h]), mutation);
    return mutation;
  }

  it('replaces the id with one that verifies for this principal and tool only', () => {
    const m = bind([['Mcp-Session-Id', 'srv-42']]);
    expect(m.setHeaders).toHaveLength(1);
    const value = m.setHeaders![0]!.header.rawValue.toString('utf8');
    expect(m.setHeaders![0]!.header.key).toBe('mcp-session-id');
    expect(sessionBinder(KEY).unwrap(sessionIdentity(ALICE), 'docs', value)).toEqual({ ok: true, serverId: 'srv-42' });
    expect(sessionBinder(KEY).unwrap(sessionIdentity({ ...ALICE, user: 'bob' }), 'docs', value).ok).toBe(false);
  });

  it('overrides whatever the header scan set for it, and leaves other headers alone', () => {
    const scanned: ProtoHeaderMutation = {
      removeHeaders: ['mcp-session-id', 'set-cookie'],
      setHeaders: [
        { header: { key: 'mcp-session-id', rawValue: Buffer.from('[REDACTED]') }, append: { value: false } },
        { header: { key: 'set-cookie', rawValue: Buffer.from('a=[REDACTED]') }, append: { value: false } },
      ],
    };
    const m = bind([['mcp-session-id', 'srv-42']], scanned);
    expect(m.removeHeaders).toEqual(['set-cookie']);
    expect(m.setHeaders!.map((s) => s.header.key).sort()).toEqual(['mcp-session-id', 'set-cookie']);
  });

  it('no session header: nothing changes; two of them, or one that is not visible ASCII: fail closed', () => {
    expect(bind([['content-type', 'application/json']])).toEqual({});
    expect(refusal(() => bind([['mcp-session-id', 'a'], ['mcp-session-id', 'b']])).rule).toBe('mcp.session_server_id');
    expect(refusal(() => bind([['mcp-session-id', 'a b']])).rule).toBe('mcp.session_server_id');
  });

  it('an anonymous caller (identity optional) gets a binding no identified caller can use', () => {
    const m = bind([['mcp-session-id', 'srv-7']], {}, meta({ auth_methods: [], proven_by: [], user: null, agent: null, tenant: null }));
    const value = m.setHeaders![0]!.header.rawValue.toString('utf8');
    expect(sessionBinder(KEY).unwrap(sessionIdentity(null), 'docs', value).ok).toBe(true);
    expect(sessionBinder(KEY).unwrap(sessionIdentity(ALICE), 'docs', value).ok).toBe(false);
  });
});
