import http2 from 'node:http2';
import { badInput, ErrorCode, failedPrecondition, MarinerError, notFound, openAIStatusFor, unauthenticated } from '../../lib/errors.js';
import { projectScopeOf, type ProjectScope } from '../../lib/identity.js';
import { latestOnChange } from '../../lib/latestOnChange.js';
import type { InferenceContext, InferenceStatusModel } from './context.js';
import type { Resolvers, RuntimeAutoscalingInput, RuntimeReportInput } from './generated/resolvers.js';
import { JSONScalar } from '../../schema/scalars.js';
import { withRetrievedContext } from './rag.js';
import { readJson, serverSentEvents, type RoutedResponse } from './router.js';
import type { RuntimeAutoscaling, RuntimeReport, RuntimeRow } from './store.js';

type Kind = 'chat' | 'completion' | 'embedding';

const PATHS: Record<Kind, string> = { chat: '/v1/chat/completions', completion: '/v1/completions', embedding: '/v1/embeddings' };

/** Checks the parts of an OpenAI request body routing depends on; the runtime checks the rest. */
function requestOf(kind: Kind, request: unknown): { model: string; body: Record<string, unknown> } {
  if (typeof request !== 'object' || request === null || Array.isArray(request)) throw badInput('request must be a JSON object (the OpenAI request body)', 'request');
  const body = request as Record<string, unknown>;
  if (typeof body['model'] !== 'string' || body['model'].trim() === '') throw badInput('model is required', 'model');
  if (kind === 'chat' && (!Array.isArray(body['messages']) || body['messages'].length === 0)) throw badInput('messages must be a non-empty array', 'messages');
  if (kind === 'completion' && typeof body['prompt'] !== 'string' && !Array.isArray(body['prompt'])) throw badInput('prompt must be a string or an array', 'prompt');
  if (kind === 'embedding' && typeof body['input'] !== 'string' && !Array.isArray(body['input'])) throw badInput('input must be a string or an array', 'input');
  return { model: body['model'].trim(), body };
}

/** The model must be visible to the caller's project, loaded and active (LLMariner inference manager). */
async function servableModel(ctx: InferenceContext, id: string): Promise<string> {
  const model = await ctx.models.model(ctx, id);
  if (!model) throw notFound('model', id);
  if (model.loadingStatus !== 'SUCCEEDED') throw failedPrecondition(`model ${model.id} is not loaded yet (loading status ${model.loadingStatus})`);
  if (model.activationStatus !== 'ACTIVE') {
    // LLMariner on-demand allocation: the first request activates the model (scale from zero).
    if (!model.config.clusterAllocationPolicy.enableOnDemandAllocation) throw failedPrecondition(`model ${model.id} is not active: activate it first`);
    await ctx.models.activate(ctx, model.id);
  }
  return model.id;
}

/** A runtime's error answer, as one of our errors (the runtime speaks OpenAI's error shape). */
async function runtimeError(routed: RoutedResponse): Promise<MarinerError> {
  let message = `the runtime answered ${routed.status}`;
  let param: string | undefined;
  try {
    const body = (await readJson(routed.stream, 1024 * 1024)) as { error?: { message?: string; param?: string | null } };
    message = body.error?.message ?? message;
    param = body.error?.param ?? undefined;
  } catch {
    /* keep the status line */
  }
  if (routed.status === 404) return new MarinerError(ErrorCode.NOT_FOUND, message);
  if (routed.status >= 400 && routed.status < 500) return new MarinerError(ErrorCode.BAD_USER_INPUT, message, param ? { field: param } : {});
  return new MarinerError(ErrorCode.INTERNAL, message);
}

/** What a request used, from its response's `usage` (OpenAI API: CompletionUsage). */
function usageOf(value: unknown): { prompt: number; completion: number } | null {
  const usage = (value as { usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } } | null)?.usage;
  if (!usage || typeof usage !== 'object') return null;
  const count = (n: unknown) => (typeof n === 'number' && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0);
  return { prompt: count(usage.prompt_tokens), completion: count(usage.completion_tokens) };
}

