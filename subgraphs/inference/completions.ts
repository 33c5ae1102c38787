import http2 from 'node:http2';
import { badInput, ErrorCode, failedPrecondition, MarinerError, notFound, openAIStatusFor } from '../../lib/errors.js';
import { ADAPTER_FORMATS_HEADER, ADAPTER_MODEL_HEADER, ADAPTER_SOURCE_HEADER } from '../../lib/loraAdapters.js';
import { PRIORITY_HEADER, type RequestPriority } from '../../lib/requestPriority.js';
import type { InferenceContext } from './context.js';
import { withRetrievedContext } from './rag.js';
import type { BudgetSubject } from './budgetsStore.js';
import type { RateLimitState } from './rateLimits.js';
import { forwardToModel } from './refusedModels.js';
import { readJson, type RoutedResponse } from './router.js';

/**
 * What a completion request goes through before the runtime answers, whichever way it came (the
 * GraphQL resolvers, or the data plane the REST layer uses): the body checked, the caller admitted
 * against its rate limit, the model found servable, RAG context added, a runtime chosen and asked.
 * One place, so both ways decide alike.
 */

export type Kind = 'chat' | 'completion' | 'embedding' | 'transcription';

/** The runtime path of each kind (OpenAI API), also what usage records name as the method. */
export const PATHS: Record<Kind, string> = {
  chat: '/v1/chat/completions',
  completion: '/v1/completions',
  embedding: '/v1/embeddings',
  transcription: '/v1/audio/transcriptions',
};

/** Checks the parts of an OpenAI request body routing depends on; the runtime checks the rest. */
export function requestOf(kind: Kind, request: unknown): { model: string; body: Record<string, unknown> } {
  if (typeof request !== 'object' || request === null || Array.isArray(request))
    throw badInput('request must be a JSON object (the OpenAI request body)', 'request');
  const body = request as Record<string, unknown>;
  if (typeof body['model'] !== 'string' || body['model'].trim() === '') throw badInput('model is required', 'model');
  if (kind === 'chat' && (!Array.isArray(body['messages']) || body['messages'].length === 0)) throw badInput('messages must be a non-empty array', 'messages');
  if (kind === 'completion' && typeof body['prompt'] !== 'string' && !Array.isArray(body['prompt']))
    throw badInput('prompt must be a string or an array', 'prompt');
  if (kind === 'embedding' && typeof body['input'] !== 'string' && !Array.isArray(body['input'])) throw badInput('input must be a string or an array', 'input');
  return { model: body['model'].trim(), body };
}

