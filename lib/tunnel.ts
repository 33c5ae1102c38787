import { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';

/**
 * The agent tunnel's wire protocol (DESIGN §3 "Agent tunnel"), shared by the control plane
 * (subgraphs/sessions) and the agent. The agent dials out and authenticates with its cluster's
 * registration key; the connection then carries HTTP/2 with the control plane as the client and the
 * agent as the server (h2c with prior knowledge: TLS, if any, belongs to the outer connection).
 */

/** HTTP/1.1 Upgrade to a raw byte stream (LLMariner: CONNECT → 101 on /v1/sessions-worker-service/...). */
export const TUNNEL_UPGRADE_PATH = '/v1/sessions-worker-service/upgrade';
/** The same over a WebSocket, for proxies that pass only WebSockets. */
export const TUNNEL_WEBSOCKET_PATH = '/v1/sessions-worker-service/ws';
/** The `Upgrade:` token of the raw transport. */
export const TUNNEL_PROTOCOL = 'mariner-tunnel/1';
/** Which agent process dials (several agents of one cluster may be connected at once). */
export const AGENT_ID_HEADER = 'x-mariner-agent-id';

/** Paths the agent serves over the tunnel: the Kubernetes API under K8S_PREFIX, its own API under WORKER_PREFIX. */
export const K8S_PREFIX = '/k8s';
export const WORKER_PREFIX = '/mariner/v1';

/**
 * Upgraded requests (exec, attach, port-forward) over HTTP/2, which has no Upgrade: a POST stream
 * marked with UPGRADE_HEADER, the original method and headers in the two headers below. The agent
 * answers 200 with UPGRADE_RESPONSE_HEADER (JSON `{statusCode, headers}` of the upstream 101) and
 * then relays bytes both ways; without that header the upstream refused to upgrade.
 */
export const UPGRADE_HEADER = 'x-mariner-upgrade';
export const UPGRADE_METHOD_HEADER = 'x-mariner-upgrade-method';
export const UPGRADE_HEADERS_HEADER = 'x-mariner-upgrade-headers';
export const UPGRADE_RESPONSE_HEADER = 'x-mariner-upgrade-response';
/**
 * The methods an upgrade may carry: GET (WebSocket: exec, attach, port-forward, a notebook's kernels)
 * and POST (SPDY). Both ends refuse any other, so no upgrade can be turned into a DELETE or a PATCH.
 */
export const UPGRADE_METHODS: readonly string[] = ['GET', 'POST'];

/**
 * The prefix of the tunnel's own headers (the ones above, the agent's id, the peer endpoint's): the
 * control plane sets them, a caller never does. A user's request never carries one across (the
 * sessions proxies forward an allow-list), and the agent ignores any inside the upgrade headers' JSON.
 */
export const INTERNAL_HEADER_PREFIX = 'x-mariner-';
export const isInternalHeader = (name: string): boolean => name.toLowerCase().startsWith(INTERNAL_HEADER_PREFIX);

/** HTTP/2 settings of both ends: larger windows than the 64 KiB default for bulk transfers (prototypes §D). */
export const TUNNEL_H2_SETTINGS = { initialWindowSize: 1 << 20, enableConnectProtocol: false } as const;
/**
 * How many stream resets a tunnel's HTTP/2 server (the agent's; the sessions peer endpoint's) takes
 * from its peer: a burst, then a rate per second. nghttp2 guards servers against "rapid reset" floods
 * (by default 1,000, then 33 a second) by closing the whole session, and the control plane resets a
 * stream for every caller that leaves mid-answer: at the default, a busy cluster's tunnel would close
 * under ordinary traffic. These servers answer only the control plane (authenticated), so the guard is
 * set far above what it sends. Node 20 ignores these options; 22 and 24 honour them (not in Node 20's
 * types, hence the cast).
 */
export const TUNNEL_RESET_LIMITS = { streamResetBurst: 100_000, streamResetRate: 10_000 } as Record<string, number>;
/** The connection-level receive window each end grants. */
export const TUNNEL_CONNECTION_WINDOW = 8 << 20;

/** Hop-by-hop headers (RFC 9110 §7.6.1) plus those HTTP/2 forbids: never forwarded across the tunnel. */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'proxy-authenticate',
  'proxy-authorization',
  'host',
  'http2-settings',
]);

/**
 * A WebSocket as the byte stream under HTTP/2, for the WebSocket transport. Unlike ws's
 * createWebSocketStream, writes queued while one is in flight go out as ONE message (`writev`):
 * HTTP/2 writes each frame header and payload separately, and a message per write cost 5-10x the
 * bulk throughput of the raw transport (measured with `npm run bench:tunnel`). The stream closes
 * with the WebSocket, so the HTTP/2 session on it is torn down at once (prototypes §D).
 */
export function webSocketDuplex(ws: WebSocket): Duplex {
  const duplex = new Duplex({
    write(chunk: Buffer, _encoding, callback) {
      ws.send(chunk, { binary: true }, callback);
    },
    writev(chunks, callback) {
      ws.send(Buffer.concat(chunks.map((c) => c.chunk as Buffer)), { binary: true }, callback);
    },
    read() {
      if (ws.isPaused) ws.resume();
    },
    final(callback) {
      ws.close(1000);
      callback();
    },
    destroy(error, callback) {
      if (ws.readyState !== ws.CLOSED) ws.terminate();
      callback(error);
    },
  });
  ws.on('message', (data: Buffer) => {
    if (!duplex.push(data)) ws.pause();
  });
  ws.once('close', () => {
    duplex.push(null);
    duplex.destroy();
  });
  ws.on('error', (error) => duplex.destroy(error));
  return duplex;
}

const STATUS_REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  409: 'Conflict',
  429: 'TooManyRequests',
  502: 'InternalError',
  503: 'ServiceUnavailable',
};

/**
 * A Kubernetes `Status` (meta/v1) failure, the error body kubectl and the client libraries print as the
 * message: what the agent and the control plane answer for Kubernetes API paths they refuse themselves.
 */
export function kubernetesStatus(code: number, message: string, reason = STATUS_REASONS[code] ?? 'InternalError') {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}
