import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import http2, {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type Http2Server,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Knex } from '../../lib/db.js';
import type { Worker } from '../../lib/identity.js';
import type { Logger } from '../../lib/logging.js';
import type { PubSub } from '../../lib/pubsub.js';
import { TUNNEL_CONNECTION_WINDOW, TUNNEL_H2_SETTINGS, UPGRADE_HEADER, UPGRADE_HEADERS_HEADER, UPGRADE_METHOD_HEADER } from '../../lib/tunnel.js';
import { NoTunnelError, type TunnelHolder, type TunnelRegistry } from './tunnelRegistry.js';

/**
 * Several sessions replicas (LLMariner's task exchange between inference-manager-server replicas,
 * our way): an agent's tunnels end on the replica it dialed; every replica knows from a table which
 * replica holds which cluster (TunnelDirectory), and a request for a cluster held elsewhere goes to
 * that replica's peer endpoint (h2c, startPeerServer), which relays it to its local tunnel.
 */

/** The cluster a peer request is for. */
export const PEER_CLUSTER_HEADER = 'x-mariner-peer-cluster';
/** The HMAC token that authenticates a peer request (peerTokens). */
export const PEER_TOKEN_HEADER = 'x-mariner-peer-token';
/** The pub/sub channel on which a replica announces that its rows changed (payload: its replica id). */
export const PEER_CHANNEL = 'sessions_cluster_tunnels';

const PEER_TOKEN_TTL_MS = 60_000;
/** Tokens are accepted up to this far in the future (clock skew between replicas). */
const PEER_TOKEN_SKEW_MS = 60_000;

/**
 * What a peer token is bound to: the cluster and the request as the agent will run it, its method and
 * path, and for an upgrade the method and headers inside (lib/tunnel.ts), which name what runs.
 */
function peerRequestOf(headers: IncomingHttpHeaders | OutgoingHttpHeaders): string[] {
  const text = (name: string) => (headers[name] === undefined ? '' : String(headers[name]));
  return [String(headers[':method'] ?? 'GET'), text(':path'), text(UPGRADE_HEADER), text(UPGRADE_METHOD_HEADER), text(UPGRADE_HEADERS_HEADER)];
}

/**
 * Tokens for peer requests: `v2.<expiry ms>.<nonce>.<HMAC-SHA256>`, under a key derived from the internal
 * token secret, so only replicas sharing it can call each other. The MAC covers the cluster, the expiry,
 * a random nonce and the request (peerRequestOf): a token captured on the pod network cannot be used for
 * another cluster, method or path, and the endpoint takes each nonce once, so it cannot be replayed for
 * the same request either. Synchronous, so `request()` stays synchronous.
 */
export function peerTokens(secret: string) {
  const key = createHmac('sha256', secret).update('mariner-sessions-peer-v2').digest();
  const mac = (clusterId: string, expires: number, nonce: string, request: string[]) =>
    createHmac('sha256', key)
      .update(JSON.stringify(['v2', clusterId, expires, nonce, ...request]))
      .digest();
  /** Nonces taken, with their token's expiry; swept as they expire. */
  const used = new Map<string, number>();
  let swept = 0;
  return {
    /** A token for one request (`headers`: its `:method`, `:path` and upgrade headers) to a cluster. */
    mint(clusterId: string, headers: OutgoingHttpHeaders, now = Date.now()): string {
      const expires = now + PEER_TOKEN_TTL_MS;
      const nonce = randomBytes(12).toString('base64url');
      return `v2.${expires}.${nonce}.${mac(clusterId, expires, nonce, peerRequestOf(headers)).toString('base64url')}`;
    },
    /** Whether the token was minted for this cluster and request, has not expired, and was not used before. */
    verify(clusterId: string, headers: IncomingHttpHeaders, token: unknown, now = Date.now()): boolean {
      if (typeof token !== 'string') return false;
      const [version, expiresRaw, nonce, signature, ...extra] = token.split('.');
      if (version !== 'v2' || !expiresRaw || !nonce || !signature || extra.length > 0 || !/^\d{1,15}$/.test(expiresRaw)) return false;
      const expires = Number(expiresRaw);
      if (expires <= now || expires > now + PEER_TOKEN_TTL_MS + PEER_TOKEN_SKEW_MS) return false;
      const given = Buffer.from(signature, 'base64url');
      const expected = mac(clusterId, expires, nonce, peerRequestOf(headers));
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return false;
      if (now - swept > PEER_TOKEN_TTL_MS) {
        for (const [seen, until] of used) if (until <= now) used.delete(seen);
        swept = now;
      }
      if (used.has(nonce)) return false;
      used.set(nonce, expires);
      return true;
    },
  };
}
export type PeerTokens = ReturnType<typeof peerTokens>;

