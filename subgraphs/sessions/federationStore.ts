import type { Knex } from '../../lib/db.js';
import { isUniqueViolation } from '../../lib/db.js';

/**
 * The federated Jobs' table (migrations/002_federated_jobs.ts): which Job of which project's namespace
 * was submitted to the virtual cluster `federated`, and where it runs. Every read is scoped to the
 * caller's project: a row of another project (or organization) is never found.
 */

/** A Kubernetes object, open-ended JSON. */
export type KubeObject = { apiVersion?: string; kind?: string; metadata?: Record<string, any>; spec?: any; status?: any } & Record<string, any>;

export interface FederatedJob {
  id: string;
  tenantId: string;
  organizationId: string;
  projectId: string;
  namespace: string;
  name: string;
  gpus: number;
  manifest: KubeObject;
  /** The clusters the namespace was assigned on at submission; null: any cluster the organization may use. */
  assignedClusters: (string | null)[];
  clusterId: string | null;
  uid: string | null;
  message: string | null;
  createdAt: Date;
  placedAt: Date | null;
}

interface Row {
  id: string;
  tenant_id: string;
  organization_id: string;
  project_id: string;
  namespace: string;
  name: string;
  gpus: number;
  manifest: string;
  assigned_clusters: string;
  cluster_id: string | null;
  uid: string | null;
  message: string | null;
  created_at: Date | string;
  placed_at: Date | string | null;
}

const fromRow = (row: Row): FederatedJob => ({
  id: row.id,
  tenantId: row.tenant_id,
  organizationId: row.organization_id,
  projectId: row.project_id,
  namespace: row.namespace,
  name: row.name,
  gpus: row.gpus,
  manifest: JSON.parse(row.manifest) as KubeObject,
  assignedClusters: JSON.parse(row.assigned_clusters) as (string | null)[],
  clusterId: row.cluster_id,
  uid: row.uid,
  message: row.message,
  createdAt: new Date(row.created_at),
  placedAt: row.placed_at === null ? null : new Date(row.placed_at),
});

export type NewFederatedJob = Pick<
  FederatedJob,
  'id' | 'tenantId' | 'organizationId' | 'projectId' | 'namespace' | 'name' | 'gpus' | 'manifest' | 'assignedClusters'
>;

export class FederationStore {
  constructor(
    private readonly knex: Knex,
    private readonly schema: string,
  ) {}

  private get table() {
    return this.knex.withSchema(this.schema).table<Row>('federated_jobs');
  }

  /** Records a submitted Job, unplaced; null when the project's namespace already has a Job of that name. */
  async insert(job: NewFederatedJob): Promise<FederatedJob | null> {
    try {
      const [row] = await this.table
        .insert({
          id: job.id,
          tenant_id: job.tenantId,
          organization_id: job.organizationId,
          project_id: job.projectId,
          namespace: job.namespace,
          name: job.name,
          gpus: job.gpus,
          manifest: JSON.stringify(job.manifest),
          assigned_clusters: JSON.stringify(job.assignedClusters),
        })
        .returning('*');
      return fromRow(row as Row);
    } catch (error) {
      if (isUniqueViolation(error)) return null;
      throw error;
    }
  }

  async get(projectId: string, namespace: string, name: string): Promise<FederatedJob | null> {
    const row = (await this.table.where({ project_id: projectId, namespace, name }).first()) as Row | undefined;
    return row ? fromRow(row) : null;
  }

  async list(projectId: string, namespace: string): Promise<FederatedJob[]> {
    const rows = (await this.table.where({ project_id: projectId, namespace }).orderBy('name')) as Row[];
    return rows.map(fromRow);
  }

  /** Jobs waiting for room, oldest first (placement keeps submission order). */
  async pending(): Promise<FederatedJob[]> {
    const rows = (await this.table.whereNull('cluster_id').orderBy('created_at')) as Row[];
    return rows.map(fromRow);
  }

  /** Jobs placed on the organization's clusters (the GPUs they hold until the cluster reports them, and requeueing). */
  async placed(tenantId: string, organizationId?: string): Promise<FederatedJob[]> {
    const query = this.table.whereNotNull('cluster_id').where({ tenant_id: tenantId });
    const rows = (await (organizationId === undefined ? query : query.where({ organization_id: organizationId }))) as Row[];
    return rows.map(fromRow);
  }

  /** Every placed Job, for the requeue pass. */
  async allPlaced(): Promise<FederatedJob[]> {
    return ((await this.table.whereNotNull('cluster_id')) as Row[]).map(fromRow);
  }

  /** Marks a Job placed, if it was still waiting (false: another pass placed or removed it). */
  async markPlaced(id: string, clusterId: string, uid: string | null): Promise<boolean> {
    const updated = await this.table.where({ id }).whereNull('cluster_id').update({ cluster_id: clusterId, uid, message: null, placed_at: this.knex.fn.now() });
    return Number(updated) > 0;
  }

  async markWaiting(id: string, message: string): Promise<void> {
    await this.table.where({ id }).whereNull('cluster_id').update({ message });
  }

  /** Puts a placed Job back in the queue (its cluster is gone). */
  async requeue(id: string, fromCluster: string, message: string): Promise<boolean> {
    const updated = await this.table.where({ id, cluster_id: fromCluster }).update({ cluster_id: null, uid: null, placed_at: null, message });
    return Number(updated) > 0;
  }

  async remove(id: string): Promise<boolean> {
    return Number(await this.table.where({ id }).delete()) > 0;
  }
}
