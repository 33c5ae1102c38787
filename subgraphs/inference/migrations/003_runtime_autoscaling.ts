import type { Migration } from '../../../lib/db.js';

/** The autoscaler's state of each runtime, as its agent reports it (null: fixed replicas). */
export const runtimeAutoscaling: Migration = {
  id: '003_runtime_autoscaling',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).alterTable('runtimes', (t) => {
      t.jsonb('autoscaling').nullable();
    });
  },
};
