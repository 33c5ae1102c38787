import { ErrorCode, MarinerError } from '../../lib/errors.js';
import type { Identity } from '../../lib/identity.js';
import type { Logger } from '../../lib/logging.js';
import type { BudgetPeriod, BudgetRow, BudgetStore, BudgetSubject } from './budgetsStore.js';

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

/** Refused: a budget of the caller's key or project is spent (OpenAI API: 429 `insufficient_quota`). */
export class BudgetExceededError extends MarinerError {
  constructor(readonly state: BudgetState) {
    const { budget } = state;
    const whose = budget.scope === 'KEY' ? `API key ${budget.scope_id}` : `project ${budget.scope_id}`;
    super(
      ErrorCode.QUOTA_EXCEEDED,
      `Budget exceeded: the ${PERIOD_WORDS[budget.period]} token budget of ${whose} (${budget.token_limit} tokens, ${state.spent} used) is spent; it resets at ${state.resetsAt.toISOString()}`,
    );
  }
}

/** What a request of `identity` is charged to (null: no project context, so nothing is recorded either). */
export function budgetSubjectOf(identity: Identity | null): BudgetSubject | null {
  const project = identity?.project;
  if (!identity || !project) return null;
  return { tenantId: identity.principal.tenantId, projectId: project.projectId, apiKeyId: identity.principal.apiKey?.id ?? null };
}

/** What the database said a budget spent in a period, when. */
interface SpentCache {
  periodStart: number;
  spent: number;
  readAt: number;
}

/**
 * Token budgets per API key and project (budgets and spend limits, issue 20). A request is admitted
 * while every budget it counts against has tokens left, and refused with QUOTA_EXCEEDED (429
 * `insufficient_quota`) before it reaches a runtime otherwise; its tokens are charged when it ends, so
 * the request that spends the last tokens still runs and the next is refused (as the rate limiter).
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

  constructor(
    private readonly store: BudgetStore,
    private readonly logger: Logger,
    private readonly cacheMs: number,
    /** The clock periods are read from (a test moves it to the next period). */
    private readonly now: () => Date = () => new Date(),
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

  /** Charges a finished request's tokens to its budgets, and fires an alert once per period. */
  async charge(subject: BudgetSubject | null, tokens: number): Promise<void> {
    if (!subject || tokens <= 0) return;
    for (const budget of await this.budgets(subject)) {
      const now = this.now();
      const start = periodStart(budget.period, now);
      const spent = await this.store.charge(budget.id, start, tokens);
      this.spent.set(budget.id, { periodStart: start.getTime(), spent, readAt: now.getTime() });
      if (budget.alert_percent === null || spent * 100 < budget.token_limit * budget.alert_percent) continue;
      if (budget.alerted_at && budget.alerted_at >= start) continue;
      // One replica marks it; the others' update finds it marked in this period.
      if (await this.store.markAlerted(budget.id, start, now)) {
        budget.alerted_at = now;
        this.logger.warn(
          {
            budget: budget.id,
            scope: budget.scope,
            scopeId: budget.scope_id,
            projectId: budget.project_id,
            spent,
            tokenLimit: budget.token_limit,
            alertPercent: budget.alert_percent,
          },
          'budget alert: spend reached the alert threshold',
        );
      }
    }
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
      remaining: Math.max(0, budget.token_limit - cached.spent),
      periodStart: start,
      resetsAt: periodEnd(budget.period, now),
    };
  }

  /** Forgets the cached budgets (after a change through this replica, which takes effect at once here). */
  invalidate(): void {
    this.budgetsOf.clear();
    this.spent.clear();
  }

  private async budgets(subject: BudgetSubject): Promise<BudgetRow[]> {
    const key = `${subject.tenantId}\n${subject.projectId}\n${subject.apiKeyId ?? ''}`;
    const now = this.now().getTime();
    const cached = this.budgetsOf.get(key);
    if (cached && now - cached.readAt < this.cacheMs) return cached.rows;
    const rows = await this.store.forSubject(subject);
    this.budgetsOf.set(key, { rows, readAt: now });
    return rows;
  }
}
