import type { IncomingMessage, ServerResponse } from 'node:http';
import type { InferenceKind, InferencePlane, InferenceRateLimit, InferenceSink } from '../lib/inferencePlane.js';
import { sendJson, writeOrWait } from '../lib/http.js';
import { RestError, restErrorFromGraphQL, sendRestError } from './errors.js';
import type { GatewayClient } from './gatewayClient.js';
import { readJsonBody } from './json.js';
import type { OpenStreams } from './openStreams.js';
import { inferenceStatus } from './llmarinerInferenceStatus.js';
import type { RouteContext } from './router.js';
import { isJsonObject } from '../lib/jsonObject.js';

/** OpenAI API: 503s say when to come back (a runtime may be starting). */
const RETRY_AFTER_SECONDS = '5';

/** OpenAI's reset durations: `20ms`, `1.5s`, `6m0s`. */
export function openAIDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const seconds = Math.round(ms / 100) / 10;
  if (seconds < 60) return `${seconds}s`;
  return `${Math.floor(seconds / 60)}m${Math.round(seconds % 60)}s`;
}

/** OpenAI API: the `x-ratelimit-*` headers (a dimension with no limit is left out), and Retry-After on a 429. */
export function rateLimitHeaders(state: InferenceRateLimit | null, refused: boolean): Record<string, string> {
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

/** An error answer, with Retry-After where OpenAI gives one (a 429 from its state; a 503: a runtime may be starting). */
export function sendInferenceError(res: ServerResponse, error: RestError, ctx: RouteContext, state: InferenceRateLimit | null): void {
  if (error.status === 429) return sendRestError(res, error, { ...ctx.headers, ...rateLimitHeaders(state, true) });
  const retryAfter = error.retryAfterSeconds === null ? RETRY_AFTER_SECONDS : String(Math.max(1, Math.ceil(error.retryAfterSeconds)));
  sendRestError(res, error, error.status === 503 ? { ...ctx.headers, 'retry-after': retryAfter } : ctx.headers);
}

/**
 * The client's response as the data plane's sink (lib/inferencePlane.ts): OpenAI's headers on the
 * start (the rate-limit state as `x-ratelimit-*`), OpenAI's error shape on a refusal (a 429 with
 * Retry-After from the state, a 503 with Retry-After: a runtime may be starting). A stream's writes
 * are whole events (lib/inferencePlane.ts), so a server stopping with the stream still open can end it
 * through `open` with an error event after a complete one. The client leaving aborts `leaving`, which
 * stops the generation on the runtime.
 */
export function clientSink(res: ServerResponse, ctx: RouteContext, open: OpenStreams, done: () => void): InferenceSink {
  const leaving = new AbortController();
  let stream = false;
  let ended = false;
  let forget: () => void = () => undefined;
  const finish = () => {
    if (ended) return;
    ended = true;
    forget();
    done();
  };
  res.once('close', () => {
    if (!res.writableFinished) leaving.abort();
    finish();
  });
  return {
    leaving: leaving.signal,
    start(contentType, rateLimit) {
      if (ended) return;
      stream = contentType.startsWith('text/event-stream');
      const headers = { ...ctx.headers, ...rateLimitHeaders(rateLimit, false), 'content-type': contentType };
      if (!stream) return void res.writeHead(200, headers);
      res.writeHead(200, { ...headers, 'cache-control': 'no-cache', connection: 'keep-alive' });
      res.flushHeaders();
      forget = open.add(async (error) => {
        if (ended) return;
        leaving.abort();
        if (!res.writableEnded) res.end(`data: ${JSON.stringify(error.body())}\n\n`);
        finish();
        // Written out: the server may now close the connection without losing the event.
        if (!res.writableFinished && !res.destroyed) await new Promise((resolve) => res.once('close', resolve).once('finish', resolve));
      });
    },
    write: (bytes) => !ended && writeOrWait(res, bytes),
    end() {
      if (ended) return;
      res.end();
      finish();
    },
    fail(error, rateLimit) {
      if (ended) return;
      const restError = restErrorFromGraphQL({ message: error.message, extensions: { ...error } });
      if (res.headersSent) res.end(`data: ${JSON.stringify(restError.body())}\n\n`);
      else sendInferenceError(res, restError, ctx, rateLimit);
      finish();
    },
  };
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

const FUNCTION_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/**
 * The shape of a chat request's tools, tool choice, response format, `n` and logprobs, checked the same
 * way whichever runtime serves the model (each keeps its own capability checks: what a runtime cannot
 * do is its 400). Only the fields a request carries are looked at; the messages are the runtime's.
 */
function checkChatRequest(request: Record<string, unknown>): void {
  const { tools, tool_choice: toolChoice, response_format: format, n, logprobs, top_logprobs: topLogprobs } = request;
  const names = new Set<string>();
  if (tools !== undefined && tools !== null) {
    if (!Array.isArray(tools)) throw RestError.badRequest('tools must be an array of function tools', 'tools');
    tools.forEach((tool: unknown, i) => {
      if (!isJsonObject(tool) || tool['type'] !== 'function' || !isJsonObject(tool['function'])) {
        throw RestError.badRequest(`tools[${i}] must be {type: "function", function: {name, description?, parameters?}}`, `tools[${i}]`);
      }
      const fn = tool['function'];
      const name = fn['name'];
      if (typeof name !== 'string' || !FUNCTION_NAME.test(name)) {
        throw RestError.badRequest(`tools[${i}].function.name must be 1 to 64 letters, digits, underscores or dashes`, `tools[${i}].function.name`);
      }
      if (names.has(name)) throw RestError.badRequest(`tools[${i}].function.name repeats the name ${name}`, `tools[${i}].function.name`);
      names.add(name);
      const parameters = fn['parameters'];
      if (parameters !== undefined && parameters !== null && !isJsonObject(parameters)) {
        throw RestError.badRequest(`tools[${i}].function.parameters must be a JSON schema object`, `tools[${i}].function.parameters`);
      }
    });
  }
  if (toolChoice !== undefined && toolChoice !== null) {
    if (names.size === 0) throw RestError.badRequest('tool_choice needs tools', 'tool_choice');
    const named =
      isJsonObject(toolChoice) && toolChoice['type'] === 'function' && isJsonObject(toolChoice['function']) ? toolChoice['function']['name'] : undefined;
    if (!(toolChoice === 'none' || toolChoice === 'auto' || toolChoice === 'required' || typeof named === 'string')) {
      throw RestError.badRequest('tool_choice must be "none", "auto", "required" or {type: "function", function: {name}}', 'tool_choice');
    }
    if (typeof named === 'string' && !names.has(named))
      throw RestError.badRequest(`tool_choice names ${named.slice(0, 64)}, which is not in tools`, 'tool_choice');
  }
  if (format !== undefined && format !== null) {
    const type = isJsonObject(format) ? format['type'] : undefined;
    if (type !== 'text' && type !== 'json_object' && type !== 'json_schema') {
      throw RestError.badRequest('response_format.type must be text, json_object or json_schema', 'response_format');
    }
    const spec = (format as Record<string, unknown>)['json_schema'];
    if (type === 'json_schema' && !(isJsonObject(spec) && typeof spec['name'] === 'string' && FUNCTION_NAME.test(spec['name']))) {
      throw RestError.badRequest('response_format.json_schema needs a name of 1 to 64 letters, digits, underscores or dashes', 'response_format');
    }
  }
  if (n !== undefined && n !== null && !(Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 128)) {
    throw RestError.badRequest('n must be an integer from 1 to 128', 'n');
  }
  if (logprobs !== undefined && logprobs !== null && typeof logprobs !== 'boolean') throw RestError.badRequest('logprobs must be a boolean', 'logprobs');
  if (topLogprobs !== undefined && topLogprobs !== null) {
    if (!(Number.isInteger(topLogprobs) && (topLogprobs as number) >= 0 && (topLogprobs as number) <= 20)) {
      throw RestError.badRequest('top_logprobs must be an integer from 0 to 20', 'top_logprobs');
    }
    if (logprobs !== true) throw RestError.badRequest('top_logprobs needs logprobs: true', 'top_logprobs');
  }
}

/**
 * OpenAI inference routes: chat completions, completions, embeddings (streaming where OpenAI streams),
 * with OpenAI's rate-limit headers; and LLMariner's tokenize, inference status and api usages.
 */
export function inferenceRoutes({ gateway, inference, streams }: { gateway: GatewayClient; inference: InferencePlane; streams: OpenStreams }) {
  /**
   * A completion or embedding through the gateway's inference data plane (lib/inferencePlane.ts): the
   * gateway authenticates and authorizes it as it would the GraphQL field, the inference subgraph admits
   * and routes it, and the runtime's answer comes back as it wrote it — with OpenAI's rate-limit headers
   * from the state admission returned. An error before the answer started is an ordinary OpenAI error
   * response; the client leaving cancels the request and with it the generation on the runtime.
   */
  const route = (kind: InferenceKind) => async (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) => {
    const request = await readJsonBody(req);
    const stream = request['stream'];
    if (stream !== undefined && stream !== null && typeof stream !== 'boolean') throw RestError.badRequest('stream must be a boolean', 'stream');
    if (stream === true && kind === 'embedding') throw RestError.badRequest('This endpoint does not stream', 'stream');
    if (kind === 'chat') checkChatRequest(request);
    await new Promise<void>((resolve, reject) => {
      const sink = clientSink(res, ctx, streams, resolve);
      inference.send(req, { kind, request, requestId: ctx.requestId }, sink).catch(reject);
    });
  };
  return [
    { method: 'POST', path: '/v1/chat/completions', handler: route('chat') },
    { method: 'POST', path: '/v1/completions', handler: route('completion') },
    { method: 'POST', path: '/v1/embeddings', handler: route('embedding') },
    {
      // LLMariner (vLLM-style): `{model, prompt}` or `{model, messages}` → `{count, max_model_len, tokens}`.
      method: 'POST',
      path: '/v1/tokenize',
      handler: async (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) => {
        const body = await readJsonBody(req);
        const data = await gateway.request<{ result: unknown }>(req, ctx.requestId, `query Tokenize($request: JSON!) { result: tokenize(request: $request) }`, {
          request: body,
        });
        sendJson(res, 200, data.result, ctx.headers);
      },
    },
    {
      method: 'GET',
      path: '/v1/inference/status',
      handler: async (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) => {
        sendJson(res, 200, await inferenceStatus(gateway, req, ctx), ctx.headers);
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
