import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { decodeJwt } from 'jose';
import { headerValue } from '../lib/http.js';
import type { Sealer } from '../lib/sealedValues.js';
import { OidcTokenError, type OidcVerifier } from './oidc.js';

/**
 * The browser's OIDC sign-in for the web console: the authorization code flow with PKCE (RFC 6749 §4.1,
 * RFC 7636, OIDC Core §3.1) against the configured issuer (Dex in the chart, any OpenID provider).
 *
 * `GET /console/oidc/login` sends the browser to the issuer with a fresh `state`, `nonce` and PKCE
 * challenge; the verifier, state and nonce wait in a short-lived sealed cookie (`mariner_oidc`, HttpOnly,
 * SameSite=Lax so the issuer's redirect back brings it, Path=/console/oidc, 10 minutes). `GET
 * /console/oidc/callback` takes it once (the cookie is cleared whatever happens), checks the state (a
 * callback this browser did not start is refused: login CSRF), redeems the code with the verifier, checks
 * the ID token as every OIDC token is checked (gateway/oidc.ts: issuer, audience = Mariner's client id,
 * signature, expiry, email) plus its nonce, and hands it to the console, which seals it into the same
 * session cookie an API key gets. Every request then verifies it again, so the credential ends when the
 * token expires or the user is removed.
 *
 * Refresh: when the issuer offers `offline_access` (its discovery's `scopes_supported`: Dex and most do), the
 * sign-in asks for it and the session keeps the refresh token too, sealed in the same cookie. Before the ID
 * token expires the console asks `POST /console/session/refresh`, which redeems the refresh token for a new ID
 * token (`refresh()`, checked as at sign-in, nonce aside) and sets the cookie again; the session still ends
 * when the console's own lifetime does, when the issuer refuses the refresh token (revoked, expired, the
 * person's session ended there) or when the person is no longer a Mariner user. Without a refresh token the
 * session ends with the ID token, as before.
 *
 * Where to come back: `?return=#/jobs/ftjob-1` on the login URL (the console's page when the session
 * expired) travels in the flow cookie and the callback sends the browser back to it; only a console route
 * (`#/` and a path) is taken, so the parameter cannot send anyone elsewhere.
 *
 * Errors go back to the console page as a fixed code in the URL fragment (never the issuer's text, which
 * a crafted callback could choose), and are logged with the reason.
 */

export const OIDC_FLOW_COOKIE = 'mariner_oidc';
export const OIDC_LOGIN_PATH = '/console/oidc/login';
export const OIDC_CALLBACK_PATH = '/console/oidc/callback';
/** How long a person may take on the issuer's login page. */
const FLOW_TTL_SECONDS = 600;
const FETCH_TIMEOUT_MS = 10_000;
/** A console route (the URL fragment) to return to after sign-in: a path only. */
const RETURN_ROUTE = /^#\/[A-Za-z0-9._~%/-]{0,200}$/;

/** The console route in `?return=`, when it is one; anything else is dropped. */
export function returnRoute(value: string | null | undefined): string | undefined {
  return value && RETURN_ROUTE.test(value) && !value.includes('..') ? value : undefined;
}

/** What the console page shows for each (gateway → console/src/screens/SignIn.tsx). */
export type OidcLoginFailure = 'denied' | 'expired' | 'state' | 'token' | 'user' | 'issuer';

export interface OidcLoginOptions {
  issuer: string;
  /** Mariner's client id at the issuer (the audience its tokens carry). */
  clientId: string;
  /** For a confidential client; a public client (PKCE alone) has none. */
  clientSecret?: string | undefined;
  verifier: OidcVerifier;
  /** Seals the flow cookie (its own purpose, not the session's). */
  sealer: Sealer;
  /** Whether the ID token's user is a Mariner user (the gateway's authenticator); false → `user`. */
  accepts(idToken: string): Promise<boolean>;
  /**
   * The console's session cookie (a Set-Cookie value) for the token: expiring with it, or with the console's
   * session lifetime when a refresh token comes with it.
   */
  sessionCookie(req: IncomingMessage, tokens: OidcTokens): string;
  warn(message: string, details: Record<string, unknown>): void;
}

/** What a sign-in or a refresh gives the session: a verified ID token and, when the issuer gave one, a refresh token. */
export interface OidcTokens {
  idToken: string;
  expiresAt: Date;
  refreshToken?: string | undefined;
}

