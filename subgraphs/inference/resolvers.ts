import http2 from 'node:http2';
import { badInput, ErrorCode, failedPrecondition, MarinerError, notFound, unauthenticated } from '../../lib/errors.js';
import { projectScopeOf } from '../../lib/identity.js';
import { latestOnChange } from '../../lib/latestOnChange.js';
import type { InferenceContext, InferenceStatusModel } from './context.js';
import type { Resolvers } from './generated/resolvers.js';
import { JSONScalar } from './json.js';
import { withRetrievedContext } from './rag.js';
import { readJson, serverSentEvents, type RoutedResponse } from './router.js';
import type { RuntimeReport } from './store.js';

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

async function complete(kind: Kind, ctx: InferenceContext, request: unknown): Promise<unknown> {
  const { model, body: asked } = requestOf(kind, request);
  const modelId = await servableModel(ctx, model);
  const body = kind === 'chat' ? await withRetrievedContext(ctx.vectorStores, ctx, asked) : asked;
  const tenantId = projectScopeOf(ctx.identity).tenantId;
  const routed = await ctx.router.forward(tenantId, modelId, PATHS[kind], kind === 'embedding' ? { ...body, model: modelId } : { ...body, model: modelId, stream: false });
  if (routed.status >= 400) throw await runtimeError(routed);
  return readJson(routed.stream);
}

/**
 * A streaming request: checked and routed before the subscription starts (so a refusal is an
 * ordinary GraphQL error), then each server-sent event of the runtime becomes one event.
 */
async function chunks(kind: 'chat' | 'completion', ctx: InferenceContext, request: unknown): Promise<AsyncGenerator<unknown>> {
  const { model, body: asked } = requestOf(kind, request);
  const modelId = await servableModel(ctx, model);
  const body = kind === 'chat' ? await withRetrievedContext(ctx.vectorStores, ctx, asked) : asked;
  const tenantId = projectScopeOf(ctx.identity).tenantId;
  const routed = await ctx.router.forward(tenantId, modelId, PATHS[kind], { ...body, model: modelId, stream: true });
  if (routed.status >= 400) throw await runtimeError(routed);
  return (async function* () {
    try {
      yield* serverSentEvents(routed.stream);
    } finally {
      // The subscriber left (or the stream ended): stop the generation on the runtime.
      if (!routed.stream.closed) routed.stream.close(http2.constants.NGHTTP2_CANCEL);
    }
  })();
}

/** The channel agents' runtime reports are announced on; the payload is the tenant id. */
export const RUNTIMES_CHANNEL = 'inference_runtimes';

async function statusOf(ctx: InferenceContext, tenantId: string) {
  const runtimes = await ctx.store.forTenant(tenantId);
  return { runtimes, readyModelIds: [...new Set(runtimes.filter((r) => r.ready_replicas > 0).map((r) => r.model_id))] };
}

/** The tenant's inference status now, then after each report. */
function runtimeUpdates(ctx: InferenceContext): AsyncGenerator<unknown> {
  const tenantId = projectScopeOf(ctx.identity).tenantId;
  return latestOnChange(
    (changed) => ctx.pubsub.subscribe(RUNTIMES_CHANNEL, (payload) => payload === tenantId && changed()),
    () => statusOf(ctx, tenantId),
  );
}

const MAX_RUNTIMES = 10_000;

function runtimeReports(runtimes: readonly { modelId: string; desiredReplicas: number; readyReplicas: number; inFlightRequests: number; statusMessage?: string | null }[]): RuntimeReport[] {
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
    };
  });
}

export const resolvers: Resolvers<InferenceContext> = {
  JSON: JSONScalar,
  Query: {
    inferenceStatus: (_p, _a, ctx) => statusOf(ctx, projectScopeOf(ctx.identity).tenantId),
  },
  Mutation: {
    createChatCompletion: (_p, { request }, ctx) => complete('chat', ctx, request),
    createCompletion: (_p, { request }, ctx) => complete('completion', ctx, request),
    createEmbedding: (_p, { request }, ctx) => complete('embedding', ctx, request),
    reportRuntimes: async (_p, { runtimes }, ctx) => {
      if (!ctx.worker) throw unauthenticated('A cluster registration key is required');
      const stored = await ctx.store.replaceForCluster(ctx.worker.tenantId, ctx.worker.clusterId, runtimeReports(runtimes));
      await ctx.pubsub.publish(RUNTIMES_CHANNEL, ctx.worker.tenantId);
      return stored;
    },
  },
  Subscription: {
    chatCompletionChunks: { subscribe: (_p, { request }, ctx) => chunks('chat', ctx, request), resolve: (chunk: unknown) => chunk },
    completionChunks: { subscribe: (_p, { request }, ctx) => chunks('completion', ctx, request), resolve: (chunk: unknown) => chunk },
    runtimesUpdated: { subscribe: (_p, _a, ctx) => runtimeUpdates(ctx), resolve: (status: unknown) => status as InferenceStatusModel },
  },
  Model: {
    __resolveReference: (ref) => ({ id: ref.id }),
    runtimes: (m, _a, ctx) => ctx.store.forModels(projectScopeOf(ctx.identity).tenantId, [m.id]),
  },
  Runtime: {
    clusterId: (r) => r.cluster_id,
    modelId: (r) => r.model_id,
    desiredReplicas: (r) => r.desired_replicas,
    readyReplicas: (r) => r.ready_replicas,
    inFlightRequests: (r) => r.in_flight_requests,
    statusMessage: (r) => r.status_message,
    updatedAt: (r) => r.updated_at.toISOString(),
  },
};
