import { isUniqueViolation, type Knex } from '../../lib/db.js';
import { paginate, type Page, type PageArgs } from '../../lib/pagination.js';
import type { LoadBalancing } from '../../lib/prefixHashRing.js';
import type { ScalingSchedule } from '../../lib/scalingSchedule.js';

export const SCHEMA = 'models';

export interface ModelConfigValue {
  /**
   * `scalingSchedules`: absent in configs stored before there were any (read as none); `loadBalancing`
   * and `prefixHashChars` likewise (read as LEAST_IN_FLIGHT and 1024: lib/prefixHashRing.ts).
   */
  runtime: {
    gpu: number;
    replicas: number;
    extraArgs: string[];
    scalingSchedules?: ScalingSchedule[];
    loadBalancing?: LoadBalancing;
    prefixHashChars?: number;
  };
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

export type ModelFormatValue = 'GGUF' | 'HUGGING_FACE' | 'NVIDIA_TRITON' | 'OLLAMA' | 'WHISPER_GGML' | 'GGUF_ADAPTER' | 'PEFT_SAFETENSORS';

/** A model as created: no loader has taken it yet. */
export type NewModelRow = Omit<ModelRow, 'created_at' | 'loading_cluster_id' | 'load_lease_expires_at'>;

/**
 * A cluster's agent (a worker identity) and the models it may take (lib/clusterAccess.ts): every cluster
 * runs the tenant's catalog (base models without a project) once loaded, but only platform clusters
 * load it, so an organization's own cluster cannot put weights in it that other organizations then run;
 * a project's models are loaded and run only by clusters that serve its organization.
 */
export interface ClusterScope {
  tenantId: string;
  clusterId: string;
  /** Whether the cluster loads the tenant's catalog (platform clusters). */
  loadsCatalog: boolean;
  /** The organizations whose projects' models the cluster loads and runs: every one, or these. */
  organizations: 'all' | readonly string[];
}

/** One model as the system sees its owner (the inference subgraph checks runtimes' reports with it). */
export interface ModelOwnerRow {
  id: string;
  organization_id: string | null;
  project_id: string | null;
  is_base_model: boolean;
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
/** The formats of a LoRA adapter's weights (the model applies them to its base model's). */
export const ADAPTER_FORMATS = ['GGUF_ADAPTER', 'PEFT_SAFETENSORS'] as const;

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
    return paginate<ModelRow>(() => (includeLoading ? this.visible(scope) : this.visible(scope).where('models.loading_status', 'SUCCEEDED')), 'models', page);
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

  /** The models of projects of the organizations the cluster serves. */
  private servedProjects(q: Knex.QueryBuilder, cluster: ClusterScope): Knex.QueryBuilder {
    q.whereNotNull('models.project_id');
    return cluster.organizations === 'all' ? q : q.whereIn('models.organization_id', [...cluster.organizations]);
  }

  /** The models a cluster may run: the tenant's catalog, and its organizations' projects' models. */
  private runnableBy(cluster: ClusterScope): Knex.QueryBuilder {
    return this.knex
      .withSchema(SCHEMA)
      .table('models')
      .where('models.tenant_id', cluster.tenantId)
      .where((q) => q.whereNull('models.project_id').orWhere((p) => this.servedProjects(p, cluster)));
  }

  /** The models a cluster may load: the catalog for platform clusters, its organizations' projects' models. */
  private loadableBy(knex: Knex, cluster: ClusterScope): Knex.QueryBuilder {
    return knex
      .withSchema(SCHEMA)
      .table('models')
      .where('models.tenant_id', cluster.tenantId)
      .where((q) => {
        if (cluster.loadsCatalog) q.whereNull('models.project_id');
        q.orWhere((p) => this.servedProjects(p, cluster));
      });
  }

  /** The active, loaded models that a cluster may run (empty allowedClusterIds: any cluster that may run it). */
  async activeModelsFor(cluster: ClusterScope): Promise<ModelRow[]> {
    const rows = (await this.runnableBy(cluster).where({ activation_status: 'ACTIVE', loading_status: 'SUCCEEDED' }).orderBy('id')) as ModelRow[];
    return rows.filter((row) => {
      const allowed = row.config.clusterAllocationPolicy.allowedClusterIds;
      return allowed.length === 0 || allowed.includes(cluster.clusterId);
    });
  }

  /** A model the cluster may load; undefined for any other (its existence is not the cluster's to learn). */
  async loadableModel(cluster: ClusterScope, id: string): Promise<ModelRow | undefined> {
    return this.loadableBy(this.knex, cluster).where('models.id', id).first();
  }

