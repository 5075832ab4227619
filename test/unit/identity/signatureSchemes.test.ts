import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { SignatureConfig } from '../../../src/config/types.js';
import { SecretStore } from '../../../src/credentials/secrets.js';
import { GatewayError } from '../../../src/errors.js';
import { SignatureVerifier, type SignedRequest } from '../../../src/identity/signature.js';
import { MemoryStore } from '../../../src/limits/store.js';
import { configProblems } from '../../helpers/config.js';
import { parseConfig } from '../../../src/config/load.js';

/**
 * Every signature scheme against its provider's documented example, then against the ways a
 * sender (or someone replaying a captured delivery) could try to get around it.
 */

const secrets = new SecretStore(mkdtempSync(join(tmpdir(), 'pc-sig-schemes-')));
afterAll(() => secrets.close());

/** Sets an environment secret for one test file; the names are unique to it. */
function envSecret(name: string, value: string): { env: string } {
  process.env[name] = value;
  return { env: name };
}

// Documented examples. Slack: "Verifying requests from Slack". GitHub: "Validating webhook
// deliveries" (test values). Standard Webhooks: the reference libraries' signing test.
const SLACK = {
  secret: '8f742231b10e8888abcd99yyyzzz85a5',
  ts: 1531420618,
  body: 'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c',
  signature: 'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503',
};
const GITHUB = {
  secret: "It's a Secret to Everybody",
  body: 'Hello, World!',
  signature: 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17',
};
const STANDARD = {
  secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
  ts: 1614265330,
  body: '{"test": 2432232314}',
  signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
};
// Stripe publishes no example with its secret: this one was computed with
// `printf '%s' '1492774577.{"id": "evt_test_webhook", "object": "event"}' | openssl dgst -sha256 -hmac whsec_test_secret`
// (the timestamp of Stripe's documented header, the secret and payload of its libraries' tests).
const STRIPE = {
  secret: 'whsec_test_secret',
  ts: 1492774577,
  body: '{"id": "evt_test_webhook", "object": "event"}',
  v1: 'c137b1b62277d523cf8fed4dfbd0170a9a5b8a380e00cc3711d4bf0652f2ce7a',
};

const slackSecret = envSecret('SIG_SCHEMES_SLACK', SLACK.secret);
const githubSecret = envSecret('SIG_SCHEMES_GITHUB', GITHUB.secret);
const standardSecret = envSecret('SIG_SCHEMES_STANDARD', STANDARD.secret);
const stripeSecret = envSecret('SIG_SCHEMES_STRIPE', STRIPE.secret);

/** The clock on a whole second, so skews in messages are exact. */
const wholeSecondNow = (): number => Math.floor(Date.now() / 1000) * 1000;

function signer(over: Partial<SignatureConfig> & Pick<SignatureConfig, 'id'>): SignatureConfig {
  return { max_skew_s: 300, agent: 'hooks', ...over };
}

/** A verifier with its own replay store and clock. */
function verifier(signers: SignatureConfig[], clock: { now: number }): SignatureVerifier {
  return new SignatureVerifier(signers, secrets, new MemoryStore(1000, () => clock.now));
}

function request(headers: Record<string, string>, body: string, nowMs: number, over: Partial<SignedRequest> = {}): SignedRequest {
  return { headers, method: 'POST', path: '/hooks', rawBody: Buffer.from(body), bodyTruncated: false, toolName: 'tickets', nowMs, ...over };
}

async function denial(p: Promise<unknown>, code = 'unauthenticated'): Promise<GatewayError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(GatewayError);
  expect((err as GatewayError).code).toBe(code);
  expect((err as GatewayError).rule).toBe('identity.signature');
  return err as GatewayError;
}

const hmacHex = (secret: string | Buffer, ...parts: string[]): string => {
  const h = createHmac('sha256', secret);
  for (const p of parts) h.update(p);
  return h.digest('hex');
};
const standardKey = (secret: string): Buffer => Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
const standardSig = (secret: string, id: string, ts: number, body: string): string =>
  `v1,${createHmac('sha256', standardKey(secret)).update(`${id}.${ts}.${body}`).digest('base64')}`;

