import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from '../lib/http.js';
import { unixSeconds } from '../lib/unixSeconds.js';
import { RestError } from './errors.js';
import type { GatewayClient } from './gatewayClient.js';
import { readJsonBody } from './json.js';
import type { Route, RouteContext } from './router.js';

/**
 * Budgets and the price table over REST (GraphQL `budgets`, `setBudget`, `deleteBudget`, `modelPrices`,
 * `setModelPrice`, `deleteModelPrice`, with the same rules: organization owners set them, in the caller's
 * project context), in OpenAI's list shape with snake_case fields, lower-case enums and unix-second times.
 *
 * - `GET /v1/budgets`: the budgets of the caller's project and organization (owners see all; others the
 *   project's, the organization's and their own key's).
 * - `POST /v1/budgets` `{scope, id, period, token_limit | cost_limit_micros, alert_percent}`: sets one.
 * - `DELETE /v1/budgets/{id}`.
 * - `GET /v1/model_prices`: the organization's price table (its own prices over the default table).
 * - `POST /v1/model_prices` `{model, input_micros_per_million, output_micros_per_million}`: sets a price.
 */
const BUDGET_FIELDS = 'id scope scopeId projectId period unit tokenLimit costLimitMicros alertPercent spent remaining periodStart resetsAt alertedAt';
const PRICE_FIELDS = 'modelId inputMicrosPerMillion outputMicrosPerMillion source updatedAt';

interface Budget {
  id: string;
  scope: string;
  scopeId: string;
  projectId: string | null;
  period: string;
  unit: string;
  tokenLimit: number | null;
  costLimitMicros: number | null;
  alertPercent: number | null;
  spent: number;
  remaining: number;
  periodStart: string;
  resetsAt: string;
  alertedAt: string | null;
}

interface ModelPrice {
  modelId: string;
  inputMicrosPerMillion: number;
  outputMicrosPerMillion: number;
  source: string;
  updatedAt: string | null;
}

const toBudget = (b: Budget) => ({
  id: b.id,
  object: 'budget',
  scope: b.scope.toLowerCase(),
  scope_id: b.scopeId,
  project_id: b.projectId,
  period: b.period.toLowerCase(),
  unit: b.unit.toLowerCase(),
  token_limit: b.tokenLimit,
  cost_limit_micros: b.costLimitMicros,
  alert_percent: b.alertPercent,
  spent: b.spent,
  remaining: b.remaining,
  period_start: unixSeconds(b.periodStart),
  resets_at: unixSeconds(b.resetsAt),
  alerted_at: unixSeconds(b.alertedAt, null),
});

const toPrice = (p: ModelPrice) => ({
  object: 'model_price',
  model: p.modelId,
  input_micros_per_million: p.inputMicrosPerMillion,
  output_micros_per_million: p.outputMicrosPerMillion,
  source: p.source.toLowerCase(),
  updated_at: unixSeconds(p.updatedAt, null),
});

/** An enum value given in any case (`key`, `KEY`), checked against its values. */
function enumOf(body: Record<string, unknown>, field: string, values: readonly string[]): string {
  const value = body[field];
  const upper = typeof value === 'string' ? value.toUpperCase() : '';
  if (!values.includes(upper)) throw RestError.badRequest(`${field} must be one of ${values.map((v) => v.toLowerCase()).join(', ')}`, field);
  return upper;
}

function numberOf(body: Record<string, unknown>, field: string, required: boolean): number | null {
  const value = body[field];
  if (value === undefined || value === null) {
    if (required) throw RestError.badRequest(`${field} is required`, field);
    return null;
  }
  if (typeof value !== 'number') throw RestError.badRequest(`${field} must be a number`, field);
  return value;
}

export function budgetRoutes({ gateway }: { gateway: GatewayClient }): Route[] {
  const call = <T>(req: IncomingMessage, ctx: RouteContext, query: string, variables: Record<string, unknown>) =>
    gateway.request<T>(req, ctx.requestId, query, variables);

  async function list(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const data = await call<{ budgets: Budget[] }>(req, ctx, `query Budgets { budgets { ${BUDGET_FIELDS} } }`, {});
    sendJson(res, 200, { object: 'list', data: data.budgets.map(toBudget) }, ctx.headers);
  }

  async function set(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const body = await readJsonBody(req);
    if (typeof body['id'] !== 'string') throw RestError.badRequest('id must be the key, project or organization id', 'id');
    const input = {
      scope: enumOf(body, 'scope', ['KEY', 'PROJECT', 'ORGANIZATION']),
      id: body['id'],
      period: enumOf(body, 'period', ['DAY', 'WEEK', 'MONTH']),
      tokenLimit: numberOf(body, 'token_limit', false),
      costLimitMicros: numberOf(body, 'cost_limit_micros', false),
      alertPercent: numberOf(body, 'alert_percent', false),
    };
    const data = await call<{ setBudget: Budget }>(req, ctx, `mutation SetBudget($input: SetBudgetInput!) { setBudget(input: $input) { ${BUDGET_FIELDS} } }`, {
      input,
    });
    sendJson(res, 200, toBudget(data.setBudget), ctx.headers);
  }

  async function remove(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const id = ctx.params['id']!;
    await call(req, ctx, 'mutation DeleteBudget($id: ID!) { deleteBudget(id: $id) { id deleted } }', { id });
    sendJson(res, 200, { id, object: 'budget.deleted', deleted: true }, ctx.headers);
  }

  async function prices(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const data = await call<{ modelPrices: ModelPrice[] }>(req, ctx, `query ModelPrices { modelPrices { ${PRICE_FIELDS} } }`, {});
    sendJson(res, 200, { object: 'list', data: data.modelPrices.map(toPrice) }, ctx.headers);
  }

  async function setPrice(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const body = await readJsonBody(req);
    if (typeof body['model'] !== 'string') throw RestError.badRequest('model must be a model id', 'model');
    const input = {
      modelId: body['model'],
      inputMicrosPerMillion: numberOf(body, 'input_micros_per_million', true),
      outputMicrosPerMillion: numberOf(body, 'output_micros_per_million', true),
    };
    const data = await call<{ setModelPrice: ModelPrice }>(
      req,
      ctx,
      `mutation SetModelPrice($input: SetModelPriceInput!) { setModelPrice(input: $input) { ${PRICE_FIELDS} } }`,
      { input },
    );
    sendJson(res, 200, toPrice(data.setModelPrice), ctx.headers);
  }

  return [
    { method: 'GET', path: '/v1/budgets', handler: list },
    { method: 'POST', path: '/v1/budgets', handler: set },
    { method: 'DELETE', path: '/v1/budgets/:id', handler: remove },
    { method: 'GET', path: '/v1/model_prices', handler: prices },
    { method: 'POST', path: '/v1/model_prices', handler: setPrice },
  ];
}
