import type { Migration } from '../../../lib/db.js';

/**
 * Projects' GPU quotas per cluster and GPU resource/flavour (issue 22: Kueue managed per project), and
 * what each cluster's agent last reported of them (usage of admitted Workloads, jobs waiting for quota).
 * A quota goes with its project; a report is replaced whole by the cluster's next one.
 */
export const gpuQuotas: Migration = {
  id: '004_gpu_quotas',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).createTable('project_gpu_quotas', (t) => {
      t.text('tenant_id').notNullable();
      t.text('project_id').notNullable().references('id').inTable(`${schema}.projects`).onDelete('CASCADE');
      t.text('cluster_id').notNullable();
      t.text('resource').notNullable();
      /** '' for the default flavour (part of the key, so not null). */
      t.text('flavor').notNullable().defaultTo('');
      t.integer('nominal_gpus').notNullable();
      t.boolean('borrowing_allowed').notNullable().defaultTo(false);
      t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.primary(['project_id', 'cluster_id', 'resource', 'flavor']);
      t.index(['tenant_id', 'cluster_id']);
    });
    await knex.schema.withSchema(schema).createTable('gpu_quota_reports', (t) => {
      t.text('cluster_id').primary();
      t.text('tenant_id').notNullable();
      /** [{namespace, resource, flavor, usedGpus}] */
      t.jsonb('usage').notNullable();
      /** [{jobId, namespace, message}] */
      t.jsonb('waiting').notNullable();
      t.timestamp('reported_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    });
  },
};
