import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, MarinerError, openAIErrorBody, openAIStatusFor } from '../lib/errors.js';
import { headerValue, readBody, requestIdOf, sendJson } from '../lib/http.js';
import { createLoginTickets, LOGIN_TICKET_PARAM, notebookTargetOf } from '../lib/loginTicket.js';
import type { Logger } from '../lib/logging.js';
import type { PubSub } from '../lib/pubsub.js';
import { createSealer } from '../lib/sealedValues.js';
import type { Authenticator } from './authentication.js';
import type { OidcVerifier } from './oidc.js';
import { createOidcLogin, OIDC_CALLBACK_PATH, OIDC_FLOW_COOKIE, OIDC_LOGIN_PATH, OidcRefreshError } from './oidcLogin.js';

/**
 * The web console (console/, README "Web console"): its built files served at `/console`, `/`
 * redirecting there for browsers, and its sign-in.
 *
 * Sign-in: `POST /console/session` with `{"apiKey": "sk-..."}` checks the key with the gateway's own
 * authenticator and answers with the session cookie `mariner_console`: the key sealed with AES-256-GCM
 * (lib/sealedValues.ts, as the notebook proxy's cookie) under a key derived from the
 * platform's secret, with a random session id and an expiry inside, HttpOnly (no script reads it),
 * SameSite=Strict, Path=/ and Secure over TLS. The browser keeps nothing else: not in localStorage, not
 * in a script's memory. Every request with the cookie is authenticated again with the key it holds, so
 * a deleted key stops working at once.
 *
 * CSRF: a request authenticated by the cookie (no Authorization header) must come from the console's
 * own origin: it must carry the `x-mariner-csrf` header (which a cross-site page cannot send without a
 * CORS preflight the platform never allows), and when the browser says where it comes from
 * (`Sec-Fetch-Site`, `Origin`) that must be this origin. A WebSocket upgrade cannot carry a custom
 * header, so there the Origin must be this origin. Anything else with the cookie is refused (403), the
 * cookie is never silently ignored. Sign-in checks the same (login CSRF).
 *
 * OIDC sign-in (gateway/oidcLogin.ts, when an issuer is configured): `/console/oidc/login` → the issuer →
 * `/console/oidc/callback`, which seals the verified ID token into the same cookie, expiring with the token,
 * or, when the issuer gave a refresh token (sealed in too), with the console's session lifetime: the console
 * then calls `POST /console/session/refresh` before the ID token expires for a new one (the cookie set again,
 * the same session id, the same end). `GET /console/session` tells the sign-in page whether to offer OIDC, and
 * a signed-in page when its session and its credential end, so that it refreshes in time or says the session
 * expired when it has. Refresh answers 401 (and clears the cookie) when the session cannot go on: expired,
 * signed out, a deleted key, a refresh token the issuer refuses.
 *
 * Sign-out (`DELETE /console/session`) revokes the session server-side: its id is kept in a revoked set
 * until the cookie would have expired, announced on the platform's bus so every replica refuses it too,
 * and the cookie is cleared.
 */

export const CONSOLE_COOKIE = 'mariner_console';
export const CONSOLE_PATH = '/console';
export const CSRF_HEADER = 'x-mariner-csrf';
/** A console session lasts at most this long (a working day and some). */
export const CONSOLE_SESSION_TTL_SECONDS = 12 * 3600;
const NOT_FOUND = { error: 'not found: GraphQL is at /graphql, the OpenAI API at /v1, the web console at /console' };
const REVOKED_CHANNEL = 'console_sessions_revoked';
/**
 * The console's hand-off to a workspace notebook (subgraphs/sessions/notebookProxy.ts): a link on the notebooks
 * screen, `GET /console/notebook?path=/v1/sessions/<cluster>/v1/services/notebooks/...`, answered with a redirect
 * to that path with a one-time sign-in ticket for that notebook as `?login_ticket=` (lib/loginTicket.ts: the
 * session's credential sealed, valid a minute, used once), which the proxy turns into its own cookie at once
 * (redirecting to the path without it): the credential never appears in the browser's address or history.
 * The session cookie is SameSite=Strict and the request must be a same-origin navigation, so another site
 * cannot send a browser through it.
 */
