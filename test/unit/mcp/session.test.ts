import { describe, expect, it } from 'vitest';
import { HandoffKey } from '../../../src/authz/handoff.js';
import { GatewayError } from '../../../src/errors.js';
import type { Principal } from '../../../src/identity/types.js';
import { resolveSession, SessionBinder, sessionIdentity } from '../../../src/mcp/session.js';

const KEY_A = 'session-test-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
const KEY_B = 'session-test-key-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb';

function principal(over: Partial<Principal> = {}): Principal {
  return {
    agent: 'helpdesk',
    agent_version: '1.0',
    user: 'alice',
    tenant: 'acme',
    roles: ['support'],
    methods: ['jwt'],
    proven_by: ['https://issuer.demo.portcullis'],
    jti: 'token-1',
    ...over,
  };
}

describe('session identity', () => {
  it('names issuer, user, agent and tenant: changing any of them is another principal', () => {
    const base = sessionIdentity(principal());
    for (const other of [
      principal({ user: 'bob' }),
      principal({ agent: 'reporter' }),
      principal({ tenant: 'globex' }),
      principal({ proven_by: ['https://other-issuer.example'] }),
    ]) {
      expect(sessionIdentity(other)).not.toBe(base);
    }
  });

  it('ignores roles, the token id and the agent version (a refreshed token keeps its session)', () => {
    const base = sessionIdentity(principal());
    expect(sessionIdentity(principal({ roles: ['viewer'], jti: 'token-2', agent_version: '2.0' }))).toBe(base);
    expect(sessionIdentity(principal({ proven_by: ['https://issuer.demo.portcullis', 'https://issuer.demo.portcullis'] }))).toBe(base);
  });

  it('cannot be forged by packing fields into one another', () => {
    expect(sessionIdentity(principal({ user: 'alice","helpdesk', agent: '' }))).not.toBe(sessionIdentity(principal()));
    expect(sessionIdentity(null)).not.toBe(sessionIdentity(principal({ user: null, agent: null, tenant: null, proven_by: [] })));
  });
});

describe('session bindings', () => {
  const binder = new SessionBinder(new HandoffKey(() => KEY_A));
  const me = sessionIdentity(principal());

  it('binds a server id into visible ASCII and gives it back to the same principal and tool only', () => {
    const bound = binder.bind(me, 'docs', 'srv.with.dots-1');
    expect(bound).toMatch(/^ps1\.srv\.with\.dots-1\.[A-Za-z0-9_-]{43}$/);
    expect(binder.unwrap(me, 'docs', bound)).toEqual({ ok: true, serverId: 'srv.with.dots-1' });
    expect(binder.unwrap(sessionIdentity(principal({ user: 'bob' })), 'docs', bound)).toEqual({ ok: false, problem: 'foreign' });
    expect(binder.unwrap(me, 'tickets', bound)).toEqual({ ok: false, problem: 'foreign' });
  });

  it('verifies on every replica that shares the key, and on none that does not', () => {
    const bound = binder.bind(me, 'docs', 'abc');
    expect(new SessionBinder(new HandoffKey(() => KEY_A)).unwrap(me, 'docs', bound).ok).toBe(true);
    expect(new SessionBinder(new HandoffKey(() => KEY_B)).unwrap(me, 'docs', bound).ok).toBe(false);
  });

  it('is not the hand-off signature: the session key is derived for its own purpose', () => {
    const key = new HandoffKey(() => KEY_A);
    const bound = new SessionBinder(key).bind(me, 'docs', 'abc');
    const mac = bound.slice(bound.lastIndexOf('.') + 1);
    expect(key.verify(JSON.stringify(['ps1', me, 'docs', 'abc']), `v1.${mac}`)).toBe(false);
    expect(key.derive('a').current.equals(key.derive('b').current)).toBe(false);
  });

  it('survives one key rotation, not two', () => {
    let value = KEY_A;
    const rotating = new SessionBinder(new HandoffKey(() => value));
    const bound = rotating.bind(me, 'docs', 'abc');
    value = KEY_B;
    expect(rotating.unwrap(me, 'docs', bound).ok).toBe(true);
    value = `${KEY_B}-next`;
    expect(rotating.unwrap(me, 'docs', bound)).toEqual({ ok: false, problem: 'foreign' });
  });

  it('refuses altered or foreign-looking ids', () => {
    const bound = binder.bind(me, 'docs', 'abc');
    const mac = bound.slice(bound.lastIndexOf('.') + 1);
    const flipped = `${bound.slice(0, -1)}${bound.endsWith('A') ? 'B' : 'A'}`;
    expect(binder.unwrap(me, 'docs', flipped).ok).toBe(false);
    expect(binder.unwrap(me, 'docs', `ps1.abd.${mac}`)).toEqual({ ok: false, problem: 'foreign' });
    for (const bad of ['abc', `ps2.abc.${mac}`, `ps1.${mac}`, `ps1..${mac}`, `ps1.abc.${mac}x`, `ps1.abc.${mac.slice(1)}`, `ps1.ab c.${mac}`, `ps1.abé.${mac}`, '']) {
      expect(binder.unwrap(me, 'docs', bad), bad).toEqual({ ok: false, problem: 'malformed' });
    }
  });

  it('refuses to bind a server id that is not visible ASCII (fail closed)', () => {
    for (const bad of ['', 'a b', 'é', 'a\nb', 'x'.repeat(2000)]) {
      expect(() => binder.bind(me, 'docs', bad), JSON.stringify(bad)).toThrow(GatewayError);
    }
  });
});

describe('resolveSession', () => {
  const binder = new SessionBinder(new HandoffKey(() => KEY_A));
  const me = sessionIdentity(principal());

  it('no header: nothing to resolve; a valid binding: the server id', () => {
    expect(resolveSession(binder, me, 'docs', undefined)).toBeNull();
    expect(resolveSession(binder, me, 'docs', binder.bind(me, 'docs', 'srv-1'))).toBe('srv-1');
  });

  it('another principal\'s binding and a raw id are 404 with distinct rules', () => {
    const theirs = binder.bind(sessionIdentity(principal({ user: 'bob' })), 'docs', 'srv-1');
    const err = (fn: () => unknown): GatewayError => {
      try {
        fn();
      } catch (e) {
        return e as GatewayError;
      }
      throw new Error('no error');
    };
    const foreign = err(() => resolveSession(binder, me, 'docs', theirs));
    expect(foreign.httpStatus).toBe(404);
    expect(foreign.rule).toBe('mcp.session_foreign');
    const raw = err(() => resolveSession(binder, me, 'docs', 'srv-1'));
    expect(raw.httpStatus).toBe(404);
    expect(raw.rule).toBe('mcp.session_invalid');
    expect(raw.message).toMatch(/initialize/);
  });
});
