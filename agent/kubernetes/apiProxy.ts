/**
 * The agent's Kubernetes API proxy: requests the control plane sends down the HTTP/2 tunnel go to
 * the cluster's kube-apiserver with the agent's own credentials (DESIGN §3 "Agent tunnel"; LLMariner
 * session-manager). The caller's `authorization` (a user's Mariner API key) never reaches the cluster.
 *
 * Upgraded requests (exec, attach, port-forward: WebSocket or SPDY) cannot be carried as HTTP/2
 * requests, which forbid connection-specific headers, so the control plane sends them as:
 *   :method POST, :path <apiserver path>, x-mariner-upgrade: 1,
 *   x-mariner-upgrade-method: <original method, default GET>,
 *   x-mariner-upgrade-headers: <JSON object of the original request's headers>
 * and once the apiserver switches protocols the agent answers `:status 200` with
 *   x-mariner-upgrade-response: {"statusCode":101,"headers":{...the apiserver's 101 headers}}
 * followed by the raw upgraded bytes both ways. An apiserver that does not upgrade is answered
 * with its own status and body, without x-mariner-upgrade-response.
 *
 * The method the apiserver gets is the one the control plane authorized: the tunnel's `:method`, or for
 * an upgrade x-mariner-upgrade-method, a GET or a POST only (lib/tunnel.ts UPGRADE_METHODS). No other
 * `x-mariner-*` header, and none inside x-mariner-upgrade-headers, is read or passed on.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse, ServerHttp2Stream } from 'node:http2';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { KubeConfig } from '@kubernetes/client-node';
import {
  HOP_BY_HOP,
  isInternalHeader,
  kubernetesStatus,
  UPGRADE_HEADER,
  UPGRADE_HEADERS_HEADER,
  UPGRADE_METHOD_HEADER,
  UPGRADE_METHODS,
  UPGRADE_RESPONSE_HEADER,
} from '../../lib/tunnel.js';

export interface KubeApiProxy {
  /** Forwards one tunnelled request; `path` is the apiserver path with its query. */
  handle(req: Http2ServerRequest, res: Http2ServerResponse, path: string): void;
  /** Forwards one tunnelled upgrade (the `x-mariner-upgrade` protocol above). */
  handleUpgrade(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, path: string): void;
}

export { UPGRADE_HEADER, UPGRADE_HEADERS_HEADER, UPGRADE_METHOD_HEADER, UPGRADE_RESPONSE_HEADER };

/**
 * Never forwarded: the caller's credentials are Mariner's, the cluster gets the agent's; and
 * `Impersonate-*` headers would let a caller act as anyone the agent's account may impersonate. Nor
 * are the tunnel's own `x-mariner-*` headers (endToEndHeaders).
 */
const CALLER_CREDENTIALS = new Set(['authorization', 'cookie']);

/**
 * The apiserver's proxy to a Service or pod (`.../services/<name>/proxy/...`): what it forwards is for the
 * server behind it, whose own cookies (a notebook's Jupyter login and XSRF cookies) must reach it. The
 * control plane sends no cookie of its own there (subgraphs/sessions/notebookProxy.ts), and the apiserver
 * takes no credential from cookies.
 */
const BACKEND_PROXY = /^\/api\/v1\/namespaces\/[^/]+\/(?:services|pods)\/[^/]+\/proxy(?:[/?]|$)/;
const callerCredentials = (path: string) => (BACKEND_PROXY.test(path) ? ['authorization'] : [...CALLER_CREDENTIALS]);

/**
 * Whether an apiserver path reads or writes Secrets (`/api/v1/[watch/][namespaces/<ns>/]secrets...`),
 * its segments decoded as the apiserver decodes them. The control plane's allow-list never sends one
 * (subgraphs/sessions/kubeAllowList.ts); the agent refuses them too, so that no bug or replica on the
 * other side of the tunnel can read a namespace's credentials with the agent's account.
 */
export function touchesSecrets(path: string): boolean {
  let segments: string[];
  try {
    segments = (path.split('?', 1)[0] ?? '').split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return true;
  }
  if (segments[0] !== 'api') return false;
  let rest = segments.slice(2);
  if (rest[0] === 'watch') rest = rest.slice(1);
  if (rest[0] === 'namespaces' && rest.length >= 3) rest = rest.slice(2);
  return rest[0]?.toLowerCase() === 'secrets';
}

const SECRETS_REFUSED = 'the agent does not forward Secrets: they hold the credentials of the platform and of its jobs';