export const NOTEBOOK_HANDOFF_PATH = `/console/notebook`;
const NOTEBOOK_PATH = /^\/v1\/sessions\/[A-Za-z0-9_-]+\/v1\/services\/notebooks\/[A-Za-z0-9._~%/-]+$/;

interface Sealed {
  v: 1;
  /** Session id. */
  s: string;
  /** The credential: an API key, or an OIDC ID token. */
  k: string;
  /** Expiry, seconds since the epoch. */
  e: number;
  /** An OIDC session's refresh token, when the issuer gave one. */
  r?: string;
  /** When the OIDC ID token expires (seconds since the epoch); a session with `r` outlives it by refreshing. */
  x?: number;
}

/** What a signed-in console page learns of its session (`GET /console/session`, a refresh). */
interface SessionInfo {
  /** When the session ends whatever happens. */
  expiresAt: string;
  /** When the credential (an OIDC ID token) expires, if before. */
  credentialExpiresAt: string | null;
  /** Whether `POST /console/session/refresh` can renew the credential. */
  refreshable: boolean;
}

export interface ConsoleOptions {
  /** The platform's secret (the internal token secret); the cookie's key is derived from it. */
  secret: string;
  authenticator: Authenticator;
  logger: Logger;
  pubsub?: PubSub;
  /** OIDC sign-in through the configured issuer; Mariner's client id there is the tokens' audience. */
  oidc?: { issuer: string; clientId: string; clientSecret?: string | undefined; verifier: OidcVerifier } | undefined;
  /** Where the built console is; defaults to console/dist beside the sources (or the compiled dist/). */
  assetsDir?: string;
}

export interface ConsoleServer {
  /** `/console...` and `/`. */
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /**
   * The API key of a request authenticated by the console cookie; undefined when it has no cookie or
   * has an Authorization header (which always wins). Throws UNAUTHENTICATED for an expired, altered or
   * revoked cookie and FORBIDDEN for a request that is not from the console's origin (CSRF).
   */
  credentialOf(req: IncomingMessage, kind: 'http' | 'websocket'): string | undefined;
  /**
   * For the REST routes the console calls (`/v1/files`: the bytes of an upload never pass GraphQL): the
   * session cookie, CSRF-checked as on /graphql, becomes the request's bearer. False when it answered a
   * refusal (OpenAI's error shape).
   */
  cookieAsBearer(req: IncomingMessage, res: ServerResponse): boolean;
  close(): void;
}

/** The built console: console/dist from the sources, or from dist/gateway (the compiled build). */
export function defaultAssetsDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, '..', 'console', 'dist'), path.join(here, '..', '..', 'console', 'dist')];
  return candidates.find((dir) => existsSync(path.join(dir, 'index.html'))) ?? candidates[0]!;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
  '.map': 'application/json',
};

/** A strict policy: the console loads nothing from anywhere but its own origin. */
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
};

