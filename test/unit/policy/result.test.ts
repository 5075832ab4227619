import { describe, expect, it } from 'vitest';
import { readDecision } from '../../../src/policy/result.js';
import { GatewayError } from '../../../src/errors.js';

const PATH = 'envoy/authz/allow';

function error(value: unknown): GatewayError {
  try {
    readDecision(value, PATH);
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return err as GatewayError;
  }
  throw new Error('expected readDecision to throw');
}

function malformed(value: unknown): string {
  const err = error(value);
  expect(err.code).toBe('internal');
  expect(err.rule).toBe('policy.malformed');
  return err.message;
}

describe('readDecision', () => {
  it('reads booleans', () => {
    expect(readDecision(true, PATH)).toMatchObject({ allowed: true, headers: null, httpStatus: null, rule: null });
    expect(readDecision(false, PATH).allowed).toBe(false);
  });

  it('reads every OPA-Envoy field plus reason and rule', () => {
    const d = readDecision(
      {
        allowed: false,
        headers: { 'x-a': 'b', 'x-multi': ['1', '2'] },
        response_headers_to_add: { 'x-r': 'v' },
        request_headers_to_remove: ['cookie'],
        body: 'nope',
        http_status: 418,
        dynamic_metadata: { k: { v: 1 } },
        reason: 'because',
        rule: 'r.1',
        extra_field: 'ignored',
      },
      PATH,
    );
    expect(d).toEqual({
      allowed: false,
      headers: { 'x-a': 'b', 'x-multi': ['1', '2'] },
      responseHeadersToAdd: { 'x-r': 'v' },
      requestHeadersToRemove: ['cookie'],
      body: 'nope',
      httpStatus: 418,
      dynamicMetadata: { k: { v: 1 } },
      reason: 'because',
      rule: 'r.1',
    });
  });

  it('denies an undefined decision by default', () => {
    const err = error(undefined);
    expect(err.code).toBe('forbidden');
    expect(err.rule).toBe('policy.undefined');
    expect(err.message).toBe('policy decision envoy/authz/allow is undefined for this request; denying by default');
  });

  it.each([
    [null, 'policy decision envoy/authz/allow is malformed: expected a boolean or an object with "allowed", got null'],
    ['yes', 'expected a boolean or an object with "allowed", got string "yes"'],
    [1, 'expected a boolean or an object with "allowed", got number 1'],
    [[true], 'expected a boolean or an object with "allowed", got an array'],
    [{}, '"allowed" is missing'],
    [{ allowed: 'true' }, '"allowed" must be a boolean, got string "true"'],
    [{ allowed: null }, '"allowed" must be a boolean, got null'],
    [{ allowed: true, headers: 'x' }, '"headers" must be an object of header name to string or array of strings, got string "x"'],
    [{ allowed: true, headers: { a: 1 } }, '"headers.a" must be a string or an array of strings, got number 1'],
    [{ allowed: true, headers: { a: ['x', false] } }, '"headers.a[1]" must be a string, got boolean false'],
    [{ allowed: true, response_headers_to_add: [] }, '"response_headers_to_add" must be an object of header name to string or array of strings, got an array'],
    [{ allowed: true, response_headers_to_add: { b: { c: 1 } } }, '"response_headers_to_add.b" must be a string or an array of strings, got an object'],
    [{ allowed: true, request_headers_to_remove: 'cookie' }, '"request_headers_to_remove" must be an array of strings, got string "cookie"'],
    [{ allowed: true, request_headers_to_remove: ['a', 2] }, '"request_headers_to_remove[1]" must be a string, got number 2'],
    [{ allowed: false, body: { error: 'x' } }, '"body" must be a string, got an object'],
    [{ allowed: false, http_status: '403' }, '"http_status" must be an integer from 100 to 599, got string "403"'],
    [{ allowed: false, http_status: 99 }, '"http_status" must be an integer from 100 to 599, got number 99'],
    [{ allowed: false, http_status: 600 }, '"http_status" must be an integer from 100 to 599, got number 600'],
    [{ allowed: false, http_status: 403.5 }, '"http_status" must be an integer from 100 to 599, got number 403.5'],
    [{ allowed: true, dynamic_metadata: [1] }, '"dynamic_metadata" must be an object, got an array'],
    [{ allowed: true, dynamic_metadata: null }, '"dynamic_metadata" must be an object, got null'],
    [{ allowed: true, reason: 5 }, '"reason" must be a string, got number 5'],
    [{ allowed: true, rule: ['a'] }, '"rule" must be a string, got an array'],
    [{ allowed: true, query_parameters_to_set: { a: 'b' } }, '"query_parameters_to_set" is not supported by this gateway'],
    [{ allowed: true, query_parameters_to_remove: ['a'] }, '"query_parameters_to_remove" is not supported by this gateway'],
  ])('malformed %j', (value, message) => {
    const text = malformed(value);
    expect(text.startsWith('policy decision envoy/authz/allow is malformed: ')).toBe(true);
    expect(text).toContain(message);
  });

  it('clips long values in messages', () => {
    expect(malformed('y'.repeat(100))).toMatch(/got string "y{39}\.\.\.$/);
  });
});
