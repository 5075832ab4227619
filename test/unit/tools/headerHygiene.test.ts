import { describe, expect, it } from 'vitest';
import { DEFAULT_STRIPPED_HEADERS, HeaderHygiene, hasMethodOverrideParam } from '../../../src/tools/headerHygiene.js';

const none = { strip: [], stripPrefixes: [], forward: [], credentials: [] };

describe('HeaderHygiene', () => {
  it('removes only the listed headers a request carries, exact and by prefix', () => {
    const h = new HeaderHygiene({ ...none, credentials: ['authorization'] });
    const removed = h.removals({
      authorization: 'Bearer x',
      'x-auth-request-user': 'a',
      'x-amzn-oidc-accesstoken': 't',
      'cf-access-jwt-assertion': 'j',
      'x-ms-client-principal-idp': 'aad',
      'x-ms-token-aad-id-token': 't',
      'x-http-method-override': 'DELETE',
      accept: 'application/json',
      'x-note': 'n',
    });
    expect(removed.sort()).toEqual(['authorization', 'cf-access-jwt-assertion', 'x-amzn-oidc-accesstoken', 'x-auth-request-user', 'x-http-method-override', 'x-ms-client-principal-idp', 'x-ms-token-aad-id-token']);
  });

  it('adds configured names and prefixes, and forwards configured defaults but never credentials', () => {
    const h = new HeaderHygiene({ strip: ['x-internal'], stripPrefixes: ['x-corp-'], forward: ['x-tenant-id', 'cf-access-', 'authorization'], credentials: ['authorization'] });
    expect(h.strips('x-internal')).toBe(true);
    expect(h.strips('x-corp-user')).toBe(true);
    expect(h.strips('x-tenant-id')).toBe(false);
    expect(h.strips('cf-access-authenticated-user-email')).toBe(false);
    expect(h.strips('authorization')).toBe(true);
    expect(h.strips('x-user-id')).toBe(true);
  });

  it('the default list is lower case and has no duplicates', () => {
    for (const n of DEFAULT_STRIPPED_HEADERS) expect(n).toBe(n.toLowerCase());
    expect(new Set(DEFAULT_STRIPPED_HEADERS).size).toBe(DEFAULT_STRIPPED_HEADERS.length);
  });
});

describe('hasMethodOverrideParam', () => {
  it('finds _method in any case and escaping', () => {
    for (const t of ['/x?_method=DELETE', '/x?a=1&_METHOD=put', '/x?%5Fmethod=DELETE', '/x?%5fMethod', '/x?a=1;_method=DELETE', '/x?_method+=x']) expect(hasMethodOverrideParam(t), t).toBe(true);
  });
  it('ignores look-alikes, values and fragments', () => {
    for (const t of ['/x', '/x?method=DELETE', '/x?q=_method', '/x?_methods=1', '/_method', '/x#?_method=1', '/x?%zz=1']) expect(hasMethodOverrideParam(t), t).toBe(false);
  });
});
