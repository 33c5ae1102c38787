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

/**
 * The tenant's clusters and whom they serve, asked of the clusters subgraph (which owns them) as the
 * system and kept for `ttlMs`: routing consults it on every request, so a grant revoked or a cluster
 * unregistered takes effect within that time (the same as the gateway's credential cache).
 */
export class ClusterAccessDirectory {
  private readonly cache = new Map<string, { expires: number; clusters: Promise<Map<string, ClusterAccess>> }>();
  private readonly clustersSubgraph: InternalClient;

  constructor(
    private readonly options: { clustersUrl: () => string; tokens: InternalTokens; ttlMs?: number },
  ) {
    this.clustersSubgraph = createInternalClient({ subgraph: 'clusters', url: options.clustersUrl, tokens: options.tokens });
  }

  /** Every cluster of the tenant, by id. */
  clusters(tenantId: string): Promise<Map<string, ClusterAccess>> {
    const cached = this.cache.get(tenantId);
    if (cached && cached.expires > Date.now()) return cached.clusters;
    const clusters = this.fetch(tenantId);
    this.cache.set(tenantId, { expires: Date.now() + (this.options.ttlMs ?? 5_000), clusters });
    // A failed lookup is not kept: the next request asks again.
    clusters.catch(() => this.cache.delete(tenantId));
    return clusters;
  }

  /** The ids of the clusters the organization's projects may use. */
  async usableBy(tenantId: string, organizationId: string): Promise<Set<string>> {
    const usable = new Set<string>();
    for (const access of (await this.clusters(tenantId)).values()) if (servesOrganization(access, organizationId)) usable.add(access.clusterId);
    return usable;
  }

  private async fetch(tenantId: string): Promise<Map<string, ClusterAccess>> {
    const { clusterAccess } = await this.clustersSubgraph.request(asSystem(`cluster-access:${tenantId}`), ClusterAccessDocument, { tenantId });
    return new Map(clusterAccess.map((c) => [c.clusterId, c]));
  }
}
