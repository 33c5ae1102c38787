import { createServer, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import type { Duplex } from 'node:stream';

/** The HTTP servers `mariner serve` opens besides the subgraphs': the public port and the operations port. */

export type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** A server for user traffic (GraphQL, /v1, agent tunnels), with the timeouts `mariner up` uses too. */
export function createPublicServer(handler: RequestListener, upgrade: UpgradeListener): Server {
  const server = createServer(handler);
  server.on('upgrade', upgrade);
  // A large upload may take longer than node's default 5 minutes for a whole request; the headers
  // must still arrive promptly (headersTimeout) and idle sockets still time out.
  server.requestTimeout = 0;
  // Idle keep-alive connections stay open longer than clients (and load balancers, 60 s) keep them, so
  // a client never reuses a socket the server is closing.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  return server;
}

export async function listen(server: Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  return typeof address === 'object' && address ? address.port : port;
}

/** Closes a server and every connection still open on it (after a drain, what the drain left). */
export async function closeServer(server: Server): Promise<void> {
  if (!server.listening) {
    server.closeAllConnections();
    return;
  }
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Answers an upgrade nobody handles on its raw socket. */
export function refuseUpgrade(socket: Duplex): void {
  socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
}

/** `host:port` for a URL, IPv6 in brackets; a wildcard address is reached on loopback. */
export function urlHost(host: string, port: number): string {
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
}
