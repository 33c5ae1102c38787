import type { Migration } from '../../../lib/db.js';

/**
 * Batch jobs (LLMariner §4b) share the jobs' lifecycle, dispatch, logs and events: one table `jobs`
 * with a `kind`; the fine-tuning columns become optional, the batch ones are added.
 */
export const batchJobs: Migration = {
  id: '002_batch_jobs',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).renameTable('fine_tuning_jobs', 'jobs');
    await knex.schema.withSchema(schema).alterTable('jobs', (t) => {
      t.text('kind').notNullable().defaultTo('fine-tuning');
      t.text('image');
      t.text('command');
      t.jsonb('envs');
      t.jsonb('data_files');
      t.integer('worker_count');
      t.jsonb('script_names');
    });
    for (const column of ['model', 'training_file', 'suffix', 'method', 'integrations', 'seed', 'result_files']) {
      await knex.raw('alter table ??.jobs alter column ?? drop not null', [schema, column]);
    }
    await knex.raw('create index jobs_kind_project on ??.jobs (tenant_id, project_id, kind, created_at)', [schema]);
  },
};
