import { badInput, ErrorCode, MarinerError } from '../../lib/errors.js';
import type { Kind } from './completions.js';
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionDelta,
  ChatCompletionInput,
  ChatCompletionMessage,
  ChatLogprobs,
  ChatMessageInput,
  ChatRole,
  Completion,
  CompletionInput,
  CompletionLogprobs,
  CompletionUsage,
  ContentPartInput,
  EmbeddingInput,
  EmbeddingList,
  FunctionToolInput,
  TokenLogprob,
  ToolCall,
  ToolCallDelta,
  TopLogprob,
} from './generated/resolvers.js';

/**
 * The typed GraphQL inference fields and the OpenAI JSON the runtimes speak, both ways, in one place:
 * a typed input is checked (BAD_USER_INPUT naming the field at fault, relative to `input`) and
 * becomes the OpenAI request body; the runtime's answer (OpenAI API: chat.completion,
 * chat.completion.chunk, text_completion, list of embeddings) becomes the typed answer; a runtime's
 * refusal naming an OpenAI parameter (`top_p`) names the GraphQL field (`topP`).
 */

type Body = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------------
// Requests: typed input → OpenAI body
// ---------------------------------------------------------------------------------------------------

/** OpenAI API: function and response format names. */
const NAME = /^[A-Za-z0-9_-]{1,64}$/;
/** OpenAI API: `stop` holds up to 4 sequences; `n` at most 128. */
const MAX_STOP = 4;
const MAX_N = 128;

function model(value: string): string {
  const id = value.trim();
  if (id === '') throw badInput('model is required', 'model');
  return id;
}

function inRange(value: number | null | undefined, field: string, min: number, max: number): number | undefined {
  if (value === null || value === undefined) return undefined;
  if (!Number.isFinite(value) || value < min || value > max) throw badInput(`${field} must be between ${min} and ${max}`, field);
  return value;
}

function atLeast(value: number | null | undefined, field: string, min: number): number | undefined {
  if (value === null || value === undefined) return undefined;
  if (value < min) throw badInput(`${field} must be at least ${min}`, field);
  return value;
}

function stopOf(stop: readonly string[] | null | undefined): string[] | undefined {
  if (!stop) return undefined;
  if (stop.length > MAX_STOP) throw badInput(`stop holds at most ${MAX_STOP} sequences`, 'stop');
  stop.forEach((s, i) => {
    if (s === '') throw badInput(`stop[${i}] must not be empty`, `stop[${i}]`);
  });
  return [...stop];
}

