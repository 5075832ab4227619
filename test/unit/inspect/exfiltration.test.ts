import { describe, expect, it } from 'vitest';
import { outsideBodyText } from '../../../src/inspect/exfiltration.js';
import { checkRouteBody } from '../../../src/tools/registry.js';
import { GatewayError } from '../../../src/errors.js';

describe('outsideBodyText', () => {
  it('decodes path segments and query names and values, and keeps forwarded header values only', () => {
    const text = outsideBodyText({
      path: '/tools/weather/a%20b?city=Oslo&n%6Fte=x+y%21&flag#frag=secret',
      headers: { ':path': '/ignored', authorization: 'Bearer t', 'x-note': 'hello', accept: 'application/json' },
      skipHeader: (n) => n === 'authorization',
    });
    expect(text.split('\n')).toEqual(['tools', 'weather', 'a b', 'city', 'Oslo', 'note', 'x y!', 'flag', 'hello', 'application/json']);
  });

  it('skips the request id Envoy generates and a well-formed traceparent, but not a traceparent of another form', () => {
    // This request id's middle groups read as a Luhn-valid card number: it used to block the call.
    const headers = {
      'x-request-id': '3f1c2a9e-4539-5787-6362-1486b2c1d0e4',
      traceparent: '00-45395787636214864539578763621486-4539578763621486-01',
      'x-note': 'hello',
    };
    expect(outsideBodyText({ path: '/x', headers, skipHeader: () => false }).split('\n')).toEqual(['x', 'hello']);
    const smuggled = { traceparent: '00-card 4539 5787 6362 1486-01' };
    expect(outsideBodyText({ path: '/x', headers: smuggled, skipHeader: () => false }).split('\n')).toEqual(['x', smuggled.traceparent]);
  });

  it('keeps undecodable pieces as sent', () => {
    expect(outsideBodyText({ path: '/x?a=%zz', headers: {}, skipHeader: () => false }).split('\n')).toEqual(['x', 'a', '%zz']);
  });
});

describe('checkRouteBody', () => {
  const none = { route_request_body: 'none' };
  const refuses = (headers: Record<string, string>, bytes: number): boolean => {
    try {
      checkRouteBody(none, headers, bytes);
      return false;
    } catch (err) {
      expect((err as GatewayError).rule).toBe('request.unexpected_body');
      return true;
    }
  };
  it('refuses bytes, a non-zero content-length or chunked framing on a bodiless route', () => {
    expect(refuses({}, 1)).toBe(true);
    expect(refuses({ 'content-length': '5' }, 0)).toBe(true);
    expect(refuses({ 'transfer-encoding': 'chunked' }, 0)).toBe(true);
    expect(refuses({}, 0)).toBe(false);
    expect(refuses({ 'content-length': '0' }, 0)).toBe(false);
  });
  it('does nothing on routes that inspect bodies', () => {
    expect(() => checkRouteBody({ route_tool: 'x' }, { 'content-length': '5' }, 5)).not.toThrow();
    expect(() => checkRouteBody(undefined, {}, 5)).not.toThrow();
  });
});
