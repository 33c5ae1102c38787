import http2 from 'node:http2';
import { badInput, failedPrecondition, notFound, unauthenticated } from '../../lib/errors.js';
import { projectScopeOf, type ProjectScope } from '../../lib/identity.js';
import { latestOnChange } from '../../lib/latestOnChange.js';
import type { InferenceContext, InferenceStatusModel } from './context.js';
import type { Resolvers, RuntimeAutoscalingInput, RuntimeReportInput, RuntimeScalingScheduleInput } from './generated/resolvers.js';
import { JSONScalar } from '../../schema/scalars.js';
import { budgets, deleteBudget, deleteModelPrice, modelPrices, setBudget, setModelPrice } from './budgetsResolvers.js';
import { hasText, releaseRouted, routeCompletion, runtimeError, servableTarget, statusOfError, usageOf, type Kind } from './completions.js';
import { RUNTIMES_CHANNEL } from './channels.js';
import { forwardToModel } from './refusedModels.js';
import {
  chatCompletionChunkOf,
  chatCompletionOf,
  chatRequestBody,
  completionOf,
  completionRequestBody,
  embeddingListOf,
  embeddingRequestBody,
  withTypedField,
} from './openaiShapes.js';
import { readJson, serverSentEvents } from './router.js';
import type { RuntimeAutoscaling, RuntimeReport, RuntimeRow, RuntimeScalingSchedule } from './store.js';
import { transcribeFile } from './transcriptions.js';
import { apiCallSummaries, recordApiCalls } from './usageResolvers.js';

/**
 * A typed field's request: its input checked and made the OpenAI body (openaiShapes.ts), then the
 * path the JSON fields take; a refusal names the typed field (`topP`, not the runtime's `top_p`).
 */
async function typed<T>(kind: Kind, body: () => Record<string, unknown>, send: (body: Record<string, unknown>) => Promise<T>): Promise<T> {
  try {
    return await send(body());
  } catch (error) {
    throw withTypedField(kind, error);
  }
}

/** The body of a typed stream: `includeUsage: false` is OpenAI's `stream_options.include_usage: false` (routeCompletion hides the usage chunk). */
function streamed(body: Record<string, unknown>, includeUsage: boolean): Record<string, unknown> {
  return includeUsage ? body : { ...body, stream_options: { include_usage: false } };
}

async function complete(kind: Kind, ctx: InferenceContext, request: unknown): Promise<unknown> {
  const { routed, meter } = await routeCompletion(kind, ctx, request, false);
  try {
    const result = await readJson(routed.stream);
    await meter.succeeded(usageOf(result));
    return result;
  } catch (error) {
    meter.failed(statusOfError(error));
    throw error;
  }
}

/**
 * A streaming request for GraphQL clients: checked and routed before the subscription starts (so a
 * refusal is an ordinary GraphQL error), then each server-sent event of the runtime becomes one event.
 * A caller that said `include_usage: false` does not get the usage chunk (completions.ts).
 */
async function chunks(kind: 'chat' | 'completion', ctx: InferenceContext, request: unknown): Promise<AsyncGenerator<unknown>> {
  const { routed, meter, hideUsage } = await routeCompletion(kind, ctx, request, true);
  return (async function* () {
    let usage: { prompt: number; completion: number } | null = null;
    let answered = false;
    try {
      for await (const chunk of serverSentEvents(routed.stream)) {
        if (hasText(chunk)) meter.firstToken();
        const used = usageOf(chunk);
        if (used) {
          usage = used;
          if (hideUsage) continue;
        }
        yield chunk;
      }
      answered = true;
      await meter.succeeded(usage);
    } catch (error) {
      meter.failed(statusOfError(error));
      throw error;
    } finally {
      // The subscriber left: stop the generation on the runtime (an answer read whole ends by itself).
      releaseRouted(routed, answered);
      // 499: the client closed the request before its end (the usage of a cut stream is unknown).
      meter.failed(499);
    }
  })();
}

