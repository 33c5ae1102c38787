import { ClusterAccessDocument } from './generated/clustersOperations.js';
import type { InternalTokens } from './identity.js';
import { asSystem, createInternalClient, type InternalClient } from './internalClient.js';

/**
 * Which organizations a cluster works for (README "Security model"; stricter than LLMariner, which
 * trusts every organization owner as a tenant admin). A cluster belongs either to the platform
 * (`organizationId` null: registered by a platform admin, shared with every organization or with the
 * ones granted) or to one organization (registered by its owner, used by its projects only).
 * Runtimes, model loads, jobs and notebooks of a project go only to clusters its organization may use,
 * and every report of a cluster's agent is checked against the same rule.
 */
export interface ClusterAccess {
  clusterId: string;
  /** The organization that owns the cluster; null for a platform cluster. */
  organizationId: string | null;
  /** A platform cluster every organization of the tenant may use. */
  sharedWithAllOrganizations: boolean;
  /** The organizations a platform cluster is granted to (besides `sharedWithAllOrganizations`). */
  organizationIds: string[];
}

/** Whether the projects of `organizationId` may use the cluster. */
export function servesOrganization(access: ClusterAccess, organizationId: string): boolean {
  if (access.organizationId !== null) return access.organizationId === organizationId;
  return access.sharedWithAllOrganizations || access.organizationIds.includes(organizationId);
}

/** A platform cluster (registered by a platform admin): trusted with the tenant's shared catalog (base-model loads). */
export function isPlatformCluster(access: ClusterAccess): boolean {
  return access.organizationId === null;
}

/** A tenant's clusters as one answer of the clusters subgraph, and the usable sets computed from it. */
interface Entry {
  /** When the question was asked. */
  askedAt: number;
  /** Until then the answer is served; past it, a request waits for a fresh one (and fails if that fails). */
  expires: number;
  /** From then on, a request that reads the entry starts a refresh in the background. */
  refreshAt: number;
  clusters: Promise<Map<string, ClusterAccess>>;
  /** `usableBy` per organization, computed once per answer (the answer never changes: a refresh makes a new entry). */
  usable: Map<string, Promise<ReadonlySet<string>>>;
  /** The refresh in flight, if any: one per entry. */
  refreshing: boolean;
}

/**
 * An answer that lacks a cluster a caller knows of is asked again, but not more often than this: a
 * report naming a cluster that no longer exists (it was just unregistered) must not make every request
 * wait for the clusters subgraph.
 */
const MIN_REASK_MS = 500;

/** The most organizations' usable sets kept per entry; past it they are computed again (a map read is all they save). */
const MAX_USABLE_PER_ENTRY = 10_000;

/**
 * The tenant's clusters and whom they serve, asked of the clusters subgraph (which owns them) as the
 * system and kept for `ttlMs` (5 s): routing consults it on every request, so a grant revoked or a
 * cluster unregistered takes effect within that time (the same as the gateway's credential cache).
 *
 * Stale-while-revalidate, within that bound: once an answer is past half its life, the request that
 * reads it starts a refresh in the background and is served the answer it has; the refresh, asked
 * later, replaces it. So a steady stream of requests never waits for the round trip, and no answer
 * older than `ttlMs` (from when it was asked) is ever used. A refresh that fails leaves the answer in
 * place until it expires; then a request asks again and waits, and when that fails too, the caller
 * fails closed (routing answers UNAVAILABLE), as without the early refresh. `ttlMs` 0 asks every time.
 */
export class ClusterAccessDirectory {
  private readonly cache = new Map<string, Entry>();
  private readonly clustersSubgraph: InternalClient;
  private readonly ttlMs: number;

  constructor(private readonly options: { clustersUrl: () => string; tokens: InternalTokens; ttlMs?: number }) {
    this.clustersSubgraph = createInternalClient({ subgraph: 'clusters', url: options.clustersUrl, tokens: options.tokens });
    this.ttlMs = options.ttlMs ?? 5_000;
  }

