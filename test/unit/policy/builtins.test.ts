import { createHmac, generateKeyPairSync, sign, constants, type KeyObject } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { beginEvaluation, HOST_BUILTINS } from '../../../src/policy/builtins.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { buildPolicyInput } from '../../../src/policy/input.js';
import { GatewayError } from '../../../src/errors.js';
import { buildBundle, writePolicy } from './helpers.js';

const b = (name: string) => {
  const fn = HOST_BUILTINS[name];
  if (!fn) throw new Error(`no builtin ${name}`);
  return fn;
};

const enc = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

function jwt(header: Record<string, unknown>, payload: Record<string, unknown>, signer: (data: Buffer) => Buffer): string {
  const input = `${enc(header)}.${enc(payload)}`;
  return `${input}.${signer(Buffer.from(input)).toString('base64url')}`;
}

const hs256 = (secret: string) => (data: Buffer) => createHmac('sha256', secret).update(data).digest();
const nowS = (): number => Math.floor(Date.now() / 1000);

describe('io.jwt built-ins', () => {
  let rsa: { publicKey: KeyObject; privateKey: KeyObject };
  let ec: { publicKey: KeyObject; privateKey: KeyObject };

  beforeAll(() => {
    rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  });

  it('decode returns header, payload and the signature in hex', () => {
    const token = jwt({ alg: 'HS256', typ: 'JWT' }, { sub: 'alice' }, hs256('s'));
    const [header, payload, sig] = b('io.jwt.decode')(token) as [unknown, unknown, string];
    expect(header).toEqual({ alg: 'HS256', typ: 'JWT' });
    expect(payload).toEqual({ sub: 'alice' });
    expect(sig).toBe(Buffer.from(token.split('.')[2] as string, 'base64url').toString('hex'));
    expect(b('io.jwt.decode')('not.a.jwt!')).toBeUndefined();
    expect(b('io.jwt.decode')('onlyone')).toBeUndefined();
    expect(b('io.jwt.decode')(42)).toBeUndefined();
  });

  it('verify_hs256 checks the secret', () => {
    const token = jwt({ alg: 'HS256' }, { sub: 'a' }, hs256('secret'));
    expect(b('io.jwt.verify_hs256')(token, 'secret')).toBe(true);
    expect(b('io.jwt.verify_hs256')(token, 'other')).toBe(false);
  });

  it('verify_rs256 / verify_ps256 accept a PEM public key or a JWKS', () => {
    const rs = jwt({ alg: 'RS256' }, { sub: 'a' }, (d) => sign('sha256', d, rsa.privateKey));
    const ps = jwt({ alg: 'PS256' }, { sub: 'a' }, (d) =>
      sign('sha256', d, { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }),
    );
    const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const jwks = JSON.stringify({ keys: [ec.publicKey.export({ format: 'jwk' }), rsa.publicKey.export({ format: 'jwk' })] });
    expect(b('io.jwt.verify_rs256')(rs, pem)).toBe(true);
    expect(b('io.jwt.verify_rs256')(rs, jwks)).toBe(true);
    expect(b('io.jwt.verify_ps256')(ps, pem)).toBe(true);
    expect(b('io.jwt.verify_rs256')(ps, pem)).toBe(false);
    expect(b('io.jwt.verify_rs256')(rs, 'not a key')).toBe(false);
  });

  it('verify_es256 uses JWS (r||s) signatures', () => {
    const es = jwt({ alg: 'ES256' }, { sub: 'a' }, (d) => sign('sha256', d, { key: ec.privateKey, dsaEncoding: 'ieee-p1363' }));
    expect(b('io.jwt.verify_es256')(es, JSON.stringify(ec.publicKey.export({ format: 'jwk' })))).toBe(true);
    expect(b('io.jwt.verify_es256')(es, rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string)).toBe(false);
  });

  describe('decode_verify', () => {
    const secret = 'k';
    const token = (payload: Record<string, unknown>, header: Record<string, unknown> = { alg: 'HS256' }) => jwt(header, payload, hs256(secret));
    const dv = (t: string, c: Record<string, unknown>) => b('io.jwt.decode_verify')(t, c);

    it('returns [true, header, payload] for a valid token', () => {
      const t = token({ sub: 'a', exp: nowS() + 60, nbf: nowS() - 60, iss: 'i', aud: ['x', 'y'] });
      expect(dv(t, { secret, iss: 'i', aud: 'y', alg: 'HS256' })).toEqual([true, { alg: 'HS256' }, expect.objectContaining({ sub: 'a' })]);
    });

    it.each([
      ['a wrong secret', { sub: 'a' }, { secret: 'nope' }],
      ['an expired token', { exp: nowS() - 1 }, { secret }],
      ['a token not yet valid', { nbf: nowS() + 3600 }, { secret }],
      ['a wrong issuer', { iss: 'i' }, { secret, iss: 'j' }],
      ['a missing audience constraint', { aud: 'x' }, { secret }],
      ['a wrong audience', { aud: 'x' }, { secret, aud: 'y' }],
      ['an audience the token lacks', {}, { secret, aud: 'y' }],
      ['a different algorithm', {}, { secret, alg: 'HS512' }],
    ])('returns [false, {}, {}] for %s', (_name, payload, constraints) => {
      expect(dv(token(payload), constraints)).toEqual([false, {}, {}]);
    });

    it('uses the time constraint when given (nanoseconds)', () => {
      const t = token({ exp: 1000 });
      expect((dv(t, { secret, time: 999 * 1e9 }) as unknown[])[0]).toBe(true);
      expect((dv(t, { secret, time: 1000 * 1e9 }) as unknown[])[0]).toBe(false);
    });

    it('does not accept a secret for an asymmetric token', () => {
      expect(dv(jwt({ alg: 'RS256' }, {}, (d) => sign('sha256', d, rsa.privateKey)), { secret })).toEqual([false, {}, {}]);
    });

    it('is undefined without exactly one of cert and secret', () => {
      expect(dv(token({}), {})).toBeUndefined();
      expect(dv(token({}), { secret, cert: 'x' })).toBeUndefined();
    });
  });
});

