import { sendJson } from '../lib/http.js';
import { unixSeconds } from '../lib/unixSeconds.js';
import { RestError } from './errors.js';
import { routeGraphQL, type GatewayClient } from './gatewayClient.js';
import { renamingParam } from './grpcGateway.js';
import { int64 } from './llmarinerJson.js';
import type { Handler, Route } from './router.js';

/**
 * LLMariner api-usage `GET /v1/api-usage/model-usage-summaries` (api-usage api/v1 usage_server.proto,
 * `ListModelUsageSummaries`): the project's inference requests and tokens per model and time bucket, from
 * the usage records the inference component writes. LLMariner sums a whole tenant; Mariner answers for
 * the caller's project, as `GET /v1/api_usages` does.
 */

/**
 * A query parameter by its proto name or its JSON name (grpc-gateway accepts both: `filter.start_timestamp`
 * and `filter.startTimestamp`); null when absent or empty.
 */
export function protoQueryParam(url: URL, protoName: string): string | null {
  const jsonName = protoName.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
  const value = url.searchParams.get(protoName) ?? url.searchParams.get(jsonName);
  return value === null || value === '' ? null : value;
}

/** A non-negative integer parameter (int64/int32 in the proto); `0` is unset, as in proto3. */
export function integerParam(url: URL, protoName: string, what: string): number | null {
  const raw = protoQueryParam(url, protoName);
  if (raw === null) return null;
  if (!/^\d+$/.test(raw)) throw RestError.badRequest(`${protoName} must be ${what}`, protoName);
  const value = Number(raw);
  return value === 0 ? null : value;
}

/** `filter.start_timestamp` / `filter.end_timestamp`: unix seconds → ISO. */
export function timestampParam(url: URL, protoName: string): string | null {
  const seconds = integerParam(url, protoName, 'a Unix time in seconds');
  return seconds === null ? null : new Date(seconds * 1000).toISOString();
}

const MODEL_USAGE_SUMMARIES = `query ModelUsageSummaries($startTime: DateTime, $endTime: DateTime, $intervalSeconds: Int, $statusCode: Int) {
  modelUsageSummaries(startTime: $startTime, endTime: $endTime, intervalSeconds: $intervalSeconds, statusCode: $statusCode) {
    timestamp values { modelId totalRequests totalPromptTokens totalCompletionTokens }
  }
}`;

interface ModelUsagePoint {
  timestamp: string;
  values: { modelId: string; totalRequests: number; totalPromptTokens: number; totalCompletionTokens: number }[];
}

/** The GraphQL arguments (as rest-compat/errors.ts names them) → this route's parameters. */
const REST_PARAMS: Record<string, string> = {
  start_time: 'filter.start_timestamp',
  end_time: 'filter.end_timestamp',
  interval_seconds: 'interval_sec',
  status_code: 'filter.status_code',
};

const API_CALL_SUMMARIES = `query ApiCallSummaries($organizationId: ID, $projectId: ID, $startTime: DateTime, $endTime: DateTime, $bucket: UsageBucket!, $groupBy: [ApiCallGroup!]!) {
  apiCallSummaries(organizationId: $organizationId, projectId: $projectId, startTime: $startTime, endTime: $endTime, bucket: $bucket, groupBy: $groupBy) {
    bucketStart modelId apiKeyId projectId userId requests failedRequests avgLatencyMs promptTokens completionTokens
  }
}`;

interface ApiCallSummary {
  bucketStart: string;
  modelId: string | null;
  apiKeyId: string | null;
  projectId: string | null;
  userId: string | null;
  requests: number;
  failedRequests: number;
  avgLatencyMs: number;
  promptTokens: number;
  completionTokens: number;
}

/** `group_by` values (comma-separated or repeated) → GraphQL's ApiCallGroup. */
const GROUPS: Record<string, string> = { model: 'MODEL', api_key: 'API_KEY', project: 'PROJECT', user: 'USER' };