describe('documented examples', () => {
  it('slack: Slack\'s signing-secret example verifies', async () => {
    const clock = { now: (SLACK.ts + 30) * 1000 };
    const v = verifier([signer({ id: 'slack', scheme: 'slack', secret: slackSecret })], clock);
    const headers = { 'x-slack-signature': SLACK.signature, 'x-slack-request-timestamp': String(SLACK.ts) };
    expect(await v.verify(request(headers, SLACK.body, clock.now))).toMatchObject([{ provenBy: 'slack', agent: 'hooks' }]);
  });

  it('github: GitHub\'s X-Hub-Signature-256 example verifies, on its documented default header', async () => {
    const clock = { now: wholeSecondNow() };
    const v = verifier([signer({ id: 'gh', scheme: 'github', secret: githubSecret })], clock);
    expect(v.headerNames).toEqual(expect.arrayContaining(['x-hub-signature-256', 'x-hub-signature']));
    expect(await v.verify(request({ 'x-hub-signature-256': GITHUB.signature }, GITHUB.body, clock.now))).toMatchObject([{ provenBy: 'gh' }]);
  });

  it('stripe: t=...,v1=... verifies, with v0 and unknown elements ignored and several v1 values allowed', async () => {
    const clock = { now: (STRIPE.ts + 10) * 1000 };
    const v = verifier([signer({ id: 'stripe', scheme: 'stripe', secret: stripeSecret })], clock);
    const other = 'ab'.repeat(32);
    const header = `t=${STRIPE.ts},v1=${other},v0=${'cd'.repeat(32)},v1=${STRIPE.v1},foo=bar`;
    expect(await v.verify(request({ 'stripe-signature': header }, STRIPE.body, clock.now))).toMatchObject([{ provenBy: 'stripe' }]);
    // The vector is what the scheme computes: timestamp "." body under the whsec_ text itself.
    expect(hmacHex(STRIPE.secret, `${STRIPE.ts}.`, STRIPE.body)).toBe(STRIPE.v1);
  });

  it('standard_webhooks: the reference signing vector verifies, with a secret with or without whsec_', async () => {
    const clock = { now: STANDARD.ts * 1000 };
    const bare = envSecret('SIG_SCHEMES_STANDARD_BARE', STANDARD.secret.slice('whsec_'.length));
    for (const secret of [standardSecret, bare]) {
      const v = verifier([signer({ id: 'std', scheme: 'standard_webhooks', secret })], clock);
      const headers = { 'webhook-id': STANDARD.id, 'webhook-timestamp': String(STANDARD.ts), 'webhook-signature': STANDARD.signature };
      expect(await v.verify(request(headers, STANDARD.body, clock.now))).toMatchObject([{ provenBy: 'std' }]);
    }
    // A list with other versions and a rotated-out key verifies on the one good entry.
    const v = verifier([signer({ id: 'std', scheme: 'standard_webhooks', secret: standardSecret })], clock);
    const list = `v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= ${STANDARD.signature} v1a,${Buffer.alloc(64).toString('base64')}`;
    const headers = { 'webhook-id': 'msg_other', 'webhook-timestamp': String(STANDARD.ts), 'webhook-signature': list.replace(STANDARD.signature, standardSig(STANDARD.secret, 'msg_other', STANDARD.ts, STANDARD.body)) };
    expect(await v.verify(request(headers, STANDARD.body, clock.now))).toMatchObject([{ provenBy: 'std' }]);
  });
});

