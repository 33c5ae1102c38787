import type { IncomingMessage } from 'node:http';
import { createSealer } from '../../lib/sealedValues.js';
import type { SessionCredential } from './sessionAuth.js';

/**
 * The browser session of `/v1/sessions` (reference §8: notebook routes take a cookie on path
 * `/v1/sessions`, valid one day, or a Bearer token). A browser cannot send an Authorization header
 * when it navigates, so the first request with a credential sets this cookie and later ones (Jupyter's
 * pages, scripts, API calls and kernel WebSockets) carry it.
 *
 * The value is the credential sealed with AES-256-GCM under a key derived from the platform's internal
 * token secret: the browser (HttpOnly: not even its scripts) and anyone who copies the cookie see only
 * ciphertext, a changed byte fails authentication, and the expiry is inside the sealed part. Every
 * request with the cookie is authorized again with the credential it holds (through the gateway, with
 * the short decision cache), so a revoked key or a member removed from the project loses access at once,
 * which a cookie of signed claims would not do for up to a day. The cookie is accepted on notebook
 * routes only, never on the Kubernetes API routes.
 */

export const SESSION_COOKIE = 'mariner_session';
export const SESSION_COOKIE_PATH = '/v1/sessions';
/** LLMariner's cookie lives one day. */
export const SESSION_TTL_SECONDS = 24 * 3600;

interface Sealed {
  v: 1;
  /** The Authorization header value. */
  a: string;
  o: string | null;
  p: string | null;
  /** Expiry, seconds since the epoch. */
  e: number;
}

export interface SessionCookies {
  /** A sealed cookie value for a credential, valid `SESSION_TTL_SECONDS` from `now`. */
  seal(credential: SessionCredential, now?: number): string;
  /** The credential of a cookie value; null when it is forged, altered, malformed or expired. */
  open(value: string, now?: number): SessionCredential | null;
  /** A `Set-Cookie` header value setting the cookie. */
  setCookie(credential: SessionCredential, secure: boolean): string;
  /** A `Set-Cookie` header value removing it. */
  clearCookie(secure: boolean): string;
}

export function createSessionCookies(secret: string): SessionCookies {
  // Its own key, derived from the internal token secret: a cookie is never a valid internal token or the reverse.
  const sealer = createSealer(secret, 'mariner sessions cookie key v1', `${SESSION_COOKIE}/v1`);
  const attributes = (secure: boolean) => `Path=${SESSION_COOKIE_PATH}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
  const seal = (credential: SessionCredential, now = Date.now()) => {
    const payload: Sealed = {
      v: 1,
      a: credential.authorization,
      o: credential.organizationId,
      p: credential.projectId,
      e: Math.floor(now / 1000) + SESSION_TTL_SECONDS,
    };
    return sealer.seal(payload);
  };
  return {
    seal,
    open(value, now = Date.now()) {
      const payload = sealer.open(value) as Sealed | null;
      if (payload?.v !== 1 || typeof payload.a !== 'string' || typeof payload.e !== 'number' || payload.e * 1000 <= now) return null;
      return { authorization: payload.a, organizationId: payload.o ?? null, projectId: payload.p ?? null };
    },
    setCookie: (credential, secure) => `${SESSION_COOKIE}=${seal(credential)}; Max-Age=${SESSION_TTL_SECONDS}; ${attributes(secure)}`,
    clearCookie: (secure) => `${SESSION_COOKIE}=; Max-Age=0; ${attributes(secure)}`,
  };
}

/** The request's cookies as `name=value` pairs, in order (RFC 6265 §5.4: `; `-separated). */
function cookiePairs(req: IncomingMessage): { name: string; value: string; raw: string }[] {
  const header = req.headers.cookie;
  if (!header) return [];
  return header
    .split(';')
    .map((raw) => raw.trim())
    .filter(Boolean)
    .map((raw) => {
      const eq = raw.indexOf('=');
      return { name: eq === -1 ? raw : raw.slice(0, eq).trim(), value: eq === -1 ? '' : raw.slice(eq + 1).trim(), raw };
    });
}

/** The session cookie's value, if the request has one. */
export function sessionCookieOf(req: IncomingMessage): string | undefined {
  return cookiePairs(req).find((c) => c.name === SESSION_COOKIE)?.value;
}

/** The request's other cookies (the notebook's own, such as Jupyter's `_xsrf`), for the notebook. */
export function cookiesWithoutSession(req: IncomingMessage): string | undefined {
  const others = cookiePairs(req).filter((c) => c.name !== SESSION_COOKIE);
  return others.length > 0 ? others.map((c) => c.raw).join('; ') : undefined;
}

/** Whether the caller reached the platform over TLS (directly, or through an ingress that says so). */
export function overTls(req: IncomingMessage): boolean {
  if ((req.socket as { encrypted?: boolean }).encrypted) return true;
  const forwarded = req.headers['x-forwarded-proto'];
  return (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim().toLowerCase() === 'https';
}
