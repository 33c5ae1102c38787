import type { Migration } from '../../../lib/db.js';

/**
 * Token budgets (spend limits) per API key or project and period (budgets.ts), and what each spent
 * per period: one counter row per budget and period, added to by every replica in one statement.
 */
export const budgets: Migration = {
  id: '005_budgets',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).createTable('budgets', (t) => {
      t.text('id').primary();
      t.text('tenant_id').notNullable();
      t.text('organization_id').notNullable();
      /** The project the budget belongs to: a KEY budget applies to its key only in this project. */
      t.text('project_id').notNullable();
      /** `KEY` or `PROJECT`. */
      t.text('scope').notNullable();
      /** The API key's id (KEY) or the project's id (PROJECT). */
      t.text('scope_id').notNullable();
      /** `DAY`, `WEEK` or `MONTH` (UTC). */
      t.text('period').notNullable();
      t.bigInteger('token_limit').notNullable();
      /** Percent of the limit at which the alert fires once per period (null: no alert). */
      t.integer('alert_percent');
      /** When the alert last fired: it fires again only once a new period has started. */
      t.timestamp('alerted_at', { useTz: true });
      t.timestamp('created_at', { useTz: true }).notNullable();
      t.timestamp('updated_at', { useTz: true }).notNullable();
      t.unique(['tenant_id', 'project_id', 'scope', 'scope_id']);
    });
    await knex.schema.withSchema(schema).createTable('budget_spend', (t) => {
      t.text('budget_id').notNullable().references('id').inTable(`${schema}.budgets`).onDelete('CASCADE');
      t.timestamp('period_start', { useTz: true }).notNullable();
      t.bigInteger('tokens').notNullable();
      t.primary(['budget_id', 'period_start']);
    });
  },
};