/** The headers to forward: end-to-end ones only, without HTTP/2 pseudo headers or `connection`'s list. */
function endToEndHeaders(headers: IncomingHttpHeaders | OutgoingHttpHeaders, keepUpgrade = false, keepCookie = false): OutgoingHttpHeaders {
  const listed = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((name) => name.trim().toLowerCase())
      .filter((name) => name !== '' && !(keepUpgrade && name === 'upgrade')),
  );
  const result: OutgoingHttpHeaders = {};
  for (const [rawName, value] of Object.entries(headers)) {
    const name = rawName.toLowerCase();
    if (
      value === undefined ||
      name.startsWith(':') ||
      listed.has(name) ||
      (CALLER_CREDENTIALS.has(name) && !(keepCookie && name === 'cookie')) ||
      name.startsWith('impersonate-') ||
      isInternalHeader(name)
    )
      continue;
    if (HOP_BY_HOP.has(name) && !(keepUpgrade && (name === 'connection' || name === 'upgrade'))) continue;
    result[name] = value;
  }
  return result;
}

/** A Kubernetes `Status` (meta/v1) for failures the proxy itself answers. */
function statusBody(code: number, reason: string, message: string): string {
  return JSON.stringify(kubernetesStatus(code, message, reason));
}

const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE']);

/** 502 with ServiceUnavailable when the apiserver cannot be reached, InternalError otherwise. */
function badGateway(error: unknown): { status: number; headers: OutgoingHttpHeaders; body: string } {
  const code = (error as NodeJS.ErrnoException).code;
  const reason = code && UNREACHABLE_CODES.has(code) ? 'ServiceUnavailable' : 'InternalError';
  const message = `kube-apiserver request failed: ${error instanceof Error ? error.message : String(error)}`;
  return { status: 502, headers: { 'content-type': 'application/json' }, body: statusBody(502, reason, message) };
}

