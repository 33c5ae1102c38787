import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { Worker } from '../../lib/identity.js';
import type { Logger } from '../../lib/logging.js';
import { AGENT_ID_HEADER, TUNNEL_PROTOCOL, TUNNEL_UPGRADE_PATH, TUNNEL_WEBSOCKET_PATH, webSocketDuplex } from '../../lib/tunnel.js';
import type { TunnelRegistry } from './tunnelRegistry.js';

export interface TunnelEndpointOptions {
  registry: TunnelRegistry;
  /** The worker behind a registration key; null when the key does not authenticate. */
  verifyRegistrationKey(key: string): Promise<Worker | null>;
  logger: Logger;
}

const AGENT_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Answers an upgrade request on its raw socket (no HTTP response object exists for upgrades). */
function refuse(socket: Duplex, status: number, reason: string, message: string): void {
  const body = JSON.stringify({ error: { message, code: status } });
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * The endpoint agents dial (LLMariner session manager: CONNECT → 101): an HTTP/1.1 Upgrade to
 * `mariner-tunnel/1` turns the connection into a raw byte stream; the WebSocket path does the same
 * for proxies that only pass WebSockets (permessage-deflate off: HTTP/2 frames are small and
 * compressing them costs CPU, prototypes §D). Either way the registration key authenticates the
 * agent before anything else happens, and the connection goes to the registry.
 */
export function createTunnelEndpoint(options: TunnelEndpointOptions) {
  const { registry, logger } = options;
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });

  async function authenticate(req: IncomingMessage, socket: Duplex): Promise<{ worker: Worker; key: string; agentId: string } | null> {
    const match = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    const key = match?.[1];
    if (!key) {
      refuse(socket, 401, 'Unauthorized', 'Authorization: Bearer <cluster registration key> is required');
      return null;
    }
    const requested = req.headers[AGENT_ID_HEADER];
    const agentId = typeof requested === 'string' && AGENT_ID.test(requested) ? requested : randomUUID();
    try {
      const worker = await options.verifyRegistrationKey(key);
      if (!worker) {
        refuse(socket, 401, 'Unauthorized', 'Invalid registration key: the cluster is not registered (or was unregistered)');
        return null;
      }
      return { worker, key, agentId };
    } catch (error) {
      logger.error({ err: error }, 'could not verify a registration key');
      refuse(socket, 503, 'Service Unavailable', 'The control plane cannot verify registration keys right now; retry');
      return null;
    }
  }

  return {
    /** Whether a request path belongs to the tunnel endpoint. */
    handles(pathname: string): boolean {
      return pathname === TUNNEL_UPGRADE_PATH || pathname === TUNNEL_WEBSOCKET_PATH;
    },

    /** An HTTP `upgrade` event on the public server for one of our paths. */
    async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
      socket.on('error', () => undefined);
      const pathname = new URL(req.url ?? '/', 'http://mariner').pathname;
      const upgrade = (req.headers.upgrade ?? '').toLowerCase();
      if (pathname === TUNNEL_WEBSOCKET_PATH) {
        if (upgrade !== 'websocket') return refuse(socket, 400, 'Bad Request', 'Expected a WebSocket upgrade');
      } else if (upgrade !== TUNNEL_PROTOCOL) {
        return refuse(socket, 400, 'Bad Request', `Expected Upgrade: ${TUNNEL_PROTOCOL}`);
      }
      const agent = await authenticate(req, socket);
      if (!agent || socket.destroyed) return;
      if (pathname === TUNNEL_WEBSOCKET_PATH) {
        wss.handleUpgrade(req, socket, head, (ws) => {
          registry.attach(webSocketDuplex(ws), agent.worker, agent.agentId, 'WEBSOCKET', agent.key);
        });
        return;
      }
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${TUNNEL_PROTOCOL}\r\n\r\n`);
      if (head.length > 0) socket.unshift(head);
      const raw = socket as Duplex & { setNoDelay?: (on: boolean) => void; setKeepAlive?: (on: boolean, delay: number) => void };
      raw.setNoDelay?.(true);
      raw.setKeepAlive?.(true, 30_000);
      registry.attach(socket, agent.worker, agent.agentId, 'UPGRADE', agent.key);
    },

    /** A plain (non-upgrade) request to a tunnel path. */
    refusePlainRequest(): { status: number; message: string } {
      return { status: 426, message: `The agent tunnel needs Upgrade: ${TUNNEL_PROTOCOL} (or a WebSocket on ${TUNNEL_WEBSOCKET_PATH})` };
    },

    close(): void {
      wss.close();
    },
  };
}

export type TunnelEndpoint = ReturnType<typeof createTunnelEndpoint>;