describe('github', () => {
  const clock = { now: wholeSecondNow() };
  const v = verifier([signer({ id: 'gh', scheme: 'github', secret: githubSecret })], clock);
  const sig = (body: string): string => `sha256=${hmacHex(GITHUB.secret, body)}`;

  it('refuses the SHA-1 X-Hub-Signature alone, and sha1= in the SHA-256 header', async () => {
    const sha1 = `sha1=${createHmac('sha1', GITHUB.secret).update('{"a":1}').digest('hex')}`;
    const alone = await denial(v.verify(request({ 'x-hub-signature': sha1 }, '{"a":1}', clock.now)));
    expect(alone.message).toMatch(/SHA-1 signature \(X-Hub-Signature, "sha1=\.\.\."\) is not accepted.*X-Hub-Signature-256/);
    const inHeader = await denial(v.verify(request({ 'x-hub-signature-256': sha1 }, '{"a":1}', clock.now)));
    expect(inHeader.message).toMatch(/x-hub-signature-256 carries a "sha1".*must be "sha256=" followed by 64 hex/);
  });

  it('refuses another scheme\'s signature in its header, naming the form it expects', async () => {
    const body = '{"b":1}';
    const slackForm = `v0=${hmacHex(GITHUB.secret, body)}`;
    const e = await denial(v.verify(request({ 'x-hub-signature-256': slackForm }, body, clock.now)));
    expect(e.message).toMatch(/carries a "v0" signature; the signers of this header use "sha256": it must be "sha256=" followed by 64 hex characters/);
    const std = `v1,${createHmac('sha256', GITHUB.secret).update(body).digest('base64')}`;
    expect((await denial(v.verify(request({ 'x-hub-signature-256': std }, body, clock.now)))).message).toMatch(/carries a Standard Webhooks signature/);
  });

  it('accepts a delivery once: the same body and signature again, even in upper-case hex, is a replay', async () => {
    const body = `{"delivery":"${randomBytes(4).toString('hex')}"}`;
    await v.verify(request({ 'x-hub-signature-256': sig(body), 'x-github-delivery': 'a' }, body, clock.now));
    // X-GitHub-Delivery is not signed: a new value does not make the delivery new.
    const again = await denial(v.verify(request({ 'x-hub-signature-256': sig(body), 'x-github-delivery': 'b' }, body, clock.now)));
    expect(again.message).toMatch(/already used.*remembered for at least 86400s/);
    await denial(v.verify(request({ 'x-hub-signature-256': `SHA256=${sig(body).slice(7).toUpperCase()}` }, body, clock.now)));
  });

  it('remembers a used signature for replay_window_s, then a captured delivery verifies again (the residual risk)', async () => {
    const own = { now: wholeSecondNow() };
    const short = verifier([signer({ id: 'gh', scheme: 'github', secret: githubSecret, replay_window_s: 60 })], own);
    const body = '{"window":1}';
    await short.verify(request({ 'x-hub-signature-256': sig(body) }, body, own.now));
    own.now += 59_000;
    await denial(short.verify(request({ 'x-hub-signature-256': sig(body) }, body, own.now)));
    own.now += 2_000;
    expect(await short.verify(request({ 'x-hub-signature-256': sig(body) }, body, own.now))).toHaveLength(1);
  });

  it('refuses a body changed in transit, a repeated header, and a truncated body', async () => {
    const body = '{"amount":1}';
    expect((await denial(v.verify(request({ 'x-hub-signature-256': sig(body) }, '{"amount":100}', clock.now)))).message).toMatch(
      /does not match: it must be sha256=hex\(HMAC-SHA256\(secret, exact request body\)\)/,
    );
    const joined = await denial(v.verify(request({ 'x-hub-signature-256': `${sig(body)},${sig('{}')}` }, body, clock.now)));
    expect(joined.message).toMatch(/sent twice .* joined with ","/);
    const cut = await denial(v.verify(request({ 'x-hub-signature-256': sig(body) }, body.slice(0, 5), clock.now, { bodyTruncated: true })));
    expect(cut.message).toMatch(/truncated/);
  });

  it('refuses a timestamp_header in its configuration: GitHub signs no timestamp', () => {
    expect(() => new SignatureVerifier([signer({ id: 'gh', scheme: 'github', secret: githubSecret, timestamp_header: 'x-ts' })], secrets)).toThrow(
      /signer "gh": scheme github has no timestamp header/,
    );
  });
});