/** `POST /v1/tokenize` (vLLM's `/tokenize`, which LLMariner forwards to the runtime). */
async function tokenize(ctx: InferenceContext, request: unknown): Promise<unknown> {
  if (typeof request !== 'object' || request === null || Array.isArray(request)) throw badInput('request must be a JSON object', 'request');
  const body = request as Record<string, unknown>;
  if (typeof body['model'] !== 'string' || body['model'].trim() === '') throw badInput('model is required', 'model');
  const hasPrompt = body['prompt'] !== undefined;
  const hasMessages = body['messages'] !== undefined;
  if (hasPrompt === hasMessages) throw badInput('give either prompt or messages', hasPrompt ? 'messages' : 'prompt');
  if (hasPrompt && typeof body['prompt'] !== 'string') throw badInput('prompt must be a string', 'prompt');
  if (hasMessages && (!Array.isArray(body['messages']) || body['messages'].length === 0)) throw badInput('messages must be a non-empty array', 'messages');
  // A LoRA adapter tokenizes as its base model, on the base's runtime.
  const { modelId, runtimeModelId, headers } = await servableTarget(ctx, body['model'].trim());
  const routed = await forwardToModel(ctx, runtimeModelId, '/tokenize', { ...body, model: modelId }, undefined, headers);
  if (routed.status === 404 || routed.status === 405) {
    routed.stream.close(http2.constants.NGHTTP2_CANCEL);
    throw failedPrecondition(`the runtime of model ${modelId} does not tokenize`);
  }
  if (routed.status >= 400) throw await runtimeError(routed);
  return readJson(routed.stream, 16 * 1024 * 1024);
}

/** A DateTime argument, or null. */
function instant(value: string | null | undefined, name: string): Date | null {
  if (value === null || value === undefined) return null;
  const time = Date.parse(value);
  if (Number.isNaN(time)) throw badInput(`${name} must be an ISO 8601 date-time`, name);
  return new Date(time);
}

const HOUR_MS = 3600 * 1000;

/**
 * The project's usage per model and time bucket (LLMariner api-usage ListModelUsageSummaries): the
 * range is truncated to whole hours as LLMariner does (default: the 7 days up to the next half hour);
 * every model with a request in the range has a value in every bucket, zero where it had none.
 */
async function modelUsageSummaries(
  ctx: InferenceContext,
  args: { startTime?: string | null; endTime?: string | null; intervalSeconds?: number | null; statusCode?: number | null },
) {
  const scope = projectScopeOf(ctx.identity);
  const interval = args.intervalSeconds ?? 3600;
  if (!Number.isInteger(interval) || interval < 60) throw badInput('intervalSeconds must be an integer of at least 60', 'intervalSeconds');
  const truncate = (date: Date) => new Date(Math.floor(date.getTime() / HOUR_MS) * HOUR_MS);
  const to = truncate(instant(args.endTime, 'endTime') ?? new Date(Date.now() + HOUR_MS / 2));
  const from = truncate(instant(args.startTime, 'startTime') ?? new Date(to.getTime() - 7 * 24 * HOUR_MS));
  if (from >= to) throw badInput('startTime must be before endTime (both are truncated to the hour)', 'startTime');
  const buckets = Math.ceil((to.getTime() - from.getTime()) / (interval * 1000));
  if (buckets > 1000) throw badInput(`at most 1000 buckets: ${buckets} asked (widen intervalSeconds or narrow the range)`, 'intervalSeconds');
  const rows = await ctx.usageStore.modelUsageBuckets(scope.tenantId, scope.projectId, {
    from,
    to,
    intervalSeconds: interval,
    statusCode: args.statusCode ?? null,
  });
  const modelIds = [...new Set(rows.map((r) => r.model_id))].sort();
  return Array.from({ length: buckets }, (_, i) => ({
    timestamp: new Date(from.getTime() + i * interval * 1000).toISOString(),
    values: modelIds.map((modelId) => {
      const row = rows.find((r) => r.bucket === i && r.model_id === modelId);
      return {
        modelId,
        totalRequests: row?.total_requests ?? 0,
        totalPromptTokens: row?.total_prompt_tokens ?? 0,
        totalCompletionTokens: row?.total_completion_tokens ?? 0,
      };
    }),
  }));
}

