import type { Migration } from '../../../lib/db.js';

/**
 * The loader's claim on a model (LLMariner ModelsWorkerService AcquireUnloadedBaseModel): which cluster
 * loads it, and until when its lease runs. A lapsed lease lets another cluster take the load over.
 */
export const modelLoading: Migration = {
  id: '002_model_loading',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).alterTable('models', (t) => {
      t.text('loading_cluster_id');
      t.timestamp('load_lease_expires_at', { useTz: true });
      // The loaders' work queue: models of a tenant by loading status, oldest first.
      t.index(['tenant_id', 'loading_status', 'created_at']);
    });
  },
};
