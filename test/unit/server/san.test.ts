import { describe, expect, it } from 'vitest';
import { hasAllowedSan, parseSubjectAltName } from '../../../src/server/san.js';

describe('subjectAltName pinning', () => {
  it("parses Node's subjectaltname text, quoted values included", () => {
    expect(parseSubjectAltName('URI:spiffe://a/envoy, DNS:envoy.internal, IP Address:10.0.0.1')).toEqual([
      { type: 'URI', value: 'spiffe://a/envoy' },
      { type: 'DNS', value: 'envoy.internal' },
      { type: 'IP Address', value: '10.0.0.1' },
    ]);
    expect(parseSubjectAltName('URI:"spiffe://a/b, DNS:evil", DNS:x')).toEqual([
      { type: 'URI', value: 'spiffe://a/b, DNS:evil' },
      { type: 'DNS', value: 'x' },
    ]);
    expect(parseSubjectAltName(undefined)).toEqual([]);
    expect(parseSubjectAltName('')).toEqual([]);
  });

  it('matches exact URI, DNS or IP values only', () => {
    const allowed = new Set(['spiffe://a/envoy', 'envoy.internal']);
    expect(hasAllowedSan('URI:spiffe://a/envoy', allowed)).toBe(true);
    expect(hasAllowedSan('DNS:envoy.internal', allowed)).toBe(true);
    expect(hasAllowedSan('URI:spiffe://a/envoy2, DNS:envoy.internal.evil', allowed)).toBe(false);
    // A separator inside a quoted value does not make a second, matching SAN.
    expect(hasAllowedSan('URI:"spiffe://x, DNS:envoy.internal"', allowed)).toBe(false);
    // Other SAN types (e-mail) never pin, even with an allowed value.
    expect(hasAllowedSan('email:envoy.internal', allowed)).toBe(false);
    expect(hasAllowedSan(undefined, allowed)).toBe(false);
  });
});
