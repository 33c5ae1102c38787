import type { Migration } from '../../../lib/db.js';

/**
 * The audit log: one row per audited operation. Append-only by design: the subgraph's store has no update
 * path and deletes only past the retention period; where the database allows, a trigger refuses any UPDATE
 * of a row, so even a bug in a later change cannot rewrite history (PostgreSQL and PGlite both run it).
 */
export const initial: Migration = {
  id: '001_initial',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).createTable('audit_events', (t) => {
      t.text('id').primary();
      // When the gateway received the operation (the pagination order).
      t.timestamp('created_at', { useTz: true }).notNullable();
      t.text('request_id').notNullable();
      t.text('user_id');
      t.text('api_key_id');
      t.text('organization_id');
      t.text('project_id');
      t.text('client_address');
      t.text('kind').notNullable();
      t.text('operation_name');
      // [{ field, arguments: [{ name, id }] }]: argument names, and values only for ids.
      t.jsonb('actions').notNullable();
      t.text('outcome').notNullable();
      t.index(['organization_id', 'created_at']);
      t.index(['created_at']);
    });
    await knex.raw(
      `create function ??.audit_events_immutable() returns trigger language plpgsql as $$
       begin raise exception 'audit entries are append-only'; end $$`,
      [schema],
    );
    await knex.raw('create trigger audit_events_no_update before update on ??.audit_events for each row execute function ??.audit_events_immutable()', [
      schema,
      schema,
    ]);
  },
};
