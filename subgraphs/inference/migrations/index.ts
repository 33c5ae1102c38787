import type { Migration } from '../../../lib/db.js';
import { initial } from './001_initial.js';
import { rateLimitsAndUsage } from './002_rate_limits_and_usage.js';
import { runtimeAutoscaling } from './003_runtime_autoscaling.js';
import { runtimeFailure } from './004_runtime_failure.js';
import { budgets } from './005_budgets.js';
import { apiCalls } from './006_api_calls.js';
import { costBudgets } from './007_cost_budgets.js';

/** The inference subgraph's migrations, applied in order at start. */
export const migrations: Migration[] = [initial, rateLimitsAndUsage, runtimeAutoscaling, runtimeFailure, budgets, apiCalls, costBudgets];
