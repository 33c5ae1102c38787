import type { Migration } from '../../../lib/db.js';

/**
 * Fine-tuning jobs (LLMariner job manager §4a), their output lines (with offsets, so a follower
 * resumes without gaps or duplicates), their events and checkpoints.
 */
export const initial: Migration = {
  id: '001_initial',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).createTable('fine_tuning_jobs', (t) => {
      t.text('id').primary();
      t.text('tenant_id').notNullable();
      t.text('organization_id').notNullable();
      t.text('project_id').notNullable();
      t.text('model').notNullable();
      t.text('training_file').notNullable();
      t.text('validation_file');
      t.text('suffix').notNullable();
      t.jsonb('method').notNullable();
      t.jsonb('integrations').notNullable();
      t.integer('seed').notNullable();
      t.integer('gpu_count').notNullable();
      t.jsonb('metadata');
      // queued | running | succeeded | failed | cancelled; pending_action: creating | cancelling.
      t.text('status').notNullable();
      t.text('pending_action');
      t.text('fine_tuned_model');
      t.jsonb('error');
      t.jsonb('result_files').notNullable();
      t.integer('trained_tokens');
      t.text('cluster_id');
      t.text('kubernetes_namespace');
      t.text('kueue_queue_name');
      t.integer('attempts').notNullable().defaultTo(0);
      // What the agent needs to run the job (object keys of the inputs, where to put the output).
      t.jsonb('spec').notNullable();
      // The creator's identity (no credentials): the fine-tuned model is registered on their behalf.
      t.jsonb('creator').notNullable();
      // While set and in the future, one control-plane replica is dispatching the job.
      t.timestamp('dispatch_lease_until', { useTz: true });
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.timestamp('started_at', { useTz: true });
      t.timestamp('finished_at', { useTz: true });
      t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.index(['tenant_id', 'project_id', 'created_at']);
      t.index(['status', 'pending_action']);
      t.index(['cluster_id', 'status']);
    });
    await knex.schema.withSchema(schema).createTable('job_logs', (t) => {
      t.text('job_id').notNullable();
      t.integer('offset').notNullable();
      t.text('text').notNullable();
      t.timestamp('time', { useTz: true }).notNullable();
      t.primary(['job_id', 'offset']);
    });
    await knex.schema.withSchema(schema).createTable('job_events', (t) => {
      t.text('id').primary();
      t.text('job_id').notNullable();
      t.text('level').notNullable();
      t.text('message').notNullable();
      t.text('type').notNullable();
      t.jsonb('data');
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.index(['job_id', 'created_at']);
    });
    await knex.schema.withSchema(schema).createTable('job_checkpoints', (t) => {
      t.text('id').primary();
      t.text('job_id').notNullable();
      t.integer('step_number').notNullable();
      t.jsonb('metrics').notNullable();
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.unique(['job_id', 'step_number']);
    });
  },
};