/** The tenant's runtimes the caller may see (RuntimeAccess.visible): never another organization's clusters or another project's models. */
async function statusOf(ctx: InferenceContext, scope: ProjectScope): Promise<InferenceStatusModel> {
  const runtimes = await ctx.access.visible(scope, ctx.requestId, await ctx.store.forTenant(scope.tenantId));
  return { runtimes, readyModelIds: [...new Set(runtimes.filter((r) => r.ready_replicas > 0).map((r) => r.model_id))] };
}

/** The tenant's inference status now, then after each report. */
function runtimeUpdates(ctx: InferenceContext): AsyncGenerator<unknown> {
  const scope = projectScopeOf(ctx.identity);
  return latestOnChange(
    (changed) => ctx.pubsub.subscribe(RUNTIMES_CHANNEL, (payload) => payload === scope.tenantId && changed()),
    () => statusOf(ctx, scope),
  );
}

/**
 * One model's runtimes now, then after each report; the model must be visible to the caller (as the
 * models subgraph answers it), and only runtimes on clusters the caller's organization may use show.
 */
async function modelRuntimeUpdates(ctx: InferenceContext, modelId: string): Promise<AsyncGenerator<unknown>> {
  const scope = projectScopeOf(ctx.identity);
  const model = await ctx.models.model(ctx, modelId);
  if (!model) throw notFound('model', modelId);
  return latestOnChange(
    (changed) => ctx.pubsub.subscribe(RUNTIMES_CHANNEL, (payload) => payload === scope.tenantId && changed()),
    async () => ctx.access.onUsableClusters(scope, await ctx.store.forModels(scope.tenantId, [model.id])),
  );
}

const MAX_RUNTIMES = 10_000;

/** An agent's autoscaler state, checked as it is stored. */
function autoscalingReport(a: RuntimeAutoscalingInput, field: string): RuntimeAutoscaling {
  for (const [name, value] of [
    ['minReplicas', a.minReplicas],
    ['maxReplicas', a.maxReplicas],
    ['idleSeconds', a.idleSeconds],
  ] as const) {
    if (!Number.isInteger(value) || value < 0) throw badInput(`${field}.${name} must be a non-negative integer`, `${field}.${name}`);
  }
  for (const [name, value] of [
    ['targetInFlight', a.targetInFlight],
    ['averageInFlight', a.averageInFlight],
  ] as const) {
    if (!Number.isFinite(value) || value < 0) throw badInput(`${field}.${name} must be a non-negative number`, `${field}.${name}`);
  }
  const at = (name: string, value: string | null | undefined) => instant(value, `${field}.${name}`)?.toISOString() ?? null;
  return {
    minReplicas: a.minReplicas,
    maxReplicas: a.maxReplicas,
    targetInFlight: a.targetInFlight,
    averageInFlight: a.averageInFlight,
    idleSeconds: a.idleSeconds,
    scaleToZeroAt: at('scaleToZeroAt', a.scaleToZeroAt),
    lastScaledAt: at('lastScaledAt', a.lastScaledAt),
    lastScaleReason: a.lastScaleReason ? a.lastScaleReason.slice(0, 512) : null,
    schedule: a.schedule ? scalingSchedule(a.schedule, `${field}.schedule`) : null,
    nextScheduleChangeAt: at('nextScheduleChangeAt', a.nextScheduleChangeAt),
    scheduledOffUntil: at('scheduledOffUntil', a.scheduledOffUntil),
  };
}

/** The scaling schedule an agent reports in force, checked as it is stored. */
function scalingSchedule(s: RuntimeScalingScheduleInput, field: string): RuntimeScalingSchedule {
  for (const [name, value] of [
    ['minReplicas', s.minReplicas],
    ['maxReplicas', s.maxReplicas],
  ] as const) {
    if (!Number.isInteger(value) || value < 0) throw badInput(`${field}.${name} must be a non-negative integer`, `${field}.${name}`);
  }
  for (const [name, value] of [
    ['cron', s.cron],
    ['timeZone', s.timeZone],
  ] as const) {
    if (value.length === 0 || value.length > 128) throw badInput(`${field}.${name} must be 1-128 characters`, `${field}.${name}`);
  }
  return { cron: s.cron, timeZone: s.timeZone, minReplicas: s.minReplicas, maxReplicas: s.maxReplicas, onDemand: s.onDemand };
}

