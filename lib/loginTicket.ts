import { randomBytes } from 'node:crypto';
import { createSealer } from './sealedValues.js';

/**
 * One-time sign-in tickets for workspace notebooks (issue 19): what a browser carries on its first visit to
 * a notebook (`?login_ticket=`) instead of an API key, so the key never reaches its address bar or history.
 * `mariner notebooks open` gets one from `POST /v1/sessions/login_tickets` (subgraphs/sessions), the
 * console's hand-off mints one itself (gateway/console.ts); the notebook proxy opens it, checks it names the
 * notebook asked for, records it as used (once across replicas: the sessions component's table) and signs the
 * browser in with the credential inside.
 *
 * A ticket is the credential (the `Authorization` value and the `OpenAI-Organization` / `OpenAI-Project` of
 * the request that minted it), the notebook it is for (cluster, notebook as named in its path, namespace;
 * any port of it), a random id and an expiry, sealed with AES-256-GCM (lib/sealedValues.ts) under a key of
 * its own derived from the internal token secret: whoever sees it cannot read the key inside, a changed
 * byte is refused, and it is never a session cookie or the reverse. It is URL-safe (base64url).
 */

export const LOGIN_TICKET_PARAM = 'login_ticket';
/** How long a ticket may wait before it is used: the time to open a browser. */
export const LOGIN_TICKET_TTL_SECONDS = 60;

/** The notebook a ticket is for (segments decoded, as the notebook proxy parses its path). */
export interface LoginTicketTarget {
  clusterId: string;
  /** The notebook's name or id, as its path names it. */
  notebook: string;
  namespace: string;
}

/** The credential a ticket carries (the sessions proxies' `SessionCredential`). */
export interface LoginTicketCredential {
  /** The `Authorization` header value (`Bearer <API key or OIDC token>`). */
  authorization: string;
  organizationId: string | null;
  projectId: string | null;
}

export interface OpenedLoginTicket {
  /** What makes it single-use: recorded when used. */
  id: string;
  target: LoginTicketTarget;
  credential: LoginTicketCredential;
  /** Seconds since the epoch. */
  expiresAt: number;
}

export interface LoginTickets {
  /** A ticket for the credential to sign in to one notebook, valid `LOGIN_TICKET_TTL_SECONDS` from `now`. */
  mint(credential: LoginTicketCredential, target: LoginTicketTarget, now?: number): { ticket: string; expiresAt: number };
  /** The ticket's content; null when it is forged, altered, malformed or expired (whether it was used is the caller's to check). */
  open(ticket: string, now?: number): OpenedLoginTicket | null;
}

interface Sealed {
  v: 1;
  i: string;
  c: string;
  n: string;
  s: string;
  a: string;
  o: string | null;
  p: string | null;
  /** Expiry, seconds since the epoch. */
  e: number;
}

/** Tickets under `secret` (the internal token secret, which the gateway and the sessions component both have). */
export function createLoginTickets(secret: string): LoginTickets {
  const sealer = createSealer(secret, 'mariner notebook login ticket key v1', `${LOGIN_TICKET_PARAM}/v1`);
  return {
    mint(credential, target, now = Date.now()) {
      const expiresAt = Math.floor(now / 1000) + LOGIN_TICKET_TTL_SECONDS;
      const payload: Sealed = {
        v: 1,
        i: randomBytes(16).toString('base64url'),
        c: target.clusterId,
        n: target.notebook,
        s: target.namespace,
        a: credential.authorization,
        o: credential.organizationId,
        p: credential.projectId,
        e: expiresAt,
      };
      return { ticket: sealer.seal(payload), expiresAt };
    },
    open(ticket, now = Date.now()) {
      const p = sealer.open(ticket) as Sealed | null;
      const strings = [p?.i, p?.c, p?.n, p?.s, p?.a];
      if (p?.v !== 1 || strings.some((s) => typeof s !== 'string') || typeof p.e !== 'number' || p.e * 1000 <= now) return null;
      return {
        id: p.i,
        target: { clusterId: p.c, notebook: p.n, namespace: p.s },
        credential: { authorization: p.a, organizationId: p.o ?? null, projectId: p.p ?? null },
        expiresAt: p.e,
      };
    },
  };
}

/** Whether two targets are one notebook (its port aside). */
export function sameNotebook(a: LoginTicketTarget, b: LoginTicketTarget): boolean {
  return a.clusterId === b.clusterId && a.notebook === b.notebook && a.namespace === b.namespace;
}

const NOTEBOOK_ROUTE = /^\/v1\/sessions\/([^/]+)\/v1\/services\/notebooks\/([^/]+)\/([^/]+)(?:\/|$)/;

/**
 * The notebook a public notebook path names (`/v1/sessions/<cluster>/v1/services/notebooks/<notebook>/
 * <namespace>[/<port>]/...`), segments decoded; null for any other path. The notebook proxy checks the rest
 * of the path (subgraphs/sessions/notebookProxy.ts `parseNotebookPath`, which reads the same segments).
 */
export function notebookTargetOf(pathname: string): LoginTicketTarget | null {
  const match = NOTEBOOK_ROUTE.exec(pathname);
  if (!match) return null;
  try {
    const [clusterId, notebook, namespace] = [match[1]!, match[2]!, match[3]!].map((s) => decodeURIComponent(s));
    return clusterId && notebook && namespace ? { clusterId, notebook, namespace } : null;
  } catch {
    return null;
  }
}