/** A cluster's tunnels on another replica, as its row says. */
export interface PeerHolding {
  clusterId: string;
  tenantId: string;
  clusterName: string;
  replicaId: string;
  peerAddress: string;
  tunnels: number;
}

interface HoldingRow {
  cluster_id: string;
  tenant_id: string;
  cluster_name: string;
  replica_id: string;
  peer_address: string;
  tunnels: number;
}

export interface TunnelDirectoryOptions {
  knex: Knex;
  schema: string;
  pubsub: PubSub;
  registry: TunnelRegistry;
  replicaId: string;
  /** host:port where peers reach this replica's peer endpoint. */
  peerAddress: string;
  /** How often this replica's rows are refreshed (and peers' re-read); rows older than 3 of them are stale. */
  heartbeatMs: number;
  logger: Logger;
}

/**
 * The table of which replica holds which cluster's tunnels (`<schema>.cluster_tunnels`), and an
 * in-memory copy of the other replicas' live rows so that lookups are synchronous. Rows are written
 * when this replica's tunnels change and on each heartbeat; a change is announced on PEER_CHANNEL so
 * peers re-read at once; on a clean stop this replica's rows are deleted.
 */
export class TunnelDirectory {
  private held = new Map<string, PeerHolding[]>();
  private readonly listeners = new Set<(clusterId: string) => void>();
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => Promise<void>) | undefined;
  private stopListening: (() => void) | undefined;
  private syncing: Promise<void> = Promise.resolve();
  private syncQueued = false;
  private written = '';
  private closed = false;

  constructor(private readonly options: TunnelDirectoryOptions) {}

  private get table() {
    return this.options.knex.withSchema(this.options.schema).table('cluster_tunnels');
  }

  private get staleMs(): number {
    return this.options.heartbeatMs * 3;
  }

  async start(): Promise<void> {
    this.unsubscribe = await this.options.pubsub.subscribe(PEER_CHANNEL, (replicaId) => {
      if (replicaId !== this.options.replicaId) this.refresh().catch((error: Error) => this.options.logger.warn({ err: error }, 'could not read the tunnel directory'));
    });
    this.stopListening = this.options.registry.onChange(() => this.sync());
    this.sync();
    await this.syncing;
    this.timer = setInterval(() => this.sync(true), this.options.heartbeatMs).unref();
  }

  /** Writes this replica's rows (coalesced: one write at a time, at most one queued), then re-reads peers'. */
  private sync(heartbeat = false): void {
    if (this.closed) return;
    if (heartbeat) this.written = '';
    if (this.syncQueued) return;
    this.syncQueued = true;
    this.syncing = this.syncing
      .then(async () => {
        this.syncQueued = false;
        if (this.closed) return;
        await this.write();
        await this.refresh();
      })
      .catch((error: Error) => this.options.logger.warn({ err: error }, 'could not update the tunnel directory'));
  }

  private async write(): Promise<void> {
    const { registry, replicaId, peerAddress } = this.options;
    const rows = registry
      .allConnectedClusters()
      .map((clusterId) => ({ clusterId, worker: registry.workerOf(clusterId), tunnels: registry.tunnels(clusterId).length }))
      .filter((r): r is { clusterId: string; worker: Worker; tunnels: number } => r.worker !== undefined && r.tunnels > 0)
      .map(({ clusterId, worker, tunnels }) => ({
        cluster_id: clusterId,
        replica_id: replicaId,
        tenant_id: worker.tenantId,
        cluster_name: worker.clusterName,
        peer_address: peerAddress,
        tunnels,
      }));
    const signature = JSON.stringify(rows.map((r) => [r.cluster_id, r.tunnels]).sort());
    const changed = signature !== this.written;
    const knex = this.options.knex;
    await knex.transaction(async (trx) => {
      const table = () => trx.withSchema(this.options.schema).table('cluster_tunnels');
      if (rows.length > 0) {
        await table()
          .insert(rows.map((r) => ({ ...r, updated_at: knex.fn.now() })))
          .onConflict(['cluster_id', 'replica_id'])
          .merge(['tenant_id', 'cluster_name', 'peer_address', 'tunnels', 'updated_at']);
      }
      await table()
        .where({ replica_id: replicaId })
        .whereNotIn(
          'cluster_id',
          rows.map((r) => r.cluster_id),
        )
        .delete();
      // Rows of replicas that died long ago (their clean stop would have deleted them).
      await table().where('updated_at', '<', knex.raw(`now() - make_interval(secs => ?)`, [(this.staleMs * 10) / 1000])).delete();
    });
    this.written = signature;
    if (changed) await this.options.pubsub.publish(PEER_CHANNEL, replicaId);
  }

  /** Re-reads the other replicas' live rows. */
  async refresh(): Promise<void> {
    if (this.closed) return;
    const rows: HoldingRow[] = await this.table
      .whereNot({ replica_id: this.options.replicaId })
      .where('updated_at', '>', this.options.knex.raw(`now() - make_interval(secs => ?)`, [this.staleMs / 1000]))
      .select('cluster_id', 'tenant_id', 'cluster_name', 'replica_id', 'peer_address', 'tunnels');
    const next = new Map<string, PeerHolding[]>();
    for (const row of rows) {
      const holding: PeerHolding = {
        clusterId: row.cluster_id,
        tenantId: row.tenant_id,
        clusterName: row.cluster_name,
        replicaId: row.replica_id,
        peerAddress: row.peer_address,
        tunnels: Number(row.tunnels),
      };
      const list = next.get(holding.clusterId);
      if (list) list.push(holding);
      else next.set(holding.clusterId, [holding]);
    }
    const before = this.held;
    this.held = next;
    const key = (list: PeerHolding[] | undefined) => JSON.stringify((list ?? []).map((h) => [h.replicaId, h.peerAddress, h.tunnels]).sort());
    for (const clusterId of new Set([...before.keys(), ...next.keys()])) {
      if (key(before.get(clusterId)) !== key(next.get(clusterId))) for (const listener of this.listeners) listener(clusterId);
    }
  }

  /** The live replicas (other than this one) holding tunnels of the cluster. */
  holders(clusterId: string): PeerHolding[] {
    return this.held.get(clusterId) ?? [];
  }

  /** Clusters of the tenant held by other live replicas. */
  clustersOf(tenantId: string): string[] {
    return [...this.held.entries()].filter(([, list]) => list.some((h) => h.tenantId === tenantId)).map(([id]) => id);
  }

  /** Every cluster held by another live replica. */
  allClusters(): string[] {
    return [...this.held.keys()];
  }

  onChange(listener: (clusterId: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stops refreshing and deletes this replica's rows, so peers stop sending here at once. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.stopListening?.();
    await this.syncing;
    await this.unsubscribe?.().catch(() => undefined);
    try {
      await this.table.where({ replica_id: this.options.replicaId }).delete();
      await this.options.pubsub.publish(PEER_CHANNEL, this.options.replicaId);
    } catch (error) {
      this.options.logger.warn({ err: error }, 'could not remove this replica from the tunnel directory; its rows expire');
    }
    this.held.clear();
  }
}

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
  const server: Http2Server = http2.createServer({ settings: TUNNEL_H2_SETTINGS, peerMaxConcurrentStreams: 10_000 });
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
export class ClusterTransportRouter {
  private directory: TunnelDirectory | undefined;
  private tokens: PeerTokens | undefined;
  private readonly peers = new Map<string, ClientHttp2Session>();