export function cookieValue(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function overTls(req: IncomingMessage): boolean {
  if ((req.socket as { encrypted?: boolean }).encrypted) return true;
  return headerValue(req.headers, 'x-forwarded-proto')?.split(',')[0]?.trim().toLowerCase() === 'https';
}

/** Whether the browser says the request comes from this origin (or says nothing that contradicts it). */
export function sameOrigin(req: IncomingMessage): boolean {
  const site = headerValue(req.headers, 'sec-fetch-site');
  if (site !== undefined && site !== 'same-origin') return false;
  const origin = headerValue(req.headers, 'origin');
  if (origin === undefined) return true;
  const host = headerValue(req.headers, 'x-forwarded-host')?.split(',')[0]?.trim() ?? headerValue(req.headers, 'host');
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}

export function createConsoleServer(options: ConsoleOptions): ConsoleServer {
  const sealer = createSealer(options.secret, 'mariner console cookie key v1', `${CONSOLE_COOKIE}/v1`);
  // The sessions component opens these: it derives the same key from the same secret.
  const loginTickets = createLoginTickets(options.secret);
  const assetsDir = options.assetsDir ?? defaultAssetsDir();
  /** Revoked session ids, until the cookie would have expired anyway. */
  const revoked = new Map<string, number>();
  let unsubscribe: (() => Promise<void>) | undefined;
  const remember = (payload: string) => {
    const [id, until] = payload.split(' ');
    if (id && until) revoked.set(id, Number(until));
  };
  if (options.pubsub)
    void options.pubsub.subscribe(REVOKED_CHANNEL, remember).then(
      (stop) => (unsubscribe = stop),
      (error: unknown) => options.logger.warn({ err: error }, 'console sign-outs are not shared with other replicas'),
    );
  const sweep = setInterval(() => {
    const now = Date.now() / 1000;
    for (const [id, until] of revoked) if (until < now) revoked.delete(id);
  }, 60_000);
  sweep.unref();

  /**
   * A session for the credential, until `expiresAt` (an OIDC token's expiry) or the TTL, whichever is first; with
   * a refresh token, until the TTL (the token's expiry kept beside it). `renewing` keeps a session's id and end.
   */
  function seal(credential: string, expiresAt?: Date, refreshToken?: string, renewing?: Sealed): { value: string; payload: Sealed; maxAge: number } {
    const now = Math.floor(Date.now() / 1000);
    const tokenEnd = expiresAt ? Math.floor(expiresAt.getTime() / 1000) : Infinity;
    const sessionEnd = renewing?.e ?? now + CONSOLE_SESSION_TTL_SECONDS;
    const e = refreshToken ? sessionEnd : Math.min(sessionEnd, tokenEnd);
    const payload: Sealed = {
      v: 1,
      s: renewing?.s ?? randomUUID(),
      k: credential,
      e,
      ...(refreshToken ? { r: refreshToken } : {}),
      ...(expiresAt ? { x: tokenEnd } : {}),
    };
    return { value: sealer.seal(payload), payload, maxAge: Math.max(0, e - now) };
  }
  const info = (payload: Sealed): SessionInfo => ({
    expiresAt: new Date(payload.e * 1000).toISOString(),
    credentialExpiresAt: payload.x !== undefined && payload.x < payload.e ? new Date(payload.x * 1000).toISOString() : null,
    refreshable: payload.r !== undefined,
  });
  /** Refreshes in flight or just done, by session id: two tabs (or two requests) refreshing at once redeem the token once. */
  const refreshing = new Map<string, { refreshToken: string; result: Promise<Sealed> }>();
  function open(value: string): Sealed | null {
    const payload = sealer.open(value) as Sealed | null;
    if (payload?.v !== 1 || typeof payload.k !== 'string' || typeof payload.s !== 'string' || typeof payload.e !== 'number' || payload.e * 1000 <= Date.now())
      return null;
    return revoked.has(payload.s) ? null : payload;
  }
  const attributes = (req: IncomingMessage) => `Path=/; HttpOnly; SameSite=Strict${overTls(req) ? '; Secure' : ''}`;
  const clearCookie = (req: IncomingMessage) => `${CONSOLE_COOKIE}=; Max-Age=0; ${attributes(req)}`;

  const oidcLogin = options.oidc
    ? createOidcLogin({
        ...options.oidc,
        sealer: createSealer(options.secret, 'mariner console oidc flow key v1', `${OIDC_FLOW_COOKIE}/v1`),
        async accepts(idToken) {
          try {
            return (await options.authenticator.authenticate(idToken, {}, randomUUID())).identity !== null;
          } catch (err) {
            if (err instanceof MarinerError) return false;
            throw err;
          }
        },
        sessionCookie(req, tokens) {
          const { value, maxAge } = seal(tokens.idToken, tokens.expiresAt, tokens.refreshToken);
          return `${CONSOLE_COOKIE}=${value}; Max-Age=${maxAge}; ${attributes(req)}`;
        },
        warn: (message, details) => options.logger.warn(details, message),
      })
    : undefined;

  /** A console API call (sign-in, sign-out) must come from the console itself. */
  const fromConsole = (req: IncomingMessage) => sameOrigin(req) && headerValue(req.headers, CSRF_HEADER) !== undefined;

  async function session(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
      sendJson(res, status, body, { 'x-request-id': requestId, 'cache-control': 'no-store', ...headers });
    const error = (status: number, code: ErrorCode, message: string, headers: Record<string, string> = {}) =>
      json(status, { error: { message, code } }, headers);
    if (!fromConsole(req))
      return error(403, ErrorCode.FORBIDDEN, `Console requests must come from the console's own page (same origin, ${CSRF_HEADER} header)`);
    if (req.method === 'DELETE') {
      const sealed = cookieValue(req, CONSOLE_COOKIE);
      const payload = sealed ? open(sealed) : null;
      if (payload) {
        revoked.set(payload.s, payload.e);
        await options.pubsub?.publish(REVOKED_CHANNEL, `${payload.s} ${payload.e}`).catch((err: unknown) => {
          options.logger.warn({ err, requestId }, 'a console sign-out could not be announced to other replicas');
        });
      }
      return json(200, { signedIn: false }, { 'set-cookie': clearCookie(req) });
    }
    // What the sign-in page offers, and a signed-in page's session.
    if (req.method === 'GET') {
      const sealed = cookieValue(req, CONSOLE_COOKIE);
      const payload = sealed ? open(sealed) : null;
      return json(200, { oidc: oidcLogin !== undefined, session: payload ? info(payload) : null });
    }
    if (req.method !== 'POST') return error(405, ErrorCode.BAD_USER_INPUT, 'Use POST to sign in, DELETE to sign out', { allow: 'GET, POST, DELETE' });
    let apiKey: unknown;
    try {
      apiKey = (JSON.parse(await readBody(req, 16 * 1024)) as { apiKey?: unknown }).apiKey;
    } catch {
      return error(400, ErrorCode.BAD_USER_INPUT, 'The body must be JSON: {"apiKey": "sk-..."}');
    }
    if (typeof apiKey !== 'string' || !apiKey.startsWith('sk-')) return error(400, ErrorCode.BAD_USER_INPUT, 'apiKey must be a Mariner API key (sk-...)');
    try {
      const { identity } = await options.authenticator.authenticate(apiKey, {}, requestId);
      if (!identity) return error(401, ErrorCode.UNAUTHENTICATED, 'Invalid API key');
    } catch (err) {
      if (err instanceof MarinerError) return error(err.code === ErrorCode.UNAUTHENTICATED ? 401 : 403, err.code, err.message);
      throw err;
    }
    const { value, maxAge } = seal(apiKey);
    json(200, { signedIn: true }, { 'set-cookie': `${CONSOLE_COOKIE}=${value}; Max-Age=${maxAge}; ${attributes(req)}` });
  }

  /**
   * `POST /console/session/refresh`: an OIDC session's ID token renewed with its refresh token (the cookie set
   * again), an API key's session checked; 401 and the cookie cleared when the session cannot go on.
   */
  async function refresh(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
      sendJson(res, status, body, { 'x-request-id': requestId, 'cache-control': 'no-store', ...headers });
    const expired = (message: string) => json(401, { error: { message, code: ErrorCode.UNAUTHENTICATED } }, { 'set-cookie': clearCookie(req) });
    if (!fromConsole(req))
      return json(403, {
        error: { message: `Console requests must come from the console's own page (same origin, ${CSRF_HEADER} header)`, code: ErrorCode.FORBIDDEN },
      });
    if (req.method !== 'POST') return json(405, { error: { message: 'POST only', code: ErrorCode.BAD_USER_INPUT } }, { allow: 'POST' });
    const sealed = cookieValue(req, CONSOLE_COOKIE);
    const payload = sealed ? open(sealed) : null;
    if (!payload) return expired('Your session expired: sign in again');
    if (payload.r === undefined) {
      // An API key (or an OIDC token without refresh): still good, or the session is over.
      const now = Date.now() / 1000;
      if (payload.x !== undefined && payload.x <= now) return expired('Your session expired: sign in again');
      try {
        const { identity } = await options.authenticator.authenticate(payload.k, {}, requestId);
        if (!identity) return expired('Your session expired: sign in again');
      } catch (err) {
        if (err instanceof MarinerError) return expired(err.code === ErrorCode.UNAUTHENTICATED ? 'Your session expired: sign in again' : err.message);
        throw err;
      }
      return json(200, info(payload));
    }
    if (!oidcLogin) return expired('Your session expired: sign in again');
    const refreshToken = payload.r;
    let pending = refreshing.get(payload.s);
    if (pending?.refreshToken !== refreshToken) {
      const result = oidcLogin.refresh(refreshToken).then((tokens) => seal(tokens.idToken, tokens.expiresAt, tokens.refreshToken, payload).payload);
      pending = { refreshToken, result };
      refreshing.set(payload.s, pending);
      // Kept a little while: a second tab that sent the same cookie gets the same answer rather than a reused token.
      const forget = () => setTimeout(() => refreshing.get(payload.s) === pending && refreshing.delete(payload.s), 30_000).unref();
      result.then(forget, forget);
    }
    let renewed: Sealed;
    try {
      renewed = await pending.result;
    } catch (err) {
      if (err instanceof OidcRefreshError) {
        options.logger.info({ requestId, reason: err.message }, 'a console session could not be refreshed: it ends');
        return expired('Your session expired: sign in again');
      }
      options.logger.warn({ err, requestId }, 'the OIDC issuer could not be asked to refresh a console session');
      return json(503, { error: { message: 'The identity provider could not be reached: try again', code: ErrorCode.UNAVAILABLE } });
    }
    if (revoked.has(renewed.s)) return expired('Your session expired: sign in again');
    const maxAge = Math.max(0, renewed.e - Math.floor(Date.now() / 1000));
    json(200, info(renewed), { 'set-cookie': `${CONSOLE_COOKIE}=${sealer.seal(renewed)}; Max-Age=${maxAge}; ${attributes(req)}` });
  }

  function notebookHandoff(req: IncomingMessage, res: ServerResponse, url: URL, requestId: string): void {
    const refuse = (status: number, code: ErrorCode, message: string) =>
      sendJson(res, status, { error: { message, code } }, { 'x-request-id': requestId, 'cache-control': 'no-store' });
    if (req.method !== 'GET') return refuse(405, ErrorCode.BAD_USER_INPUT, 'GET only');
    if (!sameOrigin(req)) return refuse(403, ErrorCode.FORBIDDEN, "Open notebooks from the console's own page");
    const target = new URL(url.searchParams.get('path') ?? '', 'http://mariner');
    const notebook = notebookTargetOf(target.pathname);
    if (target.origin !== 'http://mariner' || !NOTEBOOK_PATH.test(target.pathname) || target.pathname.includes('..') || !notebook)
      return refuse(400, ErrorCode.BAD_USER_INPUT, 'path must be a notebook under /v1/sessions/<cluster>/v1/services/notebooks/<notebook>/<namespace>/');
    const sealed = cookieValue(req, CONSOLE_COOKIE);
    const payload = sealed ? open(sealed) : null;
    if (!payload) return refuse(401, ErrorCode.UNAUTHENTICATED, 'Your console session expired or was signed out: sign in again');
    // The console keeps no organization or project: the credential's own (its key's project, an OIDC user's default).
    const { ticket } = loginTickets.mint({ authorization: `Bearer ${payload.k}`, organizationId: null, projectId: null }, notebook);
    target.searchParams.delete('access_token');
    target.searchParams.set(LOGIN_TICKET_PARAM, ticket);
    res.writeHead(303, {
      location: `${target.pathname}${target.search}`,
      'cache-control': 'no-store',
      'referrer-policy': 'no-referrer',
      'x-request-id': requestId,
    });
    res.end();
  }

  function serveFile(req: IncomingMessage, res: ServerResponse, relative: string): boolean {
    const file = path.resolve(assetsDir, relative);
    if (!file.startsWith(path.resolve(assetsDir) + path.sep)) return false;
    let size: number;
    try {
      const stat = statSync(file);
      if (!stat.isFile()) return false;
      size = stat.size;
    } catch {
      return false;
    }
    const immutable = relative.startsWith('assets/');
    // console/build.mjs writes a gzipped copy of each asset beside it.
    const gzipped = immutable && /\bgzip\b/.test(headerValue(req.headers, 'accept-encoding') ?? '') && existsSync(`${file}.gz`);
    const body = gzipped ? `${file}.gz` : file;
    res.writeHead(200, {
      'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'content-length': String(gzipped ? statSync(body).size : size),
      'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
      ...(immutable ? { vary: 'accept-encoding' } : {}),
      ...(gzipped ? { 'content-encoding': 'gzip' } : {}),
      ...SECURITY_HEADERS,
    });
    res.end(req.method === 'HEAD' ? undefined : readFileSync(body));
    return true;
  }

  return {
    async handle(req, res) {
      const requestId = requestIdOf(req);
      const url = new URL(req.url ?? '/', 'http://mariner');
      try {
        if (url.pathname === `${CONSOLE_PATH}/session`) return await session(req, res, requestId);
        if (url.pathname === `${CONSOLE_PATH}/session/refresh`) return await refresh(req, res, requestId);
        if (url.pathname === NOTEBOOK_HANDOFF_PATH) return notebookHandoff(req, res, url, requestId);
        if (url.pathname === OIDC_LOGIN_PATH || url.pathname === OIDC_CALLBACK_PATH) {
          if (!oidcLogin) return sendJson(res, 404, { error: 'OIDC sign-in is off: no issuer is configured (MARINER_OIDC_ISSUER)' });
          if (req.method !== 'GET') return sendJson(res, 405, { error: 'GET only' }, { allow: 'GET' });
          if (url.pathname === OIDC_LOGIN_PATH) return await oidcLogin.start(req, res, overTls(req));
          return await oidcLogin.callback(req, res, overTls(req), cookieValue(req, OIDC_FLOW_COOKIE));
        }
        const accepts = headerValue(req.headers, 'accept') ?? '';
        if (url.pathname === '/') {
          if ((req.method === 'GET' || req.method === 'HEAD') && accepts.includes('text/html')) {
            res.writeHead(302, { location: `${CONSOLE_PATH}/` });
            return void res.end();
          }
          return sendJson(res, 404, NOT_FOUND);
        }
        if (url.pathname !== CONSOLE_PATH && !url.pathname.startsWith(`${CONSOLE_PATH}/`)) return sendJson(res, 404, NOT_FOUND);
        if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: 'the console serves GET only' }, { allow: 'GET, HEAD' });
        if (url.pathname === CONSOLE_PATH) {
          res.writeHead(301, { location: `${CONSOLE_PATH}/` });
          return void res.end();
        }
        const relative = decodeURIComponent(url.pathname.slice(CONSOLE_PATH.length + 1));
        if (relative && serveFile(req, res, relative)) return;
        // The single-page app's own routes get its page; a missing asset is a plain 404.
        if (relative.startsWith('assets/') || path.extname(relative)) return sendJson(res, 404, { error: `not found: ${url.pathname}` });
        if (!serveFile(req, res, 'index.html'))
          sendJson(res, 503, { error: `The console is not built: run \`npm run build:console\` (looked in ${assetsDir})` });
      } catch (err) {
        options.logger.error({ err, requestId }, 'console request failed');
        if (!res.headersSent) sendJson(res, 500, { error: { message: `Internal error (request id ${requestId})`, code: ErrorCode.INTERNAL } });
        else res.end();
      }
    },
    credentialOf(req, kind) {
      if (req.headers.authorization !== undefined) return undefined;
      const sealed = cookieValue(req, CONSOLE_COOKIE);
      if (sealed === undefined) return undefined;
      const csrfSafe = kind === 'websocket' ? sameOrigin(req) && headerValue(req.headers, 'origin') !== undefined : fromConsole(req);
      if (!csrfSafe)
        throw new MarinerError(
          ErrorCode.FORBIDDEN,
          `A request with the console's session cookie must come from the console (same origin${kind === 'http' ? `, ${CSRF_HEADER} header` : ''}); other clients send Authorization: Bearer`,
        );
      const payload = open(sealed);
      if (!payload) throw new MarinerError(ErrorCode.UNAUTHENTICATED, 'Your console session expired or was signed out: sign in again');
      return payload.k;
    },
    cookieAsBearer(req, res) {
      try {
        const credential = this.credentialOf(req, 'http');
        if (credential !== undefined) req.headers.authorization = `Bearer ${credential}`;
        return true;
      } catch (err) {
        if (!(err instanceof MarinerError)) throw err;
        sendJson(res, openAIStatusFor(err.code), openAIErrorBody(err.code, err.message));
        return false;
      }
    },
    close() {
      clearInterval(sweep);
      void unsubscribe?.();
    },
  };
}
