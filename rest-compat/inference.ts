import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createClient } from 'graphql-ws';
import { WebSocket } from 'ws';
import { sendJson } from '../lib/http.js';
import { RestError, restErrorFromGraphQL, sendRestError } from './errors.js';
import { FORWARDED_HEADERS, type GatewayClient } from './gatewayClient.js';
import { readJsonBody } from './json.js';
import type { OpenStreams } from './openStreams.js';
import type { RouteContext } from './router.js';

/** OpenAI API: 503s say when to come back (a runtime may be starting). */
const RETRY_AFTER_SECONDS = '5';

const RATE_LIMIT = `query InferenceRateLimit { inferenceRateLimit { limitRequests remainingRequests limitTokens remainingTokens resetInMs } }`;

interface RateLimitState {
  limitRequests: number;
  remainingRequests: number;
  limitTokens: number;
  remainingTokens: number;
  resetInMs: number;
}

/** OpenAI's reset durations: `20ms`, `1.5s`, `6m0s`. */
export function openAIDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const seconds = Math.round(ms / 100) / 10;
  if (seconds < 60) return `${seconds}s`;
  return `${Math.floor(seconds / 60)}m${Math.round(seconds % 60)}s`;
}

/** OpenAI API: the `x-ratelimit-*` headers (a dimension with no limit is left out), and Retry-After on a 429. */
function rateLimitHeaders(state: RateLimitState | null, refused: boolean): Record<string, string> {
  if (!state) return {};
  const headers: Record<string, string> = {};
  const reset = openAIDuration(state.resetInMs);
  if (state.limitRequests > 0) {
    headers['x-ratelimit-limit-requests'] = String(state.limitRequests);
    headers['x-ratelimit-remaining-requests'] = String(state.remainingRequests);
    headers['x-ratelimit-reset-requests'] = reset;
  }
  if (state.limitTokens > 0) {
    headers['x-ratelimit-limit-tokens'] = String(state.limitTokens);
    headers['x-ratelimit-remaining-tokens'] = String(state.remainingTokens);
    headers['x-ratelimit-reset-tokens'] = reset;
  }
  if (refused) headers['retry-after'] = String(Math.max(1, Math.ceil(state.resetInMs / 1000)));
  return headers;
}

/** How long rest-compat remembers that a credential is not rate-limited (it then skips asking). */
const NOT_LIMITED_TTL_MS = 30_000;
const NOT_LIMITED_MAX = 10_000;

/** Reads the caller's rate-limit state: `refused` when the request was just refused. */
type RateLimitReader = (req: IncomingMessage, ctx: RouteContext, refused?: boolean) => Promise<RateLimitState | null>;

/**
 * The caller's rate-limit state after its request was admitted (or refused), asked of the inference
 * subgraph, which holds the limiter (one more gateway call). The headers are advisory: a failure to
 * read them leaves them out rather than failing a served request, and a credential found not limited
 * (limits off, an excluded key, an OIDC token) is not asked about again for a while — enforcement is
 * the subgraph's and does not depend on this.
 */
function rateLimitReader(gateway: GatewayClient): RateLimitReader {
  const notLimited = new Map<string, number>();
  return async (req, ctx, refused = false) => {
    const authorization = req.headers['authorization'];
    const credential = typeof authorization === 'string' ? createHash('sha256').update(authorization).digest('base64url') : null;
    if (!refused && credential && (notLimited.get(credential) ?? 0) > Date.now()) return null;
    try {
      const state = (await gateway.request<{ inferenceRateLimit: RateLimitState | null }>(req, ctx.requestId, RATE_LIMIT)).inferenceRateLimit;
      if (credential && state) notLimited.delete(credential);
      else if (credential) {
        if (notLimited.size >= NOT_LIMITED_MAX) notLimited.clear();
        notLimited.set(credential, Date.now() + NOT_LIMITED_TTL_MS);
      }
      return state;
    } catch {
      return null;
    }
  };
}

