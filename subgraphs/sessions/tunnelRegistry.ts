import http2, { type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Worker } from '../../lib/identity.js';
import type { Logger } from '../../lib/logging.js';
import { TUNNEL_CONNECTION_WINDOW, TUNNEL_H2_SETTINGS } from '../../lib/tunnel.js';

export type TunnelTransport = 'UPGRADE' | 'WEBSOCKET';

/** A live tunnel as GraphQL shows it. */
export interface TunnelInfo {
  agentId: string;
  clusterId: string;
  tenantId: string;
  transport: TunnelTransport;
  connectedAt: Date;
  lastHeartbeatAt: Date;
  heartbeatRttMs: number;
  activeStreams: number;
}

/** No agent of the cluster is connected (to this control-plane replica). */
export class NoTunnelError extends Error {
  override name = 'NoTunnelError';
  constructor(readonly clusterId: string) {
    super(`no agent of cluster ${clusterId} is connected`);
  }
}

/** What the user-facing proxies need of the tunnels: the registry, or peers.ts's router across replicas. */
/** The cluster behind a tunnel, as every replica knows it (peers.ts rebuilds it from the directory). */
export type TunnelHolder = Pick<Worker, 'clusterId' | 'clusterName' | 'tenantId'>;

export interface AgentTransport {
  request: TunnelRegistry['request'];
  workerOf(clusterId: string): TunnelHolder | undefined;
}

export interface TunnelRegistryOptions {
  logger: Logger;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  revalidateIntervalMs: number;
  /** Checks an agent's registration key again; null when it no longer authenticates. */
  revalidate(registrationKey: string): Promise<Worker | null>;
  /**
   * Called for each tunnel attached, with its HTTP/2 session (the reports channel polls on it:
   * reportPoller.ts) and its worker as last revalidated.
   */
  onTunnel?(tunnel: { session: ClientHttp2Session; worker(): Worker; agentId: string; logger: Logger }): void;
}

interface Tunnel {
  info: TunnelInfo;
  worker: Worker;
  registrationKey: string;
  session: ClientHttp2Session;
  transport: Duplex;
  timers: NodeJS.Timeout[];
}

/**
 * The control plane's side of the agent tunnels: one HTTP/2 client session per connected agent,
 * keyed by cluster. Requests to a cluster go to its least busy live tunnel. A session is destroyed
 * the moment its transport closes (prototypes §D: otherwise in-flight streams hang and the next
 * request crashes Node), when a heartbeat goes unanswered, or when the key stops authenticating.
 */
export class TunnelRegistry {
  private readonly byCluster = new Map<string, Set<Tunnel>>();
  private readonly listeners = new Set<(clusterId: string) => void>();
  private closed = false;

  constructor(private readonly options: TunnelRegistryOptions) {}

  /** Takes over an authenticated agent connection: starts the HTTP/2 client over it. */
  attach(transport: Duplex, worker: Worker, agentId: string, kind: TunnelTransport, registrationKey: string): void {
    if (this.closed) {
      transport.destroy();
      return;
    }
    const logger = this.options.logger.child({ clusterId: worker.clusterId, agentId });
    const session = http2.connect('http://agent.mariner.internal', {
      createConnection: () => transport,
      settings: TUNNEL_H2_SETTINGS,
      // Requests to one agent may be many (inference, log follows); refuse none on our side.
      peerMaxConcurrentStreams: 10_000,
    });
    const now = new Date();
    const tunnel: Tunnel = {
      info: {
        agentId,
        clusterId: worker.clusterId,
        tenantId: worker.tenantId,
        transport: kind,
        connectedAt: now,
        lastHeartbeatAt: now,
        heartbeatRttMs: 0,
        activeStreams: 0,
      },
      worker,
      registrationKey,
      session,
      transport,
      timers: [],
    };
    const drop = (reason: string) => {
      if (!this.remove(tunnel)) return;
      logger.info({ reason }, 'agent tunnel closed');
      for (const timer of tunnel.timers) clearInterval(timer);
      if (!session.destroyed) session.destroy(new Error(`tunnel closed: ${reason}`));
      if (!transport.destroyed) transport.destroy();
    };
    transport.once('close', () => drop('transport closed'));
    // An upgraded socket of the HTTP server allows half-open connections: the agent's FIN alone
    // would never close it, and its streams would hang until a heartbeat failed.
    transport.once('end', () => drop('agent closed the connection'));
    transport.once('error', (error) => drop(`transport error: ${error.message}`));
    session.once('close', () => drop('session closed'));
    // The agent is shutting down: no new requests here, but let those in flight finish; the
    // session closes itself after them (then 'close' above drops the rest).
    session.once('goaway', () => {
      if (this.remove(tunnel)) logger.info('agent tunnel draining (GOAWAY)');
      for (const timer of tunnel.timers) clearInterval(timer);
    });
    session.on('error', (error) => drop(`session error: ${error.message}`));
    session.once('connect', () => session.setLocalWindowSize(TUNNEL_CONNECTION_WINDOW));
    tunnel.timers.push(
      setInterval(() => this.heartbeat(tunnel, drop), this.options.heartbeatIntervalMs).unref(),
      setInterval(() => {
        this.options
          .revalidate(registrationKey)
          .then((current) => {
            if (!current || current.clusterId !== worker.clusterId) return drop('registration key no longer valid');
            // What the cluster serves may have changed: its reports go as it is now.
            tunnel.worker = current;
          })
          .catch((error: Error) => logger.warn({ err: error }, 'could not revalidate the registration key; keeping the tunnel'));
      }, this.options.revalidateIntervalMs).unref(),
    );
    let set = this.byCluster.get(worker.clusterId);
    if (!set) this.byCluster.set(worker.clusterId, (set = new Set()));
    set.add(tunnel);
    logger.info({ transport: kind }, 'agent tunnel connected');
    this.notify(worker.clusterId);
    this.options.onTunnel?.({ session, worker: () => tunnel.worker, agentId, logger });
  }

