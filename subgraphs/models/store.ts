import { isUniqueViolation, type Knex } from '../../lib/db.js';
import { paginate, type Page, type PageArgs } from '../../lib/pagination.js';

export const SCHEMA = 'models';

export interface ModelConfigValue {
  runtime: { gpu: number; replicas: number; extraArgs: string[] };
  clusterAllocationPolicy: { allowedClusterIds: string[]; enableOnDemandAllocation: boolean };
}

export interface ModelRow {
  tenant_id: string;
  id: string;
  project_id: string | null;
  organization_id: string | null;
  is_base_model: boolean;
  base_model_id: string | null;
  source_repository: 'OBJECT_STORE' | 'HUGGING_FACE' | 'OLLAMA' | 'FINE_TUNING' | 'FILE';
  source: string;
  loading_status: 'REQUESTED' | 'LOADING' | 'SUCCEEDED' | 'FAILED';
  loading_status_message: string | null;
  loading_failure_reason: string | null;
  formats: ModelFormatValue[];
  activation_status: 'ACTIVE' | 'INACTIVE';
  config: ModelConfigValue;
  owned_by: string;
  created_at: Date;
  /** The cluster whose loader took the model; kept after the load ended, for the record. */
  loading_cluster_id: string | null;
  /** While LOADING: the loader's claim runs out then (another cluster may take the load over). */
  load_lease_expires_at: Date | null;
}

export type ModelFormatValue = 'GGUF' | 'HUGGING_FACE' | 'NVIDIA_TRITON' | 'OLLAMA';

/** A model as created: no loader has taken it yet. */
export type NewModelRow = Omit<ModelRow, 'created_at' | 'loading_cluster_id' | 'load_lease_expires_at'>;

/** The cluster a loader works for (a worker identity). */
export interface LoaderCluster {
  tenantId: string;
  clusterId: string;
}

/** What a loader reports about a load it holds (LLMariner UpdateBaseModelLoadingStatus). */
export type LoadReport =
  | { status: 'LOADING'; message: string | null; formats: ModelFormatValue[] | null; leaseSeconds: number }
  | { status: 'SUCCEEDED'; message: string | null; formats: ModelFormatValue[]; source: string }
  | { status: 'FAILED'; reason: string };

/** Who is looking: a tenant and a project (models visible to it, LLMariner ListModels). */
export interface ModelScope {
  tenantId: string;
  projectId: string;
}


/** All SQL of the models subgraph. */
export class ModelStore {
  constructor(private readonly knex: Knex) {}

  /** Tenant-wide base models, plus the project's own base and fine-tuned models. */
  private visible(scope: ModelScope): Knex.QueryBuilder {
    return this.knex
      .withSchema(SCHEMA)
      .table('models')
      .where('models.tenant_id', scope.tenantId)
      .where((q) => q.where('models.project_id', scope.projectId).orWhere((g) => g.whereNull('models.project_id').where('models.is_base_model', true)));
  }

  async model(scope: ModelScope, id: string): Promise<ModelRow | undefined> {
    return this.visible(scope).where('models.id', id).first();
  }

  list(scope: ModelScope, includeLoading: boolean, page: PageArgs): Promise<Page<ModelRow>> {
    return paginate<ModelRow>(
      () => (includeLoading ? this.visible(scope) : this.visible(scope).where('models.loading_status', 'SUCCEEDED')),
      'models',
      page,
    );
  }

  /** Inserts a model; false when the id is taken in the tenant. */
  async insert(row: NewModelRow): Promise<ModelRow | null> {
    try {
      const [created] = await this.knex
        .withSchema(SCHEMA)
        .table('models')
        .insert({ ...row, formats: JSON.stringify(row.formats), config: JSON.stringify(row.config) })
        .returning('*');
      return created as ModelRow;
    } catch (error) {
      if (isUniqueViolation(error)) return null;
      throw error;
    }
  }

  async update(scope: ModelScope, id: string, patch: Partial<Pick<ModelRow, 'config' | 'activation_status'>>): Promise<ModelRow | undefined> {
    const values: Record<string, unknown> = { ...patch };
    if (patch.config) values['config'] = JSON.stringify(patch.config);
    const [row] = await this.visible(scope).where('models.id', id).update(values).returning('*');
    return row as ModelRow | undefined;
  }

