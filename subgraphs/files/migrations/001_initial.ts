import type { Migration } from '../../../lib/db.js';

/** Files and reserved uploads (LLMariner file manager §3). */
export const initial: Migration = {
  id: '001_initial',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).createTable('files', (t) => {
      t.text('id').primary();
      t.text('tenant_id').notNullable();
      t.text('organization_id').notNullable();
      t.text('project_id').notNullable();
      t.text('filename').notNullable();
      t.text('purpose').notNullable();
      t.bigInteger('bytes').notNullable();
      t.text('status').notNullable();
      t.text('status_details');
      t.text('object_key').notNullable();
      // Linked objects (createFromObjectPath) belong to whoever put them there: never deleted by us.
      t.boolean('owns_object').notNullable();
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.index(['project_id', 'created_at']);
    });
    await knex.schema.withSchema(schema).createTable('uploads', (t) => {
      t.text('id').primary();
      t.text('tenant_id').notNullable();
      t.text('organization_id').notNullable();
      t.text('project_id').notNullable();
      t.text('filename').notNullable();
      t.text('purpose');
      t.text('object_key').notNullable();
      t.text('created_by').notNullable();
      t.timestamp('expires_at', { useTz: true }).notNullable();
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.index(['expires_at']);
    });
  },
};
