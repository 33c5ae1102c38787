import type { Knex } from '../../lib/db.js';
import { SCHEMA, type Assignment } from './store.js';

/** A project's GPU quota on one cluster, for one resource and flavour ('' is the default flavour). */
export interface GpuQuotaRow {
  tenant_id: string;
  project_id: string;
  cluster_id: string;
  resource: string;
  flavor: string;
  nominal_gpus: number;
  borrowing_allowed: boolean;
  updated_at: Date;
}

/** What a cluster's agent last reported of the quotas' namespaces (agent/kubernetes/kueueQueues.ts). */
export interface GpuQuotaReportRow {
  cluster_id: string;
  tenant_id: string;
  usage: { namespace: string; resource: string; flavor: string | null; usedGpus: number }[];
  waiting: { jobId: string; namespace: string; message: string; position?: number | null }[];
  reported_at: Date;
}

/** A quota with its project's organization and assignments: what the calling cluster's agent is sent. */
export type WorkerGpuQuotaRow = GpuQuotaRow & { organization_id: string; assignments: Assignment[] };

export interface GpuQuotaKey {
  projectId: string;
  clusterId: string;
  resource: string;
  flavor: string;
}

/** The SQL of projects' GPU quotas (tables of migration 004), in the users subgraph's schema. */
export class GpuQuotaStore {
  constructor(private readonly knex: Knex) {}

  private t(table: string): Knex.QueryBuilder {
    return this.knex.withSchema(SCHEMA).table(table);
  }

  private static where(key: GpuQuotaKey) {
    return { project_id: key.projectId, cluster_id: key.clusterId, resource: key.resource, flavor: key.flavor };
  }

  async forProjects(projectIds: readonly string[]): Promise<GpuQuotaRow[]> {
    if (!projectIds.length) return [];
    return this.t('project_gpu_quotas').whereIn('project_id', projectIds).orderBy(['project_id', 'cluster_id', 'resource', 'flavor']);
  }

  async countOn(projectId: string, clusterId: string): Promise<number> {
    const [row] = await this.t('project_gpu_quotas').where({ project_id: projectId, cluster_id: clusterId }).count({ n: '*' });
    return Number(row?.['n'] ?? 0);
  }

  async get(key: GpuQuotaKey): Promise<GpuQuotaRow | undefined> {
    return this.t('project_gpu_quotas').where(GpuQuotaStore.where(key)).first();
  }

  /** Sets the quota (insert or update), one statement. */
  async set(tenantId: string, key: GpuQuotaKey, values: { nominalGpus: number; borrowingAllowed: boolean }): Promise<GpuQuotaRow> {
    const [row] = await this.t('project_gpu_quotas')
      .insert({
        tenant_id: tenantId,
        ...GpuQuotaStore.where(key),
        nominal_gpus: values.nominalGpus,
        borrowing_allowed: values.borrowingAllowed,
        updated_at: this.knex.fn.now(),
      })
      .onConflict(['project_id', 'cluster_id', 'resource', 'flavor'])
      .merge(['nominal_gpus', 'borrowing_allowed', 'updated_at'])
      .returning('*');
    return row as GpuQuotaRow;
  }

  async remove(key: GpuQuotaKey): Promise<boolean> {
    const deleted = await this.t('project_gpu_quotas').where(GpuQuotaStore.where(key)).delete();
    return Number(deleted) > 0;
  }

  /** The quotas on a cluster, with their projects' organizations and assignments. */
  async onCluster(tenantId: string, clusterId: string): Promise<WorkerGpuQuotaRow[]> {
    return this.knex
      .withSchema(SCHEMA)
      .from('project_gpu_quotas as q')
      .join('projects as p', 'p.id', 'q.project_id')
      .where({ 'q.tenant_id': tenantId, 'q.cluster_id': clusterId })
      .orderBy(['q.project_id', 'q.resource', 'q.flavor'])
      .select('q.*', 'p.organization_id', 'p.assignments');
  }

  async reports(clusterIds: readonly string[]): Promise<GpuQuotaReportRow[]> {
    if (!clusterIds.length) return [];
    return this.t('gpu_quota_reports').whereIn('cluster_id', clusterIds);
  }

  /** The tenant's reports that list any of `jobIds` as waiting, with the project that holds each report's namespaces. */
  async waitingFor(
    tenantId: string,
    jobIds: readonly string[],
  ): Promise<{ jobId: string; clusterId: string; namespace: string; message: string; position?: number | null; reportedAt: Date; projectId: string | null }[]> {
    if (!jobIds.length) return [];
    const wanted = new Set(jobIds);
    const reports = (await this.t('gpu_quota_reports').where({ tenant_id: tenantId })) as GpuQuotaReportRow[];
    const hits = reports.flatMap((r) =>
      r.waiting.filter((w) => wanted.has(w.jobId)).map((w) => ({ ...w, clusterId: r.cluster_id, reportedAt: r.reported_at })),
    );
    if (!hits.length) return [];
    const claims = (await this.t('namespace_claims')
      .where({ tenant_id: tenantId })
      .whereIn('namespace', [...new Set(hits.map((h) => h.namespace))])
      .select('namespace', 'project_id')) as { namespace: string; project_id: string }[];
    const owner = new Map(claims.map((c) => [c.namespace, c.project_id]));
    return hits.map((h) => ({ ...h, projectId: owner.get(h.namespace) ?? null }));
  }

  /** Replaces the cluster's report. */
  async saveReport(tenantId: string, clusterId: string, report: Pick<GpuQuotaReportRow, 'usage' | 'waiting'>): Promise<void> {
    await this.t('gpu_quota_reports')
      .insert({
        cluster_id: clusterId,
        tenant_id: tenantId,
        usage: JSON.stringify(report.usage),
        waiting: JSON.stringify(report.waiting),
        reported_at: this.knex.fn.now(),
      })
      .onConflict('cluster_id')
      .merge(['usage', 'waiting', 'reported_at']);
  }
}