/** The HTTP status a failure answers with (recorded with its usage). */
function statusOfError(error: unknown): number {
  return error instanceof MarinerError ? openAIStatusFor(error.code) : 500;
}

/**
 * One inference request's metering: admission against the caller's rate limit, then, once it ends,
 * its tokens charged to the limit and its usage record queued (LLMariner inference manager §1 steps
 * 2 and 8). Recording never waits on the database; charging is one UPDATE, so the next request of
 * the key sees the tokens this one used.
 */
class Metering {
  private readonly started = performance.now();
  private firstTokenMs: number | null = null;
  private limitKey: string | null = null;
  private done = false;

  constructor(
    private readonly ctx: InferenceContext,
    private readonly kind: Kind,
    private readonly modelId: string,
  ) {}

  async admit(): Promise<void> {
    this.limitKey = await this.ctx.rateLimiter.admit(this.ctx.identity);
  }

  firstToken(): void {
    this.firstTokenMs ??= Math.round(performance.now() - this.started);
  }

  async succeeded(usage: { prompt: number; completion: number } | null): Promise<void> {
    if (this.done) return;
    this.record(200, usage);
    // The answer is already generated: a failed charge (the database just went) does not fail it.
    await this.ctx.rateLimiter.charge(this.limitKey, (usage?.prompt ?? 0) + (usage?.completion ?? 0)).catch(() => undefined);
  }

  failed(status: number): void {
    if (!this.done) this.record(status, null);
  }

  private record(status: number, usage: { prompt: number; completion: number } | null): void {
    this.done = true;
    const identity = this.ctx.identity;
    const project = identity?.project;
    if (!identity || !project) return;
    this.ctx.usage.record({
      tenant_id: identity.principal.tenantId,
      organization_id: project.organizationId,
      project_id: project.projectId,
      user_id: identity.principal.userId,
      api_key_id: identity.principal.apiKey?.id ?? null,
      model_id: this.modelId,
      api_method: PATHS[this.kind],
      status_code: status,
      prompt_tokens: usage?.prompt ?? 0,
      completion_tokens: usage?.completion ?? 0,
      time_to_first_token_ms: this.firstTokenMs,
      latency_ms: Math.round(performance.now() - this.started),
      created_at: new Date(),
    });
  }
}

async function complete(kind: Kind, ctx: InferenceContext, request: unknown): Promise<unknown> {
  const { model, body: asked } = requestOf(kind, request);
  const meter = new Metering(ctx, kind, model);
  try {
    await meter.admit();
    const modelId = await servableModel(ctx, model);
    const body = kind === 'chat' ? await withRetrievedContext(ctx.vectorStores, ctx, asked) : asked;
    const routed = await ctx.router.forward(projectScopeOf(ctx.identity), modelId, PATHS[kind], kind === 'embedding' ? { ...body, model: modelId } : { ...body, model: modelId, stream: false }, undefined, ctx.requestId);
    if (routed.status >= 400) throw await runtimeError(routed);
    const result = await readJson(routed.stream);
    await meter.succeeded(usageOf(result));
    return result;
  } catch (error) {
    meter.failed(statusOfError(error));
    throw error;
  }
}

/** A chunk that carries text (the first one marks the time to first token). */
function hasText(chunk: unknown): boolean {
  const choice = (chunk as { choices?: { delta?: { content?: unknown }; text?: unknown }[] } | null)?.choices?.[0];
  const text = choice?.delta?.content ?? choice?.text;
  return typeof text === 'string' && text !== '';
}

/**
 * A streaming request: checked and routed before the subscription starts (so a refusal is an
 * ordinary GraphQL error), then each server-sent event of the runtime becomes one event. The runtime
 * is always asked for the usage chunk (LLMariner forces `include_usage` unless `stream_options` is
 * given): it is what the rate limit charges and the usage record counts. A caller that said
 * `include_usage: false` does not get it.
 */
