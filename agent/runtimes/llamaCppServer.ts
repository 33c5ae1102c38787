/**
 * The local executor's inference runtime: one child process per model, node-llama-cpp on the CPU,
 * speaking the OpenAI-compatible HTTP API on loopback (what vLLM or Ollama pods serve on Kubernetes).
 *
 *   node --import tsx agent/runtimes/llamaCppServer.ts --model <path.gguf> --model-id <id> --port 0
 *        [--host 127.0.0.1] [--parallel N] [--context-size N] [--threads N] [--exit-on-stdin-close]
 *
 * Once the model is loaded it prints one JSON line to stdout, `{"ready":true,"port":<port>}`; everything
 * else (llama.cpp's own logs included) goes to stderr. Routes (OpenAI API reference):
 * POST /v1/chat/completions, POST /v1/completions (both streaming as SSE), POST /v1/embeddings,
 * GET /v1/models; GET /health; GET /metrics → `{"inFlight": n, "served": n, "cancelled": n}` for the
 * autoscaler (LLMariner §1: in-flight requests per model; `cancelled`: generations stopped because their
 * client left). `--parallel` sequences generate at once; requests beyond
 * them wait in a queue. A client that disconnects aborts its generation and frees its sequence.
 * SIGTERM (or stdin closing, with `--exit-on-stdin-close`): stop accepting, let in-flight requests finish
 * (at most 10 s), exit 0.
 */
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import {
  type ChatHistoryItem,
  type ChatWrapper,
  getLlama,
  type Llama,
  LlamaCompletion,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaEmbeddingContext,
  LlamaLogLevel,
  type LlamaModel,
  type LlamaText,
  resolveChatWrapper,
  type Token,
} from 'node-llama-cpp';

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

  let inFlight = 0;
  let served = 0;
  let draining = false;
  const idleWaiters: (() => void)[] = [];
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    // Probes are answered even while draining and are not counted as work.
    if (req.method === 'GET' && path === '/health')
      return sendJson(res, draining ? 503 : 200, { status: draining ? 'draining' : 'ok', model: options.modelId });
    if (req.method === 'GET' && path === '/metrics') return sendJson(res, 200, { inFlight, served, cancelled: runtime.cancelled });
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
      return sendJson(res, 200, { object: 'list', data: [{ id: options.modelId, object: 'model', created: runtime.created, owned_by: 'mariner' }] });
    }
    const handler = POST_ROUTES[path as keyof typeof POST_ROUTES];
    if (!handler) throw new ApiError(404, `Unknown request URL: ${req.method} ${path.slice(0, 200)}`, 'invalid_request_error', null, 'unknown_url');
    if (req.method !== 'POST') throw new ApiError(405, `${path} takes POST`, 'invalid_request_error', null, 'method_not_allowed');
    const body = await readJson(req);
    // The client leaving (the connection closed before the answer ended) aborts the work.
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort(new Error('the client disconnected'));
    });
    await handler(runtime, body, res, abort.signal);
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
        if (drained) await runtime.dispose();
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
  private readonly freeSequences: LlamaContextSequence[] = [];
  private readonly waiting: { grant: (sequence: LlamaContextSequence) => void }[] = [];
  private embedding: Promise<LlamaEmbeddingContext> | undefined;
  private embeddingQueue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly llama: Llama,
    readonly model: LlamaModel,
    readonly context: LlamaContext,
    readonly modelId: string,
  ) {
    this.chatWrapper = resolveChatWrapper(model);
    for (let i = 0; i < context.totalSequences; i++) this.freeSequences.push(context.getSequence());
  }

  get contextSize(): number {
    return this.context.contextSize;
  }

  /** Tokens of a chat rendered with the model's chat template, ready to generate the assistant's turn. */
  renderChat(history: ChatHistoryItem[]): { tokens: Token[]; stopTriggers: LlamaText[] } {
    const state = this.chatWrapper.generateContextState({ chatHistory: [...history, { type: 'model', response: [] }] });
    const tokens = state.contextText.tokenize(this.model.tokenizer);
    // LlamaCompletion prepends BOS itself where the model wants it.
    if (this.model.tokens.shouldPrependBosToken && tokens[0] === this.model.tokens.bos) tokens.shift();
    return { tokens, stopTriggers: state.stopGenerationTriggers };
  }

  tokenizePrompt(prompt: string): Token[] {
    return this.model.tokenize(prompt, false, 'trimLeadingSpace');
  }

  /** Waits for a free sequence (requests beyond `--parallel` queue here), or for the abort. */
  private acquire(signal: AbortSignal): Promise<LlamaContextSequence> {
    const free = this.freeSequences.pop();
    if (free) return Promise.resolve(free);
    return new Promise((resolve, reject) => {
      const waiter = {
        grant: (sequence: LlamaContextSequence) => {
          signal.removeEventListener('abort', onAbort);
          resolve(sequence);
        },
      };
      const onAbort = () => {
        this.waiting.splice(this.waiting.indexOf(waiter), 1);
        this.cancelled++;
        reject(signal.reason);
      };
      if (signal.aborted) return reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  private release(sequence: LlamaContextSequence): void {
    const next = this.waiting.shift();
    if (next) next.grant(sequence);
    else this.freeSequences.push(sequence);
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
    await this.model.dispose();
    await this.llama.dispose();
  }
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
  const history = chatHistory(body.messages);
  const params = samplingParams(body);
  const stream = optionalBoolean(body, 'stream') ?? false;
  const includeUsage = stream && streamIncludesUsage(body);
  const { tokens, stopTriggers } = runtime.renderChat(history);
  const promptCount = runtime.promptTokenCount(tokens, 'messages');
  const id = `chatcmpl-${randomId()}`;
  const created = Math.floor(Date.now() / 1000);
  const base = { id, created, model: runtime.modelId };

  if (!stream) {
    const result = await runtime.generate(tokens, promptCount, params, stopTriggers, signal);
    return sendJson(res, 200, {
      ...base,
      object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content: result.text, refusal: null }, logprobs: null, finish_reason: result.finishReason }],
      usage: usage(result),
    });
  }
  const sse = startEventStream(res);
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => sse.send({ ...base, object: 'chat.completion.chunk', choices, ...extra });
  chunk([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]);
  const result = await runtime.generate(tokens, promptCount, params, stopTriggers, signal, (text) =>
    chunk([{ index: 0, delta: { content: text }, logprobs: null, finish_reason: null }]),
  );
  chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: result.finishReason }], includeUsage ? { usage: null } : {});
  if (includeUsage) chunk([], { usage: usage(result) });
  sse.done();
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
  if (body.messages !== undefined) tokens = runtime.renderChat(chatHistory(body.messages)).tokens;
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

