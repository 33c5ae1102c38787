import type { Migration } from '../../../lib/db.js';

/**
 * Organization budgets and cost budgets (budgets.ts). A budget now counts tokens (`unit` TOKENS,
 * `token_limit`) or cost (`unit` COST, `cost_limit_micros`: USD micro-units, whole numbers); its
 * `budget_spend.tokens` counter holds what it spent in its own unit. An ORGANIZATION budget belongs to
 * no project: its `project_id` is '' (so the one-budget-per-target key still holds). A key, project or
 * organization may have one budget of each unit. The price table: per organization and model, the
 * price of 1M input and 1M output tokens in USD micro-units.
 */
export const costBudgets: Migration = {
  id: '007_cost_budgets',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).alterTable('budgets', (t) => {
      t.text('unit').notNullable().defaultTo('TOKENS');
      t.bigInteger('cost_limit_micros');
      t.dropUnique(['tenant_id', 'project_id', 'scope', 'scope_id']);
      t.unique(['tenant_id', 'project_id', 'scope', 'scope_id', 'unit']);
      t.index(['tenant_id', 'scope', 'scope_id']);
    });
    await knex.raw('alter table ??.budgets alter column token_limit drop not null', [schema]);
    await knex.schema.withSchema(schema).createTable('model_prices', (t) => {
      t.text('tenant_id').notNullable();
      t.text('organization_id').notNullable();
      t.text('model_id').notNullable();
      /** USD micro-units (1e-6 USD) per 1M prompt tokens, and per 1M completion tokens. */
      t.bigInteger('input_micros_per_million').notNullable();
      t.bigInteger('output_micros_per_million').notNullable();
      t.timestamp('updated_at', { useTz: true }).notNullable();
      t.primary(['tenant_id', 'organization_id', 'model_id']);
    });
  },
};
