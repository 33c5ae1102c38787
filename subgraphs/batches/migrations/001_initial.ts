import type { Migration } from '../../../lib/db.js';

/**
 * OpenAI batches and their requests (one row per line of the input file). The answers are kept on the
 * request rows until the batch ends and its output and error files are written from them; a request's
 * answer is stored once (the first write wins), and the batch's counts move in the same transaction.
 */
export const initial: Migration = {
  id: '001_initial',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).createTable('batches', (t) => {
      t.text('id').primary();
      t.text('tenant_id').notNullable();
      t.text('organization_id').notNullable();
      t.text('project_id').notNullable();
      t.text('endpoint').notNullable();
      t.text('model');
      t.text('input_file_id').notNullable();
      t.text('completion_window').notNullable();
      t.text('status').notNullable();
      // Who created it: each request runs as them (their project, their key's rights and limits).
      t.jsonb('creator').notNullable();
      t.jsonb('metadata');
      t.integer('total').notNullable();
      t.integer('completed').notNullable().defaultTo(0);
      t.integer('failed').notNullable().defaultTo(0);
      t.jsonb('errors').notNullable().defaultTo('[]');
      t.text('output_file_id');
      t.text('error_file_id');
      // What finalization ends in (completed, expired, cancelled), and who writes the files now.
      t.text('ends_as');
      t.text('finalize_owner');
      t.timestamp('finalize_until', { useTz: true });
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.timestamp('expires_at', { useTz: true }).notNullable();
      for (const at of ['in_progress_at', 'finalizing_at', 'completed_at', 'failed_at', 'expired_at', 'cancelling_at', 'cancelled_at']) {
        t.timestamp(at, { useTz: true });
      }
      t.index(['project_id', 'created_at']);
      t.index(['status']);
    });
    await knex.schema.withSchema(schema).createTable('batch_requests', (t) => {
      t.text('batch_id').notNullable().references('id').inTable(`${schema}.batches`).onDelete('CASCADE');
      // 1-based, as the error messages and the output files name it.
      t.integer('line').notNullable();
      t.text('custom_id').notNullable();
      t.jsonb('body').notNullable();
      // Running: held by a replica while it renews the lease; free again (retry later) when lease_owner is null.
      t.text('lease_owner');
      t.timestamp('lease_until', { useTz: true });
      t.integer('attempts').notNullable().defaultTo(0);
      // Set once: 'completed' or 'failed', with the answer (status_code, request_id, body) or the error.
      t.text('outcome');
      t.jsonb('response');
      t.jsonb('error');
      t.primary(['batch_id', 'line']);
      t.unique(['batch_id', 'custom_id']);
    });
  },
};