  private heartbeat(tunnel: Tunnel, drop: (reason: string) => void): void {
    if (tunnel.session.destroyed) return drop('session destroyed');
    const timeout = setTimeout(() => drop('heartbeat timed out'), this.options.heartbeatTimeoutMs).unref();
    try {
      tunnel.session.ping((error, rtt) => {
        clearTimeout(timeout);
        if (error) return drop(`heartbeat failed: ${error.message}`);
        tunnel.info.lastHeartbeatAt = new Date();
        tunnel.info.heartbeatRttMs = rtt;
      });
    } catch (error) {
      clearTimeout(timeout);
      drop(`heartbeat failed: ${(error as Error).message}`);
    }
  }

  private remove(tunnel: Tunnel): boolean {
    const set = this.byCluster.get(tunnel.info.clusterId);
    if (!set?.delete(tunnel)) return false;
    if (set.size === 0) this.byCluster.delete(tunnel.info.clusterId);
    this.notify(tunnel.info.clusterId);
    return true;
  }

  private notify(clusterId: string): void {
    for (const listener of this.listeners) listener(clusterId);
  }

  /** Called whenever a cluster's set of tunnels changes; returns an unsubscribe function. */
  onChange(listener: (clusterId: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The live tunnels of a cluster. */
  tunnels(clusterId: string): TunnelInfo[] {
    return [...(this.byCluster.get(clusterId) ?? [])].map((t) => ({ ...t.info, activeStreams: t.session.destroyed ? 0 : t.info.activeStreams }));
  }

  /** The tenant's clusters with at least one live tunnel. */
  connectedClusters(tenantId: string): string[] {
    return [...this.byCluster.entries()].filter(([, set]) => [...set].some((t) => t.worker.tenantId === tenantId)).map(([id]) => id);
  }

  /** Every cluster with at least one live tunnel (to this replica), of any tenant. */
  allConnectedClusters(): string[] {
    return [...this.byCluster.entries()].filter(([, set]) => set.size > 0).map(([id]) => id);
  }

  /** Whether the cluster has a live tunnel to this replica. */
  hasTunnel(clusterId: string): boolean {
    return [...(this.byCluster.get(clusterId) ?? [])].some((t) => !t.session.destroyed && !t.session.closed);
  }

  /** The worker (cluster and tenant) behind a cluster's tunnels, when any is connected. */
  workerOf(clusterId: string): Worker | undefined {
    const first = this.byCluster.get(clusterId)?.values().next().value as Tunnel | undefined;
    return first?.worker;
  }

  /**
   * Opens a request stream to an agent of the cluster: the live tunnel with the fewest requests in
   * flight. Throws NoTunnelError when none is connected. The caller writes the body and reads the
   * response; a tunnel that dies fails the stream with an error (never a hang).
   */
  request(clusterId: string, headers: OutgoingHttpHeaders, options: { endStream?: boolean } = {}): ClientHttp2Stream {
    const live = [...(this.byCluster.get(clusterId) ?? [])].filter((t) => !t.session.destroyed && !t.session.closed);
    if (live.length === 0) throw new NoTunnelError(clusterId);
    let best = live[0]!;
    for (const tunnel of live) if (tunnel.info.activeStreams < best.info.activeStreams) best = tunnel;
    const stream = best.session.request(headers, { endStream: options.endStream ?? false });
    best.info.activeStreams++;
    stream.once('close', () => best.info.activeStreams--);
    return stream;
  }

  /** Closes every tunnel (shutdown). Agents reconnect to another replica. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.byCluster.values()].flatMap((set) => [...set]);
    await Promise.all(
      all.map(
        (tunnel) =>
          new Promise<void>((resolve) => {
            for (const timer of tunnel.timers) clearInterval(timer);
            if (tunnel.transport.destroyed) return resolve();
            tunnel.transport.once('close', () => resolve());
            tunnel.session.destroy();
            tunnel.transport.destroy();
            setTimeout(resolve, 1000).unref();
          }),
      ),
    );
    this.byCluster.clear();
  }
}
