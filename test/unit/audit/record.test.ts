import { describe, expect, it } from 'vitest';
import { compileCatalog } from '../../../src/dlp/index.js';
import {
  auditOutcome,
  buildAuditRecord,
  buildForwardedRecord,
  redactPath,
  redactSecretsFromPath,
  traceIdFrom,
  truncateUtf8,
  type AuditExchange,
} from '../../../src/audit/record.js';

const SECRET = 'sk-live-4f9a8b7c6d5e4f3a2b1c';

function exchange(over: Partial<AuditExchange> = {}): AuditExchange {
  return {
    time: new Date('2024-05-01T12:00:00.000Z'),
    requestId: 'req-1',
    traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    identity: { agent: 'planner', agent_version: '1.2.0', user: 'alice', tenant: 'acme', auth_methods: ['mtls', 'jwt'] },
    tool: 'weather',
    method: 'POST',
    path: '/tools/weather/forecast?city=Paris&api_key=' + SECRET,
    decision: { allowed: true, rule: 'allow.weather', reason: 'reader', policy_version: 'v7', dry_run: false },
    inspection: { size: 42, schema: 'valid', injection: [{ rule: 'ignore_previous', path: '$.q' }] },
    dlpRequest: { action: 'none', rules: new Set<string>(), count: 0 },
    dlpResponse: { action: 'redacted', rules: new Set(['email', 'aws_key', 'email']), count: 3 },
    upstreamStatus: 200,
    responseStatus: 200,
    latencyMs: { authz: 1.23456, requestInspect: 0.5, responseInspect: 2, total: 10 },
    error: null,
    ...over,
  };
}

describe('redactPath', () => {
  const scanner = compileCatalog();
  const KEY = 'AKIAIOSFODNN7EXAMPLF';

  it('redacts secrets in path segments with the DLP catalog, and query values', () => {
    expect(redactPath(`/tools/weather/forecast/${KEY}?city=Oslo`, scanner)).toBe('/tools/weather/forecast/[REDACTED:aws.access_key_id]?city=[redacted]');
    expect(redactPath(`/tools/docs/${KEY}/x#${KEY}`, scanner)).toBe('/tools/docs/[REDACTED:aws.access_key_id]/x');
  });

  it('finds percent-encoded secrets and leaves clean paths exactly as sent', () => {
    const encoded = `/tools/weather/%41${KEY.slice(1)}`;
    expect(redactPath(encoded, scanner)).toBe('/tools/weather/[REDACTED:aws.access_key_id]');
    expect(redactPath('/tools/weather/caf%C3%A9/%ZZ?q=1', scanner)).toBe('/tools/weather/caf%C3%A9/%ZZ?q=[redacted]');
  });

  it('without a scanner, redacts query values only', () => {
    expect(redactPath(`/a/${KEY}?k=v`, null)).toBe(`/a/${KEY}?k=[redacted]`);
  });

  it('is what the audit record carries', () => {
    const r = buildAuditRecord({ requestId: 'r', tool: 'weather', method: 'GET', path: `/tools/weather/${KEY}`, decision: null }, scanner);
    expect(r.path).toBe('/tools/weather/[REDACTED:aws.access_key_id]');
    expect(JSON.stringify(r)).not.toContain(KEY);
  });
});

describe('redactSecretsFromPath', () => {
  it('keeps segments and parameter names, drops values and the fragment', () => {
    expect(redactSecretsFromPath('/a/b?x=1&token=abc#frag')).toBe('/a/b?x=[redacted]&token=[redacted]');
    expect(redactSecretsFromPath('/a/b')).toBe('/a/b');
    expect(redactSecretsFromPath('/a?')).toBe('/a');
  });

  it('replaces bare query items and odd names whole', () => {
    expect(redactSecretsFromPath(`/a?${SECRET}&ok=1`)).toBe('/a?[redacted]&ok=[redacted]');
    expect(redactSecretsFromPath('/a?na%20me=1')).toBe('/a?[redacted]');
  });
});

