import { newId } from './ids.js';
import type { JsonObject } from './jsonObject.js';
import type { ResponseItem, ResponseRequest } from './responseRequest.js';

/**
 * A response as it is generated: the chat completion's stream chunks (responseRequest.ts made the
 * request) become the response's output items — text as an assistant `message`, tool calls as
 * `function_call` items — and, for a streaming client, OpenAI's typed events in order, each with its
 * `sequence_number` (OpenAI API: Responses streaming events). The events go to `emit`; a client that
 * did not ask to stream gets the finished response object alone.
 */

/** A streamed chat chunk, as far as a response reads it. */
interface ChatChunk {
  choices?: {
    delta?: { content?: string | null; tool_calls?: { index?: number; id?: string; function?: { name?: string; arguments?: string } }[] };
    finish_reason?: string | null;
  }[];
  usage?: { prompt_tokens?: number; completion_tokens?: number; total_tokens?: number; prompt_tokens_details?: { cached_tokens?: number } } | null;
}

export type ResponseEvent = JsonObject & { type: string };

export class ResponseBuilder {
  readonly response: JsonObject & { id: string; output: ResponseItem[] };
  private sequence = 0;
  /** The message being written (text deltas), and the function calls by their chat tool-call index. */
  private message: { item: ResponseItem; index: number; text: string } | null = null;
  private calls = new Map<number, { item: ResponseItem; index: number }>();
  private finishReason: string | null = null;

  constructor(
    request: ResponseRequest,
    private readonly emit: (event: ResponseEvent) => void,
  ) {
    this.response = {
      id: newId('response'),
      object: 'response',
      created_at: Math.floor(Date.now() / 1000),
      status: 'in_progress',
      completed_at: null,
      error: null,
      incomplete_details: null,
      instructions: request.instructions,
      max_output_tokens: request.maxOutputTokens,
      model: request.model,
      output: [],
      parallel_tool_calls: request.parallelToolCalls,
      previous_response_id: request.previousResponseId,
      reasoning: { effort: null, summary: null },
      store: request.store,
      temperature: request.temperature ?? 1,
      text: request.text,
      tool_choice: request.toolChoice,
      tools: request.tools,
      top_p: request.topP ?? 1,
      truncation: 'disabled',
      // usage comes with the last chunk; `user` only when given (OpenAI's schema has neither as null).
      ...(request.user !== null ? { user: request.user } : {}),
      metadata: request.metadata,
    };
  }

  private send(event: JsonObject & { type: string }): void {
    this.emit({ ...event, sequence_number: this.sequence++ });
  }

  private snapshot(): JsonObject {
    return structuredClone(this.response);
  }

  /** response.created and response.in_progress. */
  begin(): void {
    this.send({ type: 'response.created', response: this.snapshot() });
    this.send({ type: 'response.in_progress', response: this.snapshot() });
  }

  /** A file search done before generation: its item, and its events (in progress, searching, completed). */
  fileSearch(queries: string[], results: JsonObject[] | null): void {
    const item: ResponseItem = { id: newId('fileSearchCall'), type: 'file_search_call', status: 'in_progress', queries, results: null };
    const index = this.response.output.push(item) - 1;
    this.send({ type: 'response.output_item.added', output_index: index, item: { ...item } });
    this.send({ type: 'response.file_search_call.in_progress', output_index: index, item_id: item.id });
    this.send({ type: 'response.file_search_call.searching', output_index: index, item_id: item.id });
    item['status'] = 'completed';
    item['results'] = results;
    this.send({ type: 'response.file_search_call.completed', output_index: index, item_id: item.id });
    this.send({ type: 'response.output_item.done', output_index: index, item: { ...item } });
  }

  /** One chunk of the chat completion's stream. */
  chunk(chunk: ChatChunk): void {
    const choice = chunk.choices?.[0];
    const content = choice?.delta?.content;
    if (typeof content === 'string' && content !== '') this.text(content);
    for (const call of choice?.delta?.tool_calls ?? []) this.toolCall(call);
    if (choice?.finish_reason) this.finishReason = choice.finish_reason;
    if (chunk.usage) {
      const input = chunk.usage.prompt_tokens ?? 0;
      const output = chunk.usage.completion_tokens ?? 0;
      this.response['usage'] = {
        input_tokens: input,
        input_tokens_details: { cached_tokens: chunk.usage.prompt_tokens_details?.cached_tokens ?? 0, cache_write_tokens: 0 },
        output_tokens: output,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: chunk.usage.total_tokens ?? input + output,
      };
    }
  }

