import type { Migration } from '../../../lib/db.js';

/** Stored responses of the Responses API and their input items (OpenAI: create with `store`, input_items). */
export const initial: Migration = {
  id: '001_initial',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).createTable('responses', (t) => {
      t.text('id').primary();
      t.text('tenant_id').notNullable();
      t.text('organization_id').notNullable();
      t.text('project_id').notNullable();
      t.text('created_by').notNullable();
      // Not a foreign key: deleting a response leaves the ones chained to it (their chain stops there).
      t.text('previous_response_id');
      t.text('model').notNullable();
      t.text('status').notNullable();
      // The response object as /v1/responses answered it (output items, usage, parameters).
      t.jsonb('body').notNullable();
      t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
      t.index(['project_id', 'created_at']);
    });
    await knex.schema.withSchema(schema).createTable('response_input_items', (t) => {
      t.text('response_id').notNullable().references('id').inTable(`${schema}.responses`).onDelete('CASCADE');
      t.integer('position').notNullable();
      t.text('id').notNullable();
      t.jsonb('item').notNullable();
      t.primary(['response_id', 'position']);
    });
  },
};
