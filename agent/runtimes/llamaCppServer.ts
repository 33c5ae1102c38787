/**
 * The local executor's inference runtime: one child process per model, node-llama-cpp on the CPU,
 * speaking the OpenAI-compatible HTTP API on loopback (what vLLM or Ollama pods serve on Kubernetes).
 *
 *   node --import tsx agent/runtimes/llamaCppServer.ts --model <path.gguf> --model-id <id> --port 0
 *        [--host 127.0.0.1] [--parallel N] [--context-size N] [--threads N] [--max-lora-adapters N]
 *        [--exit-on-stdin-close]
 *
 * Once the model is loaded it prints one JSON line to stdout, `{"ready":true,"port":<port>}`; everything
 * else (llama.cpp's own logs included) goes to stderr. Routes (OpenAI API reference):
 * POST /v1/chat/completions, POST /v1/completions (both streaming as SSE), POST /v1/embeddings,
 * GET /v1/models; GET /health; GET /metrics → `{"inFlight": n, "served": n, "cancelled": n, "adapters": [...]}`
 * for the autoscaler (LLMariner §1: in-flight requests per model; `cancelled`: generations stopped because
 * their client left; `adapters`: the LoRA adapters loaded). A request whose `model` names a LoRA adapter of
 * the model (`ft:...`, with its file in the `x-mariner-adapter-path` header the agent sets) is served on
 * the same loaded weights by a context of its own, created on first use and kept (no process per adapter),
 * at most `--max-lora-adapters` (default 4, or MARINER_LOCAL_MAX_LORA_ADAPTERS) at once, the least recently
 * used idle one unloaded first; POST /v1/unload_lora_adapter `{"lora_name": id}` (vLLM's route) unloads
 * one. `--parallel` sequences generate at once; requests beyond
 * them wait in a queue. A client that disconnects aborts its generation and frees its sequence.
 * Chat completions take `tools`/`tool_choice` (node-llama-cpp's function calling with `auto`, its JSON
 * schema grammar for `required` and a named function), `tool` messages, `response_format` `json_object`
 * and `json_schema` (grammar-enforced), and `n` (choices generated one after another); see README.md.
 * SIGTERM (or stdin closing, with `--exit-on-stdin-close`): stop accepting, let in-flight requests finish
 * (at most 10 s), exit 0.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes, randomInt } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ADAPTER_PATH_HEADER } from '../../lib/loraAdapters.js';
import {
  type ChatHistoryItem,
  type ChatModelFunctionCall,
  type ChatModelFunctions,
  type ChatModelResponse,
  type ChatWrapper,
  type GbnfJsonSchema,
  getLlama,
  type Llama,
  LlamaChat,
  LlamaCompletion,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaEmbeddingContext,
  type LlamaGrammar,
  LlamaLogLevel,
  type LlamaModel,
  type LlamaText,
  resolveChatWrapper,
  type Token,
} from 'node-llama-cpp';
import { isJsonObject } from '../../lib/jsonObject.js';
import { PRIORITY_HEADER, priorityOf, type RequestPriority } from '../../lib/requestPriority.js';
import { SequenceQueue } from './sequenceQueue.js';

/** The priority of the request being served, for the sequence it waits for (set in `route`). */
const requestPriority = new AsyncLocalStorage<RequestPriority>();

export interface LlamaCppServerOptions {
  modelPath: string;
  /** The id clients name in `model`; any other name is a 404 model_not_found. */
  modelId: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Sequences that generate at once (default 2). */
  parallel?: number;
  /** Tokens per sequence (default: what fits in memory, at most the model's and at most 4096). */
  contextSize?: number;
  /** CPU threads for evaluation (default: all cores but one). */
  threads?: number;
  /** How long SIGTERM waits for in-flight requests (default 10 s). */
  drainTimeoutMs?: number;
  /** LoRA adapters kept loaded at once (default 4): one more unloads the least recently used idle one. */
  maxLoraAdapters?: number;
}

export interface LlamaCppServer {
  port: number;
  /** Stops accepting, waits for in-flight requests (bounded), frees the model. */
  close(): Promise<void>;
}