  constructor(readonly registry: TunnelRegistry) {}

  /** Turns forwarding on (the directory is started by the caller). */
  usePeers(directory: TunnelDirectory, tokens: PeerTokens): void {
    this.directory = directory;
    this.tokens = tokens;
  }

  request(clusterId: string, headers: OutgoingHttpHeaders, options: { endStream?: boolean } = {}): ClientHttp2Stream {
    const directory = this.directory;
    if (!directory || !this.tokens || this.registry.hasTunnel(clusterId)) return this.registry.request(clusterId, headers, options);
    const holders = directory.holders(clusterId);
    if (holders.length === 0) throw new NoTunnelError(clusterId);
    let best = holders[0]!;
    for (const holder of holders) if (holder.tunnels > best.tunnels) best = holder;
    const session = this.sessionTo(best.peerAddress);
    return session.request(
      { ...headers, [PEER_CLUSTER_HEADER]: clusterId, [PEER_TOKEN_HEADER]: this.tokens.mint(clusterId, headers) },
      { endStream: options.endStream ?? false },
    );
  }

  private sessionTo(address: string): ClientHttp2Session {
    const cached = this.peers.get(address);
    if (cached && !cached.closed && !cached.destroyed) return cached;
    const session = http2.connect(`http://${address}`, { settings: TUNNEL_H2_SETTINGS, peerMaxConcurrentStreams: 10_000 });
    const forget = () => {
      if (this.peers.get(address) === session) this.peers.delete(address);
    };
    session.on('error', forget);
    session.once('close', forget);
    session.once('goaway', forget);
    session.once('connect', () => session.setLocalWindowSize(TUNNEL_CONNECTION_WINDOW));
    // Idle peer sessions never keep the process alive.
    session.unref();
    this.peers.set(address, session);
    return session;
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
    for (const session of this.peers.values()) session.destroy();
    this.peers.clear();
  }
}
