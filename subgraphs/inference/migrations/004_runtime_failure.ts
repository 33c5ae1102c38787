import type { Migration } from '../../../lib/db.js';

/** Why a cluster cannot run a model at all, as its agent reports it (null: it can or may). */
export const runtimeFailure: Migration = {
  id: '004_runtime_failure',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).alterTable('runtimes', (t) => {
      t.text('failure').nullable();
    });
  },
};