async function chunks(kind: 'chat' | 'completion', ctx: InferenceContext, request: unknown): Promise<AsyncGenerator<unknown>> {
  const { model, body: asked } = requestOf(kind, request);
  const meter = new Metering(ctx, kind, model);
  let routed: RoutedResponse;
  const options = asked['stream_options'];
  const hideUsage = typeof options === 'object' && options !== null && (options as Record<string, unknown>)['include_usage'] === false;
  try {
    await meter.admit();
    const modelId = await servableModel(ctx, model);
    const body = kind === 'chat' ? await withRetrievedContext(ctx.vectorStores, ctx, asked) : asked;
    const streamOptions = typeof options === 'object' && options !== null ? { ...(options as Record<string, unknown>), include_usage: true } : { include_usage: true };
    routed = await ctx.router.forward(projectScopeOf(ctx.identity), modelId, PATHS[kind], { ...body, model: modelId, stream: true, stream_options: streamOptions }, undefined, ctx.requestId);
    if (routed.status >= 400) throw await runtimeError(routed);
  } catch (error) {
    meter.failed(statusOfError(error));
    throw error;
  }
  return (async function* () {
    let usage: { prompt: number; completion: number } | null = null;
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
      await meter.succeeded(usage);
    } catch (error) {
      meter.failed(statusOfError(error));
      throw error;
    } finally {
      // The subscriber left (or the stream ended): stop the generation on the runtime.
      if (!routed.stream.closed) routed.stream.close(http2.constants.NGHTTP2_CANCEL);
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
  const modelId = await servableModel(ctx, body['model'].trim());
  const routed = await ctx.router.forward(projectScopeOf(ctx.identity), modelId, '/tokenize', { ...body, model: modelId }, undefined, ctx.requestId);
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

/** The channel agents' runtime reports are announced on; the payload is the tenant id. */
export const RUNTIMES_CHANNEL = 'inference_runtimes';

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
  for (const [name, value] of [['minReplicas', a.minReplicas], ['maxReplicas', a.maxReplicas], ['idleSeconds', a.idleSeconds]] as const) {
    if (!Number.isInteger(value) || value < 0) throw badInput(`${field}.${name} must be a non-negative integer`, `${field}.${name}`);
  }
  for (const [name, value] of [['targetInFlight', a.targetInFlight], ['averageInFlight', a.averageInFlight]] as const) {
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
  };
}

function runtimeReports(runtimes: readonly RuntimeReportInput[]): RuntimeReport[] {
  if (runtimes.length > MAX_RUNTIMES) throw badInput(`at most ${MAX_RUNTIMES} runtimes`, 'runtimes');
  return runtimes.map((r, i) => {
    for (const [name, value] of [['desiredReplicas', r.desiredReplicas], ['readyReplicas', r.readyReplicas], ['inFlightRequests', r.inFlightRequests]] as const) {
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
    };
  });
}

export const resolvers: Resolvers<InferenceContext> = {
  JSON: JSONScalar,
  Query: {
    inferenceStatus: (_p, _a, ctx) => statusOf(ctx, projectScopeOf(ctx.identity)),
    inferenceRateLimit: (_p, _a, ctx) => ctx.rateLimiter.state(ctx.identity),
    apiUsages: async (_p, { startTime, endTime }, ctx) => {
      const scope = projectScopeOf(ctx.identity);
      const from = instant(startTime, 'startTime');
      const to = instant(endTime, 'endTime');
      if (from && to && from >= to) throw badInput('startTime must be before endTime', 'startTime');
      return ctx.usageStore.summaries(scope.tenantId, scope.projectId, from, to);
    },
    tokenize: (_p, { request }, ctx) => tokenize(ctx, request),
  },
  Mutation: {
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
      const stored = await ctx.store.replaceForCluster(worker.tenantId, worker.clusterId, accepted);
      await ctx.pubsub.publish(RUNTIMES_CHANNEL, worker.tenantId);
      return stored;
    },
  },
  Subscription: {
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
    updatedAt: (r) => r.updated_at.toISOString(),
  },
};