/**
 * Mariner's `GET /v1/api-usage/api-call-summaries` (beside LLMariner's model usage summaries, in its shape:
 * `filter.start_timestamp`/`filter.end_timestamp` in Unix seconds, int64 as strings): every API call of the
 * organization (owners) or of the caller (anyone else) per hour or day, grouped by `group_by`
 * (docs/operations-usage.md).
 */
const apiCallSummaries =
  (gql: ReturnType<typeof routeGraphQL>): Handler =>
  async (req, res, ctx) => {
    const bucket = (protoQueryParam(ctx.url, 'bucket') ?? 'hour').toUpperCase();
    if (bucket !== 'HOUR' && bucket !== 'DAY') throw RestError.badRequest('bucket must be hour or day', 'bucket');
    const groupBy = ctx.url.searchParams
      .getAll('group_by')
      .flatMap((v) => v.split(','))
      .map((v) => v.trim())
      .filter((v) => v !== '')
      .map((v) => {
        const group = GROUPS[v];
        if (!group) throw RestError.badRequest(`group_by must list model, api_key, project or user, not ${v}`, 'group_by');
        return group;
      });
    const variables = {
      organizationId: protoQueryParam(ctx.url, 'organization_id'),
      projectId: protoQueryParam(ctx.url, 'project_id'),
      startTime: timestampParam(ctx.url, 'filter.start_timestamp'),
      endTime: timestampParam(ctx.url, 'filter.end_timestamp'),
      bucket,
      groupBy,
    };
    const params: Record<string, string> = { start_time: 'filter.start_timestamp', end_time: 'filter.end_timestamp' };
    const data = await renamingParam(gql<{ apiCallSummaries: ApiCallSummary[] }>(req, ctx, API_CALL_SUMMARIES, variables), (param) => params[param] ?? param);
    sendJson(
      res,
      200,
      {
        datapoints: data.apiCallSummaries.map((p) => ({
          timestamp: int64(unixSeconds(p.bucketStart)),
          model_id: p.modelId ?? '',
          api_key_id: p.apiKeyId ?? '',
          project_id: p.projectId ?? '',
          user_id: p.userId ?? '',
          total_requests: int64(p.requests),
          failed_requests: int64(p.failedRequests),
          avg_latency_ms: p.avgLatencyMs,
          total_prompt_tokens: int64(p.promptTokens),
          total_completion_tokens: int64(p.completionTokens),
        })),
      },
      ctx.headers,
    );
  };

export function llmarinerUsageRoutes({ gateway }: { gateway: GatewayClient }): Route[] {
  const gql = routeGraphQL(gateway);

  const modelUsageSummaries: Handler = async (req, res, ctx) => {
    const statusCode = integerParam(ctx.url, 'filter.status_code', 'an HTTP status code');
    if (statusCode !== null && (statusCode < 100 || statusCode > 599))
      throw RestError.badRequest('filter.status_code must be an HTTP status code', 'filter.status_code');
    const variables = {
      startTime: timestampParam(ctx.url, 'filter.start_timestamp'),
      endTime: timestampParam(ctx.url, 'filter.end_timestamp'),
      intervalSeconds: integerParam(ctx.url, 'interval_sec', 'a number of seconds'),
      statusCode,
    };
    const data = await renamingParam(
      gql<{ modelUsageSummaries: ModelUsagePoint[] }>(req, ctx, MODEL_USAGE_SUMMARIES, variables),
      (param) => REST_PARAMS[param] ?? param,
    );
    sendJson(
      res,
      200,
      {
        datapoints: data.modelUsageSummaries.map((point) => ({
          timestamp: int64(unixSeconds(point.timestamp)),
          values: point.values.map((v) => ({
            model_id: v.modelId,
            total_requests: int64(v.totalRequests),
            total_prompt_tokens: int64(v.totalPromptTokens),
            total_completion_tokens: int64(v.totalCompletionTokens),
          })),
        })),
      },
      ctx.headers,
    );
  };

  return [
    { method: 'GET', path: '/v1/api-usage/model-usage-summaries', handler: modelUsageSummaries },
    { method: 'GET', path: '/v1/api-usage/api-call-summaries', handler: apiCallSummaries(gql) },
  ];
}
