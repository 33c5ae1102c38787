import type { Knex } from '../../lib/db.js';
import type { Worker } from '../../lib/identity.js';
import type { Logger } from '../../lib/logging.js';
import type { PubSub } from '../../lib/pubsub.js';
import type { TunnelRegistry } from './tunnelRegistry.js';

/** The pub/sub channel on which a replica announces that its rows changed (payload: its replica id). */
export const PEER_CHANNEL = 'sessions_cluster_tunnels';

/** A cluster's tunnels on a sessions replica (another one, for a replica's own directory), as its row says. */
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

/** The sessions replica a directory writes the rows of: its own tunnels, and where peers reach it. */
export interface DirectoryReplica {
  registry: TunnelRegistry;
  replicaId: string;
  /** host:port where peers reach this replica's peer endpoint. */
  peerAddress: string;
}

export interface TunnelDirectoryOptions {
  knex: Knex;
  schema: string;
  pubsub: PubSub;
  /**
   * A sessions replica's directory: it writes this replica's rows and reads the others'. Without it
   * the directory only reads, every replica's rows (the inference and jobs processes: remoteTunnels.ts).
   */
  replica?: DirectoryReplica;
  /**
   * How often the sessions replicas refresh their rows (MARINER_SESSIONS_PEER_HEARTBEAT_MS, the same
   * setting everywhere), and this directory writes or re-reads; rows older than 3 of them are stale.
   */
  heartbeatMs: number;
  logger: Logger;
}

/**
 * The table of which replica holds which cluster's tunnels (`<schema>.cluster_tunnels`), and an
 * in-memory copy of the other replicas' live rows so that lookups are synchronous. A replica's rows are
 * written when its tunnels change and on each heartbeat; a change is announced on PEER_CHANNEL so the
 * others (and the readers) re-read at once; on a clean stop its rows are deleted. A reader (no
 * `replica`) re-reads on each announcement and each heartbeat, so a dead replica's rows age out.
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
    const { replica, logger } = this.options;
    const reread = () => this.refresh().catch((error: Error) => logger.warn({ err: error }, 'could not read the tunnel directory'));
    this.unsubscribe = await this.options.pubsub.subscribe(PEER_CHANNEL, (replicaId) => {
      if (replicaId !== replica?.replicaId) void reread();
    });
    if (!replica) {
      // A reader may start before the sessions component created the table: it reads again on the next beat.
      await reread();
      this.timer = setInterval(() => void reread(), this.options.heartbeatMs).unref();
      return;
    }
    this.stopListening = replica.registry.onChange(() => this.sync());
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
    if (!this.options.replica) return;
    const { registry, replicaId, peerAddress } = this.options.replica;
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
      await table()
        .where('updated_at', '<', knex.raw(`now() - make_interval(secs => ?)`, [(this.staleMs * 10) / 1000]))
        .delete();
    });
    this.written = signature;
    if (changed) await this.options.pubsub.publish(PEER_CHANNEL, replicaId);
  }

  /** Re-reads the other replicas' live rows (a reader: every replica's). */
  async refresh(): Promise<void> {
    if (this.closed) return;
    const own = this.options.replica?.replicaId;
    const rows: HoldingRow[] = await this.table
      .modify((query) => (own === undefined ? query : query.whereNot({ replica_id: own })))
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
    const { replica } = this.options;
    if (!replica) return void this.held.clear();
    try {
      await this.table.where({ replica_id: replica.replicaId }).delete();
      await this.options.pubsub.publish(PEER_CHANNEL, replica.replicaId);
    } catch (error) {
      this.options.logger.warn({ err: error }, 'could not remove this replica from the tunnel directory; its rows expire');
    }
    this.held.clear();
  }
}
