import { badInput, forbidden, notFound } from '../../lib/errors.js';
import { isId, newId } from '../../lib/ids.js';
import { projectScopeOf, type Identity, type ProjectScope } from '../../lib/identity.js';
import type { BudgetState } from './budgets.js';
import type { BudgetRow } from './budgetsStore.js';
import type { InferenceContext } from './context.js';
import type { Budget, ModelPrice, SetBudgetInput, SetModelPriceInput } from './generated/resolvers.js';

/** Whether the caller owns the organization of the project it calls in. */
function ownsOrganization(identity: Identity | null, scope: ProjectScope): boolean {
  return !!identity?.principal.organizations.some((o) => o.organizationId === scope.organizationId && o.role === 'OWNER');
}

/**
 * The project a budget call is about: the caller's project context (the API key's project, or the
 * `OpenAI-Project` header). Another project, of this organization or another, is refused: its
 * membership is the users subgraph's, and a budget of a project the caller does not call in would be
 * set on trust. An organization's budgets and prices are those of the project context's organization.
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
    projectId: budget.project_id || null,
    period: budget.period,
    unit: budget.unit,
    tokenLimit: budget.unit === 'TOKENS' ? budget.token_limit : null,
    costLimitMicros: budget.unit === 'COST' ? budget.cost_limit_micros : null,
    alertPercent: budget.alert_percent,
    spent: state.spent,
    remaining: state.remaining,
    periodStart: state.periodStart.toISOString(),
    resetsAt: state.resetsAt.toISOString(),
    alertedAt: budget.alerted_at ? budget.alerted_at.toISOString() : null,
  };
}

/**
 * Whom a budget is visible to: organization owners see every budget of the project and the
 * organization; others the project's, the organization's (both limit them) and their own key's.
 */
function canRead(identity: Identity | null, scope: ProjectScope, budget: BudgetRow): boolean {
  if (ownsOrganization(identity, scope)) return true;
  return budget.scope === 'PROJECT' || budget.scope === 'ORGANIZATION' || budget.scope_id === identity?.principal.apiKey?.id;
}

/** A whole number of at least `min` that a Float input holds, or BAD_USER_INPUT naming the field. */
function wholeNumber(value: number, field: string, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) throw badInput(`${field} must be a whole number of at least ${min}`, field);
  return value;
}

export async function budgets(ctx: InferenceContext, projectId?: string | null): Promise<Budget[]> {
  const scope = projectOf(ctx, projectId);
  const rows = await ctx.budgetStore.inProject(scope.tenantId, scope.organizationId, scope.projectId);
  const visible = rows.filter((row) => canRead(ctx.identity, scope, row));
  return Promise.all(visible.map(async (row) => budgetOf(await ctx.budgets.state(row))));
}

export async function setBudget(ctx: InferenceContext, input: SetBudgetInput): Promise<Budget> {
  const scope = projectOf(ctx);
  if (!ownsOrganization(ctx.identity, scope)) throw forbidden('Only an owner of the organization sets budgets');
  const tokenLimit = input.tokenLimit ?? null;
  const costLimit = input.costLimitMicros ?? null;
  if ((tokenLimit === null) === (costLimit === null))
    throw badInput('Give either tokenLimit (a token budget) or costLimitMicros (a cost budget)', tokenLimit === null ? 'tokenLimit' : 'costLimitMicros');
  if (tokenLimit !== null) wholeNumber(tokenLimit, 'tokenLimit', 1);
  if (costLimit !== null) wholeNumber(costLimit, 'costLimitMicros', 1);
  const alertPercent = input.alertPercent ?? null;
  if (alertPercent !== null && (!Number.isInteger(alertPercent) || alertPercent < 1 || alertPercent > 100))
    throw badInput('alertPercent must be from 1 to 100', 'alertPercent');
  if (input.scope === 'PROJECT' && input.id !== scope.projectId)
    throw badInput(`A PROJECT budget's id is the project's (${scope.projectId}, the caller's project context)`, 'id');
  if (input.scope === 'ORGANIZATION' && input.id !== scope.organizationId)
    throw badInput(`An ORGANIZATION budget's id is the organization's of the caller's project context (${scope.organizationId})`, 'id');
  if (input.scope === 'KEY' && !isId('apiKey', input.id)) throw badInput(`${input.id} is not an API key id`, 'id');
  const row = await ctx.budgetStore.upsert({
    id: newId('budget'),
    tenant_id: scope.tenantId,
    organization_id: scope.organizationId,
    project_id: input.scope === 'ORGANIZATION' ? '' : scope.projectId,
    scope: input.scope,
    scope_id: input.id,
    period: input.period,
    unit: costLimit === null ? 'TOKENS' : 'COST',
    token_limit: tokenLimit,
    cost_limit_micros: costLimit,
    alert_percent: alertPercent,
    created_at: new Date(),
  });
  ctx.budgets.invalidate();
  ctx.logger.info(
    { budget: row.id, scope: row.scope, scopeId: row.scope_id, period: row.period, unit: row.unit, tokenLimit, costLimitMicros: costLimit },
    'budget set',
  );
  return budgetOf(await ctx.budgets.state(row));
}

