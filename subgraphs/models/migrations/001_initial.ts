import type { Migration } from '../../../lib/db.js';

/** Base and fine-tuned models (LLMariner model manager §2). */
export const initial: Migration = {
  id: '001_initial',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).createTable('models', (t) => {
      t.text('tenant_id').notNullable();
      t.text('id').notNullable();
      // null: a base model shared by the whole tenant.
      t.text('project_id');
      t.text('organization_id');
      t.boolean('is_base_model').notNullable();
      t.text('base_model_id');
      t.text('source_repository').notNullable();
      t.text('source').notNullable();
      t.text('loading_status').notNullable();
      t.text('loading_status_message');
      t.text('loading_failure_reason');
      t.jsonb('formats').notNullable();
      t.text('activation_status').notNullable();
      t.jsonb('config').notNullable();
      t.text('owned_by').notNullable();
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.primary(['tenant_id', 'id']);
      t.index(['tenant_id', 'project_id']);
    });
  },
};