describe('stripe', () => {
  const header = (ts: number, body: string, secret = STRIPE.secret): string => `t=${ts},v1=${hmacHex(secret, `${ts}.`, body)}`;

  it('refuses a valid v1 moved to another timestamp, an expired timestamp and a replay', async () => {
    const clock = { now: wholeSecondNow() };
    const v = verifier([signer({ id: 'stripe', scheme: 'stripe', secret: stripeSecret })], clock);
    const now = Math.floor(clock.now / 1000);
    const body = '{"id":"evt_1"}';
    const old = hmacHex(STRIPE.secret, `${now - 400}.`, body);
    const moved = await denial(v.verify(request({ 'stripe-signature': `t=${now},v1=${old}` }, body, clock.now)));
    expect(moved.message).toMatch(/does not match: it must be t=<timestamp>,v1=hex\(HMAC-SHA256\(secret, timestamp \+ "\." \+ exact request body\)\)/);
    const expired = await denial(v.verify(request({ 'stripe-signature': `t=${now - 400},v1=${old}` }, body, clock.now)));
    expect(expired.message).toMatch(/400s away from the gateway clock; signed requests are accepted within 300s/);
    await v.verify(request({ 'stripe-signature': header(now, body) }, body, clock.now));
    expect((await denial(v.verify(request({ 'stripe-signature': header(now, body) }, body, clock.now)))).message).toMatch(/already used/);
    // The used v1 with an extra junk v1 beside it is the same signature.
    await denial(v.verify(request({ 'stripe-signature': `${header(now, body)},v1=${'00'.repeat(32)}` }, body, clock.now)));
  });

  it('refuses v0 alone, a repeated header (two t=), spaces inside, and a value of another scheme', async () => {
    const clock = { now: wholeSecondNow() };
    const v = verifier([signer({ id: 'stripe', scheme: 'stripe', secret: stripeSecret })], clock);
    const now = Math.floor(clock.now / 1000);
    const body = '{"id":"evt_2"}';
    const v0 = await denial(v.verify(request({ 'stripe-signature': `t=${now},v0=${hmacHex(STRIPE.secret, `${now}.`, body)}` }, body, clock.now)));
    expect(v0.message).toMatch(/no v1 signature \(v0 is not accepted\)/);
    const twice = await denial(v.verify(request({ 'stripe-signature': `${header(now, body)},${header(now - 1, body)}` }, body, clock.now)));
    expect(twice.message).toMatch(/more than one t= element/);
    const spaced = await denial(v.verify(request({ 'stripe-signature': header(now, body).replace(',', ', ') }, body, clock.now)));
    expect(spaced.message).toMatch(/is not key=value/);
    const slack = await denial(v.verify(request({ 'stripe-signature': `v0=${hmacHex(STRIPE.secret, body)}` }, body, clock.now)));
    expect(slack.message).toMatch(/carries a "v0" signature; the signers of this header use Stripe: it must be "t=<unix seconds>,v1=<64 hex>"/);
  });

  it('accepts either secret of a signer while it is rotated', async () => {
    const clock = { now: wholeSecondNow() };
    const next = envSecret('SIG_SCHEMES_STRIPE_NEXT', 'whsec_next_secret');
    const v = verifier([signer({ id: 'stripe', scheme: 'stripe', secrets: [stripeSecret, next] })], clock);
    const now = Math.floor(clock.now / 1000);
    expect(await v.verify(request({ 'stripe-signature': header(now, '{"k":1}') }, '{"k":1}', clock.now))).toHaveLength(1);
    expect(await v.verify(request({ 'stripe-signature': header(now, '{"k":2}', 'whsec_next_secret') }, '{"k":2}', clock.now))).toHaveLength(1);
    await denial(v.verify(request({ 'stripe-signature': header(now, '{"k":3}', 'whsec_retired') }, '{"k":3}', clock.now)));
  });
});

