import type { Knex } from '../../lib/db.js';

export const SCHEMA = 'inference';

export interface RuntimeRow {
  cluster_id: string;
  tenant_id: string;
  model_id: string;
  desired_replicas: number;
  ready_replicas: number;
  in_flight_requests: number;
  status_message: string;
  updated_at: Date;
}

export type RuntimeReport = Pick<RuntimeRow, 'model_id' | 'desired_replicas' | 'ready_replicas' | 'in_flight_requests' | 'status_message'>;

/** All SQL of the inference subgraph. */
export class RuntimeStore {
  constructor(private readonly knex: Knex) {}

  private runtimes(): Knex.QueryBuilder {
    return this.knex.withSchema(SCHEMA).table('runtimes');
  }

  /** Replaces a cluster's runtimes with its agent's latest report. */
  async replaceForCluster(tenantId: string, clusterId: string, reports: RuntimeReport[]): Promise<RuntimeRow[]> {
    return this.knex.transaction(async (trx) => {
      await trx.withSchema(SCHEMA).table('runtimes').where({ cluster_id: clusterId }).delete();
      if (reports.length === 0) return [];
      return (await trx
        .withSchema(SCHEMA)
        .table('runtimes')
        .insert(reports.map((r) => ({ ...r, cluster_id: clusterId, tenant_id: tenantId })))
        .returning('*')) as RuntimeRow[];
    });
  }

  async forTenant(tenantId: string): Promise<RuntimeRow[]> {
    return this.runtimes().where({ tenant_id: tenantId }).orderBy(['model_id', 'cluster_id']);
  }

  async forModels(tenantId: string, modelIds: readonly string[]): Promise<RuntimeRow[]> {
    return this.runtimes().where({ tenant_id: tenantId }).whereIn('model_id', [...modelIds]).orderBy('cluster_id');
  }

  /** Runtimes of a model with a ready replica, reported within `freshSeconds`. */
  async ready(tenantId: string, modelId: string, freshSeconds: number): Promise<RuntimeRow[]> {
    return this.runtimes()
      .where({ tenant_id: tenantId, model_id: modelId })
      .where('ready_replicas', '>', 0)
      .where('updated_at', '>', this.knex.raw(`now() - make_interval(secs => ?)`, [freshSeconds]))
      .orderBy('in_flight_requests');
  }
}