function runtimeReports(runtimes: readonly RuntimeReportInput[]): RuntimeReport[] {
  if (runtimes.length > MAX_RUNTIMES) throw badInput(`at most ${MAX_RUNTIMES} runtimes`, 'runtimes');
  return runtimes.map((r, i) => {
    for (const [name, value] of [
      ['desiredReplicas', r.desiredReplicas],
      ['readyReplicas', r.readyReplicas],
      ['inFlightRequests', r.inFlightRequests],
    ] as const) {
      if (!Number.isInteger(value) || value < 0) throw badInput(`runtimes[${i}].${name} must be a non-negative integer`, `runtimes[${i}].${name}`);
    }
    if (r.modelId.length === 0 || r.modelId.length > 256) throw badInput(`runtimes[${i}].modelId must be 1-256 characters`, `runtimes[${i}].modelId`);
    return {
      model_id: r.modelId,
      desired_replicas: r.desiredReplicas,
      ready_replicas: r.readyReplicas,
      in_flight_requests: r.inFlightRequests,
      status_message: (r.statusMessage ?? '').slice(0, 1024),
      autoscaling: r.autoscaling ? autoscalingReport(r.autoscaling, `runtimes[${i}].autoscaling`) : null,
      failure: r.failure ? r.failure.slice(0, 1024) : null,
    };
  });
}