  private text(delta: string): void {
    if (!this.message) {
      const item: ResponseItem = { id: newId('responseMessage'), type: 'message', status: 'in_progress', role: 'assistant', content: [] };
      const index = this.response.output.push(item) - 1;
      this.message = { item, index, text: '' };
      this.send({ type: 'response.output_item.added', output_index: index, item: structuredClone(item) });
      this.send({
        type: 'response.content_part.added',
        item_id: item.id,
        output_index: index,
        content_index: 0,
        part: { type: 'output_text', text: '', annotations: [], logprobs: [] },
      });
    }
    this.message.text += delta;
    this.send({ type: 'response.output_text.delta', item_id: this.message.item.id, output_index: this.message.index, content_index: 0, delta, logprobs: [] });
  }

  private closeMessage(): void {
    const message = this.message;
    if (!message) return;
    this.message = null;
    const part = { type: 'output_text', text: message.text, annotations: [], logprobs: [] };
    message.item['content'] = [part];
    message.item['status'] = 'completed';
    const at = { item_id: message.item.id, output_index: message.index, content_index: 0 };
    this.send({ type: 'response.output_text.done', ...at, text: message.text, logprobs: [] });
    this.send({ type: 'response.content_part.done', ...at, part });
    this.send({ type: 'response.output_item.done', output_index: message.index, item: structuredClone(message.item) });
  }

  private toolCall(delta: { index?: number; id?: string; function?: { name?: string; arguments?: string } }): void {
    const key = delta.index ?? 0;
    let call = this.calls.get(key);
    if (!call) {
      // Text before a tool call is a message of its own, finished first (output items are in order).
      this.closeMessage();
      const item: ResponseItem = {
        id: newId('functionCall'),
        type: 'function_call',
        status: 'in_progress',
        call_id: delta.id ?? `call_${newId('functionCall').slice(3)}`,
        name: delta.function?.name ?? '',
        arguments: '',
      };
      call = { item, index: this.response.output.push(item) - 1 };
      this.calls.set(key, call);
      this.send({ type: 'response.output_item.added', output_index: call.index, item: { ...item } });
    } else if (delta.function?.name) call.item['name'] = `${String(call.item['name'])}${delta.function.name}`;
    const args = delta.function?.arguments;
    if (args) {
      call.item['arguments'] = `${String(call.item['arguments'])}${args}`;
      this.send({ type: 'response.function_call_arguments.delta', item_id: call.item.id, output_index: call.index, delta: args });
    }
  }

  /** The chat completion ended: every open item done; `completed`, or `incomplete` when it hit max_output_tokens. */
  finish(): JsonObject {
    this.closeMessage();
    for (const call of this.calls.values()) {
      call.item['status'] = 'completed';
      const { id, name, arguments: args } = call.item;
      this.send({ type: 'response.function_call_arguments.done', item_id: id, output_index: call.index, name, arguments: args });
      this.send({ type: 'response.output_item.done', output_index: call.index, item: { ...call.item } });
    }
    this.calls.clear();
    if (this.finishReason === 'length') {
      this.response['status'] = 'incomplete';
      this.response['incomplete_details'] = { reason: 'max_output_tokens' };
    } else {
      this.response['status'] = 'completed';
      this.response['completed_at'] = Math.floor(Date.now() / 1000);
    }
    return this.response;
  }

  /** The final event, once the response is stored (when it is): response.completed, response.incomplete or response.failed. */
  end(): void {
    const status = this.response['status'];
    const type = status === 'completed' ? 'response.completed' : status === 'incomplete' ? 'response.incomplete' : 'response.failed';
    this.send({ type, response: this.snapshot() });
  }

  /** The generation failed: an `error` event, and the response `failed` with the error (OpenAI's codes: server_error, rate_limit_exceeded, ...). */
  fail(code: string, message: string, param: string | null = null): JsonObject {
    if (this.message) this.message.item['content'] = [{ type: 'output_text', text: this.message.text, annotations: [], logprobs: [] }];
    for (const item of this.response.output) if (item['status'] === 'in_progress') item['status'] = 'incomplete';
    this.message = null;
    this.calls.clear();
    this.response['status'] = 'failed';
    this.response['error'] = { code, message };
    this.send({ type: 'error', code, message, param });
    return this.response;
  }
}

/** A whole (not streamed) chat completion, as the one chunk that carries all of it (for ResponseBuilder.chunk). */
export function chunkOfCompletion(completion: JsonObject): JsonObject {
  const choices = (completion['choices'] as { message?: JsonObject; finish_reason?: unknown }[] | undefined) ?? [];
  return {
    choices: choices.slice(0, 1).map((c) => ({
      delta: {
        content: c.message?.['content'] ?? null,
        tool_calls: ((c.message?.['tool_calls'] as JsonObject[] | undefined) ?? []).map((call, index) => ({ ...call, index })),
      },
      finish_reason: c.finish_reason ?? null,
    })),
    usage: completion['usage'] ?? null,
  };
}
