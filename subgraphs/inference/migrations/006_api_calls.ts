import type { Migration } from '../../../lib/db.js';

/**
 * One row per API call the platform answered (LLMariner api-usage records every API call, not only
 * inference): GraphQL operations as the gateway answered them, and REST calls as the REST layer answered
 * them (gateway/usage.ts says which record a REST call makes). Tokens stay in `usage_records` (one row per
 * inference request, with its model): summaries add them per group (usageStore.ts).
 */
export const apiCalls: Migration = {
  id: '006_api_calls',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).createTable('api_calls', (t) => {
      t.bigIncrements('id').primary();
      t.timestamp('created_at', { useTz: true }).notNullable();
      t.text('request_id').notNullable();
      /** `graphql` or `rest`. */
      t.text('protocol').notNullable();
      /** The HTTP method (`POST`; `WS` for an operation over graphql-ws). */
      t.text('method').notNullable();
      /** REST: the route as declared (`/v1/files/:id`); GraphQL: null. */
      t.text('route');
      /** GraphQL: `query`, `mutation` or `subscription`, and the operation's name (null when anonymous). */
      t.text('operation_type');
      t.text('operation_name');
      t.integer('status_code').notNullable();
      /** The GraphQL error code (`FORBIDDEN`), or REST's error type; null when it succeeded. */
      t.text('error_code');
      t.integer('latency_ms').notNullable();
      /** The caller, where the call was authenticated (null: refused before it was). */
      t.text('tenant_id');
      t.text('organization_id');
      t.text('project_id');
      t.text('user_id');
      t.text('api_key_id');
      /** The model an inference call named, where it named one. */
      t.text('model_id');
      t.index(['tenant_id', 'organization_id', 'created_at']);
      t.index(['created_at']);
    });
  },
};
