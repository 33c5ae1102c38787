import type { IncomingMessage, ServerResponse } from 'node:http';
import http2, { type ClientHttp2Stream, type IncomingHttpHeaders as H2Headers, type OutgoingHttpHeaders } from 'node:http2';
import type { Duplex } from 'node:stream';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { headerValue, requestIdOf } from '../../lib/http.js';
import { LOGIN_TICKET_PARAM, sameNotebook, type LoginTickets, type OpenedLoginTicket } from '../../lib/loginTicket.js';
import { isId } from '../../lib/ids.js';
import { JOB_ID_LABEL, JUPYTER_PORT, NOTEBOOK_BASE_PATH_ANNOTATION, NOTEBOOK_NAME_LABEL } from '../../lib/jobSpec.js';
import type { Logger } from '../../lib/logging.js';
import { agentRoutes } from '../../lib/agentContract.js';
import { UPGRADE_HEADER, UPGRADE_HEADERS_HEADER, UPGRADE_METHOD_HEADER, UPGRADE_METHODS } from '../../lib/tunnel.js';
import {
  credentialOf,
  MISSING_CREDENTIAL,
  SessionsError,
  sessionsErrorBody,
  type Decision,
  type SessionAuthorizer,
  type SessionCredential,
} from './sessionAuth.js';
import { cookiesWithoutSession, overTls, sessionCookieOf, type SessionCookies } from './sessionCookie.js';
import { answerUpgrade, checkedRequestPath, forwardableHeaders, NOTEBOOK_REQUEST_HEADERS, relayUpgrade, responseHeaders } from './tunnelRelay.js';
import { NoTunnelError, type AgentTransport } from './tunnelRegistry.js';
import type { UsedLoginTickets } from './usedLoginTickets.js';

/**
 * Workspace notebooks in a browser (reference §4c, §8): `/v1/sessions/<cluster id>/v1/services/notebooks/
 * <notebook>/<namespace>[/<port>]/...` reaches the notebook's Service on that cluster, WebSockets (Jupyter's
 * kernels) included. `<notebook>` is its name (LLMariner) or its id (`nb-...`, for a namespace that several
 * projects share and where two notebooks have one name); `<port>` is one of the Service's ports, Jupyter's
 * 8888 when absent.
 *
 * Who: a Bearer credential, a one-time sign-in ticket `?login_ticket=` (lib/loginTicket.ts: what `mariner
 * notebooks open` and the console give a browser for its first visit, answered with a redirect without it),
 * `?access_token=` (RFC 6750 §2.3, likewise; for clients that send it, nothing of ours does) or the session
 * cookie those set (sessionCookie.ts); the caller needs
 * `api.workspaces.notebooks.read` in a project that has the namespace assigned on that cluster (LLMariner
 * checks the same). How: the agent's Kubernetes API proxy, to the apiserver's service proxy
 * (`/api/v1/namespaces/<ns>/services/<service>:<port>/proxy/...`), with the agent's credentials: nothing new
 * runs on the agent, and it works wherever the agent reaches its apiserver. The apiserver rewrites absolute
 * links in HTML and redirects to point under its proxy path (k8s.io/apimachinery proxy/transport.go); those
 * are turned back into public paths here. Jupyter serves under the notebook's public path (its base_url,
 * the Service's `mariner.dev/jupyter-base-path` annotation), so its port gets the full path; other ports get
 * the rest of the path only, with the public prefix in `X-Forwarded-Prefix`.
 */

