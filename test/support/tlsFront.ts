import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';

/**
 * A TLS front for a plain-HTTP server, as an ingress would be in production. kubectl sends a bearer
 * token only over TLS (client-go drops credentials for http:// servers), so kubectl tests reach the
 * platform through this. Bytes are relayed as they are: upgrades and streams pass.
 */
export async function startTlsFront(target: string, credentials: { cert: string; key: string }): Promise<{ url: string; close(): Promise<void> }> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({ cert: credentials.cert, key: credentials.key }, (client) => {
    const upstream = net.connect(Number(port), hostname);
    sockets.add(client);
    sockets.add(upstream);
    client.pipe(upstream).pipe(client);
    const done = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
