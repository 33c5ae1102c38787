import type { Logger } from '../../lib/logging.js';
import type { PubSub } from '../../lib/pubsub.js';
import { RUNTIMES_CHANNEL } from './channels.js';
import type { RuntimeRow, RuntimeStore } from './store.js';

/** How the snapshots are kept; every field has its default in `readyRuntimeDefaults`. */
export interface ReadyRuntimeOptions {
  /** A runtime report older than this is not routed to (config `inference.runtimeFreshSeconds`). */
  freshSeconds: number;
  /** A snapshot older than this is read again in the background while it keeps serving (the backstop for a lost announcement). */
  refreshAfterMs?: number;
  /** A snapshot older than this is not served: the request waits for a new read (a tenant idle for a while). */
  waitAfterMs?: number;
  /** A tenant whose snapshot went unused this long is dropped when its next report is announced, not read again. */
  idleAfterMs?: number;
}

/** The defaults, in one place: about one read a second per busy tenant, none for idle ones. */
export function readyRuntimeDefaults(options: ReadyRuntimeOptions): Required<ReadyRuntimeOptions> {
  return { refreshAfterMs: 1_000, waitAfterMs: 5_000, idleAfterMs: 60_000, ...options };
}

/** One read of a tenant's ready runtimes, by model. */
interface Snapshot {
  byModel: Map<string, RuntimeRow[]>;
  /** Local time the read was started: its age is counted from then, so it errs on the old side. */
  readAt: number;
  /** The tenant's announcement count when the read was started (see `ReadyRuntimes.announced`). */
  version: number;
  lastUsed: number;
}

/**
 * The tenant's ready runtimes in memory, for routing (DESIGN §3 "Inference": a request pays a map
 * read, not a query). A snapshot per tenant holds its runtime rows with a ready replica, read again:
 * - when a report of the tenant is announced on RUNTIMES_CHANNEL (reportRuntimes publishes after
 *   storing; LISTEN/NOTIFY carries it to every replica): the next request waits for that read, which
 *   starts at once, so a request after the announcement never sees the state before the report;
 * - in the background once the snapshot is a second old (`refreshAfterMs`), so a lost announcement
 *   costs about a second; a snapshot past `waitAfterMs` (an idle tenant) is not served at all;
 * - every `maxAgeMs` a caller asks for (the wait for a runtime of a model scaled to zero: 250 ms).
 * Freshness (`updated_at` within `freshSeconds`) is judged at each request against the database's
 * clock, estimated from the last read (the reports are stamped by the database, which may not agree
 * with this host's clock), so a runtime whose agent stopped reporting drops out on time.
 */
export class ReadyRuntimes {
  private readonly options: Required<ReadyRuntimeOptions>;
  private readonly snapshots = new Map<string, Snapshot>();
  private readonly reads = new Map<string, { version: number; snapshot: Promise<Snapshot> }>();
  /** Announcements heard per tenant: a snapshot read before the last one is outdated. */
  private readonly versions = new Map<string, number>();
  /** The database's clock minus this host's, as of the last read that returned rows. */
  private clockOffsetMs = 0;
  /** Who waits for the next report of a tenant (refusedModels.ts). */
  private readonly watchers = new Map<string, Set<() => void>>();

  constructor(
    private readonly store: Pick<RuntimeStore, 'readyForTenant'>,
    private readonly logger: Logger,
    options: ReadyRuntimeOptions,
  ) {
    this.options = readyRuntimeDefaults(options);
  }

  /** Listens to the tenants' runtime announcements; returns the unsubscribe. */
  listen(pubsub: PubSub): Promise<() => Promise<void>> {
    return pubsub.subscribe(RUNTIMES_CHANNEL, (tenantId) => this.announced(tenantId));
  }

  /**
   * The model's runtimes with a ready replica, reported within `freshSeconds`, fewest requests in
   * flight first; from a snapshot no older than `maxAgeMs` when given (else see the class).
   */
  async ready(tenantId: string, modelId: string, maxAgeMs?: number): Promise<RuntimeRow[]> {
    const snapshot = await this.snapshotOf(tenantId, maxAgeMs);
    const rows = snapshot.byModel.get(modelId);
    if (!rows) return [];
    const oldest = Date.now() + this.clockOffsetMs - this.options.freshSeconds * 1000;
    return rows.filter((row) => row.updated_at.getTime() > oldest);
  }

  /** A report of the tenant was stored (by any replica): what is in memory is outdated. */
  announced(tenantId: string): void {
    this.versions.set(tenantId, (this.versions.get(tenantId) ?? 0) + 1);
    for (const watcher of this.watchers.get(tenantId) ?? []) watcher();
    const snapshot = this.snapshots.get(tenantId);
    if (!snapshot) return;
    if (Date.now() - snapshot.lastUsed > this.options.idleAfterMs) {
      this.snapshots.delete(tenantId);
      return;
    }
    // Read now, so the next request most likely finds it done.
    this.readInBackground(tenantId);
  }

  /** Calls `listener` at each report of the tenant announced from now on; returns the stop. */
  onAnnounced(tenantId: string, listener: () => void): () => void {
    let set = this.watchers.get(tenantId);
    if (!set) this.watchers.set(tenantId, (set = new Set()));
    const entry = () => listener();
    set.add(entry);
    return () => {
      set.delete(entry);
      if (set.size === 0 && this.watchers.get(tenantId) === set) this.watchers.delete(tenantId);
    };
  }

  private snapshotOf(tenantId: string, maxAgeMs?: number): Promise<Snapshot> | Snapshot {
    const now = Date.now();
    const snapshot = this.snapshots.get(tenantId);
    if (snapshot && snapshot.version === (this.versions.get(tenantId) ?? 0)) {
      const age = now - snapshot.readAt;
      if (maxAgeMs === undefined || age <= maxAgeMs) {
        snapshot.lastUsed = now;
        if (age > this.options.waitAfterMs) return this.read(tenantId);
        if (age > this.options.refreshAfterMs) this.readInBackground(tenantId);
        return snapshot;
      }
    }
    return this.read(tenantId);
  }

  private readInBackground(tenantId: string): void {
    this.read(tenantId).catch((error: Error) => this.logger.warn({ err: error.message, tenantId }, 'ready runtimes could not be read; serving the last read'));
  }

  /** A read of the tenant's snapshot started since its last announcement: the one in flight, or a new one. */
  private read(tenantId: string): Promise<Snapshot> {
    const version = this.versions.get(tenantId) ?? 0;
    const inFlight = this.reads.get(tenantId);
    if (inFlight && inFlight.version === version) return inFlight.snapshot;
    const readAt = Date.now();
    const snapshot = this.store.readyForTenant(tenantId).then(({ rows, now }) => {
      // The database's `now()` was taken between the start and the end of the query: the midpoint.
      if (now) this.clockOffsetMs = now.getTime() - (readAt + Date.now()) / 2;
      const byModel = new Map<string, RuntimeRow[]>();
      for (const row of rows) {
        const list = byModel.get(row.model_id);
        if (list) list.push(row);
        else byModel.set(row.model_id, [row]);
      }
      const read: Snapshot = { byModel, readAt, version, lastUsed: Date.now() };
      const current = this.snapshots.get(tenantId);
      // Reads may finish out of order: the one started last stays.
      if (!current || current.readAt <= readAt) this.snapshots.set(tenantId, read);
      return read;
    });
    const entry = { version, snapshot };
    this.reads.set(tenantId, entry);
    const done = () => {
      if (this.reads.get(tenantId) === entry) this.reads.delete(tenantId);
    };
    snapshot.then(done, done);
    return snapshot;
  }
}