export async function deleteBudget(ctx: InferenceContext, id: string): Promise<{ id: string; deleted: boolean }> {
  const scope = projectOf(ctx);
  const row = await ctx.budgetStore.get(scope.tenantId, id);
  // Another project's (or organization's) budget reads as absent.
  const ours = row && (row.scope === 'ORGANIZATION' ? row.scope_id === scope.organizationId && row.project_id === '' : row.project_id === scope.projectId);
  if (!ours) throw notFound('Budget', id);
  if (!ownsOrganization(ctx.identity, scope)) throw forbidden('Only an owner of the organization deletes budgets');
  await ctx.budgetStore.delete(scope.tenantId, id);
  ctx.budgets.invalidate();
  return { id, deleted: true };
}

/** The price table of the caller's organization: its own prices, then the default table's other models. */
export async function modelPrices(ctx: InferenceContext): Promise<ModelPrice[]> {
  const scope = projectOf(ctx);
  const own = await ctx.budgetStore.pricesOf(scope.tenantId, scope.organizationId);
  const prices: ModelPrice[] = own.map((row) => ({
    modelId: row.model_id,
    inputMicrosPerMillion: row.input_micros_per_million,
    outputMicrosPerMillion: row.output_micros_per_million,
    source: 'ORGANIZATION',
    updatedAt: row.updated_at.toISOString(),
  }));
  const priced = new Set(own.map((row) => row.model_id));
  for (const [modelId, price] of Object.entries(ctx.budgets.defaults)) {
    if (!priced.has(modelId)) prices.push({ modelId, ...price, source: 'DEFAULT', updatedAt: null });
  }
  return prices.sort((a, b) => a.modelId.localeCompare(b.modelId));
}

export async function setModelPrice(ctx: InferenceContext, input: SetModelPriceInput): Promise<ModelPrice> {
  const scope = projectOf(ctx);
  if (!ownsOrganization(ctx.identity, scope)) throw forbidden('Only an owner of the organization sets model prices');
  const modelId = input.modelId.trim();
  if (modelId === '' || modelId.length > 256) throw badInput('modelId must be 1 to 256 characters', 'modelId');
  const row = await ctx.budgetStore.setPrice({
    tenant_id: scope.tenantId,
    organization_id: scope.organizationId,
    model_id: modelId,
    input_micros_per_million: wholeNumber(input.inputMicrosPerMillion, 'inputMicrosPerMillion', 0),
    output_micros_per_million: wholeNumber(input.outputMicrosPerMillion, 'outputMicrosPerMillion', 0),
    updated_at: new Date(),
  });
  ctx.budgets.invalidate();
  ctx.logger.info(
    { organizationId: scope.organizationId, modelId, input: row.input_micros_per_million, output: row.output_micros_per_million },
    'model price set',
  );
  return {
    modelId: row.model_id,
    inputMicrosPerMillion: row.input_micros_per_million,
    outputMicrosPerMillion: row.output_micros_per_million,
    source: 'ORGANIZATION',
    updatedAt: row.updated_at.toISOString(),
  };
}

export async function deleteModelPrice(ctx: InferenceContext, modelId: string): Promise<{ id: string; deleted: boolean }> {
  const scope = projectOf(ctx);
  if (!ownsOrganization(ctx.identity, scope)) throw forbidden('Only an owner of the organization removes model prices');
  if (!(await ctx.budgetStore.deletePrice(scope.tenantId, scope.organizationId, modelId))) throw notFound('ModelPrice', modelId);
  ctx.budgets.invalidate();
  return { id: modelId, deleted: true };
}
