import type { Knex } from 'knex';
import { SCHEMA } from './store.js';

export type BudgetScope = 'KEY' | 'PROJECT' | 'ORGANIZATION';
export type BudgetPeriod = 'DAY' | 'WEEK' | 'MONTH';
/** What a budget counts: tokens (prompt + completion), or their cost in USD micro-units by the price table. */
export type BudgetUnit = 'TOKENS' | 'COST';

export interface BudgetRow {
  id: string;
  tenant_id: string;
  organization_id: string;
  /** The project the budget belongs to ('' for an ORGANIZATION budget, which belongs to none). */
  project_id: string;
  scope: BudgetScope;
  scope_id: string;
  period: BudgetPeriod;
  unit: BudgetUnit;
  /** TOKENS: tokens per period (null for a COST budget). */
  token_limit: number | null;
  /** COST: USD micro-units (1e-6 USD) per period (null for a TOKENS budget). */
  cost_limit_micros: number | null;
  alert_percent: number | null;
  alerted_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

/** A budget's limit in its own unit (tokens, or USD micro-units). */
export const limitOf = (row: BudgetRow): number => (row.unit === 'COST' ? (row.cost_limit_micros ?? 0) : (row.token_limit ?? 0));

/** What a request is charged to: its organization, its project, and its API key (null: an OIDC caller). */
export interface BudgetSubject {
  tenantId: string;
  organizationId: string;
  projectId: string;
  apiKeyId: string | null;
}

/** The price of a model's tokens for an organization: USD micro-units per 1M input and per 1M output tokens. */
export interface ModelPriceRow {
  tenant_id: string;
  organization_id: string;
  model_id: string;
  input_micros_per_million: number;
  output_micros_per_million: number;
  updated_at: Date;
}

const num = (value: unknown): number | null => (value === null || value === undefined ? null : Number(value));
const toRow = (row: BudgetRow): BudgetRow => ({
  ...row,
  unit: row.unit ?? 'TOKENS',
  token_limit: num(row.token_limit),
  cost_limit_micros: num(row.cost_limit_micros),
});
const toPrice = (row: ModelPriceRow): ModelPriceRow => ({
  ...row,
  input_micros_per_million: Number(row.input_micros_per_million),
  output_micros_per_million: Number(row.output_micros_per_million),
});

/** The SQL of budgets (budgets.ts): the budget rows, what each spent per period, and the price table. */
export class BudgetStore {
  constructor(private readonly knex: Knex) {}

  private get table() {
    return this.knex.withSchema(SCHEMA).table<BudgetRow>('budgets');
  }

  private get prices() {
    return this.knex.withSchema(SCHEMA).table<ModelPriceRow>('model_prices');
  }

  /**
   * The budgets a request of `subject` counts against, in one query: its organization's, its project's,
   * and its key's in that project.
   */
  async forSubject(subject: BudgetSubject): Promise<BudgetRow[]> {
    const rows = await this.table.where({ tenant_id: subject.tenantId }).where((q) => {
      void q.where({ scope: 'ORGANIZATION', scope_id: subject.organizationId, project_id: '' });
      void q.orWhere({ scope: 'PROJECT', scope_id: subject.projectId, project_id: subject.projectId });
      if (subject.apiKeyId) void q.orWhere({ scope: 'KEY', scope_id: subject.apiKeyId, project_id: subject.projectId });
    });
    return rows.map(toRow);
  }

  /** The project's budgets and its organization's. */
  async inProject(tenantId: string, organizationId: string, projectId: string): Promise<BudgetRow[]> {
    const rows = await this.table
      .where({ tenant_id: tenantId })
      .where((q) => void q.where({ project_id: projectId }).orWhere({ scope: 'ORGANIZATION', scope_id: organizationId, project_id: '' }))
      .orderBy('created_at');
    return rows.map(toRow);
  }

  async get(tenantId: string, id: string): Promise<BudgetRow | null> {
    const row = await this.table.where({ tenant_id: tenantId, id }).first();
    return row ? toRow(row) : null;
  }

  /** Creates the budget of (project, scope, scope id, unit), or changes its period, limit and alert. */
  async upsert(row: Omit<BudgetRow, 'alerted_at' | 'updated_at'>): Promise<BudgetRow> {
    const [saved] = await this.table
      .insert({ ...row, alerted_at: null, updated_at: row.created_at })
      .onConflict(['tenant_id', 'project_id', 'scope', 'scope_id', 'unit'])
      .merge(['period', 'token_limit', 'cost_limit_micros', 'alert_percent', 'updated_at'])
      .returning('*');
    return toRow(saved as BudgetRow);
  }

  async delete(tenantId: string, id: string): Promise<boolean> {
    return (await this.table.where({ tenant_id: tenantId, id }).delete()) > 0;
  }

  /** What the budget's requests spent (in its unit) in the period that started at `periodStart`. */
  async spentIn(budgetId: string, periodStart: Date): Promise<number> {
    const row = await this.knex.withSchema(SCHEMA).table('budget_spend').where({ budget_id: budgetId, period_start: periodStart }).first('tokens');
    return Number(row?.tokens ?? 0);
  }

  /** Adds a request's spend to the budget's period (every replica's, atomically); returns the period's total. */
  async charge(budgetId: string, periodStart: Date, amount: number): Promise<number> {
    const [row] = (await this.knex
      .withSchema(SCHEMA)
      .table('budget_spend')
      .insert({ budget_id: budgetId, period_start: periodStart, tokens: amount })
      .onConflict(['budget_id', 'period_start'])
      .merge({ tokens: this.knex.raw('?? + ?', ['budget_spend.tokens', amount]) })
      .returning('tokens')) as { tokens: string | number }[];
    return Number(row?.tokens ?? amount);
  }

  /**
   * Marks the budget's alert as fired for the period that started at `periodStart`; true only for the
   * one caller (of every replica) that marked it first in that period.
   */
  async markAlerted(id: string, periodStart: Date, now: Date): Promise<boolean> {
    const updated = await this.table
      .where({ id })
      .where((q) => void q.whereNull('alerted_at').orWhere('alerted_at', '<', periodStart))
      .update({ alerted_at: now });
    return updated > 0;
  }

  /** The organization's own prices (the settings' default table is budgets.ts's). */
  async pricesOf(tenantId: string, organizationId: string): Promise<ModelPriceRow[]> {
    const rows = await this.prices.where({ tenant_id: tenantId, organization_id: organizationId }).orderBy('model_id');
    return rows.map(toPrice);
  }

  async setPrice(row: ModelPriceRow): Promise<ModelPriceRow> {
    const [saved] = await this.prices
      .insert(row)
      .onConflict(['tenant_id', 'organization_id', 'model_id'])
      .merge(['input_micros_per_million', 'output_micros_per_million', 'updated_at'])
      .returning('*');
    return toPrice(saved as ModelPriceRow);
  }

  async deletePrice(tenantId: string, organizationId: string, modelId: string): Promise<boolean> {
    return (await this.prices.where({ tenant_id: tenantId, organization_id: organizationId, model_id: modelId }).delete()) > 0;
  }
}
