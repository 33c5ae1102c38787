import http2, { type ClientHttp2Stream, type Http2Server, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { AgentTunnels } from '../../lib/agentContract.js';
import type { Logger } from '../../lib/logging.js';
import { TUNNEL_CONNECTION_WINDOW, TUNNEL_H2_SETTINGS, TUNNEL_RESET_LIMITS } from '../../lib/tunnel.js';
import { PeerClient } from './peerClient.js';
import { PEER_CLUSTER_HEADER, PEER_TOKEN_HEADER, type PeerTokens } from './peerTokens.js';
import type { TunnelDirectory } from './tunnelDirectory.js';
import { NoTunnelError, type TunnelHolder, type TunnelRegistry } from './tunnelRegistry.js';

export { PEER_CLUSTER_HEADER, PEER_TOKEN_HEADER, peerTokens, type PeerTokens } from './peerTokens.js';

/**
 * Several sessions replicas (LLMariner's task exchange between inference-manager-server replicas,
 * our way): an agent's tunnels end on the replica it dialed; every replica knows from a table which
 * replica holds which cluster (tunnelDirectory.ts), and a request for a cluster held elsewhere goes to
 * that replica's peer endpoint (h2c, startPeerServer), which relays it to its local tunnel. The inference
 * and jobs processes reach every cluster that way (peerClient.ts, remoteTunnels.ts).
 */

/** Headers of a stream's response or trailers, as they may be sent on (no pseudo-headers but :status). */
function passOn(headers: IncomingHttpHeaders, keepStatus: boolean): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name.startsWith(':') && !(keepStatus && name === ':status')) continue;
    out[name] = value;
  }
  return out;
}

/**
 * The peer endpoint: internal HTTP/2 without TLS (h2c), for other sessions replicas only. A request
 * names its cluster (PEER_CLUSTER_HEADER) and carries a peer token for it and for this very request
 * (its method, path and upgrade headers), used once; anything else is refused with 401. It is relayed to a local tunnel of the cluster, bodies streamed both ways, trailers
 * passed on; a reset on either side resets the other. No local tunnel: REFUSED_STREAM, which the
 * calling replica sees as a failed tunnel stream.
 */
export async function startPeerServer(options: {
  registry: TunnelRegistry;
  tokens: PeerTokens;
  host: string;
  port: number;
  logger: Logger;
}): Promise<{ port: number; close(): Promise<void> }> {
  const { registry, tokens, logger } = options;
  const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;
  const server: Http2Server = http2.createServer({ settings: TUNNEL_H2_SETTINGS, peerMaxConcurrentStreams: 10_000, ...TUNNEL_RESET_LIMITS });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', () => undefined);
    session.setLocalWindowSize(TUNNEL_CONNECTION_WINDOW);
  });
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => undefined);
    const clusterId = headers[PEER_CLUSTER_HEADER];
    if (typeof clusterId !== 'string' || !tokens.verify(clusterId, headers, headers[PEER_TOKEN_HEADER])) {
      logger.warn({ clusterId }, 'peer request refused: missing, forged, expired or reused peer token, or one for another request');
      stream.respond({ ':status': 401, 'content-type': 'application/json' });
      stream.end(JSON.stringify({ error: { message: 'peer request refused: missing, forged, expired or reused peer token, or one for another request' } }));
      return;
    }
    const forward: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(headers)) {
      if (name === ':authority' || name === ':scheme' || name === PEER_CLUSTER_HEADER || name === PEER_TOKEN_HEADER) continue;
      forward[name] = value;
    }
    let upstream: ClientHttp2Stream;
    try {
      upstream = registry.request(clusterId, forward);
    } catch (error) {
      if (!(error instanceof NoTunnelError)) logger.warn({ err: error, clusterId }, 'peer request failed');
      stream.close(NGHTTP2_REFUSED_STREAM);
      return;
    }
    upstream.on('error', () => undefined);
    let responded = false;
    let trailers: OutgoingHttpHeaders | undefined;
    stream.pipe(upstream);
    upstream.once('response', (responseHeaders) => {
      if (stream.closed || stream.destroyed) return;
      responded = true;
      stream.respond(passOn(responseHeaders, true), { waitForTrailers: true });
      upstream.pipe(stream);
    });
    upstream.on('trailers', (received) => (trailers = passOn(received, false)));
    stream.on('wantTrailers', () => stream.sendTrailers(trailers ?? {}));
    // The caller went away (or reset): cancel the agent's stream.
    stream.once('close', () => {
      if (!upstream.closed && !upstream.destroyed) upstream.close(NGHTTP2_CANCEL);
    });
    // The agent's stream ended badly: the caller sees a reset, never a truncated success.
    upstream.once('close', () => {
      if (stream.closed || stream.destroyed) return;
      const code = upstream.rstCode ?? NGHTTP2_NO_ERROR;
      if (code !== NGHTTP2_NO_ERROR) stream.close(code);
      // The tunnel went away (no reset code): the answer is cut, never ended as if complete.
      else if (!responded || !upstream.readableEnded) stream.close(NGHTTP2_INTERNAL_ERROR);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const session of sessions) session.destroy();
      }),
  };
}

