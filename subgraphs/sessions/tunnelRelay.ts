import type { IncomingHttpHeaders } from 'node:http';
import http2, { type ClientHttp2Stream, type IncomingHttpHeaders as H2Headers } from 'node:http2';
import type { Duplex } from 'node:stream';
import { HOP_BY_HOP, isInternalHeader, UPGRADE_RESPONSE_HEADER } from '../../lib/tunnel.js';
import { SessionsError } from './sessionAuth.js';

/**
 * How the sessions proxies relay a user's request over an agent tunnel (lib/tunnel.ts has the wire
 * protocol): which headers travel, which request paths may, and how an upgraded connection (exec, a
 * notebook's WebSocket) is answered and spliced. Shared by kubeProxy.ts and notebookProxy.ts.
 */

/**
 * What kubectl and the Kubernetes client libraries send that the apiserver reads (client-go
 * rest.Request, kubectl's command headers): content negotiation, the body's type, who is asking, and
 * `X-Stream-Protocol-Version`, the protocols an exec, attach or port-forward over SPDY offers.
 */
export const KUBE_REQUEST_HEADERS: ReadonlySet<string> = new Set([
  'accept',
  'accept-encoding',
  'accept-language',
  'content-type',
  'content-length',
  'content-encoding',
  'user-agent',
  'kubectl-command',
  'kubectl-session',
  'x-stream-protocol-version',
]);

/**
 * What a browser sends that Jupyter (or another server of the notebook) reads: content negotiation,
 * caching and ranges (downloads), the body's type, and Jupyter's XSRF header (tornado reads
 * `X-XSRFToken` or `X-CSRFToken`). `Origin` and `Referer` are not in it: Jupyter compares them with a
 * Host it cannot see behind the apiserver, and the proxy has checked them.
 */
export const NOTEBOOK_REQUEST_HEADERS: ReadonlySet<string> = new Set([
  'accept',
  'accept-encoding',
  'accept-language',
  'cache-control',
  'pragma',
  'content-type',
  'content-length',
  'content-encoding',
  'if-match',
  'if-none-match',
  'if-modified-since',
  'if-unmodified-since',
  'if-range',
  'range',
  'last-event-id',
  'user-agent',
  'x-requested-with',
  'x-xsrftoken',
  'x-csrftoken',
]);

/** What an upgrade adds (RFC 6455 §4.1); `Connection` and `Upgrade` are written by forwardableHeaders. */
const UPGRADE_REQUEST_HEADERS = ['sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol', 'sec-websocket-extensions'];

/**
 * Never forwarded, whatever an allow-list holds: the caller's credentials and project selection
 * (the cluster gets the agent's), `Impersonate-*` (it would borrow the agent's powers), the tunnel's
 * own `x-mariner-*` headers (a caller naming `x-mariner-upgrade-method` would have the agent run
 * another method than the one authorized), and hop-by-hop headers.
 */
function neverForwarded(name: string): boolean {
  return (
    name === 'authorization' ||
    name === 'cookie' ||
    name.startsWith('openai-') ||
    name.startsWith('impersonate-') ||
    isInternalHeader(name) ||
    HOP_BY_HOP.has(name)
  );
}

/**
 * The request headers that travel to the cluster: those of the route's allow-list only
 * (KUBE_REQUEST_HEADERS or NOTEBOOK_REQUEST_HEADERS), plus, for an upgrade, the WebSocket handshake's
 * and `Connection: Upgrade` with the caller's `Upgrade`. `cookie` is what to send as Cookie, if
 * anything (the notebook's own cookies; never the session cookie).
 */
export function forwardableHeaders(
  headers: IncomingHttpHeaders,
  options: { allow: ReadonlySet<string>; upgrade: boolean; cookie?: string | undefined },
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const names = options.upgrade ? [...options.allow, ...UPGRADE_REQUEST_HEADERS] : [...options.allow];
  for (const name of names) {
    const value = headers[name];
    if (value !== undefined && !neverForwarded(name)) out[name] = value;
  }
  if (options.upgrade && typeof headers.upgrade === 'string') {
    out['connection'] = 'Upgrade';
    out['upgrade'] = headers.upgrade;
  }
  if (options.cookie) out['cookie'] = options.cookie;
  return out;
}

/** A path segment no request may hold once decoded: a dot segment, a slash or backslash, a control character. */
const TRAVERSAL = /^\.\.?$|[/\\\u0000-\u001f\u007f]/;

/**
 * The path of a request target as the caller sent it (not as WHATWG URL parsing would resolve its dot
 * segments), checked segment by segment: each must decode (RFC 3986 §2.1), and none may be `.` or `..`,
 * plainly or encoded (`%2e%2e`), or hide a `/` or `\` (`..%2F`): the apiserver decodes and resolves
 * those, so what it would run could differ from what was authorized. Empty segments are dropped. The
 * result is what is both authorized and forwarded. Throws SessionsError 400.
 */
export function checkedRequestPath(target: string): { path: string; segments: string[]; query: string } {
  const question = target.indexOf('?');
  let raw = question === -1 ? target : target.slice(0, question);
  const query = question === -1 ? '' : target.slice(question);
  // The absolute form (RFC 9112 §3.2.2), which proxies send: the path after the authority.
  const absolute = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i.exec(raw);
  if (absolute) raw = raw.slice(absolute[0].length) || '/';
  const kept = raw.split('/').filter(Boolean);
  const segments = kept.map((segment) => {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      throw new SessionsError(400, `The path has a malformed percent-encoding in "${segment.slice(0, 80)}": encode "%" as %25`);
    }
    if (TRAVERSAL.test(decoded)) {
      throw new SessionsError(
        400,
        `The path segment "${segment.slice(0, 80)}" is refused: paths may not hold "." or ".." segments, encoded slashes or control characters`,
      );
    }
    return decoded;
  });
  const path = `/${kept.join('/')}${raw.endsWith('/') && kept.length > 0 ? '/' : ''}`;
  return { path, segments, query };
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
export function answerUpgrade(
  socket: Duplex,
  status: number,
  reason: string,
  contentType: string,
  body: Buffer | string,
  headers: Record<string, string> = {},
): void {
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