describe('traceIdFrom', () => {
  it('extracts the trace id of a valid traceparent', () => {
    expect(traceIdFrom('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
  });
  it('rejects malformed or all-zero ids', () => {
    expect(traceIdFrom(null)).toBeNull();
    expect(traceIdFrom('garbage')).toBeNull();
    expect(traceIdFrom('00-00000000000000000000000000000000-00f067aa0ba902b7-01')).toBeNull();
    expect(traceIdFrom('ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')).toBeNull();
  });
});

describe('buildAuditRecord', () => {
  it('maps every field to the snake_case record', () => {
    const r = buildAuditRecord(exchange());
    expect(r).toMatchObject({
      time: '2024-05-01T12:00:00.000Z',
      request_id: 'req-1',
      trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
      agent_id: 'planner',
      agent_version: '1.2.0',
      user_id: 'alice',
      tenant_id: 'acme',
      auth_methods: ['mtls', 'jwt'],
      tool: 'weather',
      method: 'POST',
      path: '/tools/weather/forecast?city=[redacted]&api_key=[redacted]',
      decision: { allowed: true, rule: 'allow.weather', reason: 'reader', policy_version: 'v7', dry_run: false },
      inspection: { request: { size: 42, schema: 'valid', injection: [{ rule: 'ignore_previous', path: '$.q' }] } },
      dlp: {
        request: { action: 'none', rules: [], count: 0 },
        response: { action: 'redacted', rules: ['aws_key', 'email'], count: 3 },
      },
      upstream_status: 200,
      response_status: 200,
      latency_ms: { authz: 1.235, request_inspect: 0.5, response_inspect: 2, total: 10 },
      error: null,
    });
    expect(r.payload).toBeUndefined();
    expect(r.inspection.request.errors).toBeUndefined();
  });

  it('records a denial at ext_authz without identity or inspection', () => {
    const r = buildAuditRecord({
      requestId: null,
      tool: null,
      method: 'GET',
      path: '/tools/nope',
      decision: null,
      responseStatus: 404,
      error: { code: 'unknown_tool', rule: 'tools.route' },
    });
    expect(r.decision.allowed).toBe(false);
    expect(r.agent_id).toBeNull();
    expect(r.auth_methods).toEqual([]);
    expect(r.inspection.request.schema).toBe('skipped');
    expect(r.error).toEqual({ type: 'unknown_tool', rule: 'tools.route' });
    expect(auditOutcome(r)).toBe('denied');
  });

  it('never carries header values such as authorization, even when the exchange had them', () => {
    const withHeaders = {
      ...exchange(),
      headers: { authorization: `Bearer ${SECRET}`, 'x-api-key': SECRET, cookie: `s=${SECRET}` },
      authorization: `Bearer ${SECRET}`,
    } as AuditExchange;
    const text = JSON.stringify(buildAuditRecord(withHeaders));
    expect(text).not.toContain(SECRET);
    expect(text.toLowerCase()).not.toContain('authorization');
    expect(text).not.toContain('headers');
  });

  it('keeps the error type and rule but not the error message', () => {
    const err = Object.assign(new Error(`token ${SECRET} rejected`), { code: 'blocked_content', rule: 'dlp.aws_key' });
    const r = buildAuditRecord(exchange({ error: err }));
    expect(r.error).toEqual({ type: 'blocked_content', rule: 'dlp.aws_key' });
    expect(JSON.stringify(r)).not.toContain(SECRET);
    expect(auditOutcome(r)).toBe('blocked');
  });

  it('keeps schema errors, capped', () => {
    const errors = Array.from({ length: 30 }, (_, i) => `$.f${i}: is required`);
    const r = buildAuditRecord(exchange({ inspection: { size: 1, schema: 'invalid', errors } }));
    expect(r.inspection.request.errors).toHaveLength(20);
    expect(r.inspection.request.errors?.[0]).toBe('$.f0: is required');
  });
});

describe('payload capture', () => {
  it('is absent when capture is off, even if text is given', () => {
    const r = buildAuditRecord(exchange({ payload: { capture: { mode: 'off', max_bytes: 100 }, request: 'hello', response: 'world' } }));
    expect(r.payload).toBeUndefined();
  });

  it('truncates each direction to max_bytes and says which were cut', () => {
    const r = buildAuditRecord(
      exchange({ payload: { capture: { mode: 'truncated', max_bytes: 8 }, request: 'short', response: 'a much longer response body' } }),
    );
    expect(r.payload).toEqual({ request: 'short', response: 'a much l', truncated: ['response'] });
  });

  it('never splits a multi-byte character', () => {
    // "é" is 2 bytes, "€" is 3: the 5-byte budget fits "aé" (3 bytes) but not the euro sign.
    expect(truncateUtf8('aé€b', 5)).toEqual({ text: 'aé', truncated: true });
    expect(truncateUtf8('aé€b', 6)).toEqual({ text: 'aé€', truncated: true });
    expect(truncateUtf8('😀x', 3)).toEqual({ text: '', truncated: true });
    expect(truncateUtf8('abc', 3)).toEqual({ text: 'abc', truncated: false });
  });
});

describe('record types, MCP call, roles', () => {
  it('an exchange record names its type, MCP call and sorted roles; none when absent', () => {
    const r = buildAuditRecord(exchange({ identity: { agent: 'a', agent_version: null, user: 'u', tenant: 't', auth_methods: ['jwt'], roles: ['z', 'a', 'z'] }, mcp: { method: 'tools/call', tool: 'get_forecast' } }));
    expect(r).toMatchObject({ record_type: 'exchange', roles: ['a', 'z'], mcp: { method: 'tools/call', tool: 'get_forecast' }, auth_error: null });
    const plain = buildAuditRecord(exchange({ identity: null, authError: 'identity.jwt', mcp: { method: null, tool: null } }));
    expect(plain).toMatchObject({ roles: [], mcp: null, auth_error: 'identity.jwt', agent_id: null });
  });

  it('a forwarded record carries the request side only, path redacted like the exchange record', () => {
    const x = exchange({ mcp: { method: 'tools/call', tool: 'get_forecast' }, dlpRequest: { action: 'flagged', rules: ['email'], count: 1 } });
    const f = buildForwardedRecord(x);
    expect(Object.keys(f)).toEqual([
      'record_type', 'time', 'request_id', 'trace_id', 'span_id', 'agent_id', 'agent_version', 'user_id', 'tenant_id', 'auth_methods', 'roles', 'auth_error',
      'tool', 'method', 'path', 'mcp', 'decision', 'inspection', 'dlp',
    ]);
    expect(f).toMatchObject({ record_type: 'forwarded', request_id: 'req-1', trace_id: '4bf92f3577b34da6a3ce929d0e0e4736', dlp: { request: { action: 'flagged', rules: ['email'], count: 1 } } });
    expect(f.path).toBe(buildAuditRecord(x).path);
    expect(f.path).not.toContain(SECRET);
    expect(JSON.stringify(f)).not.toMatch(/response|upstream|payload/);
  });
});