  /**
   * Every cluster of the tenant, by id. `knowing`: clusters the caller has just seen (a runtime's
   * report, a connected agent): when the answer lacks one, it predates the cluster's registration, and
   * it is asked again at once (at most every MIN_REASK_MS) rather than hiding a new cluster for `ttlMs`.
   */
  async clusters(tenantId: string, knowing?: Iterable<string>): Promise<Map<string, ClusterAccess>> {
    return (await this.knowingEntry(tenantId, knowing)).clusters;
  }

  /**
   * The ids of the clusters the organization's projects may use (`knowing` as for `clusters`). Computed
   * once per answer and organization: the same set is returned to every request until the answer is
   * replaced, so callers must not change it.
   */
  async usableBy(tenantId: string, organizationId: string, knowing?: Iterable<string>): Promise<ReadonlySet<string>> {
    const entry = await this.knowingEntry(tenantId, knowing);
    let usable = entry.usable.get(organizationId);
    if (!usable) {
      usable = entry.clusters.then((clusters) => {
        const ids = new Set<string>();
        for (const access of clusters.values()) if (servesOrganization(access, organizationId)) ids.add(access.clusterId);
        return ids;
      });
      // A failed answer is not kept (see `entry`), and neither are its sets.
      usable.catch(() => undefined);
      if (entry.usable.size >= MAX_USABLE_PER_ENTRY) entry.usable.clear();
      entry.usable.set(organizationId, usable);
    }
    return usable;
  }

  /** The tenant's entry (see `entry`), asked again when it lacks a cluster the caller knows of. */
  private async knowingEntry(tenantId: string, knowing: Iterable<string> | undefined): Promise<Entry> {
    const entry = this.entry(tenantId);
    if (!knowing) return entry;
    const clusters = await entry.clusters;
    for (const clusterId of knowing) {
      if (clusters.has(clusterId)) continue;
      if (Date.now() - entry.askedAt < MIN_REASK_MS || this.cache.get(tenantId) !== entry) return this.cache.get(tenantId) ?? entry;
      const next = this.ask(tenantId);
      this.cache.set(tenantId, next);
      next.clusters.catch(() => {
        if (this.cache.get(tenantId) === next) this.cache.delete(tenantId);
      });
      await next.clusters;
      return next;
    }
    return entry;
  }

  /** The tenant's entry to serve now: the cached one while it lasts (refreshed early, see the class), else a new one. */
  private entry(tenantId: string): Entry {
    const now = Date.now();
    const cached = this.cache.get(tenantId);
    if (cached && cached.expires > now) {
      if (now >= cached.refreshAt && !cached.refreshing) this.refresh(tenantId, cached);
      return cached;
    }
    const entry = this.ask(tenantId);
    this.cache.set(tenantId, entry);
    // A failed lookup is not kept: the next request asks again.
    entry.clusters.catch(() => {
      if (this.cache.get(tenantId) === entry) this.cache.delete(tenantId);
    });
    return entry;
  }

  /** A new entry, its lifetime counted from now (when the question is asked, not when it is answered). */
  private ask(tenantId: string): Entry {
    const now = Date.now();
    return { askedAt: now, expires: now + this.ttlMs, refreshAt: now + this.ttlMs / 2, clusters: this.fetch(tenantId), usable: new Map(), refreshing: false };
  }

  /** Asks again in the background; the answer replaces `stale` only if it is still the tenant's entry. */
  private refresh(tenantId: string, stale: Entry): void {
    stale.refreshing = true;
    const next = this.ask(tenantId);
    next.clusters.then(
      () => {
        if (this.cache.get(tenantId) === stale) this.cache.set(tenantId, next);
      },
      () => {
        // Kept until it expires; the next request past `refreshAt` may try again.
        stale.refreshing = false;
      },
    );
  }

  private async fetch(tenantId: string): Promise<Map<string, ClusterAccess>> {
    const { clusterAccess } = await this.clustersSubgraph.request(asSystem(`cluster-access:${tenantId}`), ClusterAccessDocument, { tenantId });
    return new Map(clusterAccess.map((c) => [c.clusterId, c]));
  }
}
