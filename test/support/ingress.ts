import { createServer, request, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';

/** A free TCP port on loopback (for components whose port must be known before they start). */
export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** Like the chart's Ingress: one host, routed by path prefix (longest first), upgrades included. */
export async function startIngress(routes: [prefix: string, target: string][]): Promise<{ url: string; close(): Promise<void> }> {
  const sorted = [...routes].sort((a, b) => b[0].length - a[0].length);
  const targetOf = (url = '/') => {
    const pathname = new URL(url, 'http://ingress').pathname;
    const route = sorted.find(([prefix]) => pathname === prefix || pathname.startsWith(`${prefix}/`));
    return route ? new URL(route[1]) : undefined;
  };
  const server: Server = createServer((req, res) => {
    const target = targetOf(req.url);
    if (!target) return void res.writeHead(404).end();
    const upstream = request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.on('upgrade', (req, socket, head) => {
    const target = targetOf(req.url);
    if (!target) return void socket.destroy();
    const upstream = connect(Number(target.port), target.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      upstream.write(head);
      upstream.pipe(socket).pipe(upstream);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  // Upgraded connections (agent tunnels) are not closed by closeAllConnections: destroyed on close.
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const socket of sockets) socket.destroy();
      }),
  };
}
