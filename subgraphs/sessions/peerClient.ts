import http2, { type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import { TUNNEL_CONNECTION_WINDOW, TUNNEL_H2_SETTINGS } from '../../lib/tunnel.js';
import { PEER_CLUSTER_HEADER, PEER_TOKEN_HEADER, type PeerTokens } from './peerTokens.js';
import type { TunnelDirectory } from './tunnelDirectory.js';
import { NoTunnelError } from './tunnelRegistry.js';

/**
 * The calling side of the peer protocol (peers.ts): a request for a cluster goes to the peer endpoint
 * of a live sessions replica that holds its tunnels (the one with the most, as the directory says),
 * with a peer token for that cluster and that very request. One HTTP/2 session per replica, cached and
 * opened again when lost. Used by a sessions replica for the clusters held by another one
 * (ClusterTransportRouter) and by the inference and jobs processes for every cluster (remoteTunnels.ts).
 */
export class PeerClient {
  private readonly sessions = new Map<string, ClientHttp2Session>();

  constructor(
    private readonly directory: TunnelDirectory,
    private readonly tokens: PeerTokens,
  ) {}

  /**
   * Opens the stream, as TunnelRegistry.request does: NoTunnelError when no live replica holds the
   * cluster; a replica or tunnel gone makes the stream fail (no local tunnel there: REFUSED_STREAM
   * before any response), so the caller tries another runtime.
   */
  request(clusterId: string, headers: OutgoingHttpHeaders, options: { endStream?: boolean } = {}): ClientHttp2Stream {
    const holders = this.directory.holders(clusterId);
    if (holders.length === 0) throw new NoTunnelError(clusterId);
    let best = holders[0]!;
    for (const holder of holders) if (holder.tunnels > best.tunnels) best = holder;
    return this.sessionTo(best.peerAddress).request(
      { ...headers, [PEER_CLUSTER_HEADER]: clusterId, [PEER_TOKEN_HEADER]: this.tokens.mint(clusterId, headers) },
      { endStream: options.endStream ?? false },
    );
  }

  private sessionTo(address: string): ClientHttp2Session {
    const cached = this.sessions.get(address);
    if (cached && !cached.closed && !cached.destroyed) return cached;
    const session = http2.connect(`http://${address}`, { settings: TUNNEL_H2_SETTINGS, peerMaxConcurrentStreams: 10_000 });
    const forget = () => {
      if (this.sessions.get(address) === session) this.sessions.delete(address);
    };
    session.on('error', forget);
    session.once('close', forget);
    session.once('goaway', forget);
    session.once('connect', () => session.setLocalWindowSize(TUNNEL_CONNECTION_WINDOW));
    // Idle peer sessions never keep the process alive.
    session.unref();
    this.sessions.set(address, session);
    return session;
  }

  /** Closes the sessions to the replicas (their streams fail). */
  close(): void {
    for (const session of this.sessions.values()) session.destroy();
    this.sessions.clear();
  }
}