function isJsonObject(value: unknown): value is Body {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The sampling parameters chat and completions share (OpenAI names, absent when not given). */
function sampling(input: ChatCompletionInput | CompletionInput): Body {
  return {
    temperature: inRange(input.temperature, 'temperature', 0, 2),
    top_p: inRange(input.topP, 'topP', 0, 1),
    max_tokens: atLeast(input.maxTokens, 'maxTokens', 1),
    stop: stopOf(input.stop),
    seed: input.seed ?? undefined,
    n: inRange(input.n, 'n', 1, MAX_N),
    presence_penalty: inRange(input.presencePenalty, 'presencePenalty', -2, 2),
    frequency_penalty: inRange(input.frequencyPenalty, 'frequencyPenalty', -2, 2),
    user: input.user ?? undefined,
  };
}

/** Leaves out what was not given: the runtime applies its defaults, as for a REST request without them. */
function defined(body: Body): Body {
  return Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
}

const ROLES: Record<ChatRole, string> = { SYSTEM: 'system', DEVELOPER: 'developer', USER: 'user', ASSISTANT: 'assistant', TOOL: 'tool' };
const ROLE_OF: Record<string, ChatRole> = Object.fromEntries(Object.entries(ROLES).map(([k, v]) => [v, k as ChatRole]));

function contentPart(part: ContentPartInput, role: ChatRole, field: string): Body {
  if (part.type === 'TEXT') {
    if (part.text === null || part.text === undefined) throw badInput(`${field}.text is required for a TEXT part`, `${field}.text`);
    if (part.imageUrl != null) throw badInput(`${field}: a TEXT part has no imageUrl`, `${field}.imageUrl`);
    return { type: 'text', text: part.text };
  }
  if (role !== 'USER') throw badInput(`${field}: only USER messages hold images`, `${field}.type`);
  if (!part.imageUrl) throw badInput(`${field}.imageUrl is required for an IMAGE_URL part`, `${field}.imageUrl`);
  if (part.text != null) throw badInput(`${field}: an IMAGE_URL part has no text`, `${field}.text`);
  if (!/^(https?:|data:)/i.test(part.imageUrl)) throw badInput(`${field}.imageUrl must be an http(s) or data: URL`, `${field}.imageUrl`);
  return { type: 'image_url', image_url: defined({ url: part.imageUrl, detail: part.imageDetail?.toLowerCase() }) };
}

function message(m: ChatMessageInput, i: number): Body {
  const field = `messages[${i}]`;
  if (m.content != null && m.contentParts != null) throw badInput(`${field}: give content or contentParts, not both`, `${field}.contentParts`);
  if (m.contentParts?.length === 0) throw badInput(`${field}.contentParts must not be empty`, `${field}.contentParts`);
  if (m.toolCalls != null && m.role !== 'ASSISTANT') throw badInput(`${field}: only ASSISTANT messages have toolCalls`, `${field}.toolCalls`);
  if (m.toolCallId != null && m.role !== 'TOOL') throw badInput(`${field}: only TOOL messages have a toolCallId`, `${field}.toolCallId`);
  if (m.role === 'TOOL' && !m.toolCallId) throw badInput(`${field}: a TOOL message needs the toolCallId it answers`, `${field}.toolCallId`);
  const hasToolCalls = (m.toolCalls?.length ?? 0) > 0;
  if (m.content == null && m.contentParts == null && !(m.role === 'ASSISTANT' && hasToolCalls))
    throw badInput(`${field}: content or contentParts is required`, `${field}.content`);
  const out: Body = { role: ROLES[m.role] };
  if (m.content != null) out['content'] = m.content;
  else if (m.contentParts) out['content'] = m.contentParts.map((p, j) => contentPart(p, m.role, `${field}.contentParts[${j}]`));
  else out['content'] = null;
  if (m.name != null) out['name'] = m.name;
  if (m.toolCallId != null) out['tool_call_id'] = m.toolCallId;
  if (hasToolCalls) {
    out['tool_calls'] = m.toolCalls!.map((c, j) => {
      if (c.id === '') throw badInput(`${field}.toolCalls[${j}].id must not be empty`, `${field}.toolCalls[${j}].id`);
      return { id: c.id, type: 'function', function: { name: c.function.name, arguments: c.function.arguments } };
    });
  }
  return out;
}

function tool(t: FunctionToolInput, i: number): Body {
  const field = `tools[${i}]`;
  if (!NAME.test(t.name)) throw badInput(`${field}.name must be 1-64 letters, digits, underscores or dashes`, `${field}.name`);
  // Mariner's rag pseudo-tool is asked for with `rag`, so that a function of the caller is never taken for it.
  if (t.name === 'rag') throw badInput(`${field}: the name rag is Mariner's retrieval; use the rag input`, `${field}.name`);
  if (t.parameters != null && !isJsonObject(t.parameters)) throw badInput(`${field}.parameters must be a JSON Schema object`, `${field}.parameters`);
  return {
    type: 'function',
    function: defined({ name: t.name, description: t.description ?? undefined, parameters: t.parameters ?? undefined, strict: t.strict ?? undefined }),
  };
}

function responseFormat(input: ChatCompletionInput): Body | undefined {
  const format = input.responseFormat;
  if (!format) return undefined;
  if (format.type !== 'JSON_SCHEMA') {
    if (format.jsonSchema) throw badInput('responseFormat.jsonSchema is only for type JSON_SCHEMA', 'responseFormat.jsonSchema');
    return { type: format.type.toLowerCase() };
  }
  const schema = format.jsonSchema;
  if (!schema) throw badInput('responseFormat.jsonSchema is required for type JSON_SCHEMA', 'responseFormat.jsonSchema');
  if (!NAME.test(schema.name))
    throw badInput('responseFormat.jsonSchema.name must be 1-64 letters, digits, underscores or dashes', 'responseFormat.jsonSchema.name');
  if (!isJsonObject(schema.schema)) throw badInput('responseFormat.jsonSchema.schema must be a JSON Schema object', 'responseFormat.jsonSchema.schema');
  return {
    type: 'json_schema',
    json_schema: defined({ name: schema.name, description: schema.description ?? undefined, schema: schema.schema, strict: schema.strict ?? undefined }),
  };
}

function toolChoice(input: ChatCompletionInput, tools: Body[]): unknown {
  const choice = input.toolChoice;
  if (!choice) return undefined;
  if ((choice.mode == null) === (choice.function == null)) throw badInput('toolChoice: give a mode or a function, one of them', 'toolChoice');
  if (tools.length === 0) throw badInput('toolChoice needs tools', 'toolChoice');
  if (choice.mode === 'NONE' && input.rag) throw badInput('toolChoice NONE would drop rag too: leave rag out to answer without retrieval', 'toolChoice');
  if (choice.mode) return choice.mode.toLowerCase();
  if (!tools.some((t) => (t['function'] as Body)['name'] === choice.function))
    throw badInput(`toolChoice.function: no tool is named ${choice.function}`, 'toolChoice.function');
  return { type: 'function', function: { name: choice.function } };
}

/** A typed chat completion request as the OpenAI body (POST /v1/chat/completions, `stream` left to routing). */
export function chatRequestBody(input: ChatCompletionInput): Body {
  const id = model(input.model);
  if (input.messages.length === 0) throw badInput('messages must hold at least one message', 'messages');
  const messages = input.messages.map(message);
  const tools = (input.tools ?? []).map(tool);
  if (input.topLogprobs != null && input.logprobs !== true) throw badInput('topLogprobs needs logprobs: true', 'topLogprobs');
  const body: Body = {
    model: id,
    messages,
    ...sampling(input),
    tool_choice: toolChoice(input, tools),
    parallel_tool_calls: input.parallelToolCalls ?? undefined,
    response_format: responseFormat(input),
    logprobs: input.logprobs ?? undefined,
    top_logprobs: inRange(input.topLogprobs, 'topLogprobs', 0, 20),
  };
  if (input.rag) {
    const name = input.rag.vectorStoreName.trim();
    if (name === '') throw badInput('rag.vectorStoreName is required', 'rag.vectorStoreName');
    // LLMariner's rag pseudo-tool (rag.ts): served before routing, never sent to the runtime.
    tools.push({ type: 'function', function: { name: 'rag', parameters: { vector_store_name: name } } });
  }
  if (tools.length) body['tools'] = tools;
  return defined(body);
}

/** A typed completion request as the OpenAI body (POST /v1/completions). */
export function completionRequestBody(input: CompletionInput): Body {
  const id = model(input.model);
  if (input.prompt.length === 0) throw badInput('prompt must hold at least one prompt', 'prompt');
  return defined({
    model: id,
    // One prompt travels as a string, the form every runtime takes.
    prompt: input.prompt.length === 1 ? input.prompt[0] : [...input.prompt],
    suffix: input.suffix ?? undefined,
    ...sampling(input),
    logprobs: inRange(input.logprobs, 'logprobs', 0, 5),
    echo: input.echo ?? undefined,
  });
}

/** A typed embeddings request as the OpenAI body (POST /v1/embeddings): floats asked for, what the answer's type holds. */
export function embeddingRequestBody(input: EmbeddingInput): Body {
  const id = model(input.model);
  if (input.input.length === 0) throw badInput('input must hold at least one text', 'input');
  return defined({
    model: id,
    input: input.input.length === 1 ? input.input[0] : [...input.input],
    encoding_format: 'float',
    dimensions: atLeast(input.dimensions, 'dimensions', 1),
    user: input.user ?? undefined,
  });
}

/** OpenAI parameters whose GraphQL field is not their camelCase. */
const FIELD_OF_PARAM: Partial<Record<Kind, Record<string, string>>> = {
  chat: { max_completion_tokens: 'maxTokens', stream_options: 'includeUsage' },
  completion: { stream_options: 'includeUsage' },
};

/** The GraphQL field (relative to `input`) of an OpenAI parameter a runtime named: `messages[0].tool_call_id` → `messages[0].toolCallId`. */
export function fieldOfParam(kind: Kind, param: string): string {
  return FIELD_OF_PARAM[kind]?.[param] ?? param.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/** A refusal naming an OpenAI parameter (a runtime's 400, or the shared checks), as one naming the typed field. */
export function withTypedField(kind: Kind, error: unknown): unknown {
  if (!(error instanceof MarinerError) || error.code !== ErrorCode.BAD_USER_INPUT) return error;
  const param = error.extensions['field'];
  if (typeof param !== 'string') return error;
  // rag.ts speaks of the rag pseudo-tool as part of `tools`; here it is its own input.
  const field = kind === 'chat' && param === 'tools' && /\brag tool\b/.test(error.message) ? 'rag' : fieldOfParam(kind, param);
  return field === param ? error : new MarinerError(ErrorCode.BAD_USER_INPUT, error.message, { field });
}

// ---------------------------------------------------------------------------------------------------
// Answers: OpenAI JSON → typed
// ---------------------------------------------------------------------------------------------------

/** The runtime answered something that is not what OpenAI describes: its fault, not the caller's. */
function malformed(what: string): MarinerError {
  return new MarinerError(ErrorCode.INTERNAL, `the runtime's answer is not an OpenAI ${what}`);
}

function object(value: unknown, what: string): Body {
  if (!isJsonObject(value)) throw malformed(what);
  return value;
}

function list(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) throw malformed(what);
  return value;
}

function text(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

function int(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw malformed(what);
  return value;
}

function float(value: unknown, what: string): number {
  if (typeof value !== 'number') throw malformed(what);
  return value;
}

/** OpenAI's `created` (Unix seconds) as a DateTime. */
function created(value: unknown, what: string): string {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw malformed(what);
  return new Date(value * 1000).toISOString();
}

function usageOf(value: unknown): CompletionUsage | null {
  if (!isJsonObject(value)) return null;
  const count = (n: unknown) => (typeof n === 'number' && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0);
  const prompt = count(value['prompt_tokens']);
  const completion = count(value['completion_tokens']);
  return { promptTokens: prompt, completionTokens: completion, totalTokens: count(value['total_tokens']) || prompt + completion };
}

function role(value: unknown): ChatRole | null {
  return typeof value === 'string' ? (ROLE_OF[value] ?? null) : null;
}

function bytes(value: unknown): number[] | null {
  return Array.isArray(value) && value.every((b) => Number.isInteger(b)) ? (value as number[]) : null;
}

function topLogprob(value: unknown): TopLogprob {
  const t = object(value, 'top logprob');
  return { token: text(t['token']) ?? '', logprob: float(t['logprob'], 'logprob'), bytes: bytes(t['bytes']) };
}

function tokenLogprobs(value: unknown): TokenLogprob[] | null {
  if (value === null || value === undefined) return null;
  return list(value, 'logprobs content').map((v) => {
    const t = object(v, 'token logprob');
    return {
      token: text(t['token']) ?? '',
      logprob: float(t['logprob'], 'logprob'),
      bytes: bytes(t['bytes']),
      topLogprobs: (t['top_logprobs'] as unknown[] | undefined)?.map(topLogprob) ?? [],
    };
  });
}

function chatLogprobs(value: unknown): ChatLogprobs | null {
  if (!isJsonObject(value)) return null;
  return { content: tokenLogprobs(value['content']), refusal: tokenLogprobs(value['refusal']) };
}

function toolCall(value: unknown): ToolCall {
  const c = object(value, 'tool call');
  const f = object(c['function'], 'tool call function');
  return { id: text(c['id']) ?? '', type: text(c['type']) ?? 'function', function: { name: text(f['name']) ?? '', arguments: text(f['arguments']) ?? '' } };
}

function toolCallDelta(value: unknown): ToolCallDelta {
  const c = object(value, 'tool call delta');
  const f = isJsonObject(c['function']) ? c['function'] : null;
  return {
    index: int(c['index'] ?? 0, 'tool call index'),
    id: text(c['id']),
    type: text(c['type']),
    function: f ? { name: text(f['name']), arguments: text(f['arguments']) } : null,
  };
}

/** A `chat.completion`, typed. */
export function chatCompletionOf(value: unknown): ChatCompletion {
  const c = object(value, 'chat.completion');
  return {
    id: text(c['id']) ?? '',
    created: created(c['created'], 'chat.completion created'),
    model: text(c['model']) ?? '',
    systemFingerprint: text(c['system_fingerprint']),
    choices: list(c['choices'], 'chat.completion choices').map((v) => {
      const choice = object(v, 'chat.completion choice');
      const m = object(choice['message'], 'chat.completion message');
      const message: ChatCompletionMessage = {
        role: role(m['role']) ?? 'ASSISTANT',
        content: text(m['content']),
        reasoningContent: text(m['reasoning_content']),
        refusal: text(m['refusal']),
        toolCalls: Array.isArray(m['tool_calls']) ? m['tool_calls'].map(toolCall) : [],
      };
      return { index: int(choice['index'], 'choice index'), message, finishReason: text(choice['finish_reason']), logprobs: chatLogprobs(choice['logprobs']) };
    }),
    usage: usageOf(c['usage']),
  };
}

/**
 * A stream's event as a chunk's object: a runtime that fails mid-answer sends OpenAI's error object as
 * its last event (the JSON fields pass it on as it is); here it ends the stream as an error saying so.
 */
function chunkObject(value: unknown, what: string): Body {
  const c = object(value, what);
  const error = c['error'];
  if (isJsonObject(error) && !('choices' in c))
    throw new MarinerError(ErrorCode.UNAVAILABLE, `The runtime failed mid-answer: ${text(error['message']) ?? 'no message'}; retry the request`);
  return c;
}

/** A `chat.completion.chunk`, typed. */
export function chatCompletionChunkOf(value: unknown): ChatCompletionChunk {
  const c = chunkObject(value, 'chat.completion.chunk');
  return {
    id: text(c['id']) ?? '',
    created: created(c['created'], 'chat.completion.chunk created'),
    model: text(c['model']) ?? '',
    systemFingerprint: text(c['system_fingerprint']),
    choices: list(c['choices'] ?? [], 'chat.completion.chunk choices').map((v) => {
      const choice = object(v, 'chat.completion.chunk choice');
      const d = isJsonObject(choice['delta']) ? choice['delta'] : {};
      const delta: ChatCompletionDelta = {
        role: role(d['role']),
        content: text(d['content']),
        reasoningContent: text(d['reasoning_content']),
        refusal: text(d['refusal']),
        toolCalls: Array.isArray(d['tool_calls']) ? d['tool_calls'].map(toolCallDelta) : null,
      };
      return { index: int(choice['index'], 'choice index'), delta, finishReason: text(choice['finish_reason']), logprobs: chatLogprobs(choice['logprobs']) };
    }),
    usage: usageOf(c['usage']),
  };
}

function completionLogprobs(value: unknown): CompletionLogprobs | null {
  if (!isJsonObject(value)) return null;
  const top = value['top_logprobs'];
  return {
    tokens: list(value['tokens'] ?? [], 'logprobs tokens').map((t) => text(t) ?? ''),
    tokenLogprobs: list(value['token_logprobs'] ?? [], 'logprobs token_logprobs').map((l) => (typeof l === 'number' ? l : null)),
    // OpenAI: each position's top tokens are an object of token → logprob; a list here, most likely first.
    topLogprobs: Array.isArray(top)
      ? top.map((position) =>
          isJsonObject(position)
            ? Object.entries(position)
                .map(([token, logprob]) => ({ token, logprob: float(logprob, 'top logprob'), bytes: null }))
                .sort((a, b) => b.logprob - a.logprob)
            : null,
        )
      : null,
    textOffset: Array.isArray(value['text_offset']) ? value['text_offset'].map((o) => int(o, 'text_offset')) : null,
  };
}

/** A `text_completion` (whole, or one chunk of a stream), typed. */
export function completionOf(value: unknown): Completion {
  const c = chunkObject(value, 'text_completion');
  return {
    id: text(c['id']) ?? '',
    created: created(c['created'], 'text_completion created'),
    model: text(c['model']) ?? '',
    systemFingerprint: text(c['system_fingerprint']),
    choices: list(c['choices'] ?? [], 'text_completion choices').map((v) => {
      const choice = object(v, 'text_completion choice');
      return {
        index: int(choice['index'], 'choice index'),
        text: text(choice['text']) ?? '',
        finishReason: text(choice['finish_reason']),
        logprobs: completionLogprobs(choice['logprobs']),
      };
    }),
    usage: usageOf(c['usage']),
  };
}

/** A `list` of embeddings, typed (asked as floats: see embeddingRequestBody). */
export function embeddingListOf(value: unknown): EmbeddingList {
  const c = object(value, 'embeddings list');
  const usage = usageOf(c['usage']);
  return {
    model: text(c['model']) ?? '',
    data: list(c['data'], 'embeddings data').map((v) => {
      const e = object(v, 'embedding');
      return {
        index: int(e['index'], 'embedding index'),
        embedding: list(e['embedding'], 'embedding vector (floats)').map((x) => float(x, 'embedding value')),
      };
    }),
    usage: usage ? { promptTokens: usage.promptTokens, totalTokens: usage.totalTokens } : null,
  };
}