  /** Who owns each of these models of the tenant; ids of no model are left out. */
  async owners(tenantId: string, ids: readonly string[]): Promise<ModelOwnerRow[]> {
    if (ids.length === 0) return [];
    return this.knex
      .withSchema(SCHEMA)
      .table('models')
      .select('id', 'organization_id', 'project_id', 'is_base_model')
      .where('tenant_id', tenantId)
      .whereIn('id', [...ids])
      .orderBy('id');
  }

  /**
   * The projects (null: the catalog) of the models whose weights folder is `models/<tenant>/<folder>/`
   * (loading.ts `destinationKey`: a model's id), the folder compared without case as a
   * case-insensitive filesystem would.
   */
  async projectsOfFolder(tenantId: string, folder: string): Promise<(string | null)[]> {
    const rows = (await this.knex
      .withSchema(SCHEMA)
      .table('models')
      .select('project_id')
      .where('tenant_id', tenantId)
      .whereRaw('lower(id) = lower(?)', [folder])) as { project_id: string | null }[];
    return rows.map((row) => row.project_id);
  }

  /** Whether a model of the tenant not of project `projectId` comes from `source` (an object URI) or from an object under it. */
  async storedForOtherProject(tenantId: string, source: string, projectId: string): Promise<boolean> {
    const row = await this.knex
      .withSchema(SCHEMA)
      .table('models')
      .where('tenant_id', tenantId)
      .where((q) => q.where('source', source).orWhere('source', 'like', `${source.replace(/[\\%_]/g, (c) => `\\${c}`)}/%`))
      .where((q) => q.whereNull('project_id').orWhereNot('project_id', projectId))
      .first('id');
    return row !== undefined;
  }

  /**
   * Claims the tenant's oldest model waiting for a loader, or one whose loader's lease ran out, for
   * `cluster`: LOADING with a fresh lease. `skip locked` makes concurrent claims take different models
   * (a row another claim is taking is passed over, not waited for). Undefined when none waits.
   */
  async acquireLoad(cluster: ClusterScope, leaseSeconds: number, message: string): Promise<ModelRow | undefined> {
    return this.knex.transaction(async (trx) => {
      const next = (await this.loadableBy(trx, cluster)
        .select('id')
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
  async reportLoad(cluster: ClusterScope, id: string, report: LoadReport): Promise<ModelRow | undefined> {
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
    // The cluster must still serve the model's organization (a grant may have been withdrawn meanwhile).
    const [row] = await this.loadableBy(this.knex, cluster)
      .where({ id, loading_status: 'LOADING', loading_cluster_id: cluster.clusterId })
      .update(values)
      .returning('*');
    return row as ModelRow | undefined;
  }

  /** The database's clock decides leases, so every replica agrees on when one runs out. */
  private leaseFromNow(knex: Knex, seconds: number): Knex.Raw {
    return knex.raw(`now() + ?::integer * interval '1 second'`, [seconds]);
  }

  /** Deletes an inactive model; returns what happened. */
  async deleteInactive(scope: ModelScope, id: string): Promise<'deleted' | 'active' | 'missing' | { adapters: number }> {
    return this.knex.transaction(async (trx) => {
      const row = (await trx
        .withSchema(SCHEMA)
        .table('models')
        .where({ tenant_id: scope.tenantId, id })
        .where((q) => q.where('project_id', scope.projectId).orWhereNull('project_id'))
        .forUpdate()
        .first()) as ModelRow | undefined;
      if (!row) return 'missing';
      // An active model's runtimes stop first; a LoRA adapter has none (it runs on its base's): it goes at once.
      const adapter = !row.is_base_model && row.formats.some((f) => (ADAPTER_FORMATS as readonly string[]).includes(f));
      if (row.activation_status === 'ACTIVE' && !adapter) return 'active';
      // A base model's LoRA adapters (of any project of the tenant) run on its weights: they go first.
      const dependants = (await trx.withSchema(SCHEMA).table('models').select('formats').where({ tenant_id: scope.tenantId, base_model_id: id })) as Pick<
        ModelRow,
        'formats'
      >[];
      const count = dependants.filter((m) => m.formats.some((f) => (ADAPTER_FORMATS as readonly string[]).includes(f))).length;
      if (count > 0) return { adapters: count };
      await trx.withSchema(SCHEMA).table('models').where({ tenant_id: scope.tenantId, id }).delete();
      return 'deleted';
    });
  }
}
