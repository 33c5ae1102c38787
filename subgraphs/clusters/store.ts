import type { ClusterAccess } from '../../lib/clusterAccess.js';
import { isUniqueViolation, type Knex } from '../../lib/db.js';
import { hashSecret, newId, newRegistrationKey } from '../../lib/ids.js';
import { paginate, type Page, type PageArgs } from '../../lib/pagination.js';

export const SCHEMA = 'clusters';

export type GpuWorkload = 'RUNTIME' | 'JOB' | 'NOTEBOOK' | 'OTHER';

/** What an agent reports about its cluster, with the totals computed when it is stored. */
export interface ClusterStatusValue {
  nodes: {
    name: string;
    ready: boolean;
    gpuCapacity: number;
    gpuAllocatable: number;
    gpuProduct: string | null;
    /** Absent in reports of older agents. */
    gpuMemoryBytes?: number | null;
    cpuCores: number;
    memoryBytes: number;
  }[];
  gpuCapacity: number;
  gpuAllocated: number;
  gpuPods: { namespace: string; name: string; gpus: number; phase: string; nodeName?: string | null; workload?: GpuWorkload }[];
  provisionableResources: { instanceFamily: string | null; instanceType: string | null }[];
}

/** A stored report as the schema's ClusterStatus (staleness is computed when read). */
export type ClusterStatusModel = ClusterStatusValue & { updatedAt: Date };

export interface ClusterConfigValue {
  timeSlicingGpus: number | null;
}

export interface ClusterRow {
  id: string;
  tenant_id: string;
  name: string;
  is_default: boolean;
  status: ClusterStatusValue | null;
  status_updated_at: Date | null;
  config: ClusterConfigValue | null;
  config_updated_at: Date | null;
  /** The owning organization; null for a platform cluster. */
  organization_id: string | null;
  shared_with_all_organizations: boolean;
  granted_organization_ids: string[];
  created_at: Date;
}

/** Who looks at clusters: a platform admin sees the tenant's all; anyone else those its organization may use. */
export type ClusterViewer = { platformAdmin: true } | { platformAdmin: false; organizationId: string };

/** Whom a new cluster works for: its owning organization, or the organizations a platform cluster serves. */
export interface ClusterOwner {
  organizationId: string | null;
  sharedWithAllOrganizations: boolean;
  organizationIds: string[];
}

export interface ComponentStatusRow {
  cluster_id: string;
  name: string;
  is_healthy: boolean;
  message: string;
  updated_at: Date;
}

/** The cluster's configuration with when it was set, as the schema's ClusterConfig. */
export interface ClusterConfigRow extends ClusterConfigValue {
  updatedAt: Date;
}

const COLUMNS = [
  'id',
  'tenant_id',
  'name',
  'is_default',
  'status',
  'status_updated_at',
  'config',
  'config_updated_at',
  'organization_id',
  'shared_with_all_organizations',
  'granted_organization_ids',
  'created_at',
];

/** Whom a stored cluster works for (lib/clusterAccess.ts). */
export function accessOf(row: ClusterRow): ClusterAccess {
  return {
    clusterId: row.id,
    organizationId: row.organization_id,
    sharedWithAllOrganizations: row.shared_with_all_organizations,
    organizationIds: row.granted_organization_ids,
  };
}

/** All SQL of the clusters subgraph. Clusters belong to a tenant; every read filters by it. */
export class ClusterStore {
  constructor(private readonly knex: Knex) {}

  /** The tenant's clusters; with a viewer, only those it may see (README "Security model"). */
  private clusters(tenantId: string, viewer?: ClusterViewer): Knex.QueryBuilder {
    const query = this.knex
      .withSchema(SCHEMA)
      .table('clusters')
      .where('clusters.tenant_id', tenantId)
      .select(COLUMNS.map((c) => `clusters.${c}`));
    if (viewer && !viewer.platformAdmin) query.where((q) => usableBy(q, viewer.organizationId));
    return query;
  }

  list(tenantId: string, viewer: ClusterViewer, page: PageArgs): Promise<Page<ClusterRow>> {
    return paginate<ClusterRow>(() => this.clusters(tenantId, viewer), 'clusters', page);
  }

