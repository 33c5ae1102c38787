import { badInput, forbidden, notFound } from '../../lib/errors.js';
import { isId, newId } from '../../lib/ids.js';
import { projectScopeOf, type Identity, type ProjectScope } from '../../lib/identity.js';
import type { BudgetState } from './budgets.js';
import type { BudgetRow } from './budgetsStore.js';
import type { InferenceContext } from './context.js';
import type { Budget, SetBudgetInput } from './generated/resolvers.js';

/** Whether the caller owns the organization of the project it calls in. */
function ownsOrganization(identity: Identity | null, scope: ProjectScope): boolean {
  return !!identity?.principal.organizations.some((o) => o.organizationId === scope.organizationId && o.role === 'OWNER');
}

/**
 * The project a budget call is about: the caller's project context (the API key's project, or the
 * `OpenAI-Project` header). Another project, of this organization or another, is refused: its
 * membership is the users subgraph's, and a budget of a project the caller does not call in would be
 * set on trust.
 */
function projectOf(ctx: InferenceContext, projectId?: string | null): ProjectScope {
  const scope = projectScopeOf(ctx.identity);
  if (projectId && projectId !== scope.projectId)
    throw forbidden(`Budgets are read and set in the caller's project context (${scope.projectId}); send OpenAI-Project: ${projectId} to use that project`);
  return scope;
}

function budgetOf(state: BudgetState): Budget {
  const { budget } = state;
  return {
    id: budget.id,
    scope: budget.scope,
    scopeId: budget.scope_id,
    projectId: budget.project_id,
    period: budget.period,
    tokenLimit: budget.token_limit,
    alertPercent: budget.alert_percent,
    spent: state.spent,
    remaining: state.remaining,
    periodStart: state.periodStart.toISOString(),
    resetsAt: state.resetsAt.toISOString(),
    alertedAt: budget.alerted_at ? budget.alerted_at.toISOString() : null,
  };
}

/** Whom a budget is visible to: organization owners see every budget; others the project's and their own key's. */
function canRead(identity: Identity | null, scope: ProjectScope, budget: BudgetRow): boolean {
  if (ownsOrganization(identity, scope)) return true;
  return budget.scope === 'PROJECT' || budget.scope_id === identity?.principal.apiKey?.id;
}

export async function budgets(ctx: InferenceContext, projectId?: string | null): Promise<Budget[]> {
  const scope = projectOf(ctx, projectId);
  const rows = await ctx.budgetStore.inProject(scope.tenantId, scope.projectId);
  const visible = rows.filter((row) => canRead(ctx.identity, scope, row));
  return Promise.all(visible.map(async (row) => budgetOf(await ctx.budgets.state(row))));
}

export async function setBudget(ctx: InferenceContext, input: SetBudgetInput): Promise<Budget> {
  const scope = projectOf(ctx);
  if (!ownsOrganization(ctx.identity, scope)) throw forbidden('Only an owner of the organization sets budgets');
  if (!Number.isSafeInteger(input.tokenLimit) || input.tokenLimit < 1) throw badInput('tokenLimit must be a whole number of at least 1', 'tokenLimit');
  const alertPercent = input.alertPercent ?? null;
  if (alertPercent !== null && (!Number.isInteger(alertPercent) || alertPercent < 1 || alertPercent > 100))
    throw badInput('alertPercent must be from 1 to 100', 'alertPercent');
  if (input.scope === 'PROJECT' && input.id !== scope.projectId)
    throw badInput(`A PROJECT budget's id is the project's (${scope.projectId}, the caller's project context)`, 'id');
  if (input.scope === 'KEY' && !isId('apiKey', input.id)) throw badInput(`${input.id} is not an API key id`, 'id');
  const row = await ctx.budgetStore.upsert({
    id: newId('budget'),
    tenant_id: scope.tenantId,
    organization_id: scope.organizationId,
    project_id: scope.projectId,
    scope: input.scope,
    scope_id: input.id,
    period: input.period,
    token_limit: input.tokenLimit,
    alert_percent: alertPercent,
    created_at: new Date(),
  });
  ctx.budgets.invalidate();
  ctx.logger.info({ budget: row.id, scope: row.scope, scopeId: row.scope_id, period: row.period, tokenLimit: row.token_limit }, 'budget set');
  return budgetOf(await ctx.budgets.state(row));
}

export async function deleteBudget(ctx: InferenceContext, id: string): Promise<{ id: string; deleted: boolean }> {
  const scope = projectOf(ctx);
  const row = await ctx.budgetStore.get(scope.tenantId, id);
  // Another project's (or organization's) budget reads as absent.
  if (!row || row.project_id !== scope.projectId) throw notFound('Budget', id);
  if (!ownsOrganization(ctx.identity, scope)) throw forbidden('Only an owner of the organization deletes budgets');
  await ctx.budgetStore.delete(scope.tenantId, id);
  ctx.budgets.invalidate();
  return { id, deleted: true };
}