async function fail(res: ServerResponse, error: RestError, ctx: RouteContext, limits: RateLimitReader, req: IncomingMessage): Promise<void> {
  if (error.status === 429) return sendRestError(res, error, { ...ctx.headers, ...rateLimitHeaders(await limits(req, ctx, true), true) });
  sendRestError(res, error, error.status === 503 ? { ...ctx.headers, 'retry-after': RETRY_AFTER_SECONDS } : ctx.headers);
}

/**
 * A streaming completion as server-sent events (OpenAI API: `stream: true`): the gateway subscription
 * `field` over graphql-ws, each event one `data:` line, then `data: [DONE]`. An error before the first
 * event is an ordinary OpenAI error response; the client leaving cancels the subscription and with it
 * the generation on the runtime. The first event means the request was admitted: the rate-limit
 * headers are read then, and what arrives meanwhile waits in order. A server stopping with the stream
 * still open ends it through `open` with an error event (or a 503 before the first event).
 */
function stream(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: RouteContext,
  limits: RateLimitReader,
  graphqlUrl: string,
  field: string,
  body: Record<string, unknown>,
  open: OpenStreams,
): Promise<void> {
  const connectionParams: Record<string, string> = {};
  for (const name of FORWARDED_HEADERS) {
    const value = req.headers[name];
    if (typeof value === 'string') connectionParams[name] = value;
  }
  const client = createClient({
    url: graphqlUrl.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    lazy: true,
    retryAttempts: 0,
    connectionParams: { ...connectionParams, 'x-request-id': ctx.requestId },
  });
  return new Promise<void>((resolve) => {
    let started = false;
    // Writes in arrival order, each after the previous one (the first waits for the headers).
    let writes: Promise<void> = Promise.resolve();
    const then = (write: () => void | Promise<void>) => {
      writes = writes.then(write).catch(() => {
        if (!res.writableEnded) res.destroy();
      });
    };
    // Set when the server ends the stream (it stops): what the subscription still delivers is dropped.
    let ended = false;
    let forget: () => void = () => undefined;
    const finish = () => {
      forget();
      void writes.then(() => {
        void client.dispose();
        resolve();
      });
    };
    const unsubscribe = client.subscribe<Record<string, unknown>>(
      { query: `subscription Stream($request: JSON!) { ${field}(request: $request) }`, variables: { request: body } },
      {
        next: (event) => {
          if (ended) return;
          if (event.errors?.length) {
            const error = restErrorFromGraphQL(event.errors[0]!);
            if (!started) return then(() => fail(res, error, ctx, limits, req));
            // A failure mid-stream ends it with the error (OpenAI streams do the same), no [DONE].
            return then(() => {
              if (!res.writableEnded) res.end(`data: ${JSON.stringify(error.body())}\n\n`);
            });
          }
          if (!started) {
            started = true;
            then(async () => {
              const headers = rateLimitHeaders(await limits(req, ctx), false);
              if (res.writableEnded || res.destroyed) return;
              res.writeHead(200, { ...ctx.headers, ...headers, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
            });
          }
          const data = `data: ${JSON.stringify(event.data?.[field])}\n\n`;
          then(() => {
            if (!res.writableEnded && !res.destroyed) res.write(data);
          });
        },
        error: (error) => {
          if (ended) return;
          const graphQLErrors = Array.isArray(error) ? (error as { message: string; extensions?: Record<string, unknown> }[]) : [];
          const restError = graphQLErrors[0]
            ? restErrorFromGraphQL(graphQLErrors[0])
            : new RestError(502, `The streaming request failed (request id ${ctx.requestId})`, 'server_error');
          then(async () => {
            if (!started && !res.headersSent) await fail(res, restError, ctx, limits, req);
            else if (!res.writableEnded) res.end(`data: ${JSON.stringify(restError.body())}\n\n`);
          });
          finish();
        },
        complete: () => {
          if (ended) return;
          then(async () => {
            if (!res.headersSent) await fail(res, new RestError(502, 'The stream ended without any event', 'server_error'), ctx, limits, req);
            else if (!res.writableEnded) res.end('data: [DONE]\n\n');
          });
          finish();
        },
      },
    );
    res.on('close', () => {
      if (!res.writableFinished) {
        unsubscribe();
        finish();
      }
    });
    forget = open.add(async (error) => {
      if (ended) return;
      ended = true;
      unsubscribe();
      then(async () => {
        if (!res.headersSent) await fail(res, error, ctx, limits, req);
        else if (!res.writableEnded) res.end(`data: ${JSON.stringify(error.body())}\n\n`);
      });
      finish();
      await writes;
      // Written out: the server may now close the connection without losing the event.
      if (!res.writableFinished && !res.destroyed) await new Promise((done) => res.once('close', done).once('finish', done));
    });
  });
}

/** A time filter of `GET /v1/api_usages`: unix seconds (LLMariner) or an ISO 8601 date-time. */
function timeParam(url: URL, name: string): string | null {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === '') return null;
  const time = /^\d+$/.test(raw) ? Number(raw) * 1000 : Date.parse(raw);
  if (!Number.isFinite(time)) throw RestError.badRequest(`${name} must be unix seconds or an ISO 8601 date-time`, name);
  return new Date(time).toISOString();
}

const API_USAGES = `query ApiUsages($startTime: DateTime, $endTime: DateTime) {
  apiUsages(startTime: $startTime, endTime: $endTime) {
    userId apiKeyId apiKey { name } modelId totalRequests failedRequests avgLatencyMs avgTimeToFirstTokenMs totalPromptTokens totalCompletionTokens
  }
}`;

interface ApiUsage {
  userId: string;
  apiKeyId: string | null;
  apiKey: { name: string } | null;
  modelId: string;
  totalRequests: number;
  failedRequests: number;
  avgLatencyMs: number;
  avgTimeToFirstTokenMs: number | null;
  totalPromptTokens: number;
  totalCompletionTokens: number;
}

const INFERENCE_STATUS = `query InferenceStatus { inferenceStatus { runtimes { clusterId modelId desiredReplicas readyReplicas inFlightRequests statusMessage } } }`;

interface RuntimeStatus {
  clusterId: string;
  modelId: string;
  desiredReplicas: number;
  readyReplicas: number;
  inFlightRequests: number;
  statusMessage: string;
}

/**
 * LLMariner `GET /v1/inference/status`: per cluster, its engine (the cluster's agent: one engine per
 * cluster here) and the models it serves, with in-flight counts; and the in-flight count per model.
 */
function inferenceStatusBody(runtimes: RuntimeStatus[]) {
  const clusters = new Map<string, RuntimeStatus[]>();
  for (const runtime of runtimes) clusters.set(runtime.clusterId, [...(clusters.get(runtime.clusterId) ?? []), runtime]);
  const inProgress: Record<string, number> = {};
  for (const runtime of runtimes) inProgress[runtime.modelId] = (inProgress[runtime.modelId] ?? 0) + runtime.inFlightRequests;
  return {
    cluster_statuses: [...clusters].map(([id, models]) => ({
      id,
      name: id,
      engine_statuses: [
        {
          engine_id: id,
          ready: models.some((m) => m.readyReplicas > 0),
          models: models.map((m) => ({
            id: m.modelId,
            is_ready: m.readyReplicas > 0,
            in_progress_task_count: m.inFlightRequests,
            gpu_allocated: 0,
            is_dynamically_loaded_lora: false,
            status_details: { num_ready_pods: m.readyReplicas, num_total_pods: m.desiredReplicas, status_message: m.statusMessage },
          })),
        },
      ],
      model_count: models.length,
      in_progress_task_count: models.reduce((n, m) => n + m.inFlightRequests, 0),
      gpu_allocated: 0,
    })),
    task_status: { in_progress_task_counts: inProgress },
  };
}

/**
 * OpenAI inference routes: chat completions, completions, embeddings (streaming where OpenAI streams),
 * with OpenAI's rate-limit headers; and LLMariner's tokenize, inference status and api usages.
 */
export function inferenceRoutes({ gateway, graphqlUrl, streams }: { gateway: GatewayClient; graphqlUrl: () => string; streams: OpenStreams }) {
  const limits = rateLimitReader(gateway);
  const route = (mutation: string, subscription: string | null) => async (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) => {
    const body = await readJsonBody(req);
    if (body['stream'] === true) {
      if (!subscription) throw RestError.badRequest('This endpoint does not stream', 'stream');
      return stream(req, res, ctx, limits, graphqlUrl(), subscription, body, streams);
    }
    if (body['stream'] !== undefined && body['stream'] !== false && body['stream'] !== null) throw RestError.badRequest('stream must be a boolean', 'stream');
    let data: Record<string, unknown>;
    try {
      data = await gateway.request<Record<string, unknown>>(req, ctx.requestId, `mutation Complete($request: JSON!) { result: ${mutation}(request: $request) }`, { request: body });
    } catch (error) {
      if (error instanceof RestError && (error.status === 503 || error.status === 429)) return fail(res, error, ctx, limits, req);
      throw error;
    }
    sendJson(res, 200, data['result'], { ...ctx.headers, ...rateLimitHeaders(await limits(req, ctx), false) });
  };
  return [
    { method: 'POST', path: '/v1/chat/completions', handler: route('createChatCompletion', 'chatCompletionChunks') },
    { method: 'POST', path: '/v1/completions', handler: route('createCompletion', 'completionChunks') },
    { method: 'POST', path: '/v1/embeddings', handler: route('createEmbedding', null) },
    {
      // LLMariner (vLLM-style): `{model, prompt}` or `{model, messages}` → `{count, max_model_len, tokens}`.
      method: 'POST',
      path: '/v1/tokenize',
      handler: async (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) => {
        const body = await readJsonBody(req);
        const data = await gateway.request<{ result: unknown }>(req, ctx.requestId, `query Tokenize($request: JSON!) { result: tokenize(request: $request) }`, { request: body });
        sendJson(res, 200, data.result, ctx.headers);
      },
    },
    {
      method: 'GET',
      path: '/v1/inference/status',
      handler: async (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) => {
        const data = await gateway.request<{ inferenceStatus: { runtimes: RuntimeStatus[] } }>(req, ctx.requestId, INFERENCE_STATUS);
        sendJson(res, 200, inferenceStatusBody(data.inferenceStatus.runtimes), ctx.headers);
      },
    },
    {
      // LLMariner api-usage (§10): the project's usage grouped by user, API key and model.
      method: 'GET',
      path: '/v1/api_usages',
      handler: async (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) => {
        const variables = { startTime: timeParam(ctx.url, 'start_time'), endTime: timeParam(ctx.url, 'end_time') };
        const data = await gateway.request<{ apiUsages: ApiUsage[] }>(req, ctx.requestId, API_USAGES, variables);
        sendJson(
          res,
          200,
          {
            usages: data.apiUsages.map((u) => ({
              user_id: u.userId,
              api_key_id: u.apiKeyId ?? '',
              api_key_name: u.apiKey?.name ?? '',
              model_id: u.modelId,
              total_requests: u.totalRequests,
              failed_requests: u.failedRequests,
              avg_latency_ms: u.avgLatencyMs,
              avg_time_to_first_token_ms: u.avgTimeToFirstTokenMs ?? 0,
              total_prompt_tokens: u.totalPromptTokens,
              total_completion_tokens: u.totalCompletionTokens,
            })),
          },
          ctx.headers,
        );
      },
    },
  ];
}
