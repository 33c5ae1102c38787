import type { Migration } from '../../../lib/db.js';

/** Worker clusters, their component health and GPU configuration (LLMariner cluster manager §7). */
export const initial: Migration = {
  id: '001_initial',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).createTable('clusters', (t) => {
      t.text('id').primary();
      t.text('tenant_id').notNullable();
      t.text('name').notNullable();
      t.boolean('is_default').notNullable().defaultTo(false);
      // SHA-256 of the registration key; the key itself is shown once.
      t.text('registration_key_hash').notNullable().unique();
      t.jsonb('status');
      t.timestamp('status_updated_at', { useTz: true });
      t.jsonb('config');
      t.timestamp('config_updated_at', { useTz: true });
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.unique(['tenant_id', 'name']);
    });
    await knex.schema.withSchema(schema).createTable('component_statuses', (t) => {
      t.text('cluster_id').notNullable().references('id').inTable(`${schema}.clusters`).onDelete('CASCADE');
      t.text('name').notNullable();
      t.boolean('is_healthy').notNullable();
      t.text('message').notNullable();
      t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.primary(['cluster_id', 'name']);
    });
  },
};
