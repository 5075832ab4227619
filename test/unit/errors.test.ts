import { describe, expect, it } from 'vitest';
import { GatewayError, errorBody, jsonRpcErrorBody, toGatewayError } from '../../src/errors.js';

describe('error shape', () => {
  it('renders the documented JSON body', () => {
    const e = new GatewayError('rate_limited', 'slow down', { retryAfterS: 3, rule: 'limits.rate' });
    expect(errorBody(e, 'req-1')).toEqual({
      error: { type: 'rate_limited', message: 'slow down', retryable: true, retry_after_s: 3, request_id: 'req-1', rule: 'limits.rate' },
    });
    expect(e.httpStatus).toBe(429);
  });

  it('hides internal failures as unavailable and keeps their cause out of the body', () => {
    const e = toGatewayError(new Error('db password=hunter2 rejected'));
    expect(e.code).toBe('internal');
    const body = JSON.stringify(errorBody(e, null));
    expect(body).toContain('"type":"unavailable"');
    expect(body).not.toContain('hunter2');
    expect(e.httpStatus).toBe(503);
  });

  it('renders a JSON-RPC error with the request id', () => {
    const e = new GatewayError('forbidden', 'no', { rule: 'r' });
    const b = jsonRpcErrorBody(e, 'req', 7) as { id: number; error: { code: number; data: { type: string } } };
    expect(b.id).toBe(7);
    expect(b.error.code).toBe(-32003);
    expect(b.error.data.type).toBe('forbidden');
  });
});
