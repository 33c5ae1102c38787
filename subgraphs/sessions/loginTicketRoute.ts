import type { IncomingMessage, ServerResponse } from 'node:http';
import { BodyTooLargeError, readBody, requestIdOf } from '../../lib/http.js';
import { isJsonObject } from '../../lib/jsonObject.js';
import { LOGIN_TICKET_PARAM, type LoginTickets } from '../../lib/loginTicket.js';
import type { Logger } from '../../lib/logging.js';
import { ACCESS_TOKEN_PARAM, isNotebookPath, parseNotebookPath } from './notebookProxy.js';
import { credentialOf, MISSING_CREDENTIAL, SessionsError, sessionsErrorBody, type SessionAuthorizer } from './sessionAuth.js';

/**
 * `POST /v1/sessions/login_tickets` (issue 19): a one-time sign-in ticket (lib/loginTicket.ts) for a browser's
 * first visit to a notebook, for API clients (`mariner notebooks open`). Authenticated like the other
 * `/v1/sessions` routes (`Authorization: Bearer`, with `OpenAI-Organization` / `OpenAI-Project`); the ticket
 * carries that credential to the notebook named in the body:
 *
 *   {"path": "/v1/sessions/<cluster>/v1/services/notebooks/<notebook>/<namespace>[/<port>]/<rest>[?query]"}
 *   → 201 {"ticket": "...", "url": "<path>?login_ticket=<ticket>", "expires_at": <unix seconds>}
 *
 * `login_tickets` cannot be a cluster id (`cluster-...`), so the route shadows no cluster's. The caller needs
 * `api.workspaces.notebooks.read` (what the notebook route asks); whether the namespace is theirs is checked
 * when the ticket is used, like every other credential: a ticket gives nobody more than the key inside it.
 */

export const LOGIN_TICKETS_PATH = '/v1/sessions/login_tickets';
const MAX_BODY = 16 * 1024;
const USAGE = 'The body is JSON: {"path": "/v1/sessions/<cluster id>/v1/services/notebooks/<notebook name or id>/<namespace>[/<port>]/..."}';

export function createLoginTicketRoute(options: { authorizer: SessionAuthorizer; tickets: LoginTickets; logger: Logger }) {
  const { authorizer, tickets, logger } = options;

  /** The notebook path of the body, checked as the notebook route will read it. */
  async function requestedPath(req: IncomingMessage): Promise<{ url: URL; target: ReturnType<typeof parseNotebookPath> }> {
    let body: unknown;
    try {
      body = JSON.parse(await readBody(req, MAX_BODY));
    } catch (error) {
      if (error instanceof BodyTooLargeError) throw new SessionsError(400, `The body is larger than ${MAX_BODY} bytes. ${USAGE}`);
      throw new SessionsError(400, `The body is not JSON. ${USAGE}`);
    }
    const path = isJsonObject(body) ? body['path'] : undefined;
    if (typeof path !== 'string' || !path.startsWith('/') || path.startsWith('//')) throw new SessionsError(400, `path must be a notebook path. ${USAGE}`);
    const url = new URL(path, 'http://mariner');
    if (url.origin !== 'http://mariner' || !isNotebookPath(url.pathname)) throw new SessionsError(400, `path must be a notebook path. ${USAGE}`);
    try {
      return { url, target: parseNotebookPath(url.pathname) };
    } catch (error) {
      if (error instanceof SessionsError) throw new SessionsError(400, error.message);
      throw error;
    }
  }

  return {
    handles(pathname: string): boolean {
      return pathname === LOGIN_TICKETS_PATH || pathname === `${LOGIN_TICKETS_PATH}/`;
    },

    async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
      const requestId = requestIdOf(req);
      const headers = { 'content-type': 'application/json', 'cache-control': 'no-store', 'x-request-id': requestId };
      try {
        if (req.method !== 'POST') {
          req.resume();
          res.writeHead(405, { ...headers, allow: 'POST' });
          return void res.end(sessionsErrorBody(405, `POST ${LOGIN_TICKETS_PATH} makes a notebook sign-in ticket. ${USAGE}`));
        }
        const credential = credentialOf(req.headers);
        // A Bearer header only: not the notebooks' cookie (another site's form could send it), not a ticket.
        if (!credential || !/^bearer\s/i.test(credential.authorization)) throw new SessionsError(401, MISSING_CREDENTIAL);
        const decision = await authorizer.decide(credential, 'api.workspaces.notebooks', 'READ', requestId);
        if (!decision.authorized) throw new SessionsError(403, `Forbidden: ${decision.reason ?? 'missing api.workspaces.notebooks.read'}`);
        const { url, target } = await requestedPath(req);
        const { ticket, expiresAt } = tickets.mint(credential, target);
        for (const name of [ACCESS_TOKEN_PARAM, LOGIN_TICKET_PARAM]) url.searchParams.delete(name);
        url.searchParams.set(LOGIN_TICKET_PARAM, ticket);
        res.writeHead(201, headers);
        res.end(JSON.stringify({ ticket, url: `${url.pathname}${url.search}`, expires_at: expiresAt }));
      } catch (error) {
        req.resume();
        const known = error instanceof SessionsError;
        if (!known) logger.error({ err: error, requestId }, 'notebook sign-in ticket failed');
        const status = known ? error.status : 500;
        res.writeHead(status, { ...headers, ...(status === 401 ? { 'www-authenticate': 'Bearer' } : {}) });
        res.end(sessionsErrorBody(status, known ? error.message : `Internal error (request id ${requestId})`));
      }
    },
  };
}

export type LoginTicketRoute = ReturnType<typeof createLoginTicketRoute>;