interface Flow {
  v: 1;
  state: string;
  nonce: string;
  verifier: string;
  /** Expiry, seconds since the epoch. */
  e: number;
  /** The console route to return to. */
  p?: string;
}

interface Endpoints {
  authorization: string;
  token: string;
  /** Whether the issuer gives refresh tokens for `offline_access`. */
  offline: boolean;
}

/** The token endpoint refused a refresh token, or what it gave did not verify: the session cannot go on. */
export class OidcRefreshError extends Error {
  override name = 'OidcRefreshError';
}

const random = () => randomBytes(32).toString('base64url');

/** The URL the issuer sends the browser back to: this origin (the issuer allows only registered ones). */
function callbackUrl(req: IncomingMessage, tls: boolean): string {
  const host = headerValue(req.headers, 'x-forwarded-host')?.split(',')[0]?.trim() ?? headerValue(req.headers, 'host') ?? '127.0.0.1';
  return `${tls ? 'https' : 'http'}://${host}${OIDC_CALLBACK_PATH}`;
}

export function createOidcLogin(options: OidcLoginOptions) {
  let discovery: Promise<Endpoints> | undefined;
  const base = options.issuer.replace(/\/+$/, '');
  function endpoints(): Promise<Endpoints> {
    discovery ??= (async () => {
      const response = await fetch(`${base}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
      if (!response.ok) throw new Error(`discovery answered HTTP ${response.status}`);
      const metadata = (await response.json()) as { authorization_endpoint?: unknown; token_endpoint?: unknown; scopes_supported?: unknown };
      if (typeof metadata.authorization_endpoint !== 'string' || typeof metadata.token_endpoint !== 'string')
        throw new Error('discovery has no authorization or token endpoint');
      const offline = Array.isArray(metadata.scopes_supported) && metadata.scopes_supported.includes('offline_access');
      return { authorization: metadata.authorization_endpoint, token: metadata.token_endpoint, offline };
    })();
    discovery.catch(() => (discovery = undefined));
    return discovery;
  }

  const flowCookie = (value: string, maxAge: number, tls: boolean) =>
    `${OIDC_FLOW_COOKIE}=${value}; Max-Age=${maxAge}; Path=/console/oidc; HttpOnly; SameSite=Lax${tls ? '; Secure' : ''}`;
  const back = (res: ServerResponse, tls: boolean, failure?: OidcLoginFailure, session?: string, route?: string) => {
    const returning = returnRoute(route);
    res.writeHead(302, {
      location: failure
        ? `/console/#/sign-in?oidc-error=${failure}${returning ? `&return=${encodeURIComponent(returning)}` : ''}`
        : `/console/${returning ?? ''}`,
      'set-cookie': [flowCookie('', 0, tls), ...(session ? [session] : [])],
      'cache-control': 'no-store',
    });
    res.end();
  };

  /** A token request (RFC 6749 §4.1.3, §6): the ID token and the refresh token it answers with. */
  async function tokenRequest(grant: Record<string, string>, refused: string): Promise<{ idToken: string; refreshToken?: string | undefined }> {
    const { token } = await endpoints();
    const body = new URLSearchParams({ ...grant, client_id: options.clientId });
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    if (options.clientSecret)
      headers['authorization'] =
        `Basic ${Buffer.from(`${encodeURIComponent(options.clientId)}:${encodeURIComponent(options.clientSecret)}`).toString('base64')}`;
    const response = await fetch(token, { method: 'POST', headers, body, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    const answer = (await response.json().catch(() => ({}))) as { id_token?: unknown; refresh_token?: unknown; error?: unknown };
    if (!response.ok || typeof answer.id_token !== 'string')
      throw new OidcTokenError(`the token endpoint refused ${refused} (${String(answer.error ?? response.status)})`);
    return { idToken: answer.id_token, refreshToken: typeof answer.refresh_token === 'string' && answer.refresh_token ? answer.refresh_token : undefined };
  }

  return {
    /** `GET /console/oidc/login`: to the issuer. */
    async start(req: IncomingMessage, res: ServerResponse, tls: boolean): Promise<void> {
      const route = returnRoute(new URL(req.url ?? '/', 'http://mariner').searchParams.get('return'));
      let authorization: string;
      let offline: boolean;
      try {
        ({ authorization, offline } = await endpoints());
      } catch (err) {
        options.warn('the OIDC issuer could not be discovered', { err });
        return back(res, tls, 'issuer', undefined, route);
      }
      const flow: Flow = {
        v: 1,
        state: random(),
        nonce: random(),
        verifier: random(),
        e: Math.floor(Date.now() / 1000) + FLOW_TTL_SECONDS,
        ...(route ? { p: route } : {}),
      };
      const url = new URL(authorization);
      url.search = new URLSearchParams({
        response_type: 'code',
        client_id: options.clientId,
        redirect_uri: callbackUrl(req, tls),
        // offline_access: a refresh token, so the session outlives the ID token (up to the console's own lifetime).
        scope: offline ? 'openid email profile offline_access' : 'openid email profile',
        state: flow.state,
        nonce: flow.nonce,
        code_challenge: createHash('sha256').update(flow.verifier).digest('base64url'),
        code_challenge_method: 'S256',
        // OIDC Core §11: offline access is asked for with consent.
        ...(offline ? { prompt: 'consent' } : {}),
      }).toString();
      res.writeHead(302, { location: url.toString(), 'set-cookie': flowCookie(options.sealer.seal(flow), FLOW_TTL_SECONDS, tls), 'cache-control': 'no-store' });
      res.end();
    },

    /** `GET /console/oidc/callback?code&state`: the session cookie, or back to sign-in with why not. */
    async callback(req: IncomingMessage, res: ServerResponse, tls: boolean, sealed: string | undefined): Promise<void> {
      const params = new URL(req.url ?? '/', 'http://mariner').searchParams;
      const flow = sealed ? (options.sealer.open(sealed) as Flow | null) : null;
      if (flow?.v !== 1 || typeof flow.state !== 'string' || flow.e * 1000 <= Date.now()) return back(res, tls, 'expired');
      if (params.get('state') !== flow.state) return back(res, tls, 'state');
      const route = typeof flow.p === 'string' ? flow.p : undefined;
      const code = params.get('code');
      if (!code) return back(res, tls, params.get('error') === 'access_denied' ? 'denied' : 'token', undefined, route);
      let tokens: OidcTokens;
      try {
        const { idToken, refreshToken } = await tokenRequest(
          { grant_type: 'authorization_code', code, redirect_uri: callbackUrl(req, tls), code_verifier: flow.verifier },
          'the code',
        );
        const { expiresAt } = await options.verifier.verify(idToken);
        // OIDC Core §3.1.3.7: the nonce sent is the nonce signed, so a token from another flow does not do.
        if (decodeJwt(idToken).nonce !== flow.nonce) throw new OidcTokenError('nonce mismatch');
        tokens = { idToken, expiresAt, refreshToken };
      } catch (err) {
        options.warn('an OIDC sign-in failed', { reason: (err as Error).message });
        return back(res, tls, 'token', undefined, route);
      }
      if (!(await options.accepts(tokens.idToken))) return back(res, tls, 'user', undefined, route);
      back(res, tls, undefined, options.sessionCookie(req, tokens), route);
    },

    /**
     * A new ID token for a refresh token (OIDC Core §12), checked as at sign-in (issuer, audience, signature,
     * expiry, email; a Mariner user still). The issuer may rotate the refresh token: the new one is returned.
     * Throws OidcRefreshError when the session cannot go on, an Error when the issuer could not be asked.
     */
    async refresh(refreshToken: string): Promise<OidcTokens> {
      let answer: { idToken: string; refreshToken?: string | undefined };
      try {
        answer = await tokenRequest({ grant_type: 'refresh_token', refresh_token: refreshToken }, 'the refresh token');
      } catch (err) {
        if (err instanceof OidcTokenError) throw new OidcRefreshError(err.message);
        throw err;
      }
      let expiresAt: Date;
      try {
        ({ expiresAt } = await options.verifier.verify(answer.idToken));
      } catch (err) {
        throw new OidcRefreshError(`the refreshed ID token did not verify: ${(err as Error).message}`);
      }
      if (!(await options.accepts(answer.idToken))) throw new OidcRefreshError('the person is no longer a Mariner user');
      return { idToken: answer.idToken, expiresAt, refreshToken: answer.refreshToken ?? refreshToken };
    },
  };
}

export type OidcLogin = ReturnType<typeof createOidcLogin>;
