import type { Knex } from 'knex';
import { SCHEMA } from './store.js';

export type BudgetScope = 'KEY' | 'PROJECT';
export type BudgetPeriod = 'DAY' | 'WEEK' | 'MONTH';

export interface BudgetRow {
  id: string;
  tenant_id: string;
  organization_id: string;
  project_id: string;
  scope: BudgetScope;
  scope_id: string;
  period: BudgetPeriod;
  token_limit: number;
  alert_percent: number | null;
  alerted_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

/** What a request is charged to: its project, and its API key (null: an OIDC caller). */
export interface BudgetSubject {
  tenantId: string;
  projectId: string;
  apiKeyId: string | null;
}

const toRow = (row: BudgetRow): BudgetRow => ({ ...row, token_limit: Number(row.token_limit) });

/** The SQL of budgets (budgets.ts): the budget rows, and what each spent per period. */
export class BudgetStore {
  constructor(private readonly knex: Knex) {}

  private get table() {
    return this.knex.withSchema(SCHEMA).table<BudgetRow>('budgets');
  }

  /** The budgets a request of `subject` counts against: its project's, and its key's in that project. */
  async forSubject(subject: BudgetSubject): Promise<BudgetRow[]> {
    const rows = await this.table.where({ tenant_id: subject.tenantId, project_id: subject.projectId }).where((q) => {
      void q.where({ scope: 'PROJECT', scope_id: subject.projectId });
      if (subject.apiKeyId) void q.orWhere({ scope: 'KEY', scope_id: subject.apiKeyId });
    });
    return rows.map(toRow);
  }

  async inProject(tenantId: string, projectId: string): Promise<BudgetRow[]> {
    const rows = await this.table.where({ tenant_id: tenantId, project_id: projectId }).orderBy('created_at');
    return rows.map(toRow);
  }

  async get(tenantId: string, id: string): Promise<BudgetRow | null> {
    const row = await this.table.where({ tenant_id: tenantId, id }).first();
    return row ? toRow(row) : null;
  }

  /** Creates the budget of (project, scope, scope id), or changes its period, limit and alert. */
  async upsert(row: Omit<BudgetRow, 'alerted_at' | 'updated_at'>): Promise<BudgetRow> {
    const [saved] = await this.table
      .insert({ ...row, alerted_at: null, updated_at: row.created_at })
      .onConflict(['tenant_id', 'project_id', 'scope', 'scope_id'])
      .merge(['period', 'token_limit', 'alert_percent', 'updated_at'])
      .returning('*');
    return toRow(saved as BudgetRow);
  }

  async delete(tenantId: string, id: string): Promise<boolean> {
    return (await this.table.where({ tenant_id: tenantId, id }).delete()) > 0;
  }

  /** The tokens the budget's requests used in the period that started at `periodStart`. */
  async spentIn(budgetId: string, periodStart: Date): Promise<number> {
    const row = await this.knex.withSchema(SCHEMA).table('budget_spend').where({ budget_id: budgetId, period_start: periodStart }).first('tokens');
    return Number(row?.tokens ?? 0);
  }

  /** Adds a request's tokens to the budget's period (every replica's, atomically); returns the period's total. */
  async charge(budgetId: string, periodStart: Date, tokens: number): Promise<number> {
    const [row] = (await this.knex
      .withSchema(SCHEMA)
      .table('budget_spend')
      .insert({ budget_id: budgetId, period_start: periodStart, tokens })
      .onConflict(['budget_id', 'period_start'])
      .merge({ tokens: this.knex.raw('?? + ?', ['budget_spend.tokens', tokens]) })
      .returning('tokens')) as { tokens: string | number }[];
    return Number(row?.tokens ?? tokens);
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
}
