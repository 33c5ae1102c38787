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

  return [{ method: 'GET', path: '/v1/api-usage/model-usage-summaries', handler: modelUsageSummaries }];
}
