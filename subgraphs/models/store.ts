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
  source_repository: 'OBJECT_STORE' | 'HUGGING_FACE' | 'OLLAMA' | 'FINE_TUNING';
  source: string;
  loading_status: 'REQUESTED' | 'LOADING' | 'SUCCEEDED' | 'FAILED';
  loading_status_message: string | null;
  loading_failure_reason: string | null;
  formats: ('GGUF' | 'HUGGING_FACE' | 'NVIDIA_TRITON' | 'OLLAMA')[];
  activation_status: 'ACTIVE' | 'INACTIVE';
  config: ModelConfigValue;
  owned_by: string;
  created_at: Date;
}

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
  async insert(row: Omit<ModelRow, 'created_at'>): Promise<ModelRow | null> {
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
