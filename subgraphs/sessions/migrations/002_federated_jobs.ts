import type { Migration } from '../../../lib/db.js';

/**
 * The Jobs submitted to the virtual cluster `federated` (federationRoutes.ts): one row per Job of a
 * project's namespace, with the manifest as submitted, the cluster it was placed on (null while it
 * waits for room) and the uid the real Job got there. The real Job's status is read from its cluster
 * on each request, never stored.
 */
export const federatedJobs: Migration = {
  id: '002_federated_jobs',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).createTable('federated_jobs', (t) => {
      t.text('id').primary();
      t.text('tenant_id').notNullable();
      t.text('organization_id').notNullable();
      t.text('project_id').notNullable();
      t.text('namespace').notNullable();
      t.text('name').notNullable();
      // GPUs the Job asks for (per pod × parallelism), as placement counts them.
      t.integer('gpus').notNullable();
      // The manifest as submitted (JSON), with the federation's label added.
      t.text('manifest').notNullable();
      // The clusters the namespace was assigned on when submitted (JSON array; null in it: any cluster the organization may use).
      t.text('assigned_clusters').notNullable();
      t.text('cluster_id');
      t.text('uid');
      // Why it is not placed yet (no room, a refusal of the cluster), shown on the Job.
      t.text('message');
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.timestamp('placed_at', { useTz: true });
      t.unique(['project_id', 'namespace', 'name']);
      t.index(['cluster_id']);
    });
  },
};
