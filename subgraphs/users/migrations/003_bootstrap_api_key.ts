import type { Migration } from '../../../lib/db.js';

/**
 * Marks the bootstrap admin key, so that a changed MARINER_ADMIN_API_KEY can revoke the previous one
 * (issue 14). Existing bootstrap keys are recognised as the bootstrap wrote them: named
 * `admin (bootstrap)`, in the default project, excluded from rate limiting.
 */
export const bootstrapApiKey: Migration = {
  id: '003_bootstrap_api_key',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).alterTable('api_keys', (t) => {
      t.boolean('is_bootstrap').notNullable().defaultTo(false);
    });
    await knex
      .withSchema(schema)
      .table('api_keys')
      .where({ name: 'admin (bootstrap)', excluded_from_rate_limiting: true })
      .whereIn('project_id', knex.withSchema(schema).table('projects').where({ is_default: true }).select('id'))
      .update({ is_bootstrap: true });
  },
};
