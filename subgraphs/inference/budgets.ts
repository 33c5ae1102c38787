import { ErrorCode, MarinerError } from '../../lib/errors.js';
import type { Identity } from '../../lib/identity.js';
import type { Logger } from '../../lib/logging.js';
import { limitOf, type BudgetPeriod, type BudgetRow, type BudgetStore, type BudgetSubject, type ModelPriceRow } from './budgetsStore.js';

/** The start of the period (UTC) that `now` is in: midnight, Monday's midnight (ISO weeks), or the 1st. */
export function periodStart(period: BudgetPeriod, now: Date): Date {
  const day = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
  if (period === 'DAY') return day;
  if (period === 'WEEK') return new Date(day.getTime() - ((day.getUTCDay() + 6) % 7) * 24 * 60 * 60 * 1000);
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
}

/** When the period that `now` is in ends, and the budget resets. */
export function periodEnd(period: BudgetPeriod, now: Date): Date {
  const start = periodStart(period, now);
  if (period === 'DAY') return new Date(start.getTime() + 24 * 60 * 60 * 1000);
  if (period === 'WEEK') return new Date(start.getTime() + 7 * 24 * 60 * 60 * 1000);
  return new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1));
}

/** A budget as its readers see it now. */
export interface BudgetState {
  budget: BudgetRow;
  spent: number;
  remaining: number;
  periodStart: Date;
  resetsAt: Date;
}

const PERIOD_WORDS: Record<BudgetPeriod, string> = { DAY: 'daily', WEEK: 'weekly', MONTH: 'monthly' };

/** USD micro-units as dollars with six decimals ("$12.345600"), in whole-number arithmetic. */
export function usd(micros: number): string {
  const value = BigInt(Math.trunc(micros));
  const sign = value < 0n ? '-' : '';
  const abs = value < 0n ? -value : value;
  return `${sign}$${abs / 1_000_000n}.${String(abs % 1_000_000n).padStart(6, '0')}`;
}

/** The price of 1M input and 1M output tokens of a model, in USD micro-units (whole numbers). */
export interface ModelPrice {
  inputMicrosPerMillion: number;
  outputMicrosPerMillion: number;
}

/** A price table: model id to its price (the settings' default table, or an organization's). */
export type PriceTable = Readonly<Record<string, ModelPrice>>;

/**
 * What a request's tokens cost at `price`, in USD micro-units, rounded up (so a budget is never
 * undercharged): (prompt x input price + completion x output price) / 1M, in BigInt arithmetic.
 */
export function costMicros(price: ModelPrice | undefined, usage: { prompt: number; completion: number }): number {
  if (!price) return 0;
  // A runtime's counts are whole numbers; anything else (a fraction, NaN) is read as its whole part or 0.
  const whole = (n: number) => BigInt(Number.isFinite(n) && n > 0 ? Math.trunc(n) : 0);
  const total = whole(usage.prompt) * whole(price.inputMicrosPerMillion) + whole(usage.completion) * whole(price.outputMicrosPerMillion);
  return Number((total + 999_999n) / 1_000_000n);
}

/** How a budget names its target in a message. */
function targetOf(budget: BudgetRow): string {
  if (budget.scope === 'KEY') return `API key ${budget.scope_id}`;
  if (budget.scope === 'PROJECT') return `project ${budget.scope_id}`;
  return `organization ${budget.scope_id}`;
}

/** A budget's limit and spend in words: "8 tokens, 10 used" or "$1.000000, $1.200000 used". */
function amountsOf(budget: BudgetRow, spent: number): string {
  return budget.unit === 'COST' ? `${usd(limitOf(budget))}, ${usd(spent)} used` : `${limitOf(budget)} tokens, ${spent} used`;
}

/** Refused: a budget of the caller's key, project or organization is spent (OpenAI API: 429 `insufficient_quota`). */
export class BudgetExceededError extends MarinerError {
  constructor(readonly state: BudgetState) {
    const { budget } = state;
    super(
      ErrorCode.QUOTA_EXCEEDED,
      `Budget exceeded: the ${PERIOD_WORDS[budget.period]} ${budget.unit === 'COST' ? 'cost' : 'token'} budget of ${targetOf(budget)} (${amountsOf(budget, state.spent)}) is spent; it resets at ${state.resetsAt.toISOString()}`,
    );
  }
}

/** What a request of `identity` is charged to (null: no project context, so nothing is recorded either). */
export function budgetSubjectOf(identity: Identity | null): BudgetSubject | null {
  const project = identity?.project;
  if (!identity || !project) return null;
  return {
    tenantId: identity.principal.tenantId,
    organizationId: project.organizationId,
    projectId: project.projectId,
    apiKeyId: identity.principal.apiKey?.id ?? null,
  };
}

/** What the database said a budget spent in a period, when. */
interface SpentCache {
  periodStart: number;
  spent: number;
  readAt: number;
}

/**
 * Budgets per API key, project and organization (budgets and spend limits, issue 20), in tokens or in
 * cost (USD micro-units, from the organization's price table over the settings' default one). A
 * request is admitted while every budget it counts against has something left, and refused with
 * QUOTA_EXCEEDED (429 `insufficient_quota`) before it reaches a runtime otherwise; its tokens (and
 * their cost) are charged when it ends, so the request that spends the last of a budget still runs and
 * the next is refused (as the rate limiter). Admission reads only what the budget rows cache holds
 * (one query per subject per `cacheMs`, as before); the price table is read when a request ends, and
 * only for a subject with a cost budget.
 *
 * What a budget spent is a counter per budget and period in the database, which every replica adds
 * to in one statement when a request ends (the same tokens the usage records count), so the budget
 * holds across replicas. Admission reads it from memory: the counter as this replica last charged or
 * read it, read again once older than `cacheMs` (the usage flush interval). A replica's own requests
 * count at once; the others' within `cacheMs`. The budget rows are cached as long: a budget set
 * through another replica applies here within `cacheMs`. A period starts with its counter at 0, so a
 * budget set mid-period counts from then.
 */