/** OpenAI messages as node-llama-cpp's chat history; text content only. */
function chatHistory(messages: unknown): ChatHistoryItem[] {
  if (!Array.isArray(messages) || messages.length === 0) throw badRequest('`messages` must be a non-empty array', 'messages');
  return messages.map((message: unknown, index): ChatHistoryItem => {
    const param = `messages[${index}]`;
    if (!isObject(message) || typeof message.role !== 'string' || !ROLES.has(message.role)) {
      throw badRequest(`${param} must be an object whose role is one of ${[...ROLES].join(', ')}`, `${param}.role`);
    }
    const text = messageText(message.content, message.role === 'assistant', `${param}.content`);
    switch (message.role) {
      case 'system':
      case 'developer':
        return { type: 'system', text };
      case 'assistant':
        return { type: 'model', response: [text] };
      default:
        return { type: 'user', text };
    }
  });
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
      if (!isObject(part) || (part.type !== 'text' && part.type !== 'refusal')) {
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
  const n = optionalInteger(body, 'n', 1);
  if (n !== undefined && n !== 1) throw badRequest('`n` must be 1: this runtime generates one choice', 'n');
  const seed = optionalInteger(body, 'seed', Number.MIN_SAFE_INTEGER);
  let stop: string[] = [];
  if (typeof body.stop === 'string') stop = [body.stop];
  else if (Array.isArray(body.stop)) stop = body.stop as string[];
  else if (body.stop !== undefined && body.stop !== null) throw badRequest('`stop` must be a string or an array of strings', 'stop');
  if (stop.length > 4 || !stop.every((s) => typeof s === 'string' && s !== '')) throw badRequest('`stop` holds up to 4 non-empty strings', 'stop');
  const format = body.response_format;
  if (format !== undefined && format !== null && !(isObject(format) && format.type === 'text')) {
    throw badRequest('`response_format` other than text is not supported by this runtime', 'response_format');
  }
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
  if (!isObject(options)) throw badRequest('`stream_options` must be an object', 'stream_options');
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

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

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
  if (!isObject(body)) throw badRequest('The request body must be a JSON object', null);
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