describe('other host built-ins', () => {
  it('time.now_ns is constant within one evaluation', () => {
    const before = Date.now() * 1e6;
    beginEvaluation();
    const a = b('time.now_ns')() as number;
    expect(a).toBeGreaterThanOrEqual(before);
    expect(a).toBeLessThanOrEqual(Date.now() * 1e6);
    expect(b('time.now_ns')()).toBe(a);
    beginEvaluation();
    expect(b('time.now_ns')()).toBeGreaterThanOrEqual(a);
  });

  it('time.parse_rfc3339_ns', () => {
    expect(b('time.parse_rfc3339_ns')('1970-01-01T00:00:01.5Z')).toBe(1_500_000_000);
    expect(b('time.parse_rfc3339_ns')('1970-01-01T01:00:00+01:00')).toBe(0);
    expect(b('time.parse_rfc3339_ns')('yesterday')).toBeUndefined();
  });

  it('urlquery encode/decode/encode_object follow Go', () => {
    expect(b('urlquery.encode')("a b&c=d/é!'()*")).toBe('a+b%26c%3Dd%2F%C3%A9%21%27%28%29%2A');
    expect(b('urlquery.decode')('a+b%26')).toBe('a b&');
    expect(b('urlquery.decode')('%zz')).toBeUndefined();
    expect(b('urlquery.encode_object')({ b: ['1', '2'], a: 'x y' })).toBe('a=x+y&b=1&b=2');
  });

  it('hashes and base64url', () => {
    expect(b('crypto.sha256')('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(b('crypto.hmac.sha256')('abc', 'k')).toBe(createHmac('sha256', 'k').update('abc').digest('hex'));
    expect(b('base64url.encode_no_pad')('>>?')).toBe('Pj4_');
  });
});

describe('host built-ins inside a wasm policy', () => {
  // The OPA-Envoy tutorial policy: decodes and verifies its own bearer token.
  const TUTORIAL = `package envoy.authz

default allow := false

allow if {
	is_token_valid
	action_allowed
}

is_token_valid if {
	token.valid
	now := time.now_ns() / 1000000000
	token.payload.nbf <= now
	now < token.payload.exp
}

action_allowed if {
	input.attributes.request.http.method == "GET"
	token.payload.role == "guest"
	glob.match("/people*", ["/"], input.attributes.request.http.path)
}

token := {"valid": valid, "payload": payload} if {
	[_, encoded] := split(input.attributes.request.http.headers.authorization, " ")
	[valid, _, payload] := io.jwt.decode_verify(encoded, {"secret": "secret"})
}
`;

  let bundlePath: string;
  beforeAll(() => {
    bundlePath = buildBundle(writePolicy({ 'policy.rego': TUTORIAL })).path;
  });

  const request = (token: string, path = '/people') =>
    buildPolicyInput(
      { attributes: { request: { http: { method: 'GET', path, headers: { authorization: `Bearer ${token}` } } } } },
      { identity: null, tool: null, mcp: null, body: null },
    );

  it('runs an OPA-Envoy policy that verifies its own tokens', async () => {
    const e = await PolicyEngine.open({ bundlePath, decision: 'envoy/authz/allow', watch: false });
    try {
      const good = jwt({ alg: 'HS256' }, { role: 'guest', nbf: nowS() - 10, exp: nowS() + 600 }, hs256('secret'));
      expect(e.evaluate(request(good)).allowed).toBe(true);
      expect(e.evaluate(request(good, '/admin')).allowed).toBe(false);
      const expired = jwt({ alg: 'HS256' }, { role: 'guest', nbf: nowS() - 100, exp: nowS() - 10 }, hs256('secret'));
      expect(e.evaluate(request(expired)).allowed).toBe(false);
      const forged = jwt({ alg: 'HS256' }, { role: 'guest', nbf: nowS() - 10, exp: nowS() + 600 }, hs256('guess'));
      expect(e.evaluate(request(forged)).allowed).toBe(false);
    } finally {
      e.close();
    }
  });

  it('refuses at load a policy needing a built-in nobody provides', async () => {
    const p = buildBundle(writePolicy({ 'p.rego': 'package envoy.authz\n\nallow if uuid.rfc4122(input.x) != ""\n' })).path;
    const err = await PolicyEngine.open({ bundlePath: p, decision: 'envoy/authz/allow', watch: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).message).toContain('uses built-in functions the wasm runtime does not provide: uuid.rfc4122');
  });
});