export const NOTEBOOKS_SEGMENT = '/v1/services/notebooks';
const ROUTE = /^\/v1\/sessions\/([^/]+)\/v1\/services\/notebooks(?:\/|$)/;
const RESOURCE = 'api.workspaces.notebooks';
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** `?access_token=` (RFC 6750 §2.3); not `token`, which is Jupyter's own login parameter and goes to it. */
export const ACCESS_TOKEN_PARAM = 'access_token';
/** The query parameters that sign a browser in, taken out of the address (and never sent to the notebook). */
const SIGN_IN_PARAMS = [ACCESS_TOKEN_PARAM, LOGIN_TICKET_PARAM];
/** How to sign a browser in again, for a refusal to say. */
const OPEN_AGAIN = 'run `mariner notebooks open` again, or open the notebook from the console';
const USED_OR_EXPIRED_TICKET = `This sign-in link was already used or has expired (it works once, within a minute): ${OPEN_AGAIN}`;
/**
 * HTML pages larger than this pass through without their links restored; one that is smaller but
 * decompresses to more is refused (502): a few hundred KiB of gzip can hold gigabytes.
 */
export const MAX_REWRITTEN_HTML = 16 << 20;

/** Decoders of the Content-Encodings whose HTML is rewritten (RFC 9110 §8.4.1), each capped by `maxOutputLength`. */
const DECODERS: Record<string, ((body: Buffer, options: { maxOutputLength: number }) => Promise<Buffer>) | undefined> = {
  '': async (body) => body,
  identity: async (body) => body,
  gzip: promisify(zlib.gunzip),
  'x-gzip': promisify(zlib.gunzip),
  deflate: promisify(zlib.inflate),
  br: promisify(zlib.brotliDecompress),
};

export interface NotebookProxyOptions {
  registry: AgentTransport;
  authorizer: SessionAuthorizer;
  cookies: SessionCookies;
  /** Opens `?login_ticket=` (lib/loginTicket.ts), under the same secret as the cookies. */
  tickets: LoginTickets;
  /** Where a ticket is recorded as used, once across replicas. */
  usedTickets: Pick<UsedLoginTickets, 'use'>;
  /** How long a notebook's Service, once found, is reused (the authorization cache's time). */
  lookupCacheMs: number;
  logger: Logger;
}

/** What a notebook URL names. */
interface NotebookTarget {
  clusterId: string;
  /** The notebook's name or id, as in the URL. */
  notebook: string;
  namespace: string;
  port: number;
  /** The path after the port (raw, as sent): `/lab/tree`, or '' for none. */
  rest: string;
  /** The public path of this notebook port: `/v1/sessions/.../<namespace>` (Jupyter's) or `.../<namespace>/<port>`. */
  publicPrefix: string;
}

/** The notebook's Service, as the cluster has it. */
interface NotebookService {
  name: string;
  notebookName: string;
  ports: number[];
  /** Where Jupyter serves (its base_url, with a trailing slash), or null for `/`. */
  basePath: string | null;
}

/** Whether a path is a notebook route (the rest of `/v1/sessions/` is the Kubernetes API). */
export function isNotebookPath(pathname: string): boolean {
  return ROUTE.test(pathname);
}

/** Parses `/v1/sessions/<cluster>/v1/services/notebooks/<notebook>/<namespace>[/<port>][/rest]`. */
export function parseNotebookPath(pathname: string): NotebookTarget {
  const match = ROUTE.exec(pathname);
  if (!match) throw new SessionsError(404, 'not a notebook path');
  const clusterId = safeDecode(match[1]!);
  if (!isId('cluster', clusterId)) throw new SessionsError(404, `"${clusterId.slice(0, 80)}" is not a cluster id`);
  const after = pathname.slice(match[0].length);
  const segments = after.split('/');
  const usage = `use /v1/sessions/${clusterId}${NOTEBOOKS_SEGMENT}/<notebook name or id>/<namespace>[/<port>]/`;
  const [rawNotebook = '', rawNamespace = '', maybePort] = segments;
  const notebook = safeDecode(rawNotebook);
  const namespace = safeDecode(rawNamespace);
  if (!notebook || !namespace) throw new SessionsError(404, `A notebook path names the notebook and its namespace: ${usage}`);
  if (!DNS_LABEL.test(notebook) && !isId('notebook', notebook))
    throw new SessionsError(404, `"${notebook.slice(0, 80)}" is not a notebook name or id: ${usage}`);
  if (!DNS_LABEL.test(namespace)) throw new SessionsError(404, `"${namespace.slice(0, 80)}" is not a namespace: ${usage}`);
  const base = `/v1/sessions/${clusterId}${NOTEBOOKS_SEGMENT}/${rawNotebook}/${rawNamespace}`;
  // A segment of digits after the namespace is a port (Jupyter's own paths never are one).
  if (maybePort !== undefined && /^\d{1,5}$/.test(maybePort)) {
    const port = Number(maybePort);
    if (port < 1 || port > 65535) throw new SessionsError(404, `${port} is not a port`);
    const rest = segments.length > 3 ? `/${segments.slice(3).join('/')}` : '';
    return { clusterId, notebook, namespace, port, rest, publicPrefix: port === JUPYTER_PORT ? base : `${base}/${port}` };
  }
  const rest = segments.length > 2 ? `/${segments.slice(2).join('/')}` : '';
  return { clusterId, notebook, namespace, port: JUPYTER_PORT, rest, publicPrefix: base };
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return '';
  }
}