  /** Any model of the tenant, whichever project it belongs to (for the tenant's loaders). */
  /** The tenant's active, loaded models that a cluster may run (empty allowedClusterIds: any cluster). */
  async activeModelsFor(tenantId: string, clusterId: string): Promise<ModelRow[]> {
    const rows = (await this.knex
      .withSchema(SCHEMA)
      .table('models')
      .where({ tenant_id: tenantId, activation_status: 'ACTIVE', loading_status: 'SUCCEEDED' })
      .orderBy('id')) as ModelRow[];
    return rows.filter((row) => {
      const allowed = row.config.clusterAllocationPolicy.allowedClusterIds;
      return allowed.length === 0 || allowed.includes(clusterId);
    });
  }

  async modelOfTenant(tenantId: string, id: string): Promise<ModelRow | undefined> {
    return this.knex.withSchema(SCHEMA).table('models').where({ tenant_id: tenantId, id }).first();
  }

  /**
   * Claims the tenant's oldest model waiting for a loader, or one whose loader's lease ran out, for
   * `cluster`: LOADING with a fresh lease. `skip locked` makes concurrent claims take different models
   * (a row another claim is taking is passed over, not waited for). Undefined when none waits.
   */
  async acquireLoad(cluster: LoaderCluster, leaseSeconds: number, message: string): Promise<ModelRow | undefined> {
    return this.knex.transaction(async (trx) => {
      const next = (await trx
        .withSchema(SCHEMA)
        .table('models')
        .select('id')
        .where('tenant_id', cluster.tenantId)
        .where((q) =>
          q.where('loading_status', 'REQUESTED').orWhere((l) => l.where('loading_status', 'LOADING').where('load_lease_expires_at', '<=', trx.fn.now())),
        )
        .orderBy([{ column: 'created_at' }, { column: 'id' }])
        .limit(1)
        .forUpdate()
        .skipLocked()) as { id: string }[];
      const [claimed] = next;
      if (!claimed) return undefined;
      const [row] = await trx
        .withSchema(SCHEMA)
        .table('models')
        .where({ tenant_id: cluster.tenantId, id: claimed.id })
        .update({
          loading_status: 'LOADING',
          loading_cluster_id: cluster.clusterId,
          load_lease_expires_at: this.leaseFromNow(trx, leaseSeconds),
          loading_status_message: message,
          loading_failure_reason: null,
        })
        .returning('*');
      return row as ModelRow;
    });
  }

  /**
   * Applies a loader's report, only while `cluster` holds the model's load (LOADING, its cluster);
   * undefined otherwise, with nothing changed. One statement: the check and the change are atomic.
   */
  async reportLoad(cluster: LoaderCluster, id: string, report: LoadReport): Promise<ModelRow | undefined> {
    const values: Record<string, unknown> = {};
    switch (report.status) {
      case 'LOADING':
        values['load_lease_expires_at'] = this.leaseFromNow(this.knex, report.leaseSeconds);
        if (report.message !== null) values['loading_status_message'] = report.message;
        if (report.formats) values['formats'] = JSON.stringify(report.formats);
        break;
      case 'SUCCEEDED':
        Object.assign(values, {
          loading_status: 'SUCCEEDED',
          source: report.source,
          formats: JSON.stringify(report.formats),
          loading_status_message: report.message,
          loading_failure_reason: null,
          load_lease_expires_at: null,
        });
        break;
      case 'FAILED':
        Object.assign(values, { loading_status: 'FAILED', loading_failure_reason: report.reason, load_lease_expires_at: null });
        break;
    }
    const [row] = await this.knex
      .withSchema(SCHEMA)
      .table('models')
      .where({ tenant_id: cluster.tenantId, id, loading_status: 'LOADING', loading_cluster_id: cluster.clusterId })
      .update(values)
      .returning('*');
    return row as ModelRow | undefined;
  }

  /** The database's clock decides leases, so every replica agrees on when one runs out. */
  private leaseFromNow(knex: Knex, seconds: number): Knex.Raw {
    return knex.raw(`now() + ?::integer * interval '1 second'`, [seconds]);
  }

  /** Deletes an inactive model; returns what happened. */
  async deleteInactive(scope: ModelScope, id: string): Promise<'deleted' | 'active' | 'missing'> {
    return this.knex.transaction(async (trx) => {
      const row = (await trx
        .withSchema(SCHEMA)
        .table('models')
        .where({ tenant_id: scope.tenantId, id })
        .where((q) => q.where('project_id', scope.projectId).orWhereNull('project_id'))
        .forUpdate()
        .first()) as ModelRow | undefined;
      if (!row) return 'missing';
      if (row.activation_status === 'ACTIVE') return 'active';
      await trx.withSchema(SCHEMA).table('models').where({ tenant_id: scope.tenantId, id }).delete();
      return 'deleted';
    });
  }
}