/** Loads the model and serves it; resolves once it listens. */
export async function startLlamaCppServer(options: LlamaCppServerOptions): Promise<LlamaCppServer> {
  const parallel = Math.max(1, options.parallel ?? 2);
  const llama = await getLlama({
    gpu: false,
    // node-llama-cpp's postinstall does not run (npm 11 skips dependency install scripts): use the
    // prebuilt binary of @node-llama-cpp/linux-x64 and never try to download or build one.
    build: 'never',
    maxThreads: options.threads ?? Math.max(1, availableParallelism() - 1),
    logLevel: LlamaLogLevel.warn,
    logger: (level, message) => process.stderr.write(`[llama.cpp ${level}] ${message.trimEnd()}\n`),
  });
  const model = await llama.loadModel({ modelPath: options.modelPath });
  const context = await model.createContext({
    sequences: parallel,
    contextSize: options.contextSize ?? { max: 4096 },
  });
  const runtime = new Runtime(llama, model, context, options.modelId);
  const adapters = new AdapterContexts(runtime, { sequences: parallel, contextSize: context.contextSize }, Math.max(1, options.maxLoraAdapters ?? 4));

  let inFlight = 0;
  let served = 0;
  let draining = false;
  const idleWaiters: (() => void)[] = [];
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    // Probes are answered even while draining and are not counted as work.
    if (req.method === 'GET' && path === '/health')
      return sendJson(res, draining ? 503 : 200, { status: draining ? 'draining' : 'ok', model: options.modelId });
    if (req.method === 'GET' && path === '/metrics')
      return sendJson(res, 200, { inFlight, served, cancelled: runtime.cancelled + adapters.cancelled(), adapters: adapters.loaded() });
    if (draining) {
      res.setHeader('connection', 'close');
      return sendError(res, new ApiError(503, 'The runtime is shutting down', 'server_error'));
    }
    // In flight until its work is over (not until its socket closes): what the autoscaler should see.
    inFlight++;
    route(req, res, path)
      .catch((error: unknown) => {
        if (res.destroyed) return;
        if (!(error instanceof ApiError)) process.stderr.write(`request failed: ${(error as Error).stack ?? String(error)}\n`);
        const apiError = error instanceof ApiError ? error : new ApiError(500, `The runtime failed: ${(error as Error).message}`, 'server_error');
        // Mid-stream, the error travels as an event (the OpenAI SDKs raise it from the stream).
        if (res.headersSent) return void res.end(`data: ${JSON.stringify(errorBody(apiError))}\n\n`);
        sendError(res, apiError);
      })
      .finally(() => {
        inFlight--;
        served++;
        if (inFlight === 0) idleWaiters.splice(0).forEach((wake) => wake());
      });
  });

  async function route(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (req.method === 'GET' && path === '/v1/models') {
      const ids = [options.modelId, ...adapters.loaded()];
      return sendJson(res, 200, { object: 'list', data: ids.map((id) => ({ id, object: 'model', created: runtime.created, owned_by: 'mariner' })) });
    }
    if (req.method === 'POST' && path === '/v1/unload_lora_adapter') return unloadLoraAdapter(adapters, req, res);
    const handler = POST_ROUTES[path as keyof typeof POST_ROUTES];
    if (!handler) throw new ApiError(404, `Unknown request URL: ${req.method} ${path.slice(0, 200)}`, 'invalid_request_error', null, 'unknown_url');
    if (req.method !== 'POST') throw new ApiError(405, `${path} takes POST`, 'invalid_request_error', null, 'method_not_allowed');
    const body = await readJson(req);
    // The client leaving (the connection closed before the answer ended) aborts the work.
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort(new Error('the client disconnected'));
    });
    // A LoRA adapter of the model (`model` names it): its own context on the shared weights.
    // A batch's request waits behind interactive ones for a sequence (lib/requestPriority.ts).
    await adapters.serve(body.model, req.headers[ADAPTER_PATH_HEADER], (target) =>
      requestPriority.run(priorityOf(req.headers[PRIORITY_HEADER]), () => handler(target, body, res, abort.signal)),
    );
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  return {
    port,
    close() {
      closing ??= (async () => {
        draining = true;
        server.close();
        server.closeIdleConnections();
        let drained = inFlight === 0;
        if (!drained) {
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([
            new Promise<void>((resolve) => idleWaiters.push(() => resolve(void (drained = true)))),
            new Promise<void>((resolve) => (timer = setTimeout(resolve, options.drainTimeoutMs ?? 10_000))),
          ]);
          clearTimeout(timer);
        }
        server.closeAllConnections();
        // Freeing the model under a generation still running is unsafe; the process exits anyway.
        if (drained) {
          await adapters.dispose();
          await runtime.dispose();
        }
      })();
      return closing;
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// The model, its sequences and the generation

interface SamplingParams {
  maxTokens: number | undefined;
  temperature: number;
  topP: number;
  seed: number | undefined;
  stop: string[];
  frequencyPenalty: number;
  presencePenalty: number;
}

interface GenerationResult {
  text: string;
  promptTokens: number;
  completionTokens: number;
  finishReason: 'stop' | 'length';
}

class Runtime {
  readonly created = Math.floor(Date.now() / 1000);
  readonly chatWrapper: ChatWrapper;
  /** Generations cut short (or dropped from the queue) because their client left. */
  cancelled = 0;
  private readonly sequences: SequenceQueue<LlamaContextSequence>;
  private embedding: Promise<LlamaEmbeddingContext> | undefined;
  private embeddingQueue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly llama: Llama,
    readonly model: LlamaModel,
    readonly context: LlamaContext,
    readonly modelId: string,
    /** An adapter's runtime shares the base's model: disposing it frees its context only. */
    private readonly ownsModel = true,
  ) {
    this.chatWrapper = resolveChatWrapper(model);
    const sequences = Array.from({ length: context.totalSequences }, () => context.getSequence());
    this.sequences = new SequenceQueue(sequences, { onDropped: () => this.cancelled++ });
  }

  get contextSize(): number {
    return this.context.contextSize;
  }

  /**
   * Tokens of a chat rendered with the model's chat template, ready to generate the assistant's turn
   * (`history` as given by {@link withAssistantTurn}); `functions` are documented in it the wrapper's way.
   */
  renderChat(history: ChatHistoryItem[], functions?: ChatModelFunctions): { tokens: Token[]; stopTriggers: LlamaText[] } {
    const state = this.chatWrapper.generateContextState({
      chatHistory: history,
      ...(functions ? { availableFunctions: functions, documentFunctionParams: true } : {}),
    });
    const tokens = state.contextText.tokenize(this.model.tokenizer);
    // LlamaCompletion prepends BOS itself where the model wants it.
    if (this.model.tokens.shouldPrependBosToken && tokens[0] === this.model.tokens.bos) tokens.shift();
    return { tokens, stopTriggers: state.stopGenerationTriggers };
  }

  tokenizePrompt(prompt: string): Token[] {
    return this.model.tokenize(prompt, false, 'trimLeadingSpace');
  }

  /**
   * Waits for a free sequence (requests beyond `--parallel` queue here, interactive ahead of batch:
   * sequenceQueue.ts), or for the abort. The priority is the request's (`x-mariner-priority`, see `route`).
   */
  private acquire(signal: AbortSignal): Promise<LlamaContextSequence> {
    return this.sequences.acquire(requestPriority.getStore() ?? 'interactive', signal);
  }

  private release(sequence: LlamaContextSequence): void {
    this.sequences.release(sequence);
  }

  /** Prompt tokens as the model sees them (with the BOS that generation prepends); 400 when they fill the context. */
  promptTokenCount(promptTokens: Token[], param: 'messages' | 'prompt'): number {
    const count = promptTokens.length + (this.model.tokens.shouldPrependBosToken ? 1 : 0);
    if (count >= this.contextSize) {
      throw new ApiError(
        400,
        `This model's maximum context length is ${this.contextSize} tokens; the prompt has ${count}.`,
        'invalid_request_error',
        param,
        'context_length_exceeded',
      );
    }
    return count;
  }

  /** Generates from prompt tokens on one sequence; `onText` gets each piece as it is decided. */
  async generate(
    promptTokens: Token[],
    promptCount: number,
    params: SamplingParams,
    extraStopTriggers: LlamaText[],
    signal: AbortSignal,
    onText?: (text: string) => void,
    grammar?: LlamaGrammar,
  ): Promise<GenerationResult> {
    const sequence = await this.acquire(signal);
    const completion = new LlamaCompletion({ contextSequence: sequence });
    let text = '';
    let completionTokens = 0;
    let stoppedByClient = false;
    try {
      const penalties = params.frequencyPenalty !== 0 || params.presencePenalty !== 0;
      const result = await completion.generateCompletionWithMeta(promptTokens, {
        maxTokens: params.maxTokens,
        temperature: params.temperature,
        topP: params.topP,
        ...(params.seed !== undefined ? { seed: params.seed } : {}),
        repeatPenalty: penalties ? { penalty: 1, frequencyPenalty: params.frequencyPenalty, presencePenalty: params.presencePenalty } : false,
        customStopTriggers: [...extraStopTriggers, ...params.stop],
        ...(grammar ? { grammar } : {}),
        // No context shift: generation ends at the context's end (finish_reason "length"), as OpenAI's.
        disableContextShift: true,
        signal,
        stopOnAbortSignal: true,
        onToken: (tokens) => (completionTokens += tokens.length),
        onTextChunk: (chunk) => {
          text += chunk;
          onText?.(chunk);
        },
      });
      if (result.metadata.stopReason === 'abort') {
        stoppedByClient = true;
        throw signal.reason;
      }
      if (result.metadata.stopReason === 'maxTokens') {
        // Every token up to the limit was generated, though the last few are not in the text when they
        // could have begun a stop sequence (node-llama-cpp holds those back).
        const limit = Math.min(params.maxTokens ?? Infinity, this.contextSize - promptCount);
        return { text, promptTokens: promptCount, completionTokens: Math.max(completionTokens, limit), finishReason: 'length' };
      }
      return { text, promptTokens: promptCount, completionTokens, finishReason: 'stop' };
    } catch (error) {
      if (signal.aborted) stoppedByClient = true;
      throw error;
    } finally {
      completion.dispose({ disposeSequence: false });
      if (stoppedByClient) {
        this.cancelled++;
        // An interrupted evaluation leaves the sequence's state unknown: start the next one afresh.
        await sequence.clearHistory().catch(() => undefined);
      }
      this.release(sequence);
    }
  }

  /**
   * A chat turn through node-llama-cpp's own function calling (`tool_choice: "auto"`): LlamaChat renders
   * the functions the chat wrapper's way, notices when the model starts a call, constrains its
   * parameters with the function's JSON schema grammar and stops after the call(s). `onCall` gets each
   * call's parameter text as it is generated (`first`: the call's first piece).
   */
  async generateWithFunctions(
    history: ChatHistoryItem[],
    functions: ChatModelFunctions,
    maxParallelCalls: number | undefined,
    promptCount: number,
    params: SamplingParams,
    signal: AbortSignal,
    onText?: (text: string) => void,
    onCall?: (callIndex: number, name: string, paramsChunk: string) => void,
  ): Promise<GenerationResult & { calls: { name: string; arguments: string }[] }> {
    const sequence = await this.acquire(signal);
    const chat = new LlamaChat({ contextSequence: sequence, chatWrapper: this.chatWrapper });
    const outputBefore = sequence.tokenMeter.usedOutputTokens;
    let stoppedByClient = false;
    try {
      const penalties = params.frequencyPenalty !== 0 || params.presencePenalty !== 0;
      // At most what is left of the context: LlamaChat would otherwise shift it, which OpenAI's API never does.
      const limit = Math.min(params.maxTokens ?? Infinity, this.contextSize - promptCount);
      const result = await chat.generateResponse(history, {
        functions,
        documentFunctionParams: true,
        ...(maxParallelCalls !== undefined ? { maxParallelFunctionCalls: maxParallelCalls } : {}),
        maxTokens: limit,
        temperature: params.temperature,
        topP: params.topP,
        ...(params.seed !== undefined ? { seed: params.seed } : {}),
        repeatPenalty: penalties ? { penalty: 1, frequencyPenalty: params.frequencyPenalty, presencePenalty: params.presencePenalty } : false,
        customStopTriggers: params.stop,
        signal,
        stopOnAbortSignal: true,
        onTextChunk: (chunk) => {
          if (chunk !== '') onText?.(chunk);
        },
        onFunctionCallParamsChunk: (chunk) => onCall?.(chunk.callIndex, chunk.functionName, chunk.paramsChunk),
      });
      if (result.metadata.stopReason === 'abort') {
        stoppedByClient = true;
        throw signal.reason;
      }
      const completionTokens = sequence.tokenMeter.usedOutputTokens - outputBefore;
      const calls = (result.functionCalls ?? []).map((call) => ({ name: call.functionName, arguments: JSON.stringify(call.params ?? {}) }));
      const finishReason = result.metadata.stopReason === 'maxTokens' ? 'length' : 'stop';
      return { text: result.response, promptTokens: promptCount, completionTokens, finishReason, calls };
    } catch (error) {
      if (signal.aborted) stoppedByClient = true;
      throw error;
    } finally {
      chat.dispose({ disposeSequence: false });
      if (stoppedByClient) {
        this.cancelled++;
        await sequence.clearHistory().catch(() => undefined);
      }
      this.release(sequence);
    }
  }

  /** One embedding at a time, on a context created on first use. */
  embed(inputs: string[], signal: AbortSignal): Promise<{ vectors: readonly number[][]; promptTokens: number }> {
    const contextSize = Math.min(this.contextSize, this.model.trainContextSize);
    this.embedding ??= this.model.createEmbeddingContext({ contextSize });
    const run = this.embeddingQueue.then(async () => {
      const context = await this.embedding!;
      const vectors: number[][] = [];
      let promptTokens = 0;
      for (const input of inputs) {
        signal.throwIfAborted();
        const tokens = this.model.tokenize(input);
        if (tokens.length >= contextSize) {
          throw new ApiError(
            400,
            `An input has ${tokens.length} tokens; this model embeds at most ${contextSize - 1}.`,
            'invalid_request_error',
            'input',
            'context_length_exceeded',
          );
        }
        promptTokens += tokens.length;
        vectors.push([...(await context.getEmbeddingFor(tokens)).vector]);
      }
      return { vectors, promptTokens };
    });
    this.embeddingQueue = run.catch(() => undefined);
    return run;
  }

  async dispose(): Promise<void> {
    if (this.embedding) await (await this.embedding.catch(() => undefined))?.dispose();
    await this.context.dispose();
    if (!this.ownsModel) return;
    await this.model.dispose();
    await this.llama.dispose();
  }
}

/**
 * The LoRA adapters this runtime serves on its one loaded model (node-llama-cpp applies an adapter per
 * context): one context per adapter, with as many sequences as the base's, sharing the model's weights.
 * An adapter is named by its model id (`ft:<base>:<suffix>`) and loaded from the file the agent gives on
 * its first request; later requests find it loaded. At most `maxAdapters` stay loaded: loading one more
 * unloads the least recently used idle one (each adapter's context holds its own KV cache, so memory
 * grows with every adapter kept). An adapter is never freed under a request: one unloaded while busy
 * (by the cap, or `unload` when the agent says its model is gone) is freed when its last request ends.
 */
class AdapterContexts {
  /** Loaded and loading adapters, least recently used first. */
  private readonly runtimes = new Map<string, Promise<Runtime>>();
  /** The loaded ones. */
  private readonly settled = new Map<string, Runtime>();
  /** Requests being served per adapter runtime. */
  private readonly busy = new Map<Runtime, number>();
  /** Unloaded while busy: freed when idle. */
  private readonly retired = new Set<Runtime>();
  private retiredCancelled = 0;

  constructor(
    private readonly base: Runtime,
    private readonly contextOptions: { sequences: number; contextSize: number },
    private readonly maxAdapters: number,
  ) {}

  /**
   * Runs `work` on the runtime a request's `model` names: the base's, or an adapter's (loaded now if
   * the agent gave its file), held loaded until `work` ends.
   */
  async serve<T>(model: unknown, filePath: string | string[] | undefined, work: (runtime: Runtime) => Promise<T>): Promise<T> {
    if (typeof model !== 'string' || model === this.base.modelId) return work(this.base);
    let pending = this.runtimes.get(model);
    if (pending) {
      // Most recently used: to the end of the eviction order.
      this.runtimes.delete(model);
      this.runtimes.set(model, pending);
    } else {
      // Unknown and no file given: the base answers, and checkModel says which model it serves.
      if (typeof filePath !== 'string' || filePath === '') return work(this.base);
      const loading = this.load(model, filePath);
      pending = loading;
      this.runtimes.set(model, loading);
      loading.catch(() => {
        if (this.runtimes.get(model) === loading) this.runtimes.delete(model);
      });
    }
    const runtime = await pending;
    this.busy.set(runtime, (this.busy.get(runtime) ?? 0) + 1);
    try {
      return await work(runtime);
    } finally {
      const left = this.busy.get(runtime)! - 1;
      if (left > 0) this.busy.set(runtime, left);
      else {
        this.busy.delete(runtime);
        if (this.retired.has(runtime)) this.free(runtime);
        else this.evict();
      }
    }
  }

  /** Unloads an adapter (freed once its requests end); false when it is not loaded. */
  unload(id: string): boolean {
    const runtime = this.settled.get(id);
    if (!runtime) return false;
    this.settled.delete(id);
    this.runtimes.delete(id);
    this.retired.add(runtime);
    process.stderr.write(`unloaded LoRA adapter ${id}\n`);
    // After this turn: a request just given this runtime (its `await pending` resumes in a microtask)
    // counts itself as busy first.
    setImmediate(() => {
      if (!this.busy.has(runtime)) this.free(runtime);
    });
    return true;
  }

  private async load(id: string, filePath: string): Promise<Runtime> {
    const started = Date.now();
    let context: LlamaContext;
    try {
      context = await this.base.model.createContext({ ...this.contextOptions, lora: { adapters: [{ filePath, scale: 1 }] } });
    } catch (error) {
      throw new ApiError(500, `The LoRA adapter of ${id} could not be loaded: ${(error as Error).message}`, 'server_error');
    }
    process.stderr.write(`loaded LoRA adapter ${id} in ${Date.now() - started} ms\n`);
    const runtime = new Runtime(this.base.llama, this.base.model, context, id, false);
    this.settled.set(id, runtime);
    this.evict(id);
    return runtime;
  }

  /** Over the cap: unloads the least recently used idle adapters (never `keep`, just loaded). */
  private evict(keep?: string): void {
    let over = this.settled.size - this.maxAdapters;
    for (const id of [...this.runtimes.keys()]) {
      if (over <= 0) return;
      const runtime = this.settled.get(id);
      if (!runtime || id === keep || this.busy.has(runtime)) continue;
      this.unload(id);
      over--;
    }
  }

  private free(runtime: Runtime): void {
    if (!this.retired.delete(runtime)) return;
    this.retiredCancelled += runtime.cancelled;
    runtime.dispose().catch((error: Error) => process.stderr.write(`freeing a LoRA adapter failed: ${error.message}\n`));
  }

  /** The ids of the adapters loaded (loading ones are not yet), least recently used first. */
  loaded(): string[] {
    return [...this.runtimes.keys()].filter((id) => this.settled.has(id));
  }

  cancelled(): number {
    return [...this.settled.values(), ...this.retired].reduce((sum, runtime) => sum + runtime.cancelled, this.retiredCancelled);
  }

  async dispose(): Promise<void> {
    const runtimes = await Promise.all([...this.runtimes.values()].map((pending) => pending.catch(() => undefined)));
    const retired = [...this.retired];
    this.runtimes.clear();
    this.settled.clear();
    this.retired.clear();
    await Promise.all([...runtimes, ...retired].map((runtime) => (runtime ? runtime.dispose() : Promise.resolve())));
  }
}

/**
 * `POST /v1/unload_lora_adapter` `{"lora_name": "<id>"}`, vLLM's route (its docs, "Using LoRA adapters":
 * dynamically serving LoRA adapters): the agent unloads the adapter of a fine-tuned model deleted or
 * deactivated. 200 when unloaded, 404 when it was not loaded.
 */
async function unloadLoraAdapter(adapters: AdapterContexts, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await readJson(req);
  const name = body['lora_name'];
  if (typeof name !== 'string' || name === '') throw badRequest('`lora_name` is required', 'lora_name');
  if (!adapters.unload(name))
    throw new ApiError(404, `The lora adapter '${name.slice(0, 200)}' cannot be found.`, 'invalid_request_error', 'lora_name', 'lora_not_found');
  sendJson(res, 200, { lora_name: name, unloaded: true });
}

// ---------------------------------------------------------------------------------------------------
// Routes (OpenAI API reference: chat, completions, embeddings)

type Handler = (runtime: Runtime, body: Record<string, unknown>, res: ServerResponse, signal: AbortSignal) => Promise<void>;

const POST_ROUTES = {
  '/v1/chat/completions': chatCompletions,
  '/v1/completions': completions,
  '/v1/embeddings': embeddings,
  '/tokenize': tokenize,
} satisfies Record<string, Handler>;

async function chatCompletions(runtime: Runtime, body: Record<string, unknown>, res: ServerResponse, signal: AbortSignal): Promise<void> {
  checkModel(runtime, body);
  const history = withAssistantTurn(chatHistory(body.messages), body.messages);
  const params = samplingParams(body);
  const tools = toolsOf(body);
  const format = responseFormatOf(body);
  const n = optionalInteger(body, 'n', 1) ?? 1;
  if (n > MAX_CHOICES) throw badRequest(`\`n\` is at most ${MAX_CHOICES} on this runtime (the choices are generated one after another)`, 'n');
  if (body.logprobs === true)
    throw badRequest('`logprobs` is not supported by this runtime (node-llama-cpp does not report token probabilities while generating)', 'logprobs');
  if (body.top_logprobs !== undefined && body.top_logprobs !== null) throw badRequest('`top_logprobs` is not supported by this runtime', 'top_logprobs');
  if (tools.mode === 'auto' && format.type !== 'text') {
    throw badRequest(
      '`response_format` json with `tool_choice` "auto" is not supported by this runtime: force a tool or leave the tools out',
      'response_format',
    );
  }
  const stream = optionalBoolean(body, 'stream') ?? false;
  const includeUsage = stream && streamIncludesUsage(body);
  const functions = tools.mode === 'none' ? undefined : tools.functions;
  const { tokens, stopTriggers } = runtime.renderChat(history, functions);
  const promptCount = runtime.promptTokenCount(tokens, 'messages');
  const grammar = await grammarOf(runtime, tools, format);
  const id = `chatcmpl-${randomId()}`;
  const created = Math.floor(Date.now() / 1000);
  const base = { id, created, model: runtime.modelId };
  const sse = stream ? startEventStream(res) : undefined;
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => sse!.send({ ...base, object: 'chat.completion.chunk', choices, ...extra });

  const choices: ChatChoice[] = [];
  let completionTokens = 0;
  for (let index = 0; index < n; index++) {
    // n choices from one seed would be n copies: each choice gets its own (the given seed + index, or a random one).
    const choiceParams = n === 1 ? params : { ...params, seed: params.seed !== undefined ? (params.seed + index) >>> 0 : randomInt(2 ** 32) };
    const delta = (value: Record<string, unknown>) => chunk([{ index, delta: value, logprobs: null, finish_reason: null }]);
    const forced = tools.mode === 'function' || tools.mode === 'required';
    if (sse) delta({ role: 'assistant', content: forced ? null : '' });
    let choice: ChatChoice;
    if (tools.mode === 'auto') {
      const calls = new Map<number, string>();
      const result = await runtime.generateWithFunctions(
        history,
        tools.functions,
        tools.parallel ? undefined : 1,
        promptCount,
        choiceParams,
        signal,
        sse && ((text) => delta({ content: text })),
        sse &&
          ((callIndex, name, paramsChunk) => {
            if (!calls.has(callIndex)) {
              calls.set(callIndex, `call_${randomId()}`);
              delta({ tool_calls: [{ index: callIndex, id: calls.get(callIndex), type: 'function', function: { name, arguments: '' } }] });
            }
            if (paramsChunk !== '') delta({ tool_calls: [{ index: callIndex, function: { arguments: paramsChunk } }] });
          }),
      );
      const toolCalls = result.calls.map((call, i) => ({ id: calls.get(i) ?? `call_${randomId()}`, type: 'function' as const, function: call }));
      choice = {
        content: toolCalls.length > 0 && result.text === '' ? null : result.text,
        toolCalls,
        finishReason: toolCalls.length > 0 ? 'tool_calls' : result.finishReason,
        result,
      };
    } else if (forced) {
      const call = new ForcedCall(tools.mode === 'function' ? tools.name : null, `call_${randomId()}`, sse && ((value) => delta({ tool_calls: [value] })));
      const result = await runtime.generate(tokens, promptCount, choiceParams, stopTriggers, signal, (text) => call.push(text), grammar);
      const toolCall = call.end();
      // Cut short by max_tokens before the name was decided: no call, the text as it stands.
      choice = toolCall
        ? { content: null, toolCalls: [toolCall], finishReason: result.finishReason === 'length' ? 'length' : 'tool_calls', result }
        : { content: result.text, toolCalls: [], finishReason: result.finishReason, result };
      if (!toolCall && sse && result.text !== '') delta({ content: result.text });
    } else {
      const result = await runtime.generate(tokens, promptCount, choiceParams, stopTriggers, signal, sse && ((text) => delta({ content: text })), grammar);
      choice = { content: result.text, toolCalls: [], finishReason: result.finishReason, result };
    }
    completionTokens += choice.result.completionTokens;
    choices.push(choice);
    if (sse) chunk([{ index, delta: {}, logprobs: null, finish_reason: choice.finishReason }], includeUsage ? { usage: null } : {});
  }
  const totals = { prompt_tokens: promptCount, completion_tokens: completionTokens, total_tokens: promptCount + completionTokens };
  if (sse) {
    if (includeUsage) chunk([], { usage: totals });
    sse.done();
    return;
  }
  sendJson(res, 200, {
    ...base,
    object: 'chat.completion',
    choices: choices.map((choice, index) => ({
      index,
      message: { role: 'assistant', content: choice.content, refusal: null, ...(choice.toolCalls.length > 0 ? { tool_calls: choice.toolCalls } : {}) },
      logprobs: null,
      finish_reason: choice.finishReason,
    })),
    usage: totals,
  });
}

/** The grammar of a chat turn: the forced call's (its arguments, or name and arguments), else the response format's. */
async function grammarOf(runtime: Runtime, tools: ToolsPlan, format: FormatPlan): Promise<LlamaGrammar | undefined> {
  if (tools.mode === 'function') return jsonGrammar(runtime, tools.functions[tools.name]!.params ?? EMPTY_OBJECT, 'tools');
  if (tools.mode === 'required') return jsonGrammar(runtime, anyCallSchema(tools.functions), 'tools');
  if (format.type === 'json_object') return runtime.llama.getGrammarFor('json');
  if (format.type === 'json_schema') return jsonGrammar(runtime, format.schema, 'response_format');
  return undefined;
}

/** Choices a request may ask for (`n`): they are generated one after another. */
const MAX_CHOICES = 8;

interface ChatToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

interface ChatChoice {
  content: string | null;
  toolCalls: ChatToolCall[];
  finishReason: 'stop' | 'length' | 'tool_calls';
  result: GenerationResult;
}

/**
 * A tool call forced by the grammar (`tool_choice` "required" or a named function), read as it is
 * generated. Named: the text is the arguments. Required: the text is `{"name": …, "arguments": …}` with
 * the name first (the grammar keeps the schema's property order), so the call's header goes out as soon
 * as the name is complete and the arguments stream after it, less the closing brace of the wrapper,
 * which is held back until the end. Deltas take OpenAI's shape: `{index, id, type, function: {name,
 * arguments: ""}}` first, then `{index, function: {arguments}}` fragments.
 */
class ForcedCall {
  private text = '';
  private readonly named: boolean;
  private name: string | null;
  private argumentsStart = -1;
  private sent = 0;

  constructor(
    named: string | null,
    private readonly id: string,
    private readonly onDelta: ((value: Record<string, unknown>) => void) | undefined,
  ) {
    this.name = named;
    this.named = named !== null;
    if (this.named) this.start(0);
  }

  private start(argumentsStart: number): void {
    this.argumentsStart = argumentsStart;
    this.onDelta?.({ index: 0, id: this.id, type: 'function', function: { name: this.name, arguments: '' } });
  }

  /**
   * The arguments' text so far. Until the end the last character may be the wrapper's closing brace, so
   * it is held back; at the end it is dropped when the whole text is complete JSON (else, cut short by
   * max_tokens, the arguments are all that came).
   */
  private argumentsText(final: boolean): string {
    // Leading whitespace is left out: an SDK parsing the fragments as they come wants JSON from the first.
    const rest = this.text.slice(this.argumentsStart).trimStart();
    if (this.named) return rest;
    if (final && !isJson(this.text)) return rest;
    return rest.trimEnd().slice(0, -1);
  }

  push(chunk: string): void {
    this.text += chunk;
    if (this.argumentsStart < 0) {
      const match = NAME_THEN_ARGUMENTS.exec(this.text);
      if (!match) return;
      this.name = match[1]!;
      this.start(match[0].length);
    }
    const text = this.argumentsText(false);
    if (text.length > this.sent) {
      this.onDelta?.({ index: 0, function: { arguments: text.slice(this.sent) } });
      this.sent = text.length;
    }
  }

  /** The call, or null when the generation stopped before its name was complete. */
  end(): ChatToolCall | null {
    if (this.argumentsStart < 0 || this.name === null) return null;
    const text = this.argumentsText(true);
    if (text.length > this.sent) this.onDelta?.({ index: 0, function: { arguments: text.slice(this.sent) } });
    return { id: this.id, type: 'function', function: { name: this.name, arguments: text } };
  }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

const NAME_THEN_ARGUMENTS = /^\s*\{\s*"name"\s*:\s*"([A-Za-z0-9_-]+)"\s*,\s*"arguments"\s*:\s*/;

/** Any one of the functions, by name: what `tool_choice: "required"` lets the model generate. */
function anyCallSchema(functions: ChatModelFunctions): GbnfJsonSchema {
  const options = Object.entries(functions).map(([name, fn]): GbnfJsonSchema => ({
    type: 'object',
    properties: { name: { const: name }, arguments: fn.params ?? EMPTY_OBJECT },
  }));
  return options.length === 1 ? options[0]! : { oneOf: options };
}

const EMPTY_OBJECT: GbnfJsonSchema = { type: 'object', properties: {} };

/** node-llama-cpp's grammar for a JSON schema (already converted); one it cannot build is a 400. */
async function jsonGrammar(runtime: Runtime, schema: GbnfJsonSchema, param: string): Promise<LlamaGrammar> {
  try {
    // The schema's type is checked by gbnfSchema; node-llama-cpp's generic typing wants a literal.
    return await runtime.llama.createGrammarForJsonSchema(schema as never);
  } catch (error) {
    throw badRequest(`\`${param}\`: this runtime cannot build a grammar for the JSON schema (${(error as Error).message})`, param);
  }
}

async function completions(runtime: Runtime, body: Record<string, unknown>, res: ServerResponse, signal: AbortSignal): Promise<void> {
  checkModel(runtime, body);
  let prompt = body.prompt;
  if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === 'string') prompt = prompt[0];
  if (typeof prompt !== 'string') throw badRequest('`prompt` must be a string (or an array of one string)', 'prompt');
  for (const [name, unsupported] of [
    ['echo', body.echo === true],
    ['suffix', typeof body.suffix === 'string' && body.suffix !== ''],
    ['logprobs', body.logprobs !== undefined && body.logprobs !== null && body.logprobs !== 0],
    ['best_of', typeof body.best_of === 'number' && body.best_of > 1],
    ['n', body.n !== undefined && body.n !== null && body.n !== 1],
  ] as const) {
    if (unsupported) throw badRequest(`\`${name}\` is not supported by this runtime`, name);
  }
  const params = samplingParams(body);
  const stream = optionalBoolean(body, 'stream') ?? false;
  const includeUsage = stream && streamIncludesUsage(body);
  const tokens = runtime.tokenizePrompt(prompt);
  const promptCount = runtime.promptTokenCount(tokens, 'prompt');
  const base = { id: `cmpl-${randomId()}`, created: Math.floor(Date.now() / 1000), model: runtime.modelId };

  if (!stream) {
    const result = await runtime.generate(tokens, promptCount, params, [], signal);
    return sendJson(res, 200, {
      ...base,
      object: 'text_completion',
      choices: [{ index: 0, text: result.text, logprobs: null, finish_reason: result.finishReason }],
      usage: usage(result),
    });
  }
  const sse = startEventStream(res);
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => sse.send({ ...base, object: 'text_completion', choices, ...extra });
  const result = await runtime.generate(tokens, promptCount, params, [], signal, (text) => chunk([{ index: 0, text, logprobs: null, finish_reason: null }]));
  chunk([{ index: 0, text: '', logprobs: null, finish_reason: result.finishReason }]);
  if (includeUsage) chunk([], { usage: usage(result) });
  sse.done();
}

async function embeddings(runtime: Runtime, body: Record<string, unknown>, res: ServerResponse, signal: AbortSignal): Promise<void> {
  checkModel(runtime, body);
  const input = body.input;
  const inputs = typeof input === 'string' ? [input] : input;
  if (!Array.isArray(inputs) || inputs.length === 0 || !inputs.every((item): item is string => typeof item === 'string')) {
    throw badRequest('`input` must be a string or a non-empty array of strings', 'input');
  }
  if (inputs.length > 2048) throw badRequest('`input` holds at most 2048 items', 'input');
  if (inputs.some((item) => item === '')) throw badRequest('`input` must not contain empty strings', 'input');
  const format = body.encoding_format ?? 'float';
  if (format !== 'float' && format !== 'base64') throw badRequest('`encoding_format` must be "float" or "base64"', 'encoding_format');
  const size = runtime.model.embeddingVectorSize;
  if (body.dimensions !== undefined && body.dimensions !== null && body.dimensions !== size) {
    throw badRequest(`This model's embeddings have ${size} dimensions; \`dimensions\` cannot change that`, 'dimensions');
  }
  const { vectors, promptTokens } = await runtime.embed(inputs, signal);
  sendJson(res, 200, {
    object: 'list',
    model: runtime.modelId,
    data: vectors.map((vector, index) => ({
      object: 'embedding',
      index,
      // base64: the little-endian float32 bytes (what the OpenAI SDKs ask for and decode).
      embedding: format === 'base64' ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector,
    })),
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
  });
}

/**
 * vLLM's `POST /tokenize` (LLMariner's `/v1/tokenize` is forwarded here): `{model, prompt}` or
 * `{model, messages}` (rendered with the chat template, as a chat completion renders them) →
 * `{count, max_model_len, tokens}`. The tokens are those the model is given, BOS included, so
 * `count` is the `prompt_tokens` a completion of the same input reports.
 */
async function tokenize(runtime: Runtime, body: Record<string, unknown>, res: ServerResponse): Promise<void> {
  checkModel(runtime, body);
  if ((body.prompt === undefined) === (body.messages === undefined))
    throw badRequest('Give either `prompt` or `messages`', body.prompt === undefined ? 'prompt' : 'messages');
  let tokens: Token[];
  if (body.messages !== undefined) tokens = runtime.renderChat(withAssistantTurn(chatHistory(body.messages), body.messages)).tokens;
  else if (typeof body.prompt === 'string') tokens = runtime.tokenizePrompt(body.prompt);
  else throw badRequest('`prompt` must be a string', 'prompt');
  const bos = runtime.model.tokens.bos;
  const given = runtime.model.tokens.shouldPrependBosToken && bos !== null ? [bos, ...tokens] : tokens;
  sendJson(res, 200, { count: given.length, max_model_len: runtime.contextSize, tokens: given.map(Number) });
}

function usage(result: GenerationResult) {
  return { prompt_tokens: result.promptTokens, completion_tokens: result.completionTokens, total_tokens: result.promptTokens + result.completionTokens };
}

// ---------------------------------------------------------------------------------------------------
// Request validation

function checkModel(runtime: Runtime, body: Record<string, unknown>): void {
  if (typeof body.model !== 'string' || body.model === '') throw badRequest('`model` is required', 'model');
  if (body.model !== runtime.modelId) {
    throw new ApiError(
      404,
      `The model \`${body.model.slice(0, 200)}\` does not exist; this runtime serves \`${runtime.modelId}\``,
      'invalid_request_error',
      'model',
      'model_not_found',
    );
  }
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool']);

/**
 * OpenAI messages as node-llama-cpp's chat history; text content only. An assistant message's
 * `tool_calls` become function calls of the model's response, each with the result the `tool` message
 * answering it (by `tool_call_id`) carries; an assistant message after those tool messages continues
 * the same response, as the chat wrapper renders a call, its result and what the model said next.
 */
function chatHistory(messages: unknown): ChatHistoryItem[] {
  if (!Array.isArray(messages) || messages.length === 0) throw badRequest('`messages` must be a non-empty array', 'messages');
  const items: ChatHistoryItem[] = [];
  const unanswered = new Map<string, ChatModelFunctionCall>();
  let previousRole = '';
  messages.forEach((message: unknown, index) => {
    const param = `messages[${index}]`;
    if (!isJsonObject(message) || typeof message.role !== 'string' || !ROLES.has(message.role)) {
      throw badRequest(`${param} must be an object whose role is one of ${[...ROLES].join(', ')}`, `${param}.role`);
    }
    const role = message.role;
    if (role !== 'tool' && unanswered.size > 0) {
      throw badRequest(`${param}: the tool call ${[...unanswered.keys()][0]!.slice(0, 64)} has no tool message answering it`, 'messages');
    }
    const text = messageText(message.content, role === 'assistant', `${param}.content`);
    switch (role) {
      case 'system':
      case 'developer':
        items.push({ type: 'system', text });
        break;
      case 'assistant': {
        const last = items.at(-1);
        const response: ChatModelResponse = previousRole === 'tool' && last?.type === 'model' ? last : { type: 'model', response: [] };
        if (response !== last) items.push(response);
        if (text !== '' || message.tool_calls === undefined || message.tool_calls === null) response.response.push(text);
        assistantToolCalls(message.tool_calls, param).forEach((call, i) => {
          if (unanswered.has(call.id)) throw badRequest(`${param}.tool_calls[${i}].id repeats an id`, `${param}.tool_calls[${i}].id`);
          const item: ChatModelFunctionCall = { type: 'functionCall', name: call.name, params: call.params, result: '', startsNewChunk: i === 0 };
          response.response.push(item);
          unanswered.set(call.id, item);
        });
        break;
      }
      case 'tool': {
        const id = message.tool_call_id;
        if (typeof id !== 'string' || id === '') throw badRequest(`${param}.tool_call_id is required`, `${param}.tool_call_id`);
        const call = unanswered.get(id);
        if (!call) throw badRequest(`${param} answers no tool call of the assistant message before it`, `${param}.tool_call_id`);
        unanswered.delete(id);
        // A JSON result is shown to the model as JSON, anything else as text.
        call.result = isJson(text) ? JSON.parse(text) : text;
        break;
      }
      default:
        items.push({ type: 'user', text });
    }
    previousRole = role;
  });
  if (unanswered.size > 0) throw badRequest(`the tool call ${[...unanswered.keys()][0]!.slice(0, 64)} has no tool message answering it`, 'messages');
  return items;
}

/** An assistant message's `tool_calls`: function calls whose arguments are a JSON object. */
function assistantToolCalls(value: unknown, param: string): { id: string; name: string; params: unknown }[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw badRequest(`${param}.tool_calls must be an array`, `${param}.tool_calls`);
  return value.map((call: unknown, i) => {
    const at = `${param}.tool_calls[${i}]`;
    if (!isJsonObject(call) || call.type !== 'function' || typeof call.id !== 'string' || call.id === '' || !isJsonObject(call.function)) {
      throw badRequest(`${at} must be {id, type: "function", function: {name, arguments}}`, at);
    }
    const { name, arguments: args } = call.function;
    if (typeof name !== 'string' || !FUNCTION_NAME.test(name)) throw badRequest(`${at}.function.name must be a function name`, `${at}.function.name`);
    let params: unknown;
    try {
      params = typeof args === 'string' ? JSON.parse(args === '' ? '{}' : args) : undefined;
    } catch {
      params = undefined;
    }
    if (!isJsonObject(params)) throw badRequest(`${at}.function.arguments must be a JSON object in a string`, `${at}.function.arguments`);
    return { id: call.id, name, params };
  });
}

/**
 * The history with the assistant's turn to generate: after tool results the model continues the
 * response that called the tools (the last item); otherwise a new, empty response.
 */
function withAssistantTurn(history: ChatHistoryItem[], messages: unknown): ChatHistoryItem[] {
  const lastRole = Array.isArray(messages) ? (messages.at(-1) as { role?: unknown } | undefined)?.role : undefined;
  return lastRole === 'tool' ? history : [...history, { type: 'model', response: [] }];
}

/** OpenAI's function names. */
const FUNCTION_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

type ToolsPlan =
  | { mode: 'none'; functions: ChatModelFunctions }
  | { mode: 'auto' | 'required'; functions: ChatModelFunctions; parallel: boolean }
  | { mode: 'function'; functions: ChatModelFunctions; name: string; parallel: boolean };

/**
 * `tools`, `tool_choice` and `parallel_tool_calls`. Function tools only; their parameters become
 * node-llama-cpp JSON schemas (see {@link gbnfSchema}). No tools: mode none.
 */
function toolsOf(body: Record<string, unknown>): ToolsPlan {
  const tools = body.tools;
  const functions: Record<string, { description?: string; params: GbnfJsonSchema }> = {};
  if (tools !== undefined && tools !== null) {
    if (!Array.isArray(tools)) throw badRequest('`tools` must be an array of function tools', 'tools');
    if (tools.length > 128) throw badRequest('`tools` holds at most 128 tools', 'tools');
    tools.forEach((tool: unknown, i) => {
      const at = `tools[${i}]`;
      if (!isJsonObject(tool) || tool.type !== 'function' || !isJsonObject(tool.function)) {
        throw badRequest(`${at} must be {type: "function", function: {name, description?, parameters?}}: this runtime takes function tools`, at);
      }
      const { name, description, parameters } = tool.function;
      if (typeof name !== 'string' || !FUNCTION_NAME.test(name)) {
        throw badRequest(`${at}.function.name must be 1 to 64 letters, digits, underscores or dashes`, `${at}.function.name`);
      }
      if (Object.hasOwn(functions, name)) throw badRequest(`${at}.function.name repeats the name ${name}`, `${at}.function.name`);
      if (description !== undefined && description !== null && typeof description !== 'string') {
        throw badRequest(`${at}.function.description must be a string`, `${at}.function.description`);
      }
      const params = parameters === undefined || parameters === null ? EMPTY_OBJECT : gbnfSchema(parameters, `${at}.function.parameters`);
      functions[name] = { ...(typeof description === 'string' && description !== '' ? { description } : {}), params };
    });
  }
  const names = Object.keys(functions);
  const parallel = optionalBoolean(body, 'parallel_tool_calls') ?? true;
  const choice = body.tool_choice;
  if (choice === undefined || choice === null) return names.length > 0 ? { mode: 'auto', functions, parallel } : { mode: 'none', functions };
  if (names.length === 0) throw badRequest('`tool_choice` needs `tools`', 'tool_choice');
  if (choice === 'none') return { mode: 'none', functions };
  if (choice === 'auto' || choice === 'required') return { mode: choice, functions, parallel };
  if (isJsonObject(choice) && choice.type === 'function' && isJsonObject(choice.function) && typeof choice.function.name === 'string') {
    const name = choice.function.name;
    if (!Object.hasOwn(functions, name)) throw badRequest(`\`tool_choice\` names ${name.slice(0, 64)}, which is not in \`tools\``, 'tool_choice');
    return { mode: 'function', functions, name, parallel };
  }
  throw badRequest('`tool_choice` must be "none", "auto", "required" or {type: "function", function: {name}}', 'tool_choice');
}

type FormatPlan = { type: 'text' } | { type: 'json_object' } | { type: 'json_schema'; schema: GbnfJsonSchema };

/** `response_format`: text, json_object (any JSON object) or json_schema (its schema, grammar-enforced). */
function responseFormatOf(body: Record<string, unknown>): FormatPlan {
  const format = body.response_format;
  if (format === undefined || format === null) return { type: 'text' };
  if (!isJsonObject(format)) throw badRequest('`response_format` must be an object', 'response_format');
  if (format.type === 'text' || format.type === 'json_object') return { type: format.type };
  if (format.type !== 'json_schema') throw badRequest('`response_format.type` must be text, json_object or json_schema', 'response_format');
  const spec = format.json_schema;
  if (!isJsonObject(spec) || typeof spec.name !== 'string' || !FUNCTION_NAME.test(spec.name)) {
    throw badRequest('`response_format.json_schema` needs a name of 1 to 64 letters, digits, underscores or dashes', 'response_format');
  }
  // No schema: any JSON object, as OpenAI's json_schema without one.
  if (spec.schema === undefined || spec.schema === null) return { type: 'json_object' };
  return { type: 'json_schema', schema: gbnfSchema(spec.schema, 'response_format') };
}

/** Keywords the grammar cannot enforce: a schema using them is refused rather than silently loosened. */
const UNENFORCEABLE = [
  'pattern',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'multipleOf',
  'allOf',
  'not',
  'if',
  'then',
  'else',
  'patternProperties',
  'propertyNames',
  'uniqueItems',
  'contains',
  'dependentRequired',
  'dependentSchemas',
  'unevaluatedProperties',
  'unevaluatedItems',
];
const TYPES = new Set(['string', 'number', 'integer', 'boolean', 'null', 'object', 'array']);
const STRING_FORMATS = new Set(['date-time', 'time', 'date']);

/**
 * An OpenAI JSON schema (function parameters, a json_schema response format) as node-llama-cpp's
 * `GbnfJsonSchema`, from which LlamaJsonSchemaGrammar builds the grammar: `anyOf` becomes `oneOf`,
 * `definitions` become `$defs`, annotations are dropped; a keyword the grammar cannot enforce is a 400
 * naming where it is. The grammar requires every listed property (what OpenAI's strict mode requires too).
 */
function gbnfSchema(schema: unknown, param: string): GbnfJsonSchema {
  const convert = (node: unknown, at: string, depth: number): GbnfJsonSchema => {
    const fail = (why: string) => badRequest(`\`${param}\`${at ? ` at ${at}` : ''}: ${why}`, param);
    if (depth > 32) throw fail('the schema nests too deeply');
    if (!isJsonObject(node)) throw fail('a schema must be an object');
    const bad = UNENFORCEABLE.find((key) => node[key] !== undefined);
    if (bad) throw fail(`\`${bad}\` cannot be enforced by this runtime's grammar`);
    const description = typeof node.description === 'string' ? { description: node.description } : {};
    const defs = (node.$defs ?? node.definitions) as unknown;
    const withDefs = <T extends object>(value: T): T => {
      if (defs === undefined) return value;
      if (!isJsonObject(defs)) throw fail('`$defs` must be an object');
      return { ...value, $defs: Object.fromEntries(Object.entries(defs).map(([key, def]) => [key, convert(def, `${at}/$defs/${key}`, depth + 1)])) };
    };
    if (typeof node.$ref === 'string') {
      const ref = node.$ref.replace(/^#\/definitions\//, '#/$defs/');
      if (!/^#\/\$defs\/[^/]+$/.test(ref)) throw fail(`\`$ref\` must point into #/$defs (got ${node.$ref.slice(0, 100)})`);
      return withDefs({ $ref: ref } as unknown as GbnfJsonSchema);
    }
    const primitive = (value: unknown) => value === null || ['string', 'number', 'boolean'].includes(typeof value);
    if (node.const !== undefined) {
      if (!primitive(node.const)) throw fail('`const` must be a string, number, boolean or null');
      return withDefs({ const: node.const as string, ...description });
    }
    if (node.enum !== undefined) {
      if (!Array.isArray(node.enum) || node.enum.length === 0 || !node.enum.every(primitive)) throw fail('`enum` must list strings, numbers, booleans or null');
      return withDefs({ enum: node.enum as string[], ...description });
    }
    const alternatives = node.anyOf ?? node.oneOf;
    if (alternatives !== undefined) {
      if (!Array.isArray(alternatives) || alternatives.length === 0) throw fail('`anyOf` must be a non-empty array');
      return withDefs({ oneOf: alternatives.map((option, i) => convert(option, `${at}/anyOf/${i}`, depth + 1)), ...description });
    }
    const type = node.type;
    if (Array.isArray(type)) {
      if (type.length === 0 || !type.every((t) => typeof t === 'string' && TYPES.has(t))) throw fail('`type` lists unknown types');
      return withDefs({ oneOf: type.map((t) => convert({ ...node, type: t }, at, depth + 1)), ...description });
    }
    if (typeof type !== 'string' || !TYPES.has(type)) throw fail('`type` must be string, number, integer, boolean, null, object or array');
    switch (type) {
      case 'string': {
        if (node.format !== undefined && !STRING_FORMATS.has(node.format as string))
          throw fail(`the string format ${String(node.format).slice(0, 40)} cannot be enforced`);
        if (node.format !== undefined) return withDefs({ type: 'string', format: node.format as 'date', ...description });
        const lengths = {
          ...(typeof node.minLength === 'number' ? { minLength: node.minLength } : {}),
          ...(typeof node.maxLength === 'number' ? { maxLength: node.maxLength } : {}),
        };
        return withDefs({ type: 'string', ...lengths, ...description });
      }
      case 'object': {
        const properties = node.properties ?? {};
        if (!isJsonObject(properties)) throw fail('`properties` must be an object');
        const additional = node.additionalProperties;
        const counts = {
          ...(typeof node.minProperties === 'number' ? { minProperties: node.minProperties } : {}),
          ...(typeof node.maxProperties === 'number' ? { maxProperties: node.maxProperties } : {}),
        };
        return withDefs({
          type: 'object',
          properties: Object.fromEntries(Object.entries(properties).map(([key, value]) => [key, convert(value, `${at}/properties/${key}`, depth + 1)])),
          ...(additional === true
            ? { additionalProperties: true }
            : isJsonObject(additional)
              ? { additionalProperties: convert(additional, `${at}/additionalProperties`, depth + 1) }
              : {}),
          ...counts,
          ...description,
        });
      }
      case 'array': {
        const items = node.items === undefined || node.items === true ? undefined : convert(node.items, `${at}/items`, depth + 1);
        const prefixItems = Array.isArray(node.prefixItems) ? node.prefixItems.map((item, i) => convert(item, `${at}/prefixItems/${i}`, depth + 1)) : undefined;
        return withDefs({
          type: 'array',
          ...(items ? { items } : {}),
          ...(prefixItems ? { prefixItems } : {}),
          ...(typeof node.minItems === 'number' ? { minItems: node.minItems } : {}),
          ...(typeof node.maxItems === 'number' ? { maxItems: node.maxItems } : {}),
          ...description,
        });
      }
      default:
        return withDefs({ type: type as 'number', ...description });
    }
  };
  return convert(schema, '', 0);
}

function messageText(content: unknown, mayBeNull: boolean, param: string): string {
  if (typeof content === 'string') return content;
  if (content === null || content === undefined) {
    if (mayBeNull) return '';
    throw badRequest(`${param} is required`, param);
  }
  if (!Array.isArray(content)) throw badRequest(`${param} must be a string or an array of content parts`, param);
  return content
    .map((part: unknown, index) => {
      if (!isJsonObject(part) || (part.type !== 'text' && part.type !== 'refusal')) {
        throw badRequest(`${param}[${index}]: this runtime accepts text content parts only`, `${param}[${index}].type`);
      }
      const text = part.type === 'text' ? part.text : part.refusal;
      if (typeof text !== 'string') throw badRequest(`${param}[${index}] has no text`, `${param}[${index}]`);
      return text;
    })
    .join('\n');
}

function samplingParams(body: Record<string, unknown>): SamplingParams {
  const maxTokens = optionalInteger(body, 'max_tokens', 1);
  const maxCompletionTokens = optionalInteger(body, 'max_completion_tokens', 1);
  if (maxTokens !== undefined && maxCompletionTokens !== undefined && maxTokens !== maxCompletionTokens) {
    throw badRequest('`max_tokens` and `max_completion_tokens` must agree when both are given', 'max_completion_tokens');
  }
  const seed = optionalInteger(body, 'seed', Number.MIN_SAFE_INTEGER);
  let stop: string[] = [];
  if (typeof body.stop === 'string') stop = [body.stop];
  else if (Array.isArray(body.stop)) stop = body.stop as string[];
  else if (body.stop !== undefined && body.stop !== null) throw badRequest('`stop` must be a string or an array of strings', 'stop');
  if (stop.length > 4 || !stop.every((s) => typeof s === 'string' && s !== '')) throw badRequest('`stop` holds up to 4 non-empty strings', 'stop');
  return {
    maxTokens: maxCompletionTokens ?? maxTokens,
    // OpenAI's defaults: temperature 1, top_p 1 (node-llama-cpp's temperature 0 means greedy).
    temperature: optionalNumber(body, 'temperature', 0, 2) ?? 1,
    topP: optionalNumber(body, 'top_p', 0, 1) ?? 1,
    seed: seed === undefined ? undefined : seed >>> 0,
    stop,
    frequencyPenalty: optionalNumber(body, 'frequency_penalty', -2, 2) ?? 0,
    presencePenalty: optionalNumber(body, 'presence_penalty', -2, 2) ?? 0,
  };
}

function streamIncludesUsage(body: Record<string, unknown>): boolean {
  const options = body.stream_options;
  if (options === undefined || options === null) return false;
  if (!isJsonObject(options)) throw badRequest('`stream_options` must be an object', 'stream_options');
  return options.include_usage === true;
}

function optionalNumber(body: Record<string, unknown>, name: string, min: number, max: number): number | undefined {
  const value = body[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max)
    throw badRequest(`\`${name}\` must be a number from ${min} to ${max}`, name);
  return value;
}

function optionalInteger(body: Record<string, unknown>, name: string, min: number): number | undefined {
  const value = body[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min)
    throw badRequest(`\`${name}\` must be an integer${min > 0 ? ` ≥ ${min}` : ''}`, name);
  return value;
}

function optionalBoolean(body: Record<string, unknown>, name: string): boolean | undefined {
  const value = body[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw badRequest(`\`${name}\` must be a boolean`, name);
  return value;
}

// ---------------------------------------------------------------------------------------------------
// HTTP plumbing

/** An OpenAI error response: `{error: {message, type, param, code}}` (OpenAI API: errors). */
class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

const badRequest = (message: string, param: string | null) => new ApiError(400, message, 'invalid_request_error', param, null);

const MAX_BODY_BYTES = 16 * 1024 * 1024;

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES)
      throw new ApiError(413, `The request body is larger than ${MAX_BODY_BYTES} bytes`, 'invalid_request_error', null, 'request_too_large');
    chunks.push(chunk);
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw badRequest('The request body is not valid JSON', null);
  }
  if (!isJsonObject(body)) throw badRequest('The request body must be a JSON object', null);
  return body;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': bytes.length });
  res.end(bytes);
}

const errorBody = (error: ApiError) => ({ error: { message: error.message, type: error.type, param: error.param, code: error.code } });

function sendError(res: ServerResponse, error: ApiError): void {
  sendJson(res, error.status, errorBody(error));
}

/** Server-sent events as OpenAI streams them: `data: <json>\n\n` …, then `data: [DONE]\n\n`. */
function startEventStream(res: ServerResponse) {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
  res.flushHeaders();
  return {
    send: (data: unknown) => void (res.writableEnded || res.destroyed || res.write(`data: ${JSON.stringify(data)}\n\n`)),
    done: () => res.end('data: [DONE]\n\n'),
  };
}

const randomId = () => randomBytes(12).toString('base64url');

// ---------------------------------------------------------------------------------------------------
// The process

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      'model-id': { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
      parallel: { type: 'string' },
      'context-size': { type: 'string' },
      threads: { type: 'string' },
      'max-lora-adapters': { type: 'string', default: process.env['MARINER_LOCAL_MAX_LORA_ADAPTERS'] },
      'exit-on-stdin-close': { type: 'boolean', default: false },
    },
    strict: true,
  });
  const integer = (name: string, value: string | undefined, min: number) => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}`);
    return n;
  };
  if (!values.model || !values['model-id'])
    throw new Error('usage: llamaCppServer --model <path.gguf> --model-id <id> [--port 0] [--host 127.0.0.1] [--parallel N] [--context-size N] [--threads N]');
  const options: LlamaCppServerOptions = {
    modelPath: values.model,
    modelId: values['model-id'],
    host: values.host,
    port: integer('port', values.port, 0) ?? 0,
  };
  const parallel = integer('parallel', values.parallel, 1);
  const contextSize = integer('context-size', values['context-size'], 16);
  const threads = integer('threads', values.threads, 1);
  const maxLoraAdapters = integer('max-lora-adapters', values['max-lora-adapters'], 1);
  if (maxLoraAdapters !== undefined) options.maxLoraAdapters = maxLoraAdapters;
  if (parallel !== undefined) options.parallel = parallel;
  if (contextSize !== undefined) options.contextSize = contextSize;
  if (threads !== undefined) options.threads = threads;

  const server = await startLlamaCppServer(options);
  const shutdown = () =>
    void server.close().then(
      () => process.exit(0),
      (error: Error) => {
        process.stderr.write(`shutdown failed: ${error.message}\n`);
        process.exit(1);
      },
    );
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
  // The supervisor holds our stdin: when it goes away (even killed), so do we.
  if (values['exit-on-stdin-close']) {
    process.stdin.on('end', shutdown).on('error', shutdown).resume();
  }
  process.stdout.write(`${JSON.stringify({ ready: true, port: server.port })}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: Error) => {
    process.stderr.write(`llamaCppServer: ${error.stack ?? error.message}\n`);
    process.exit(1);
  });
}