/** How a request authenticated. */
type Source = 'header' | 'query' | 'ticket' | 'cookie';

/** Reads a tunnelled response whole (small JSON answers of the Kubernetes API). */
function readAnswer(stream: ClientHttp2Stream, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      reject(new SessionsError(504, 'The cluster did not answer in time'));
    }, timeoutMs);
    let status = 502;
    const chunks: Buffer[] = [];
    stream.on('response', (headers) => (status = Number(headers[':status'] ?? 502)));
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => {
      clearTimeout(timer);
      resolve({ status, body: Buffer.concat(chunks).toString('utf8') });
    });
    stream.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** A request's query without the parameters that sign a browser in (`?...`, or '' when nothing is left). */
function withoutSignIn(url: URL): string {
  if (!SIGN_IN_PARAMS.some((name) => url.searchParams.has(name))) return url.search;
  const search = new URLSearchParams(url.search);
  for (const name of SIGN_IN_PARAMS) search.delete(name);
  return search.size > 0 ? `?${search}` : '';
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export function createNotebookProxy(options: NotebookProxyOptions) {
  const { registry, authorizer, cookies, tickets, usedTickets, logger } = options;
  const services = new Map<string, { expires: number; service: NotebookService }>();

  /** The request's credential: Authorization: Bearer, else ?access_token=, else ?login_ticket= (its ticket opened), else the session cookie. */
  function authenticate(req: IncomingMessage, url: URL): { credential: SessionCredential; source: Source; ticket?: OpenedLoginTicket } {
    const fromHeaders = credentialOf(req.headers);
    if (fromHeaders && /^bearer\s/i.test(fromHeaders.authorization)) return { credential: fromHeaders, source: 'header' };
    const token = url.searchParams.get(ACCESS_TOKEN_PARAM);
    if (token) {
      const credential = {
        authorization: `Bearer ${token}`,
        organizationId: headerValue(req.headers, 'openai-organization') ?? null,
        projectId: headerValue(req.headers, 'openai-project') ?? null,
      };
      return { credential, source: 'query' };
    }
    const value = url.searchParams.get(LOGIN_TICKET_PARAM);
    if (value !== null) {
      const ticket = tickets.open(value);
      if (!ticket) throw new SessionsError(401, USED_OR_EXPIRED_TICKET);
      return { credential: ticket.credential, source: 'ticket', ticket };
    }
    const cookie = sessionCookieOf(req);
    if (cookie !== undefined) {
      const credential = cookies.open(cookie);
      if (!credential)
        throw new SessionsError(401, `Your notebook session expired or is not valid: ${OPEN_AGAIN} (scripts send an Authorization: Bearer header)`);
      return { credential, source: 'cookie' };
    }
    throw new SessionsError(401, `${MISSING_CREDENTIAL}; a browser signs in with a link from \`mariner notebooks open\` or the console`);
  }

  /**
   * A cookie goes with every request the browser makes to us, whichever site asks: a cross-site
   * request (its Origin names another host) is refused, as Jupyter itself would (it cannot: behind the
   * apiserver it sees another Host), and Origin and Referer do not travel on.
   */
  function checkOrigin(req: IncomingMessage): void {
    const origin = headerValue(req.headers, 'origin');
    if (origin === undefined) return;
    const host = headerValue(req.headers, 'x-forwarded-host')?.split(',')[0]?.trim() ?? headerValue(req.headers, 'host');
    let originHost: string | undefined;
    try {
      originHost = new URL(origin).host;
    } catch {
      originHost = undefined;
    }
    if (!host || originHost !== host) throw new SessionsError(403, `Forbidden: a request from ${origin.slice(0, 100)} may not use your notebook session`);
  }

  /** The notebook Services of a namespace with a label, through the agent's Kubernetes API. */
  async function listServices(target: NotebookTarget, label: string, requestId: string): Promise<any[]> {
    const selector = encodeURIComponent(`${label}=${target.notebook}`);
    const stream = registry.request(
      target.clusterId,
      {
        ':method': 'GET',
        ':path': agentRoutes.kubernetes(`/api/v1/namespaces/${target.namespace}/services?labelSelector=${selector}`),
        accept: 'application/json',
        'x-request-id': requestId,
      },
      { endStream: true },
    );
    const answer = await readAnswer(stream, 15_000);
    // A list never answers 404 on a real apiserver: this agent has no Kubernetes API (the local executor).
    if (answer.status === 404)
      throw new SessionsError(404, `Cluster ${target.clusterId} runs no notebooks: they need a Kubernetes cluster (its agent runs the local executor)`);
    if (answer.status !== 200) {
      let message = answer.body.slice(0, 300);
      try {
        message = (JSON.parse(answer.body) as { message?: string }).message ?? message;
      } catch {
        // not JSON: the text as it is
      }
      throw new SessionsError(502, `The cluster could not list the notebook's Service (HTTP ${answer.status}): ${message}`);
    }
    return ((JSON.parse(answer.body) as { items?: any[] }).items ?? []).filter((item) => item?.metadata?.labels?.[NOTEBOOK_NAME_LABEL]);
  }

  /**
   * Finds the notebook's Service in the namespace: by its id label for an id (`nb-...`), else, or when
   * no notebook has that id but one may be named so, by its name label.
   */
  async function findService(target: NotebookTarget, requestId: string): Promise<NotebookService> {
    const key = `${target.clusterId}\n${target.namespace}\n${target.notebook}`;
    const cached = services.get(key);
    if (cached && cached.expires > Date.now()) return cached.service;
    const byId = isId('notebook', target.notebook);
    let items = byId ? await listServices(target, JOB_ID_LABEL, requestId) : [];
    if (items.length === 0 && DNS_LABEL.test(target.notebook)) items = await listServices(target, NOTEBOOK_NAME_LABEL, requestId);
    if (items.length === 0) {
      const what = byId ? `Notebook ${target.notebook} is not` : `No notebook named "${target.notebook}" is`;
      throw new SessionsError(404, `${what} in namespace ${target.namespace} of cluster ${target.clusterId}`);
    }
    if (items.length > 1) {
      const ids = items.map((item) => item.metadata.labels[JOB_ID_LABEL]).join(', ');
      throw new SessionsError(
        409,
        `Several notebooks are named "${target.notebook}" in namespace ${target.namespace} (projects share it): use the notebook's id (${ids}) instead of its name`,
      );
    }
    const item = items[0];
    const service: NotebookService = {
      name: item.metadata.name,
      notebookName: item.metadata.labels[NOTEBOOK_NAME_LABEL],
      ports: (item.spec?.ports ?? []).map((p: { port: number }) => p.port),
      basePath: item.metadata.annotations?.[NOTEBOOK_BASE_PATH_ANNOTATION] ?? null,
    };
    if (options.lookupCacheMs > 0) {
      if (services.size > 10_000) services.clear();
      services.set(key, { expires: Date.now() + options.lookupCacheMs, service });
    }
    return service;
  }

  interface Admitted {
    target: NotebookTarget;
    service: NotebookService;
    credential: SessionCredential;
    source: Source;
    /** The sign-in ticket the request carries (source `ticket`), not yet used. */
    ticket?: OpenedLoginTicket | undefined;
    url: URL;
    /** The request's path, its segments checked (checkedRequestPath): what is authorized and forwarded. */
    pathname: string;
    /** The apiserver path of the Service's proxy for this port, without the backend path. */
    proxyPrefix: string;
    /** The tunnel path: the agent's Kubernetes API proxy, to the Service proxy, with the backend path and query. */
    path: string;
  }

  /** Authenticates, authorizes and finds the notebook. Throws SessionsError. */
  async function admit(req: IncomingMessage, requestId: string): Promise<Admitted> {
    const url = new URL(req.url ?? '/', 'http://mariner');
    let checked: ReturnType<typeof checkedRequestPath> | undefined;
    let badPath: unknown;
    try {
      checked = checkedRequestPath(req.url ?? '/');
    } catch (error) {
      badPath = error;
    }
    // A path that does not decode (or would traverse) says nothing to a caller until it authenticates.
    const target = checked ? parseNotebookPath(checked.path) : undefined;
    const { credential, source, ticket } = authenticate(req, url);
    if (source === 'cookie') checkOrigin(req);
    // A ticket signs in to the notebook it was made for only (any of its ports).
    if (ticket && !(target && sameNotebook(ticket.target, target)))
      throw new SessionsError(401, `This sign-in link is for another notebook: ${OPEN_AGAIN} for this one`);
    let decision: Decision;
    try {
      decision = await authorizer.decide(credential, RESOURCE, 'READ', requestId);
    } catch (error) {
      if (error instanceof SessionsError && error.status === 401 && source === 'cookie') {
        throw new SessionsError(401, `Your notebook session is no longer valid (${error.message}): ${OPEN_AGAIN}`);
      }
      throw error;
    }
    if (!checked || !target) throw badPath;
    const namespaces = await authorizer.namespacesOn(decision, target.clusterId, `${RESOURCE}.read`);
    if (!namespaces.includes(target.namespace)) {
      throw new SessionsError(403, `Forbidden: namespace "${target.namespace}" of cluster ${target.clusterId} is not assigned to your project`);
    }
    const service = await findService(target, requestId);
    if (!service.ports.includes(target.port)) {
      throw new SessionsError(404, `Notebook "${service.notebookName}" serves ports ${service.ports.join(', ')}, not ${target.port}`);
    }
    // Jupyter serves under its public path (the name form): give it the full path whichever form was used.
    const backendPath = target.port === JUPYTER_PORT && service.basePath ? `${service.basePath}${target.rest.replace(/^\//, '')}` : target.rest || '/';
    const query = withoutSignIn(url);
    const proxyPrefix = `/api/v1/namespaces/${target.namespace}/services/${service.name}:${target.port}/proxy`;
    return {
      target,
      service,
      credential,
      source,
      ticket,
      url,
      pathname: checked.path,
      proxyPrefix,
      path: agentRoutes.kubernetes(`${proxyPrefix}${backendPath}${query}`),
    };
  }

  /**
   * Where a path the notebook's server knows (the apiserver made it `<proxy prefix><path>`) is for the
   * browser: Jupyter's paths are public paths already; another port's are under its public prefix.
   */
  function publicPathOf(admitted: Admitted, backendPath: string): string {
    const { target, service } = admitted;
    if (target.port === JUPYTER_PORT && service.basePath) return backendPath;
    return `${target.publicPrefix}${backendPath}`;
  }

  /** Undoes the apiserver's link rewriting in a Location header value. */
  function publicLocation(admitted: Admitted, location: string): string {
    const match = new RegExp(`^(?:https?://[^/]*)?${escapeRegExp(admitted.proxyPrefix)}(/.*)?$`).exec(location);
    return match ? publicPathOf(admitted, match[1] ?? '/') : location;
  }

  /** Undoes the apiserver's link rewriting in an HTML page (it rewrites tag attributes, quoted with `"`). */
  function publicHtml(admitted: Admitted, html: string): string {
    const pattern = new RegExp(`(=\\s*")(?:https?://[^/"]*)?${escapeRegExp(admitted.proxyPrefix)}(/[^"]*)?"`, 'g');
    return html.replace(pattern, (_all, lead: string, path: string | undefined) => `${lead}${publicPathOf(admitted, path ?? '/')}"`);
  }

  /** Whether the session cookie is what a request authenticates with (no Bearer header, no access_token or login_ticket). */
  function usesCookie(req: IncomingMessage): boolean {
    const url = new URL(req.url ?? '/', 'http://mariner');
    return (
      !/^bearer\s/i.test(headerValue(req.headers, 'authorization') ?? '') &&
      !SIGN_IN_PARAMS.some((name) => url.searchParams.has(name)) &&
      sessionCookieOf(req) !== undefined
    );
  }

  /**
   * Login CSRF: a link on another site could carry the attacker's own ticket in `?login_ticket=` (or key in
   * `?access_token=`); followed, it would sign the victim's browser in as the attacker, whose notebook would
   * then receive what the victim types. So a request may sign in at once only when no other site can have
   * sent it. Browsers say where a request comes from in `Sec-Fetch-Site` (Fetch Metadata, W3C; every current
   * browser sends it): `none` (typed, pasted, a bookmark, opened by the CLI) and `same-origin` (a link on our own pages)
   * sign in; `cross-site`, and `same-site` (another host of the domain, which need not be ours), get a page
   * that asks the user to continue (confirmLogin). Its link is same-origin, and another site can neither
   * follow it for the user nor frame the page to trick a click. A request without `Sec-Fetch-Site` is not
   * from a current browser (curl, a script, which a link cannot drive), unless its `Origin` or `Referer`
   * names another host: that one is treated as cross-site.
   */
  function mayLogIn(req: IncomingMessage): boolean {
    const site = headerValue(req.headers, 'sec-fetch-site')?.trim().toLowerCase();
    if (site !== undefined) return site === 'none' || site === 'same-origin';
    const host = headerValue(req.headers, 'x-forwarded-host')?.split(',')[0]?.trim() ?? headerValue(req.headers, 'host');
    for (const name of ['origin', 'referer']) {
      const value = headerValue(req.headers, name);
      if (value === undefined) continue;
      try {
        if (new URL(value).host !== host) return false;
      } catch {
        return false;
      }
    }
    return true;
  }

  /**
   * The page a sign-in link (`?login_ticket=`, `?access_token=`) from elsewhere gets: no cookie, and a
   * same-origin link to go on (a ticket is not used by this page: the link still works once).
   */
  function confirmLogin(res: ServerResponse, admitted: Admitted, requestId: string): void {
    const escape = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
    const href = `${admitted.pathname}${admitted.url.search}`;
    const what = `notebook "${admitted.service.notebookName}" in namespace ${admitted.target.namespace}`;
    const page = `<!doctype html><html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><title>Open ${escape(what)}</title></head><body>
<h1>Open ${escape(what)}?</h1>
<p>This link came from another site. It signs this browser in with the credential it carries. Continue only if you opened it yourself:
a link from someone else can sign you in as them, and they could then read what you type in the notebook.</p>
<p><a href="${escape(href)}">Continue to the notebook</a></p>
</body></html>`;
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
      'x-request-id': requestId,
    });
    res.end(page);
  }

  function fail(req: IncomingMessage, res: ServerResponse, error: unknown, requestId: string): void {
    const status = error instanceof SessionsError ? error.status : error instanceof NoTunnelError ? 503 : 502;
    if (status === 502 && !(error instanceof SessionsError)) logger.error({ err: error, requestId }, 'notebook proxy failed');
    const message = error instanceof SessionsError || error instanceof NoTunnelError ? error.message : `The cluster tunnel failed (request id ${requestId})`;
    if (res.headersSent) return void res.destroy();
    const headers: Record<string, string> = { 'content-type': 'application/json', 'x-request-id': requestId };
    if (status === 401) headers['www-authenticate'] = 'Bearer';
    // A refused cookie is removed, so the browser stops sending it.
    if (status === 401 && usesCookie(req)) headers['set-cookie'] = cookies.clearCookie(overTls(req));
    res.writeHead(status, headers);
    res.end(sessionsErrorBody(status, message));
  }

  /** Sends the agent's answer: the apiserver's link rewriting undone, the session cookie set when asked. */
  function respond(
    res: ServerResponse,
    method: string,
    admitted: Admitted,
    headers: H2Headers,
    stream: ClientHttp2Stream,
    requestId: string,
    setCookie: string | undefined,
  ): void {
    const status = Number(headers[':status'] ?? 502);
    const out: Record<string, string | string[]> = { ...responseHeaders(headers), 'x-request-id': requestId };
    if (typeof out['location'] === 'string') out['location'] = publicLocation(admitted, out['location']);
    if (setCookie) {
      const upstream = out['set-cookie'];
      out['set-cookie'] = [...(upstream === undefined ? [] : Array.isArray(upstream) ? upstream : [upstream]), setCookie];
    }
    const type = String(out['content-type'] ?? '')
      .split(';')[0]!
      .trim()
      .toLowerCase();
    const encoding = String(out['content-encoding'] ?? '')
      .trim()
      .toLowerCase();
    const decode = DECODERS[encoding];
    if (type !== 'text/html' || !decode || method === 'HEAD') {
      res.writeHead(status, out);
      // Streams (events, downloads) go on as they come.
      res.flushHeaders();
      stream.pipe(res);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const passThrough = () => {
      stream.removeListener('data', onData);
      stream.removeListener('end', onEnd);
      res.writeHead(status, out);
      for (const chunk of chunks) res.write(chunk);
      stream.pipe(res);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > MAX_REWRITTEN_HTML) passThrough();
    };
    const rewrite = async () => {
      const raw = Buffer.concat(chunks);
      let html: Buffer;
      try {
        html = await decode(raw, { maxOutputLength: MAX_REWRITTEN_HTML });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
          logger.warn({ requestId, encoding, compressedBytes: raw.length }, 'notebook page refused: it decompresses past the rewrite limit');
          const message = `The notebook's HTML page decompresses to more than ${MAX_REWRITTEN_HTML >> 20} MiB (${raw.length} bytes of ${encoding}), more than the proxy rewrites (request id ${requestId})`;
          res.writeHead(502, { 'content-type': 'application/json', 'x-request-id': requestId });
          return void res.end(sessionsErrorBody(502, message));
        }
        // Not what it claims to be: as it came.
        res.writeHead(status, out);
        return void res.end(raw);
      }
      const body = Buffer.from(publicHtml(admitted, html.toString('utf8')), 'utf8');
      delete out['content-encoding'];
      out['content-length'] = String(body.length);
      res.writeHead(status, out);
      res.end(body);
    };
    const onEnd = () =>
      void rewrite().catch((error: unknown) => {
        logger.error({ err: error, requestId }, 'notebook page rewrite failed');
        res.destroy();
      });
    stream.on('data', onData);
    stream.on('end', onEnd);
  }

  return {
    handles(pathname: string): boolean {
      return isNotebookPath(pathname);
    },

    async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
      const requestId = requestIdOf(req);
      const method = (req.method ?? 'GET').toUpperCase();
      let stream: ClientHttp2Stream;
      try {
        const admitted = await admit(req, requestId);
        const { source, ticket } = admitted;
        const secure = overTls(req);
        const signIn = source === 'query' || source === 'ticket';
        const navigation = method === 'GET' || method === 'HEAD';
        if (ticket && !navigation) throw new SessionsError(400, `A sign-in link (?${LOGIN_TICKET_PARAM}=) is opened with a GET, not a ${method.slice(0, 20)}`);
        if (signIn && !mayLogIn(req)) {
          req.resume();
          if (!navigation)
            throw new SessionsError(403, `Forbidden: another site may not sign this browser in with ?${ACCESS_TOKEN_PARAM}=; open the link yourself`);
          return confirmLogin(res, admitted, requestId);
        }
        // The ticket's one use (any replica's: the shared table); the confirmation page above did not use it.
        if (ticket && !(await usedTickets.use(ticket.id, ticket.expiresAt))) throw new SessionsError(401, USED_OR_EXPIRED_TICKET);
        if (signIn && navigation) {
          // A browser's first visit: the cookie, and the same page without the credential in its address.
          req.resume();
          res.writeHead(303, {
            location: `${admitted.pathname}${withoutSignIn(admitted.url)}`,
            'set-cookie': cookies.setCookie(admitted.credential, secure),
            'x-request-id': requestId,
            'cache-control': 'no-store',
          });
          return void res.end();
        }
        const headers: OutgoingHttpHeaders = {
          ...forwardableHeaders(req.headers, { allow: NOTEBOOK_REQUEST_HEADERS, upgrade: false, cookie: cookiesWithoutSession(req) }),
          'x-forwarded-prefix': admitted.target.publicPrefix,
          ':method': method,
          ':path': admitted.path,
          'x-request-id': requestId,
        };
        stream = registry.request(admitted.target.clusterId, headers);
        const setCookie = source === 'cookie' ? undefined : cookies.setCookie(admitted.credential, secure);
        stream.on('response', (answer) => respond(res, method, admitted, answer, stream, requestId, setCookie));
      } catch (error) {
        req.resume();
        return fail(req, res, error, requestId);
      }
      req.pipe(stream);
      stream.on('error', (error) => fail(req, res, error, requestId));
      res.on('close', () => {
        if (!stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
      });
    },

    async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
      const requestId = requestIdOf(req);
      const method = (req.method ?? 'GET').toUpperCase();
      socket.on('error', () => undefined);
      const refuse = (error: unknown) => {
        const status = error instanceof SessionsError ? error.status : 503;
        const known = error instanceof SessionsError || error instanceof NoTunnelError;
        if (!known) logger.error({ err: error, requestId }, 'notebook upgrade failed');
        const message = known ? error.message : `The cluster tunnel failed (request id ${requestId})`;
        const extra: Record<string, string> = { 'X-Request-Id': requestId };
        if (status === 401 && usesCookie(req)) extra['Set-Cookie'] = cookies.clearCookie(overTls(req));
        answerUpgrade(
          socket,
          status,
          status === 401 ? 'Unauthorized' : status === 403 ? 'Forbidden' : 'Refused',
          'application/json',
          sessionsErrorBody(status, message),
          extra,
        );
      };
      let stream: ClientHttp2Stream;
      try {
        const admitted = await admit(req, requestId);
        if (admitted.ticket) throw new SessionsError(400, `A sign-in link (?${LOGIN_TICKET_PARAM}=) opens a page, not a WebSocket`);
        if (!UPGRADE_METHODS.includes(method)) throw new SessionsError(400, `A WebSocket is opened with a GET, not a ${method.slice(0, 20)}`);
        stream = registry.request(admitted.target.clusterId, {
          ':method': 'POST',
          ':path': admitted.path,
          'x-request-id': requestId,
          [UPGRADE_HEADER]: '1',
          [UPGRADE_METHOD_HEADER]: method,
          // The allow-listed headers only: nothing the caller sends names a method or a credential here.
          [UPGRADE_HEADERS_HEADER]: JSON.stringify({
            ...forwardableHeaders(req.headers, { allow: NOTEBOOK_REQUEST_HEADERS, upgrade: true, cookie: cookiesWithoutSession(req) }),
            'x-forwarded-prefix': admitted.target.publicPrefix,
          }),
        });
      } catch (error) {
        return refuse(error);
      }
      stream.on('error', (error) => (socket.writable ? refuse(error) : socket.destroy()));
      relayUpgrade(stream, socket, head);
    },
  };
}

export type NotebookProxy = ReturnType<typeof createNotebookProxy>;
