import { sendJson } from '../lib/http.js';
import { unixSeconds } from '../lib/unixSeconds.js';
import type { GatewayClient } from './gatewayClient.js';
import type { Route } from './router.js';

/**
 * `GET /v1/budgets`: the token budgets of the caller's project (GraphQL `budgets`, the same visibility:
 * organization owners see all, others the project's budget and their own key's), in OpenAI's list shape
 * with snake_case fields and unix-second times. Setting budgets is GraphQL's (`setBudget`).
 */
const BUDGETS = `query Budgets {
  budgets { id scope scopeId projectId period tokenLimit alertPercent spent remaining periodStart resetsAt alertedAt }
}`;

interface Budget {
  id: string;
  scope: string;
  scopeId: string;
  projectId: string;
  period: string;
  tokenLimit: number;
  alertPercent: number | null;
  spent: number;
  remaining: number;
  periodStart: string;
  resetsAt: string;
  alertedAt: string | null;
}

export function budgetRoutes({ gateway }: { gateway: GatewayClient }): Route[] {
  return [
    {
      method: 'GET',
      path: '/v1/budgets',
      handler: async (req, res, ctx) => {
        const data = await gateway.request<{ budgets: Budget[] }>(req, ctx.requestId, BUDGETS, {});
        const budgets = data.budgets.map((b) => ({
          id: b.id,
          object: 'budget',
          scope: b.scope.toLowerCase(),
          scope_id: b.scopeId,
          project_id: b.projectId,
          period: b.period.toLowerCase(),
          token_limit: b.tokenLimit,
          alert_percent: b.alertPercent,
          spent: b.spent,
          remaining: b.remaining,
          period_start: unixSeconds(b.periodStart),
          resets_at: unixSeconds(b.resetsAt),
          alerted_at: unixSeconds(b.alertedAt, null),
        }));
        sendJson(res, 200, { object: 'list', data: budgets }, ctx.headers);
      },
    },
  ];
}
