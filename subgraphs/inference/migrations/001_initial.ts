import type { Migration } from '../../../lib/db.js';

/** Runtimes per (cluster, model), as agents report them (LLMariner inference-manager engine status). */
export const initial: Migration = {
  id: '001_initial',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).createTable('runtimes', (t) => {
      t.text('cluster_id').notNullable();
      t.text('tenant_id').notNullable();
      t.text('model_id').notNullable();
      t.integer('desired_replicas').notNullable();
      t.integer('ready_replicas').notNullable();
      t.integer('in_flight_requests').notNullable();
      t.text('status_message').notNullable();
      t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.primary(['cluster_id', 'model_id']);
      t.index(['tenant_id', 'model_id']);
    });
  },
};