  /** Every cluster of the tenant, or those an organization may use (schedulers weigh them all; a tenant has few). */
  async all(tenantId: string, organizationId?: string): Promise<ClusterRow[]> {
    return this.clusters(tenantId, organizationId === undefined ? undefined : { platformAdmin: false, organizationId }).orderBy('clusters.id');
  }

  /** A cluster of the tenant, if the viewer may see it (no viewer: the system). */
  async cluster(tenantId: string, id: string, viewer?: ClusterViewer): Promise<ClusterRow | undefined> {
    return this.clusters(tenantId, viewer).where('clusters.id', id).first();
  }

  /** Which organizations a platform cluster serves; undefined when there is no such platform cluster. */
  async setGrants(tenantId: string, id: string, grants: { sharedWithAllOrganizations: boolean; organizationIds: string[] }): Promise<ClusterRow | undefined> {
    const [row] = (await this.knex
      .withSchema(SCHEMA)
      .table('clusters')
      .where({ tenant_id: tenantId, id })
      .whereNull('organization_id')
      .update({ shared_with_all_organizations: grants.sharedWithAllOrganizations, granted_organization_ids: JSON.stringify(grants.organizationIds) })
      .returning(COLUMNS)) as ClusterRow[];
    return row;
  }

  /** The cluster a registration key belongs to (the key is compared by its hash). */
  async clusterByKey(key: string): Promise<ClusterRow | undefined> {
    return this.knex
      .withSchema(SCHEMA)
      .table('clusters')
      .where({ registration_key_hash: hashSecret(key) })
      .first(COLUMNS);
  }

  /** Registers a cluster with a new registration key; null when its owner has a cluster of that name. */
  async register(tenantId: string, name: string, owner: ClusterOwner): Promise<{ cluster: ClusterRow; registrationKey: string } | null> {
    const registrationKey = newRegistrationKey();
    try {
      const [cluster] = (await this.knex
        .withSchema(SCHEMA)
        .table('clusters')
        .insert({
          id: newId('cluster'),
          tenant_id: tenantId,
          name,
          is_default: false,
          registration_key_hash: hashSecret(registrationKey),
          organization_id: owner.organizationId,
          shared_with_all_organizations: owner.organizationId === null && owner.sharedWithAllOrganizations,
          granted_organization_ids: JSON.stringify(owner.organizationId === null ? owner.organizationIds : []),
        })
        .returning(COLUMNS)) as ClusterRow[];
      return { cluster: cluster!, registrationKey };
    } catch (error) {
      if (isUniqueViolation(error)) return null;
      throw error;
    }
  }

  async unregister(tenantId: string, id: string): Promise<'deleted' | 'default' | 'missing'> {
    const row = await this.cluster(tenantId, id);
    if (!row) return 'missing';
    if (row.is_default) return 'default';
    const deleted = await this.knex.withSchema(SCHEMA).table('clusters').where({ tenant_id: tenantId, id, is_default: false }).delete();
    return deleted ? 'deleted' : 'missing';
  }

  /**
   * The default cluster for single-machine installs (LLMariner `defaultCluster`). `key` is the
   * registration key kept from an earlier start: when it still matches, nothing changes; otherwise
   * (first start, or the key file was lost) a new key replaces the stored hash and is returned.
   * `adopt`: `key` is the one to use (`mariner serve clusters` with MARINER_DEFAULT_CLUSTER_KEY, a
   * Secret the chart generated and the agent also reads): its hash replaces the stored one.
   */
  async ensureDefaultCluster(
    tenantId: string,
    name: string,
    key: string | undefined,
    options: { adopt?: boolean } = {},
  ): Promise<{ clusterId: string; registrationKey: string }> {
    return this.knex.transaction(async (trx) => {
      await trx.raw('select pg_advisory_xact_lock(hashtext(?))', ['mariner-default-cluster']);
      const existing = (await trx
        .withSchema(SCHEMA)
        .table('clusters')
        .where({ tenant_id: tenantId, is_default: true })
        .first('id', 'registration_key_hash')) as { id: string; registration_key_hash: string } | undefined;
      if (existing && key && existing.registration_key_hash === hashSecret(key)) return { clusterId: existing.id, registrationKey: key };
      const registrationKey = options.adopt && key ? key : newRegistrationKey();
      if (existing) {
        await trx
          .withSchema(SCHEMA)
          .table('clusters')
          .where({ id: existing.id })
          .update({ registration_key_hash: hashSecret(registrationKey) });
        return { clusterId: existing.id, registrationKey };
      }
      const id = newId('cluster');
      await trx
        .withSchema(SCHEMA)
        .table('clusters')
        .insert({ id, tenant_id: tenantId, name, is_default: true, registration_key_hash: hashSecret(registrationKey) });
      return { clusterId: id, registrationKey };
    });
  }