export function createKubeApiProxy(kubeConfig: KubeConfig): KubeApiProxy {
  /**
   * Request options for the apiserver with the agent's credentials. Asked of the KubeConfig on
   * every request: service account tokens are rotated on disk and exec plugins refresh theirs.
   */
  async function upstreamRequest(method: string, path: string, headers: OutgoingHttpHeaders): Promise<http.ClientRequest> {
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    const server = new URL(cluster.server);
    const options: https.RequestOptions = {
      method,
      protocol: server.protocol,
      hostname: server.hostname,
      port: server.port || undefined,
      // A server URL may carry a path prefix (an apiserver behind a gateway).
      path: server.pathname.replace(/\/$/, '') + path,
      headers: { ...headers },
    };
    await kubeConfig.applyToHTTPSOptions(options);
    return (server.protocol === 'https:' ? https : http).request(options);
  }

  function handle(req: Http2ServerRequest, res: Http2ServerResponse, path: string): void {
    let upstream: http.ClientRequest | undefined;
    let upstreamRes: IncomingMessage | undefined;
    let tunnelClosed = false;
    res.on('close', () => {
      tunnelClosed = true;
      // The stream closed (the caller cancelled it, or the tunnel went) before the apiserver's
      // answer ended: stop the apiserver's work too, which ends follow and watch requests. (The
      // compat response reports itself finished on any close, so ask the upstream side.)
      if (!upstreamRes?.complete) upstream?.destroy();
    });

    const fail = (error: unknown) => {
      if (tunnelClosed) return;
      if (res.headersSent) {
        res.stream.destroy();
        return;
      }
      const { status, headers, body } = badGateway(error);
      res.writeHead(status, headers);
      res.end(body);
    };

    if (touchesSecrets(path)) {
      req.resume();
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(statusBody(403, 'Forbidden', SECRETS_REFUSED));
      return;
    }
    const headers = endToEndHeaders(req.headers, false, BACKEND_PROXY.test(path));
    for (const name of callerCredentials(path)) delete headers[name];

    upstreamRequest(req.method, path, headers).then((request) => {
      upstream = request;
      if (tunnelClosed) {
        request.destroy();
        return;
      }
      request.on('error', fail);
      request.on('response', (response: IncomingMessage) => {
        upstreamRes = response;
        if (tunnelClosed) return;
        // The compat writeHead sends the HEADERS frame at once, which a watch or a log follow
        // needs: it may not write a byte for a long time.
        res.writeHead(response.statusCode ?? 502, endToEndHeaders(response.headers));
        response.on('error', fail);
        response.on('aborted', () => fail(new Error('the apiserver closed the response early')));
        response.pipe(res);
      });
      req.on('error', () => request.destroy());
      req.pipe(request);
    }, fail);
  }

  function handleUpgrade(stream: ServerHttp2Stream, h2Headers: IncomingHttpHeaders, path: string): void {
    let upstream: http.ClientRequest | undefined;
    let upgraded = false;
    stream.on('close', () => {
      if (!upgraded) upstream?.destroy();
    });
    stream.on('error', () => undefined); // a reset stream: 'close' cleans up

    const answer = (status: number, headers: OutgoingHttpHeaders, body: string) => {
      if (stream.destroyed || stream.headersSent) return;
      stream.respond({ ':status': status, ...headers });
      stream.end(body);
    };
    const fail = (error: unknown) => {
      if (stream.destroyed) return;
      if (stream.headersSent) {
        stream.destroy();
        return;
      }
      const { status, headers, body } = badGateway(error);
      answer(status, headers, body);
    };

    if (touchesSecrets(path)) {
      answer(403, { 'content-type': 'application/json' }, statusBody(403, 'Forbidden', SECRETS_REFUSED));
      return;
    }
    let original: Record<string, string | string[]>;
    try {
      const parsed: unknown = JSON.parse(String(h2Headers[UPGRADE_HEADERS_HEADER] ?? '{}'));
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
      original = {};
      for (const [name, value] of Object.entries(parsed)) {
        if (typeof value !== 'string' && !(Array.isArray(value) && value.every((v) => typeof v === 'string')))
          throw new Error(`${name.slice(0, 80)} is not a string`);
        original[name] = value;
      }
    } catch (error) {
      answer(
        400,
        { 'content-type': 'application/json' },
        statusBody(400, 'BadRequest', `${UPGRADE_HEADERS_HEADER} is not a JSON object of headers: ${(error as Error).message}`),
      );
      return;
    }
    // The upgrade protocol is a POST stream carrying a GET or a POST (a WebSocket's or SPDY's handshake):
    // anything else was not sent by the sessions proxies, which authorize exactly that method.
    const method = String(h2Headers[UPGRADE_METHOD_HEADER] ?? 'GET').toUpperCase();
    if (h2Headers[':method'] !== 'POST' || !UPGRADE_METHODS.includes(method)) {
      answer(
        400,
        { 'content-type': 'application/json' },
        statusBody(
          400,
          'BadRequest',
          `an upgrade is a ${UPGRADE_METHODS.join(' or ')} sent as a POST stream, not ${method.slice(0, 20)} in a ${String(h2Headers[':method']).slice(0, 20)}`,
        ),
      );
      return;
    }
    if (typeof original['upgrade'] !== 'string') {
      answer(
        400,
        { 'content-type': 'application/json' },
        statusBody(400, 'BadRequest', `${UPGRADE_HEADERS_HEADER} names no Upgrade: this is not an upgrade request`),
      );
      return;
    }
    const headers = endToEndHeaders(original, true, BACKEND_PROXY.test(path));
    for (const name of callerCredentials(path)) delete headers[name];
    // An upgrade request has no body; its bytes flow only after the switch.
    delete headers['content-length'];

    upstreamRequest(method, path, headers).then((request) => {
      upstream = request;
      if (stream.destroyed) {
        request.destroy();
        return;
      }
      request.on('error', fail);
      request.on('upgrade', (upstreamRes: IncomingMessage, socket: Socket, head: Buffer) => {
        upgraded = true;
        if (stream.destroyed) {
          socket.destroy();
          return;
        }
        stream.respond({
          ':status': 200,
          [UPGRADE_RESPONSE_HEADER]: JSON.stringify({ statusCode: upstreamRes.statusCode, headers: upstreamRes.headers }),
        });
        if (head.length > 0) stream.write(head);
        splice(stream, socket);
      });
      request.on('response', (upstreamRes: IncomingMessage) => {
        if (stream.destroyed) {
          upstreamRes.destroy();
          return;
        }
        stream.respond({ ':status': upstreamRes.statusCode ?? 502, ...endToEndHeaders(upstreamRes.headers) });
        upstreamRes.on('error', () => stream.destroy());
        upstreamRes.pipe(stream);
      });
      request.end();
    }, fail);
  }

  return { handle, handleUpgrade };
}

/** Pipes two byte streams into each other; each side's end ends the other, an error or close destroys both. */
function splice(stream: ServerHttp2Stream, socket: Socket): void {
  socket.on('error', () => stream.destroy());
  socket.on('close', () => {
    if (!stream.writableEnded) stream.end();
  });
  stream.on('close', () => socket.destroy());
  socket.pipe(stream);
  stream.pipe(socket);
}
