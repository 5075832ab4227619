import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { bodyDigest, signCall, type SignedCall } from '../../../src/credentials/signing.js';
import { loadSignatureRecipe, type VerifyPortcullisSignature } from '../../helpers/signatureRecipe.js';

const KEY = 'tool-signing-key';
let verify: VerifyPortcullisSignature;

beforeAll(async () => {
  verify = await loadSignatureRecipe();
});

function call(over: Partial<SignedCall> = {}): SignedCall {
  return { method: 'post', path: '/tools/tickets/tenants/acme/tickets?x=a,b&y=%2C', agent: 'helpdesk', requestId: 'req-1', body: Buffer.from('{"title":"x"}'), bodyComplete: true, nowMs: Date.now(), ...over };
}

const toTool = (p: string): string => p.replace(/^\/tools\/tickets\//, '/tickets/');

describe('request signatures towards tools', () => {
  it('verify with the documented recipe and cover method, path, body, time, agent and request id', () => {
    const header = signCall(KEY, call());
    expect(header).toMatch(/^v1,t=\d+,id=req-1,agent=helpdesk,method=POST,path=[^,]+,body=sha256%3A[\w-]+,sig=[0-9a-f]{64}$/);
    const req = { method: 'POST', url: '/tickets/tenants/acme/tickets?x=a,b&y=%2C', body: Buffer.from('{"title":"x"}') };
    expect(verify(header, KEY, req, { toToolPath: toTool })).toMatchObject({ agent: 'helpdesk', id: 'req-1', method: 'POST', path: '/tools/tickets/tenants/acme/tickets?x=a,b&y=%2C' });
    expect(() => verify(header, 'another-key', req, { toToolPath: toTool })).toThrow(/bad signature/);
    expect(() => verify(header, KEY, { ...req, body: Buffer.from('{"title":"y"}') }, { toToolPath: toTool })).toThrow(/another body/);
    expect(() => verify(header, KEY, { ...req, method: 'PUT' }, { toToolPath: toTool })).toThrow(/another request/);
    expect(() => verify(header, KEY, { ...req, url: '/tickets/tickets/T-1001' }, { toToolPath: toTool })).toThrow(/another request/);
    expect(() => verify(header.replace('agent=helpdesk', 'agent=admin'), KEY, req, { toToolPath: toTool })).toThrow(/bad signature/);
    expect(() => verify(undefined, KEY, req)).toThrow(/no portcullis v1 signature/);
    const old = signCall(KEY, call({ nowMs: Date.now() - 600_000 }));
    expect(() => verify(old, KEY, req, { toToolPath: toTool })).toThrow(/stale/);
  });

  it('say when the body was not covered', () => {
    expect(bodyDigest(Buffer.from('abc'), false)).toBe('partial');
    expect(bodyDigest(undefined, true)).toBe(`sha256:${createHash('sha256').update('').digest('base64url')}`);
    const header = signCall(KEY, call({ bodyComplete: false }));
    expect(header).toContain(',body=partial,');
    expect(() => verify(header, KEY, { method: 'POST', url: '/tickets/tenants/acme/tickets?x=a,b&y=%2C', body: Buffer.from('{"title":"x"}') }, { toToolPath: toTool })).toThrow(/body not covered/);
  });

  it('encode values so no field can spill into another', () => {
    const header = signCall(KEY, call({ agent: 'a,sig=00', path: '/p\nq' }));
    expect(header.split(',').filter((i) => i.startsWith('sig='))).toHaveLength(1);
    expect(verify(header, KEY, { method: 'POST', url: '/p\nq', body: Buffer.from('{"title":"x"}') })).toMatchObject({ agent: 'a,sig=00' });
  });
});