  async componentStatuses(clusterIds: readonly string[]): Promise<ComponentStatusRow[]> {
    return this.knex
      .withSchema(SCHEMA)
      .table('component_statuses')
      .whereIn('cluster_id', [...clusterIds])
      .orderBy('name');
  }

  async reportComponentStatus(clusterId: string, status: { name: string; isHealthy: boolean; message: string }): Promise<ComponentStatusRow> {
    const [row] = (await this.knex
      .withSchema(SCHEMA)
      .table('component_statuses')
      .insert({ cluster_id: clusterId, name: status.name, is_healthy: status.isHealthy, message: status.message, updated_at: this.knex.fn.now() })
      .onConflict(['cluster_id', 'name'])
      .merge()
      .returning('*')) as ComponentStatusRow[];
    return row!;
  }

  async reportClusterStatus(clusterId: string, status: ClusterStatusValue): Promise<ClusterRow | undefined> {
    const [row] = (await this.knex
      .withSchema(SCHEMA)
      .table('clusters')
      .where({ id: clusterId })
      .update({ status: JSON.stringify(status), status_updated_at: this.knex.fn.now() })
      .returning(COLUMNS)) as ClusterRow[];
    return row;
  }

  /**
   * Sets the GPU configuration. `mode` create refuses when one is set ('exists'); update refuses
   * when none is ('missing'). Returns the cluster, or 'no-cluster'.
   */
  async setConfig(
    tenantId: string,
    clusterId: string,
    config: ClusterConfigValue,
    mode: 'create' | 'update',
  ): Promise<ClusterRow | 'no-cluster' | 'exists' | 'missing'> {
    const query = this.knex.withSchema(SCHEMA).table('clusters').where({ tenant_id: tenantId, id: clusterId });
    if (mode === 'create') query.whereNull('config');
    else query.whereNotNull('config');
    const [row] = (await query.update({ config: JSON.stringify(config), config_updated_at: this.knex.fn.now() }).returning(COLUMNS)) as ClusterRow[];
    if (row) return row;
    const cluster = await this.cluster(tenantId, clusterId);
    if (!cluster) return 'no-cluster';
    return mode === 'create' ? 'exists' : 'missing';
  }

  async deleteConfig(tenantId: string, clusterId: string): Promise<'deleted' | 'no-cluster' | 'missing'> {
    const updated = await this.knex
      .withSchema(SCHEMA)
      .table('clusters')
      .where({ tenant_id: tenantId, id: clusterId })
      .whereNotNull('config')
      .update({ config: null, config_updated_at: null });
    if (updated) return 'deleted';
    return (await this.cluster(tenantId, clusterId)) ? 'missing' : 'no-cluster';
  }
}

/** Clusters the organization may use: its own, and platform clusters shared with it. */
function usableBy(q: Knex.QueryBuilder, organizationId: string): void {
  q.where('clusters.organization_id', organizationId).orWhere((platform) =>
    platform
      .whereNull('clusters.organization_id')
      .where((granted) =>
        granted
          .where('clusters.shared_with_all_organizations', true)
          .orWhereRaw('clusters.granted_organization_ids @> ?::jsonb', [JSON.stringify([organizationId])]),
      ),
  );
}

/** The schema's ClusterConfig for a cluster row, or null when none is set. */
export function configOf(row: ClusterRow): ClusterConfigRow | null {
  return row.config && row.config_updated_at ? { ...row.config, updatedAt: row.config_updated_at } : null;
}