export const resolvers: Resolvers<InferenceContext> = {
  JSON: JSONScalar,
  Query: {
    inferenceStatus: (_p, _a, ctx) => statusOf(ctx, projectScopeOf(ctx.identity)),
    inferenceRateLimit: (_p, _a, ctx) => ctx.rateLimiter.state(ctx.identity),
    budgets: (_p, { projectId }, ctx) => budgets(ctx, projectId),
    modelPrices: (_p, _a, ctx) => modelPrices(ctx),
    apiUsages: async (_p, { startTime, endTime }, ctx) => {
      const scope = projectScopeOf(ctx.identity);
      const from = instant(startTime, 'startTime');
      const to = instant(endTime, 'endTime');
      if (from && to && from >= to) throw badInput('startTime must be before endTime', 'startTime');
      return ctx.usageStore.summaries(scope.tenantId, scope.projectId, from, to);
    },
    modelUsageSummaries: (_p, args, ctx) => modelUsageSummaries(ctx, args),
    apiCallSummaries: (_p, args, ctx) => apiCallSummaries(ctx, args),
    tokenize: (_p, { request }, ctx) => tokenize(ctx, request),
  },
  Mutation: {
    recordApiCalls: (_p, args, ctx) => recordApiCalls(ctx, args),
    setBudget: (_p, { input }, ctx) => setBudget(ctx, input),
    deleteBudget: (_p, { id }, ctx) => deleteBudget(ctx, id),
    setModelPrice: (_p, { input }, ctx) => setModelPrice(ctx, input),
    deleteModelPrice: (_p, { modelId }, ctx) => deleteModelPrice(ctx, modelId),
    createTranscription: (_p, { input }, ctx) => transcribeFile(ctx, input),
    chatCompletion: async (_p, { input }, ctx) =>
      chatCompletionOf(
        await typed(
          'chat',
          () => chatRequestBody(input),
          (body) => complete('chat', ctx, body),
        ),
      ),
    completion: async (_p, { input }, ctx) =>
      completionOf(
        await typed(
          'completion',
          () => completionRequestBody(input),
          (body) => complete('completion', ctx, body),
        ),
      ),
    embeddings: async (_p, { input }, ctx) =>
      embeddingListOf(
        await typed(
          'embedding',
          () => embeddingRequestBody(input),
          (body) => complete('embedding', ctx, body),
        ),
      ),
    createChatCompletion: (_p, { request }, ctx) => complete('chat', ctx, request),
    createCompletion: (_p, { request }, ctx) => complete('completion', ctx, request),
    createEmbedding: (_p, { request }, ctx) => complete('embedding', ctx, request),
    reportRuntimes: async (_p, { runtimes }, ctx) => {
      const worker = ctx.worker;
      if (!worker) throw unauthenticated('A cluster registration key is required');
      // Only models the cluster may run count: a cluster of one organization reporting another's model
      // (to be sent its requests) is left out, as is a model deleted since the agent last looked.
      const { accepted, dropped } = await ctx.access.admissible(worker, ctx.requestId, runtimeReports(runtimes));
      if (dropped > 0) ctx.logger.warn({ clusterId: worker.clusterId, dropped }, 'runtime report of models the cluster may not run: left out');
      // A report that says what the stored one says writes nothing, and tells no replica.
      const { rows, write } = await ctx.store.storeReport(worker.tenantId, worker.clusterId, accepted);
      if (write !== 'unchanged') await ctx.pubsub.publish(RUNTIMES_CHANNEL, worker.tenantId);
      return rows;
    },
  },
  Subscription: {
    chatCompletionStream: {
      subscribe: (_p, { input, includeUsage }, ctx) =>
        typed(
          'chat',
          () => streamed(chatRequestBody(input), includeUsage),
          (body) => chunks('chat', ctx, body),
        ),
      resolve: (chunk: unknown) => chatCompletionChunkOf(chunk),
    },
    completionStream: {
      subscribe: (_p, { input, includeUsage }, ctx) =>
        typed(
          'completion',
          () => streamed(completionRequestBody(input), includeUsage),
          (body) => chunks('completion', ctx, body),
        ),
      resolve: (chunk: unknown) => completionOf(chunk),
    },
    chatCompletionChunks: { subscribe: (_p, { request }, ctx) => chunks('chat', ctx, request), resolve: (chunk: unknown) => chunk },
    completionChunks: { subscribe: (_p, { request }, ctx) => chunks('completion', ctx, request), resolve: (chunk: unknown) => chunk },
    runtimesUpdated: { subscribe: (_p, _a, ctx) => runtimeUpdates(ctx), resolve: (status: unknown) => status as InferenceStatusModel },
    runtimeScaling: { subscribe: (_p, { modelId }, ctx) => modelRuntimeUpdates(ctx, modelId), resolve: (runtimes: unknown) => runtimes as RuntimeRow[] },
  },
  Model: {
    __resolveReference: (ref) => ({ id: ref.id }),
    runtimes: (m, _a, ctx) => ctx.loaders.modelRuntimes.load(m.id),
  },
  InferenceRateLimit: {
    resetsAt: (s) => s.resetsAt.toISOString(),
  },
  ApiUsage: {
    userId: (u) => u.user_id,
    apiKeyId: (u) => u.api_key_id,
    apiKey: (u) => (u.api_key_id ? { id: u.api_key_id } : null),
    modelId: (u) => u.model_id,
    totalRequests: (u) => u.total_requests,
    failedRequests: (u) => u.failed_requests,
    avgLatencyMs: (u) => u.avg_latency_ms,
    avgTimeToFirstTokenMs: (u) => u.avg_time_to_first_token_ms,
    totalPromptTokens: (u) => u.total_prompt_tokens,
    totalCompletionTokens: (u) => u.total_completion_tokens,
  },
  Runtime: {
    clusterId: (r) => r.cluster_id,
    modelId: (r) => r.model_id,
    desiredReplicas: (r) => r.desired_replicas,
    readyReplicas: (r) => r.ready_replicas,
    inFlightRequests: (r) => r.in_flight_requests,
    statusMessage: (r) => r.status_message,
    autoscaling: (r) => r.autoscaling,
    failure: (r) => r.failure ?? null,
    updatedAt: (r) => r.updated_at.toISOString(),
  },
};