/**
 * How the control plane reaches a cluster's agent with several sessions replicas: a local tunnel when
 * this replica has one, else a stream to a live replica that holds one (one cached HTTP/2 session per
 * peer, opened again when it is lost). Without a directory (one replica, `mariner up`) it is the
 * registry alone. The same errors either way: NoTunnelError when no replica holds the cluster; a
 * stream that fails (tunnel or peer gone) errors like a tunnel stream.
 */
export class ClusterTransportRouter implements AgentTunnels {
  private directory: TunnelDirectory | undefined;
  private peers: PeerClient | undefined;

  constructor(readonly registry: TunnelRegistry) {}

  /** Turns forwarding on (the directory is started by the caller). */
  usePeers(directory: TunnelDirectory, tokens: PeerTokens): void {
    this.directory = directory;
    this.peers = new PeerClient(directory, tokens);
  }

  request(clusterId: string, headers: OutgoingHttpHeaders, options: { endStream?: boolean } = {}): ClientHttp2Stream {
    if (!this.peers || this.registry.hasTunnel(clusterId)) return this.registry.request(clusterId, headers, options);
    return this.peers.request(clusterId, headers, options);
  }

  /** The tenant's clusters with a connected agent on this replica or a live peer. */
  connectedClusters(tenantId: string): string[] {
    const local = this.registry.connectedClusters(tenantId);
    if (!this.directory) return local;
    return [...new Set([...local, ...this.directory.clustersOf(tenantId)])];
  }

  /**
   * Every cluster with a tunnel to this replica or a live peer: the jobs dispatcher of whichever replica
   * queued a job sends it at once, through the peer when needed (its dispatch lease keeps two replicas
   * from sending the same job).
   */
  allConnectedClusters(): string[] {
    const local = this.registry.allConnectedClusters();
    if (!this.directory) return local;
    return [...new Set([...local, ...this.directory.allClusters()])];
  }

  /** The worker behind the cluster's tunnels, here or on a live peer. */
  workerOf(clusterId: string): TunnelHolder | undefined {
    const local = this.registry.workerOf(clusterId);
    if (local || !this.directory) return local;
    const holder = this.directory.holders(clusterId)[0];
    return holder ? { clusterId, clusterName: holder.clusterName, tenantId: holder.tenantId } : undefined;
  }

  /** A cluster's tunnels changed, here or on a peer. */
  onChange(listener: (clusterId: string) => void): () => void {
    const local = this.registry.onChange(listener);
    const remote = this.directory?.onChange(listener);
    return () => {
      local();
      remote?.();
    };
  }

  /** Closes the sessions to peers (not the tunnels: the registry's close does). */
  close(): void {
    this.peers?.close();
  }
}