export class BudgetGuard {
  private readonly budgetsOf = new Map<string, { rows: BudgetRow[]; readAt: number }>();
  private readonly spent = new Map<string, SpentCache>();
  private readonly pricesOf = new Map<string, { table: PriceTable; readAt: number }>();

  constructor(
    private readonly store: BudgetStore,
    private readonly logger: Logger,
    private readonly cacheMs: number,
    /** The clock periods are read from (a test moves it to the next period). */
    private readonly now: () => Date = () => new Date(),
    /** The settings' price table, for the models an organization has not priced itself. */
    private readonly defaultPrices: PriceTable = {},
  ) {}

  /** Throws BudgetExceededError when a budget the caller's request counts against is spent. */
  async admit(identity: Identity | null): Promise<BudgetSubject | null> {
    const subject = budgetSubjectOf(identity);
    if (!subject) return null;
    for (const budget of await this.budgets(subject)) {
      const state = await this.state(budget);
      if (state.remaining <= 0) {
        this.logger.info({ budget: budget.id, scope: budget.scope, scopeId: budget.scope_id, spent: state.spent }, 'request refused: budget spent');
        throw new BudgetExceededError(state);
      }
    }
    return subject;
  }

  /** Charges a finished request's tokens (or their cost) to its budgets, and fires an alert once per period. */
  async charge(subject: BudgetSubject | null, usage: { prompt: number; completion: number } | null, modelId: string): Promise<void> {
    const tokens = (usage?.prompt ?? 0) + (usage?.completion ?? 0);
    if (!subject || !usage || tokens <= 0) return;
    const budgets = await this.budgets(subject);
    const price = budgets.some((b) => b.unit === 'COST') ? (await this.prices(subject.tenantId, subject.organizationId))[modelId] : undefined;
    for (const budget of budgets) {
      const amount = budget.unit === 'COST' ? costMicros(price, usage) : tokens;
      if (amount <= 0) continue;
      const now = this.now();
      const start = periodStart(budget.period, now);
      const spent = await this.store.charge(budget.id, start, amount);
      this.spent.set(budget.id, { periodStart: start.getTime(), spent, readAt: now.getTime() });
      if (budget.alert_percent === null || spent * 100 < limitOf(budget) * budget.alert_percent) continue;
      if (budget.alerted_at && budget.alerted_at >= start) continue;
      // One replica marks it; the others' update finds it marked in this period.
      if (await this.store.markAlerted(budget.id, start, now)) {
        budget.alerted_at = now;
        this.logger.warn(
          {
            budget: budget.id,
            scope: budget.scope,
            scopeId: budget.scope_id,
            projectId: budget.project_id || null,
            unit: budget.unit,
            spent,
            limit: limitOf(budget),
            alertPercent: budget.alert_percent,
          },
          'budget alert: spend reached the alert threshold',
        );
      }
    }
  }

  /**
   * The price table of an organization: its own prices over the settings' default table (cached as
   * the budget rows are; a price set through this replica applies here at once).
   */
  async prices(tenantId: string, organizationId: string): Promise<PriceTable> {
    const key = `${tenantId}\n${organizationId}`;
    const now = this.now().getTime();
    const cached = this.pricesOf.get(key);
    if (cached && now - cached.readAt < this.cacheMs) return cached.table;
    const table: Record<string, ModelPrice> = { ...this.defaultPrices };
    for (const row of await this.store.pricesOf(tenantId, organizationId)) table[row.model_id] = priceOf(row);
    this.pricesOf.set(key, { table, readAt: now });
    return table;
  }

  /** The settings' default price table. */
  get defaults(): PriceTable {
    return this.defaultPrices;
  }

  /** A budget's spend, what is left and when it resets (readers; the cache may lag as admission's). */
  async state(budget: BudgetRow): Promise<BudgetState> {
    const now = this.now();
    const start = periodStart(budget.period, now);
    let cached = this.spent.get(budget.id);
    if (!cached || cached.periodStart !== start.getTime() || now.getTime() - cached.readAt >= this.cacheMs) {
      cached = { periodStart: start.getTime(), spent: await this.store.spentIn(budget.id, start), readAt: now.getTime() };
      this.spent.set(budget.id, cached);
    }
    return {
      budget,
      spent: cached.spent,
      remaining: Math.max(0, limitOf(budget) - cached.spent),
      periodStart: start,
      resetsAt: periodEnd(budget.period, now),
    };
  }

  /** Forgets the cached budgets (after a change through this replica, which takes effect at once here). */
  invalidate(): void {
    this.budgetsOf.clear();
    this.spent.clear();
    this.pricesOf.clear();
  }

  private async budgets(subject: BudgetSubject): Promise<BudgetRow[]> {
    const key = `${subject.tenantId}\n${subject.organizationId}\n${subject.projectId}\n${subject.apiKeyId ?? ''}`;
    const now = this.now().getTime();
    const cached = this.budgetsOf.get(key);
    if (cached && now - cached.readAt < this.cacheMs) return cached.rows;
    const rows = await this.store.forSubject(subject);
    this.budgetsOf.set(key, { rows, readAt: now });
    return rows;
  }
}

const priceOf = (row: ModelPriceRow): ModelPrice => ({
  inputMicrosPerMillion: row.input_micros_per_million,
  outputMicrosPerMillion: row.output_micros_per_million,
});