describe('standard_webhooks', () => {
  const clock = { now: wholeSecondNow() };
  const now = Math.floor(clock.now / 1000);
  const v = verifier([signer({ id: 'std', scheme: 'standard_webhooks', secret: standardSecret })], clock);
  const headers = (id: string, ts: number, body: string, sig = standardSig(STANDARD.secret, id, ts, body)): Record<string, string> => ({
    'webhook-id': id,
    'webhook-timestamp': String(ts),
    'webhook-signature': sig,
  });

  it('accepts a message id once: a fresh signature for the same id is a duplicate', async () => {
    const body = '{"type":"contact.created"}';
    await v.verify(request(headers('msg_once', now, body), body, clock.now));
    const dup = await denial(v.verify(request(headers('msg_once', now - 1, body), body, clock.now)));
    expect(dup.message).toMatch(/message id "msg_once" in webhook-id was already delivered; each message id is accepted once/);
    expect(await v.verify(request(headers('msg_twice', now, body), body, clock.now))).toHaveLength(1);
  });

  it('refuses a list where only an entry that must not count matches', async () => {
    const body = '{"n":1}';
    const good = standardSig(STANDARD.secret, 'msg_list', now, body).slice(3);
    const mac = Buffer.from(good, 'base64');
    // The right MAC under another version (asymmetric v1a, a future v2) beside a wrong v1.
    const wrong = `v1,${Buffer.alloc(32, 7).toString('base64')}`;
    for (const list of [`${wrong} v1a,${good}`, `v2,${good} ${wrong}`]) {
      const e = await denial(v.verify(request(headers('msg_list', now, body, list), body, clock.now)));
      expect(e.message, list).toMatch(/does not match: it must be v1,base64/);
    }
    // The right MAC in a non-canonical encoding: base64url, unpadded, with trailing bytes.
    for (const enc of [mac.toString('base64url'), good.replace(/=$/, ''), `${good}AA`]) {
      const e = await denial(v.verify(request(headers('msg_list', now, body, `v1,${enc}`), body, clock.now)));
      expect(e.message, enc).toMatch(/webhook-signature|v1 entry/);
    }
    // v1a alone: no symmetric signature at all.
    expect((await denial(v.verify(request(headers('msg_list', now, body, `v1a,${good}`), body, clock.now)))).message).toMatch(/no "v1," signature/);
    // Nothing of the above was accepted, so the id is still unused.
    expect(await v.verify(request(headers('msg_list', now, body), body, clock.now))).toHaveLength(1);
  });

  it('refuses an expired or missing timestamp, a missing or dotted id, a changed body and repeated headers', async () => {
    const body = '{"n":2}';
    const stale = await denial(v.verify(request(headers('msg_stale', now - 301, body), body, clock.now)));
    expect(stale.message).toMatch(/accepted within 300s \(replay window\)/);
    const { 'webhook-timestamp': _t, ...noTs } = headers('msg_nots', now, body);
    expect((await denial(v.verify(request(noTs, body, clock.now)))).message).toMatch(/missing header webhook-timestamp/);
    const { 'webhook-id': _i, ...noId } = headers('msg_noid', now, body);
    expect((await denial(v.verify(request(noId, body, clock.now)))).message).toMatch(/missing header webhook-id/);
    // A "." in the id would let id and timestamp shift within the signed content.
    expect((await denial(v.verify(request(headers('msg.1', now, body), body, clock.now)))).message).toMatch(/without "\."/);
    expect((await denial(v.verify(request(headers('msg_body', now, body), '{"n":3}', clock.now)))).message).toMatch(/does not match/);
    const sig = standardSig(STANDARD.secret, 'msg_rep', now, body);
    const joined = await denial(v.verify(request(headers('msg_rep', now, body, `${sig},${sig}`), body, clock.now)));
    expect(joined.message).toMatch(/sent twice/);
    expect((await denial(v.verify(request({ ...headers('msg_rep', now, body), 'webhook-id': 'msg_rep,msg_rep' }, body, clock.now)))).message).toMatch(/sent twice/);
    expect((await denial(v.verify(request({ ...headers('msg_rep', now, body), 'webhook-timestamp': `${now},${now}` }, body, clock.now)))).message).toMatch(/Unix time in seconds.*sent twice/);
  });

  it('fails closed (503) when the secret is not a whsec_ base64 key, without echoing it', async () => {
    const bad = envSecret('SIG_SCHEMES_STANDARD_BAD', 'whsec_not base64!');
    const broken = verifier([signer({ id: 'std-bad', scheme: 'standard_webhooks', secret: bad })], clock);
    const body = '{}';
    const e = await denial(broken.verify(request(headers('msg_bad', now, body), body, clock.now)), 'unavailable');
    expect(e.message).not.toContain('not base64!');
  });
});

describe('slack', () => {
  it('refuses a signature over a changed body, a stale timestamp and whitespace inside the value', async () => {
    const clock = { now: (SLACK.ts + 30) * 1000 };
    const v = verifier([signer({ id: 'slack', scheme: 'slack', secret: slackSecret })], clock);
    const headers = { 'x-slack-signature': SLACK.signature, 'x-slack-request-timestamp': String(SLACK.ts) };
    await denial(v.verify(request(headers, `${SLACK.body}&x=1`, clock.now)));
    await denial(v.verify(request(headers, SLACK.body, clock.now + 300_000)));
    await denial(v.verify(request({ ...headers, 'x-slack-signature': SLACK.signature.replace('=', '= ') }, SLACK.body, clock.now)));
    // Surrounding whitespace is not part of the value (HTTP strips it; so does the gateway).
    expect(await v.verify(request({ ...headers, 'x-slack-signature': ` ${SLACK.signature}\t` }, SLACK.body, clock.now))).toHaveLength(1);
  });
});

