import { badInput, forbidden, unauthenticated } from '../../lib/errors.js';
import type { InferenceContext } from './context.js';
import type { ApiCallSummary, MutationRecordApiCallsArgs, QueryApiCallSummariesArgs } from './generated/resolvers.js';
import type { ApiCallRecord } from './usageStore.js';

/** More than this in one call is refused: the gateway sends batches well under it. */
export const MAX_API_CALLS_PER_BATCH = 1000;
const MAX_BUCKETS = 1000;
const HOUR_MS = 3600 * 1000;

function instant(value: string | null | undefined, name: string): Date | null {
  if (value === null || value === undefined) return null;
  const time = Date.parse(value);
  if (Number.isNaN(time)) throw badInput(`${name} must be an ISO 8601 date-time`, name);
  return new Date(time);
}

/**
 * API call summaries (schema/inference.graphql apiCallSummaries). Whose calls: the organization named, else
 * the caller's current project's, else their default one; it must be one of the caller's. Its OWNERs see
 * every call of it; anyone else (a member) only the calls they made — so nobody sees another organization's.
 */
export async function apiCallSummaries(ctx: InferenceContext, args: QueryApiCallSummariesArgs): Promise<ApiCallSummary[]> {
  const principal = ctx.identity?.principal;
  if (!principal) throw unauthenticated();
  const organizationId =
    args.organizationId ??
    ctx.identity?.project?.organizationId ??
    principal.organizations.find((o) => o.isDefault)?.organizationId ??
    principal.organizations[0]?.organizationId;
  const binding = principal.organizations.find((o) => o.organizationId === organizationId);
  if (!organizationId || !binding) throw forbidden(`The caller is not a member of organization ${organizationId ?? '(none)'}`);
  const owner = binding.role === 'OWNER';
  const bucket = args.bucket ?? 'HOUR';
  const unitMs = bucket === 'DAY' ? 24 * HOUR_MS : HOUR_MS;
  const to = instant(args.endTime, 'endTime') ?? new Date();
  const from = instant(args.startTime, 'startTime') ?? new Date(to.getTime() - 24 * HOUR_MS);
  if (from >= to) throw badInput('startTime must be before endTime', 'startTime');
  if ((to.getTime() - from.getTime()) / unitMs > MAX_BUCKETS) throw badInput(`at most ${MAX_BUCKETS} buckets: narrow the range or use DAY`, 'startTime');
  const rows = await ctx.usageStore.apiCalls.summaries({
    tenantId: principal.tenantId,
    organizationId,
    userId: owner ? null : principal.userId,
    projectId: args.projectId ?? null,
    from,
    to,
    bucket,
    groupBy: args.groupBy ?? [],
  });
  return rows.map((r) => ({ ...r, bucketStart: r.bucketStart.toISOString() }));
}

/** The gateway's batches of API call records (the policy admits its system calls only; checked again here). */
export async function recordApiCalls(ctx: InferenceContext, args: MutationRecordApiCallsArgs): Promise<number> {
  if (!ctx.system) throw forbidden('Only the gateway records API calls');
  if (args.calls.length > MAX_API_CALLS_PER_BATCH) throw badInput(`at most ${MAX_API_CALLS_PER_BATCH} records per call`, 'calls');
  const calls: ApiCallRecord[] = args.calls.map((c) => ({
    occurredAt: c.occurredAt,
    requestId: c.requestId,
    protocol: c.protocol === 'rest' ? 'rest' : 'graphql',
    method: c.method,
    route: c.route ?? null,
    operationType: c.operationType ?? null,
    operationName: c.operationName ?? null,
    statusCode: c.statusCode,
    errorCode: c.errorCode ?? null,
    latencyMs: c.latencyMs,
    tenantId: c.tenantId ?? null,
    organizationId: c.organizationId ?? null,
    projectId: c.projectId ?? null,
    userId: c.userId ?? null,
    apiKeyId: c.apiKeyId ?? null,
    modelId: c.modelId ?? null,
  }));
  return ctx.usageStore.apiCalls.insert(calls);
}
