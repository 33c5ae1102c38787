import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { cookiesWithoutSession, createSessionCookies, overTls, SESSION_COOKIE, sessionCookieOf } from './sessionCookie.js';

const SECRET = 'a'.repeat(40);
const credential = { authorization: 'Bearer sk-secret-key', organizationId: 'org-1', projectId: null };
const request = (headers: Record<string, string>, encrypted = false) => ({ headers, socket: { encrypted } }) as unknown as IncomingMessage;

describe('the sessions cookie', () => {
  it('seals a credential that only the same secret opens, until it expires', () => {
    const cookies = createSessionCookies(SECRET);
    const sealed = cookies.seal(credential);
    expect(sealed).not.toContain('sk-secret-key');
    expect(Buffer.from(sealed, 'base64url').toString('latin1')).not.toContain('sk-secret-key');
    expect(cookies.open(sealed)).toEqual(credential);
    expect(createSessionCookies('b'.repeat(40)).open(sealed)).toBeNull();
    expect(cookies.open(sealed, Date.now() + 24 * 3600 * 1000 + 1000)).toBeNull();
    expect(cookies.open('not-a-cookie')).toBeNull();
  });

  it('refuses any changed byte', () => {
    const cookies = createSessionCookies(SECRET);
    const bytes = Buffer.from(cookies.seal(credential), 'base64url');
    for (const index of [0, 13, 30, bytes.length - 1]) {
      const changed = Buffer.from(bytes);
      changed[index] = changed[index]! ^ 1;
      expect(cookies.open(changed.toString('base64url'))).toBeNull();
    }
  });

  it('is HttpOnly, SameSite=Lax, on /v1/sessions for a day, Secure over TLS', () => {
    const cookies = createSessionCookies(SECRET);
    expect(cookies.setCookie(credential, false)).toMatch(
      new RegExp(`^${SESSION_COOKIE}=[A-Za-z0-9_-]+; Max-Age=86400; Path=/v1/sessions; HttpOnly; SameSite=Lax$`),
    );
    expect(cookies.setCookie(credential, true)).toMatch(/; Secure$/);
    expect(cookies.clearCookie(true)).toBe(`${SESSION_COOKIE}=; Max-Age=0; Path=/v1/sessions; HttpOnly; SameSite=Lax; Secure`);
    expect(overTls(request({}, true))).toBe(true);
    expect(overTls(request({ 'x-forwarded-proto': 'https' }))).toBe(true);
    expect(overTls(request({}))).toBe(false);
  });

  it('is read from the Cookie header and kept from the notebook, whose own cookies go on', () => {
    const req = request({ cookie: `_xsrf=2|abc; ${SESSION_COOKIE}=sealed; username-host="x=y"` });
    expect(sessionCookieOf(req)).toBe('sealed');
    expect(cookiesWithoutSession(req)).toBe('_xsrf=2|abc; username-host="x=y"');
    expect(cookiesWithoutSession(request({ cookie: `${SESSION_COOKIE}=sealed` }))).toBeUndefined();
  });
});