describe('one replay store for every replica and reload', () => {
  it('a GitHub delivery or a Standard Webhooks id accepted by one verifier is refused by another on the same store', async () => {
    const clock = { now: wholeSecondNow() };
    const store = new MemoryStore(1000, () => clock.now);
    const signers = [signer({ id: 'gh', scheme: 'github', secret: githubSecret }), signer({ id: 'std', scheme: 'standard_webhooks', secret: standardSecret })];
    const [a, b] = [new SignatureVerifier(signers, secrets, store), new SignatureVerifier(signers, secrets, store)] as const;
    const body = '{"shared":1}';
    const gh = { 'x-hub-signature-256': `sha256=${hmacHex(GITHUB.secret, body)}` };
    await a.verify(request(gh, body, clock.now));
    expect((await denial(b.verify(request(gh, body, clock.now)))).message).toMatch(/already used/);
    const ts = Math.floor(clock.now / 1000);
    const std = { 'webhook-id': 'msg_shared', 'webhook-timestamp': String(ts), 'webhook-signature': standardSig(STANDARD.secret, 'msg_shared', ts, body) };
    await b.verify(request(std, body, clock.now));
    expect((await denial(a.verify(request(std, body, clock.now)))).message).toMatch(/already delivered/);
  });
});

describe('upgrades', () => {
  it('a Slack signature recorded under the key format of earlier versions is still a replay', async () => {
    const clock = { now: (SLACK.ts + 30) * 1000 };
    const store = new MemoryStore(1000, () => clock.now);
    const mac = Buffer.from(SLACK.signature.slice(3), 'hex').toString('base64');
    await store.setIfAbsent(`sig\u0000slack\u0000v0\u0000${mac}`, 300_000);
    const v = new SignatureVerifier([signer({ id: 'slack', scheme: 'slack', secret: slackSecret })], secrets, store);
    const headers = { 'x-slack-signature': SLACK.signature, 'x-slack-request-timestamp': String(SLACK.ts) };
    expect((await denial(v.verify(request(headers, SLACK.body, clock.now)))).message).toMatch(/already used/);
  });
});

describe('denials never carry a secret', () => {
  it('no message of a failed verification contains any configured secret', async () => {
    const clock = { now: wholeSecondNow() };
    const v = verifier(
      [
        signer({ id: 'gh', scheme: 'github', secret: githubSecret }),
        signer({ id: 'stripe', scheme: 'stripe', secret: stripeSecret }),
        signer({ id: 'std', scheme: 'standard_webhooks', secret: standardSecret }),
      ],
      clock,
    );
    const messages: string[] = [];
    for (const headers of <Record<string, string>[]>[
      { 'x-hub-signature-256': 'sha256=00' },
      { 'x-hub-signature-256': `sha256=${'0'.repeat(64)}` },
      { 'stripe-signature': `t=1,v1=${'0'.repeat(64)}` },
      { 'webhook-signature': `v1,${Buffer.alloc(32).toString('base64')}`, 'webhook-id': 'm', 'webhook-timestamp': String(Math.floor(clock.now / 1000)) },
    ]) {
      messages.push((await denial(v.verify(request(headers, '{}', clock.now)))).message);
    }
    for (const m of messages) for (const s of [GITHUB.secret, STRIPE.secret, STANDARD.secret, STANDARD.secret.slice(6)]) expect(m).not.toContain(s);
  });
});

describe('configuration', () => {
  const doc = (signature: string): string => `
policy: { bundle: b.tar.gz }
identity:
  signatures:
    - ${signature}
tools:
  - { name: tickets, upstream: u }
`;

  it('accepts every scheme, one secret or several, and leaves header names to the scheme', () => {
    const cfg = parseConfig(
      doc(`{ id: gh, scheme: github, agent: hooks, secrets: [{ env: A }, { env: B }], replay_window_s: 3600 }
    - { id: std, scheme: standard_webhooks, agent: hooks, secret: { env: C } }
    - { id: st, scheme: stripe, agent: hooks, secret: { env: D } }`),
      'test.yaml',
    );
    const [gh, std] = cfg.identity.signatures;
    expect(gh).toMatchObject({ scheme: 'github', replay_window_s: 3600, max_skew_s: 300 });
    expect(gh?.signature_header).toBeUndefined();
    expect(std?.timestamp_header).toBeUndefined();
  });

  it('refuses a signer with no secret, and an unknown scheme', () => {
    expect(configProblems(doc('{ id: gh, scheme: github, agent: hooks }'))).toContain('$.identity.signatures[0]: missing required key "secret"');
    expect(configProblems(doc('{ id: gh, scheme: gitlab, agent: hooks, secret: { env: A } }')).join(' ')).toMatch(/scheme/);
  });
});
