import type { IncomingHttpHeaders } from 'node:http';
import http2, { type ClientHttp2Stream, type IncomingHttpHeaders as H2Headers } from 'node:http2';
import type { Duplex } from 'node:stream';
import { HOP_BY_HOP, UPGRADE_RESPONSE_HEADER } from '../../lib/tunnel.js';

/**
 * How the sessions proxies relay a user's request over an agent tunnel (lib/tunnel.ts has the wire
 * protocol): which headers travel, and how an upgraded connection (exec, a notebook's WebSocket) is
 * answered and spliced. Shared by kubeProxy.ts and notebookProxy.ts.
 */

/**
 * Request headers that may travel to the cluster: never the caller's credentials, project selection or
 * `Impersonate-*` (which would borrow the agent's powers). `cookie` is what to send as Cookie, if anything.
 */
export function forwardableHeaders(headers: IncomingHttpHeaders, options: { keepUpgrade: boolean; cookie?: string | undefined; drop?: readonly string[] }): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.startsWith(':')) continue;
    if (name === 'authorization' || name === 'cookie' || name.startsWith('openai-') || name.startsWith('impersonate-') || options.drop?.includes(name)) continue;
    if (HOP_BY_HOP.has(name) && !(options.keepUpgrade && (name === 'upgrade' || name === 'connection'))) continue;
    out[name] = value;
  }
  if (options.cookie) out['cookie'] = options.cookie;
  return out;
}

/** Response headers from the agent, minus HTTP/2 pseudo headers and hop-by-hop ones. */
export function responseHeaders(headers: H2Headers): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.startsWith(':') || HOP_BY_HOP.has(name) || name === UPGRADE_RESPONSE_HEADER) continue;
    out[name] = value as string | string[];
  }
  return out;
}

/** Answers an upgrade request with a plain HTTP response and closes the connection. */
export function answerUpgrade(socket: Duplex, status: number, reason: string, contentType: string, body: Buffer | string, headers: Record<string, string> = {}): void {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
  let head = `HTTP/1.1 ${status} ${reason}\r\nContent-Type: ${contentType}\r\nContent-Length: ${bytes.length}\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  socket.end(Buffer.concat([Buffer.from(`${head}Connection: close\r\n\r\n`), bytes]));
}

/**
 * Relays the agent's answer to a tunnelled upgrade (the `x-mariner-upgrade` protocol) to the caller's
 * socket: its 101 and then the bytes both ways, or, when the cluster refused to upgrade, its answer
 * as a plain HTTP response. Either side closing closes the other.
 */
export function relayUpgrade(stream: ClientHttp2Stream, socket: Duplex, head: Buffer): void {
  socket.on('close', () => {
    if (!stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
  });
  stream.on('response', (headers) => {
    const upgraded = headers[UPGRADE_RESPONSE_HEADER];
    if (typeof upgraded !== 'string') {
      const status = Number(headers[':status'] ?? 502);
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => answerUpgrade(socket, status, 'Upgrade Refused', String(headers['content-type'] ?? 'application/json'), Buffer.concat(chunks)));
      return;
    }
    const { statusCode, headers: upstream } = JSON.parse(upgraded) as { statusCode: number; headers: Record<string, string | string[]> };
    let head101 = `HTTP/1.1 ${statusCode} Switching Protocols\r\n`;
    for (const [name, value] of Object.entries(upstream)) {
      for (const v of Array.isArray(value) ? value : [value]) head101 += `${name}: ${v}\r\n`;
    }
    socket.write(`${head101}\r\n`);
    if (head.length > 0) stream.write(head);
    socket.pipe(stream);
    stream.pipe(socket);
    stream.on('close', () => socket.destroy());
  });
}
