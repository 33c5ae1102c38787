/**
 * Who is on a graphql-ws connection (its `onConnect`), and for how long. HTTP requests are
 * authenticated in gateway/index.ts; a WebSocket's credential comes once, with `connection_init`, and
 * the connection can outlive it, so here it is also watched: its expiry (OIDC tokens) and a periodic
 * check (a revoked API key, an unregistered cluster) close the connection with 4401.
 */
import type { IncomingMessage } from 'node:http';
import { WebSocket } from 'ws';
import { ErrorCode, MarinerError } from '../lib/errors.js';
import type { Logger } from '../lib/logging.js';
import type { Authenticator, Credentials } from './authentication.js';

/** Per-connection state: who connected, what they have open, their timers. */
export interface ConnectionState {
  credentials: Credentials;
  requestId: string;
  /** Whose quota the connection's operations count against (gateway/subscriptionLimits.ts). */
  owner: string;
  /** graphql-ws's operations of the connection, by id: kept current by graphql-ws itself (a complete removes at once). */
  operations: Record<string, unknown>;
  timers: NodeJS.Timeout[];
}

/** graphql-ws close codes (its protocol's 4401 Unauthorized), with a reason a client can show. */
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_INTERNAL = 4500;

export interface ConnectionAuthenticationOptions {
  authenticator: Authenticator;
  logger: Logger;
  /** How often a connection's credential is checked again. */
  revalidateIntervalMs: number;
}

/** A connection parameter or header, by case-insensitive name; undefined when absent or blank. */
function header(headers: Record<string, unknown>, name: string): string | undefined {
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name && typeof value === 'string' && value.trim() !== '') return value.trim();
  }
  return undefined;
}

/** Whose quota a connection counts against: the user, the cluster (a worker), or anonymous callers together. */
function ownerOf(credentials: Credentials): string {
  if (credentials.identity) return `user:${credentials.identity.principal.tenantId}:${credentials.identity.principal.userId}`;
  if (credentials.worker) return `cluster:${credentials.worker.clusterId}`;
  return 'anonymous';
}

export function createConnectionAuthentication(options: ConnectionAuthenticationOptions) {
  const { authenticator, logger } = options;

  /** The credential ends: at its expiry, or when a periodic check finds it revoked. */
  function watchCredential(connection: ConnectionState, socket: WebSocket, token: string | undefined, headers: IncomingMessage['headers']): void {
    const close = (reason: string) => {
      if (socket.readyState === WebSocket.OPEN) socket.close(CLOSE_UNAUTHORIZED, reason.slice(0, 120));
    };
    const expiresAt = connection.credentials.expiresAt;
    if (expiresAt)
      connection.timers.push(setTimeout(() => close('Token expired: reconnect with a fresh token'), Math.max(0, expiresAt.getTime() - Date.now())));
    if (token === undefined) return;
    const interval = setInterval(() => {
      authenticator.authenticate(token, headers, connection.requestId).catch((error: unknown) => {
        if (error instanceof MarinerError && error.code === ErrorCode.UNAUTHENTICATED) close(`Credential no longer valid: ${error.message}`);
      });
    }, options.revalidateIntervalMs);
    connection.timers.push(interval);
    for (const timer of connection.timers) timer.unref();
  }

  return {
    /**
     * graphql-ws `onConnect`: the credential is `authorization` in the connection parameters or the
     * upgrade request, the project headers may be parameters too. Null when the connection was refused
     * (closed: 4401 for a bad credential, 4500 otherwise).
     */
    async connect(
      request: IncomingMessage,
      connectionParams: unknown,
      socket: WebSocket,
      operations: Record<string, unknown>,
    ): Promise<ConnectionState | null> {
      const params = (connectionParams ?? {}) as Record<string, unknown>;
      const headers = { ...request.headers } as Record<string, unknown>;
      for (const name of ['openai-organization', 'openai-project']) {
        const value = header(params, name);
        if (value) headers[name] = value;
      }
      const authorization = header(params, 'authorization') ?? header(request.headers as Record<string, unknown>, 'authorization');
      const token = authorization ? /^Bearer\s+(\S+)$/i.exec(authorization)?.[1] : undefined;
      const requestId = header(params, 'x-request-id') ?? header(request.headers as Record<string, unknown>, 'x-request-id') ?? crypto.randomUUID();
      try {
        const credentials = await authenticator.authenticate(token, headers as IncomingMessage['headers'], requestId);
        const connection: ConnectionState = { credentials, requestId, owner: ownerOf(credentials), operations, timers: [] };
        watchCredential(connection, socket, token, headers as IncomingMessage['headers']);
        return connection;
      } catch (error) {
        if (error instanceof MarinerError && error.code === ErrorCode.UNAUTHENTICATED) {
          socket.close(CLOSE_UNAUTHORIZED, error.message.slice(0, 120));
          return null;
        }
        logger.error({ err: error, requestId }, 'subscription authentication failed');
        socket.close(CLOSE_INTERNAL, `Internal error (request id ${requestId})`);
        return null;
      }
    },
    /** graphql-ws `onClose`: the credential is no longer watched. */
    disconnect(connection: ConnectionState): void {
      for (const timer of connection.timers) clearTimeout(timer);
    },
  };
}

export type ConnectionAuthentication = ReturnType<typeof createConnectionAuthentication>;
