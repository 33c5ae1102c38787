import type { Migration } from '../../../lib/db.js';

/**
 * Per-API-key rate-limit windows (LLMariner inference manager: per-key rate limiting) and one usage
 * record per inference request (LLMariner api-usage `UsageRecord`, reference §10).
 */
export const rateLimitsAndUsage: Migration = {
  id: '002_rate_limits_and_usage',
  async up(knex, schema) {
    // One row per API key: the window it is in (it starts with the key's first request after the
    // previous one ended) and what was spent in it. Every replica admits against this row.
    await knex.schema.withSchema(schema).createTable('rate_limit_windows', (t) => {
      t.text('api_key_id').primary();
      t.timestamp('window_start', { useTz: true }).notNullable();
      t.integer('requests').notNullable();
      t.bigInteger('tokens').notNullable();
    });
    await knex.schema.withSchema(schema).createTable('usage_records', (t) => {
      t.bigIncrements('id').primary();
      t.text('tenant_id').notNullable();
      t.text('organization_id').notNullable();
      t.text('project_id').notNullable();
      t.text('user_id').notNullable();
      t.text('api_key_id');
      t.text('model_id').notNullable();
      /** `/v1/chat/completions`, `/v1/completions` or `/v1/embeddings`. */
      t.text('api_method').notNullable();
      t.integer('status_code').notNullable();
      t.integer('prompt_tokens').notNullable();
      t.integer('completion_tokens').notNullable();
      t.integer('time_to_first_token_ms');
      t.integer('latency_ms').notNullable();
      t.timestamp('created_at', { useTz: true }).notNullable();
      t.index(['tenant_id', 'project_id', 'created_at']);
    });
  },
};