/** The model must be visible to the caller's project, loaded and active (LLMariner inference manager). */
export async function servableModel(ctx: InferenceContext, id: string): Promise<string> {
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

/**
 * What a completion request is sent to: the model, or for a fine-tuned model that is a LoRA adapter, a
 * runtime of its base model with the adapter named (lib/loraAdapters.ts). An adapter is servable while it
 * is active (it is from its registration on) and its base model is servable: an inactive base with
 * on-demand allocation is activated by the request, as the model itself would be.
 */
export async function servableTarget(
  ctx: InferenceContext,
  id: string,
): Promise<{ modelId: string; runtimeModelId: string; headers?: Record<string, string> }> {
  const model = await ctx.models.model(ctx, id);
  if (!model?.adapter) return { modelId: await servableModel(ctx, id), runtimeModelId: model?.id ?? id };
  if (model.activationStatus !== 'ACTIVE') throw failedPrecondition(`model ${model.id} is not active: activate it first`);
  const base = await ctx.models.model(ctx, model.adapter.baseModelId);
  if (!base) throw failedPrecondition(`model ${model.id} is a LoRA adapter of ${model.adapter.baseModelId}, which is not available`);
  const runtimeModelId = await servableModel(ctx, base.id);
  // The formats let a runtime that serves one format only (llama.cpp: GGUF) refuse the others with the reason.
  const headers = { [ADAPTER_MODEL_HEADER]: model.id, [ADAPTER_SOURCE_HEADER]: model.source, [ADAPTER_FORMATS_HEADER]: model.adapter.formats.join(',') };
  return { modelId: model.id, runtimeModelId, headers };
}

/** A runtime's error answer, as one of our errors (the runtime speaks OpenAI's error shape). */
export async function runtimeError(routed: RoutedResponse): Promise<MarinerError> {
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
export function usageOf(value: unknown): { prompt: number; completion: number } | null {
  const usage = (value as { usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } } | null)?.usage;
  if (!usage || typeof usage !== 'object') return null;
  const count = (n: unknown) => (typeof n === 'number' && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0);
  return { prompt: count(usage.prompt_tokens), completion: count(usage.completion_tokens) };
}

/** The HTTP status a failure answers with (recorded with its usage). */
export function statusOfError(error: unknown): number {
  return error instanceof MarinerError ? openAIStatusFor(error.code) : 500;
}

/** A chunk that carries text (the first one marks the time to first token). */
export function hasText(chunk: unknown): boolean {
  const choice = (chunk as { choices?: { delta?: { content?: unknown }; text?: unknown }[] } | null)?.choices?.[0];
  const text = choice?.delta?.content ?? choice?.text;
  return typeof text === 'string' && text !== '';
}

/**
 * One inference request's metering: admission against the caller's rate limit, then, once it ends,
 * its tokens charged to the limit and its usage record queued (LLMariner inference manager §1 steps
 * 2 and 8). Recording never waits on the database; charging is one UPDATE, so the next request of
 * the key sees the tokens this one used.
 */
export class Metering {
  private readonly started = performance.now();
  private firstTokenMs: number | null = null;
  private limitKey: string | null = null;
  private budgetSubject: BudgetSubject | null = null;
  private done = false;
  /** The caller's rate-limit state once admitted (null: not limited), for OpenAI's headers. */
  rateLimit: RateLimitState | null = null;

  constructor(
    private readonly ctx: InferenceContext,
    private readonly kind: Kind,
    private readonly modelId: string,
  ) {}

  async admit(): Promise<void> {
    // Budgets first: a request refused for its budget spends nothing of the rate limit.
    this.budgetSubject = await this.ctx.budgets.admit(this.ctx.identity);
    const { key, state } = await this.ctx.rateLimiter.admitWithState(this.ctx.identity);
    this.limitKey = key;
    this.rateLimit = state;
  }

  firstToken(): void {
    this.firstTokenMs ??= Math.round(performance.now() - this.started);
  }

  async succeeded(usage: { prompt: number; completion: number } | null): Promise<void> {
    if (this.done) return;
    this.record(200, usage);
    const tokens = (usage?.prompt ?? 0) + (usage?.completion ?? 0);
    // What the window has left once this request's tokens are charged (the headers of a whole answer say so).
    if (this.rateLimit && this.rateLimit.limitTokens > 0)
      this.rateLimit = { ...this.rateLimit, remainingTokens: Math.max(0, this.rateLimit.remainingTokens - tokens) };
    // The answer is already generated: a failed charge (the database just went) does not fail it.
    await this.ctx.rateLimiter.charge(this.limitKey, tokens).catch(() => undefined);
    await this.ctx.budgets.charge(this.budgetSubject, usage, this.modelId).catch(() => undefined);
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

/** A request a runtime has accepted: its answer to read, the metering to finish, and whether the caller hid usage. */
export interface RoutedCompletion {
  routed: RoutedResponse;
  meter: Metering;
  /** A streaming caller said `stream_options.include_usage: false`: the usage chunk is not passed on. */
  hideUsage: boolean;
}

/**
 * Checks, admits and routes one request (see the module). A streaming request always asks the runtime
 * for the usage chunk (LLMariner forces `include_usage` unless `stream_options` is given): it is what
 * the rate limit charges and the usage record counts. A failure before the runtime answered is
 * recorded (with the status it answers) and thrown (a refusal by the rate limit, `RateLimitedError`,
 * carries the caller's state). `signal` cancels the wait for a runtime.
 */
export async function routeCompletion(
  kind: Kind,
  ctx: InferenceContext,
  request: unknown,
  stream: boolean,
  signal?: AbortSignal,
  /** A batch's request is sent to the runtime as such (lib/requestPriority.ts): it yields to interactive ones. */
  priority?: RequestPriority,
): Promise<RoutedCompletion> {
  const { model, body: asked } = requestOf(kind, request);
  const meter = new Metering(ctx, kind, model);
  const options = asked['stream_options'];
  const hideUsage = stream && typeof options === 'object' && options !== null && (options as Record<string, unknown>)['include_usage'] === false;
  try {
    await meter.admit();
    const target = await servableTarget(ctx, model);
    const { modelId, runtimeModelId } = target;
    const headers = priority === 'batch' ? { ...target.headers, [PRIORITY_HEADER]: 'batch' } : target.headers;
    const body = kind === 'chat' ? await withRetrievedContext(ctx.vectorStores, ctx, asked) : asked;
    let payload: Record<string, unknown>;
    if (kind === 'embedding') payload = { ...body, model: modelId };
    else if (!stream) payload = { ...body, model: modelId, stream: false };
    else {
      const streamOptions =
        typeof options === 'object' && options !== null ? { ...(options as Record<string, unknown>), include_usage: true } : { include_usage: true };
      payload = { ...body, model: modelId, stream: true, stream_options: streamOptions };
    }
    const routed = await forwardToModel(ctx, runtimeModelId, PATHS[kind], payload, signal, headers);
    if (routed.status >= 400) throw await runtimeError(routed);
    return { routed, meter, hideUsage };
  } catch (error) {
    meter.failed(statusOfError(error));
    throw error;
  }
}

/** An answer read whole, as it is passed on: its content type, and the usage it carries (null: none). */
export interface WholeAnswer {
  contentType: string;
  usage: { prompt: number; completion: number } | null;
}

/** How long a runtime may take to end a stream whose answer was read whole (`[DONE]`) before it is reset. */
const END_OF_ANSWER_GRACE_MS = 5_000;

/**
 * Lets go of a runtime's answer. A stream read to its end closes by itself. One whose answer is
 * complete (`answered`: its `[DONE]` was read) is left to end, and reset only if the runtime does not end
 * it within END_OF_ANSWER_GRACE_MS. Any other (the caller left, a failure) is reset, which stops the
 * generation on the runtime. A reset is not free: the agent's HTTP/2 server counts every RST_STREAM it
 * receives (nghttp2's rapid-reset guard), and one per request closed a busy tunnel after about a
 * thousand requests.
 */
export function releaseRouted(routed: RoutedResponse, answered: boolean): void {
  const { stream } = routed;
  if (stream.closed || stream.destroyed || stream.readableEnded) return;
  if (!answered) return void stream.close(http2.constants.NGHTTP2_CANCEL);
  const timer = setTimeout(() => {
    if (!stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
  }, END_OF_ANSWER_GRACE_MS).unref();
  stream.once('close', () => clearTimeout(timer));
  // What follows `[DONE]` (the end of the stream) is read and dropped.
  stream.resume();
}
