import { describe, expect, it } from 'vitest';
import { ErrorCode, MarinerError, badInput } from '../../lib/errors.js';
import type { ChatCompletionInput } from './generated/resolvers.js';
import {
  chatCompletionChunkOf,
  chatCompletionOf,
  chatRequestBody,
  completionOf,
  completionRequestBody,
  embeddingListOf,
  embeddingRequestBody,
  fieldOfParam,
  withTypedField,
} from './openaiShapes.js';

const hi: ChatCompletionInput = { model: 'm', messages: [{ role: 'USER', content: 'Hi' }] };

/** The BAD_USER_INPUT a call throws: its field. */
function refusal(call: () => unknown): { code: unknown; field: unknown; message: string } {
  try {
    call();
  } catch (error) {
    const e = error as MarinerError;
    return { code: e.extensions['code'], field: e.extensions['field'], message: e.message };
  }
  throw new Error('no refusal');
}

describe('typed chat input → OpenAI body', () => {
  it('maps every field to its OpenAI name, and leaves out what was not given', () => {
    expect(chatRequestBody(hi)).toEqual({ model: 'm', messages: [{ role: 'user', content: 'Hi' }] });
    const body = chatRequestBody({
      model: ' m ',
      messages: [
        { role: 'DEVELOPER', content: 'Be brief.' },
        {
          role: 'USER',
          contentParts: [
            { type: 'TEXT', text: 'What is this?' },
            { type: 'IMAGE_URL', imageUrl: 'https://x/cat.png', imageDetail: 'LOW' },
          ],
        },
        { role: 'ASSISTANT', toolCalls: [{ id: 'call_1', function: { name: 'weather', arguments: '{"city":"Oslo"}' } }] },
        { role: 'TOOL', toolCallId: 'call_1', content: '12 °C' },
      ],
      temperature: 0.5,
      topP: 0.9,
      maxTokens: 16,
      stop: ['\n'],
      seed: 7,
      n: 2,
      presencePenalty: 0.1,
      frequencyPenalty: -0.1,
      tools: [{ name: 'weather', description: 'The weather', parameters: { type: 'object', properties: { city: { type: 'string' } } }, strict: true }],
      toolChoice: { function: 'weather' },
      parallelToolCalls: false,
      responseFormat: { type: 'JSON_SCHEMA', jsonSchema: { name: 'answer', schema: { type: 'object' }, strict: true } },
      logprobs: true,
      topLogprobs: 3,
      user: 'u-1',
      rag: { vectorStoreName: 'docs' },
    });
    expect(body).toEqual({
      model: 'm',
      messages: [
        { role: 'developer', content: 'Be brief.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is this?' },
            { type: 'image_url', image_url: { url: 'https://x/cat.png', detail: 'low' } },
          ],
        },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: '12 °C' },
      ],
      temperature: 0.5,
      top_p: 0.9,
      max_tokens: 16,
      stop: ['\n'],
      seed: 7,
      n: 2,
      presence_penalty: 0.1,
      frequency_penalty: -0.1,
      user: 'u-1',
      tools: [
        {
          type: 'function',
          function: { name: 'weather', description: 'The weather', parameters: { type: 'object', properties: { city: { type: 'string' } } }, strict: true },
        },
        { type: 'function', function: { name: 'rag', parameters: { vector_store_name: 'docs' } } },
      ],
      tool_choice: { type: 'function', function: { name: 'weather' } },
      parallel_tool_calls: false,
      response_format: { type: 'json_schema', json_schema: { name: 'answer', schema: { type: 'object' }, strict: true } },
      logprobs: true,
      top_logprobs: 3,
    });
    expect(chatRequestBody({ ...hi, tools: [{ name: 'f' }], toolChoice: { mode: 'REQUIRED' }, responseFormat: { type: 'JSON_OBJECT' } })).toMatchObject({
      tool_choice: 'required',
      response_format: { type: 'json_object' },
    });
  });

  it.each<[string, ChatCompletionInput, string]>([
    ['no messages', { model: 'm', messages: [] }, 'messages'],
    ['a blank model', { ...hi, model: '  ' }, 'model'],
    ['temperature above 2', { ...hi, temperature: 2.5 }, 'temperature'],
    ['topP below 0', { ...hi, topP: -0.1 }, 'topP'],
    ['maxTokens 0', { ...hi, maxTokens: 0 }, 'maxTokens'],
    ['n 0', { ...hi, n: 0 }, 'n'],
    ['five stop sequences', { ...hi, stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
    ['topLogprobs without logprobs', { ...hi, topLogprobs: 2 }, 'topLogprobs'],
    ['content and parts', { model: 'm', messages: [{ role: 'USER', content: 'a', contentParts: [{ type: 'TEXT', text: 'b' }] }] }, 'messages[0].contentParts'],
    ['a message without content', { model: 'm', messages: [{ role: 'USER' }] }, 'messages[0].content'],
    ['a tool message without its call', { model: 'm', messages: [{ role: 'TOOL', content: 'x' }] }, 'messages[0].toolCallId'],
    [
      'tool calls of a user',
      { model: 'm', messages: [{ role: 'USER', content: 'x', toolCalls: [{ id: 'c', function: { name: 'f', arguments: '{}' } }] }] },
      'messages[0].toolCalls',
    ],
    [
      'an image in a system message',
      { model: 'm', messages: [{ role: 'SYSTEM', contentParts: [{ type: 'IMAGE_URL', imageUrl: 'https://x' }] }] },
      'messages[0].contentParts[0].type',
    ],
    [
      'an image from a file path',
      { model: 'm', messages: [{ role: 'USER', contentParts: [{ type: 'IMAGE_URL', imageUrl: '/etc/passwd' }] }] },
      'messages[0].contentParts[0].imageUrl',
    ],
    ['a tool name with spaces', { ...hi, tools: [{ name: 'get weather' }] }, 'tools[0].name'],
    ['a function named rag', { ...hi, tools: [{ name: 'rag' }] }, 'tools[0].name'],
    ['parameters that are not an object', { ...hi, tools: [{ name: 'f', parameters: [1] }] }, 'tools[0].parameters'],
    ['toolChoice without tools', { ...hi, toolChoice: { mode: 'AUTO' } }, 'toolChoice'],
    ['toolChoice with mode and function', { ...hi, tools: [{ name: 'f' }], toolChoice: { mode: 'AUTO', function: 'f' } }, 'toolChoice'],
    ['toolChoice naming no tool', { ...hi, tools: [{ name: 'f' }], toolChoice: { function: 'g' } }, 'toolChoice.function'],
    ['JSON_SCHEMA without a schema', { ...hi, responseFormat: { type: 'JSON_SCHEMA' } }, 'responseFormat.jsonSchema'],
    [
      'a schema that is not an object',
      { ...hi, responseFormat: { type: 'JSON_SCHEMA', jsonSchema: { name: 'a', schema: 'x' } } },
      'responseFormat.jsonSchema.schema',
    ],
    ['a blank vector store', { ...hi, rag: { vectorStoreName: ' ' } }, 'rag.vectorStoreName'],
  ])('%s is BAD_USER_INPUT naming %s', (_name, input, field) => {
    expect(refusal(() => chatRequestBody(input))).toMatchObject({ code: ErrorCode.BAD_USER_INPUT, field });
  });
});

describe('typed completion and embedding input → OpenAI body', () => {
  it('one prompt or input travels as a string, several as an array; embeddings are asked as floats', () => {
    expect(completionRequestBody({ model: 'm', prompt: ['Once'], maxTokens: 4, logprobs: 2, echo: true, suffix: '.' })).toEqual({
      model: 'm',
      prompt: 'Once',
      max_tokens: 4,
      logprobs: 2,
      echo: true,
      suffix: '.',
    });
    expect(completionRequestBody({ model: 'm', prompt: ['a', 'b'] })['prompt']).toEqual(['a', 'b']);
    expect(embeddingRequestBody({ model: 'm', input: ['a'], dimensions: 8 })).toEqual({ model: 'm', input: 'a', encoding_format: 'float', dimensions: 8 });
    expect(embeddingRequestBody({ model: 'm', input: ['a', 'b'] })['input']).toEqual(['a', 'b']);
  });

  it('refuses what OpenAI refuses, naming the field', () => {
    expect(refusal(() => completionRequestBody({ model: 'm', prompt: [] })).field).toBe('prompt');
    expect(refusal(() => completionRequestBody({ model: 'm', prompt: ['a'], logprobs: 6 })).field).toBe('logprobs');
    expect(refusal(() => embeddingRequestBody({ model: 'm', input: [] })).field).toBe('input');
    expect(refusal(() => embeddingRequestBody({ model: 'm', input: ['a'], dimensions: 0 })).field).toBe('dimensions');
  });
});

describe("a runtime's refusal names the typed field", () => {
  it('snake_case parameters become camelCase fields, paths included', () => {
    expect(fieldOfParam('chat', 'top_p')).toBe('topP');
    expect(fieldOfParam('chat', 'messages[2].tool_call_id')).toBe('messages[2].toolCallId');
    expect(fieldOfParam('chat', 'max_completion_tokens')).toBe('maxTokens');
    expect(fieldOfParam('completion', 'logprobs')).toBe('logprobs');
    const mapped = withTypedField('chat', badInput('`response_format` is not supported', 'response_format')) as MarinerError;
    expect(mapped.extensions).toEqual({ code: 'BAD_USER_INPUT', field: 'responseFormat' });
    expect(mapped.message).toBe('`response_format` is not supported');
    expect((withTypedField('chat', badInput('tools: the rag tool needs a vector store', 'tools')) as MarinerError).extensions['field']).toBe('rag');
    const other = new MarinerError(ErrorCode.NOT_FOUND, 'model m not found');
    expect(withTypedField('chat', other)).toBe(other);
  });
});

describe('OpenAI answers → typed', () => {
  const created = 1_700_000_000;

  it('a chat.completion with tool calls, logprobs and usage', () => {
    const typed = chatCompletionOf({
      id: 'chatcmpl-1',
      object: 'chat.completion',
      created,
      model: 'm',
      system_fingerprint: 'fp',
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } }],
          },
          finish_reason: 'tool_calls',
          logprobs: { content: [{ token: 'a', logprob: -0.5, bytes: [97], top_logprobs: [{ token: 'a', logprob: -0.5, bytes: [97] }] }], refusal: null },
        },
        { index: 1, message: { role: 'assistant', content: 'Hi', reasoning_content: 'hm' }, finish_reason: 'stop', logprobs: null },
      ],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    });
    expect(typed).toEqual({
      id: 'chatcmpl-1',
      created: '2023-11-14T22:13:20.000Z',
      model: 'm',
      systemFingerprint: 'fp',
      choices: [
        {
          index: 0,
          message: {
            role: 'ASSISTANT',
            content: null,
            reasoningContent: null,
            refusal: null,
            toolCalls: [{ id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } }],
          },
          finishReason: 'tool_calls',
          logprobs: {
            content: [{ token: 'a', logprob: -0.5, bytes: [97], topLogprobs: [{ token: 'a', logprob: -0.5, bytes: [97] }] }],
            refusal: null,
          },
        },
        { index: 1, message: { role: 'ASSISTANT', content: 'Hi', reasoningContent: 'hm', refusal: null, toolCalls: [] }, finishReason: 'stop', logprobs: null },
      ],
      usage: { promptTokens: 3, completionTokens: 2, totalTokens: 5 },
    });
  });

  it('chunks: deltas with tool call parts, and the usage chunk without choices', () => {
    const first = chatCompletionChunkOf({
      id: 'c',
      object: 'chat.completion.chunk',
      created,
      model: 'm',
      choices: [{ index: 0, delta: { role: 'assistant', tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'f', arguments: '' } }] } }],
    });
    expect(first.choices[0]!.delta).toEqual({
      role: 'ASSISTANT',
      content: null,
      reasoningContent: null,
      refusal: null,
      toolCalls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'f', arguments: '' } }],
    });
    const part = chatCompletionChunkOf({
      id: 'c',
      created,
      model: 'm',
      choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '{"a"' } }] } }],
    });
    expect(part.choices[0]!.delta.toolCalls).toEqual([{ index: 0, id: null, type: null, function: { name: null, arguments: '{"a"' } }]);
    const usage = chatCompletionChunkOf({ id: 'c', created, model: 'm', choices: [], usage: { prompt_tokens: 4, completion_tokens: 6 } });
    expect(usage).toMatchObject({ choices: [], usage: { promptTokens: 4, completionTokens: 6, totalTokens: 10 } });
  });

  it("a text_completion's logprobs: OpenAI's token → logprob objects become lists, most likely first", () => {
    const typed = completionOf({
      id: 'cmpl-1',
      object: 'text_completion',
      created,
      model: 'm',
      choices: [
        {
          index: 0,
          text: ' upon',
          finish_reason: 'length',
          logprobs: { tokens: [' upon'], token_logprobs: [null], top_logprobs: [{ ' a': -2, ' upon': -0.1 }], text_offset: [4] },
        },
      ],
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
    });
    expect(typed.choices[0]).toEqual({
      index: 0,
      text: ' upon',
      finishReason: 'length',
      logprobs: {
        tokens: [' upon'],
        tokenLogprobs: [null],
        topLogprobs: [
          [
            { token: ' upon', logprob: -0.1, bytes: null },
            { token: ' a', logprob: -2, bytes: null },
          ],
        ],
        textOffset: [4],
      },
    });
  });

  it('embeddings as floats, with their usage', () => {
    expect(
      embeddingListOf({
        object: 'list',
        model: 'm',
        data: [
          { object: 'embedding', index: 0, embedding: [0.5, -1] },
          { object: 'embedding', index: 1, embedding: [0, 1] },
        ],
        usage: { prompt_tokens: 2, total_tokens: 2 },
      }),
    ).toEqual({
      model: 'm',
      data: [
        { index: 0, embedding: [0.5, -1] },
        { index: 1, embedding: [0, 1] },
      ],
      usage: { promptTokens: 2, totalTokens: 2 },
    });
  });

  it("a runtime's error event mid-stream is an UNAVAILABLE error with its message", () => {
    const failed = { error: { message: 'out of memory', type: 'server_error', param: null, code: null } };
    expect(refusal(() => chatCompletionChunkOf(failed))).toMatchObject({ code: ErrorCode.UNAVAILABLE, message: expect.stringContaining('out of memory') });
    expect(refusal(() => completionOf(failed)).code).toBe(ErrorCode.UNAVAILABLE);
  });

  it('an answer that is not what OpenAI describes is the INTERNAL fault of the runtime, not bad input', () => {
    expect(() => chatCompletionOf({ id: 'x', created, model: 'm' })).toThrow(/not an OpenAI chat.completion choices/);
    expect(refusal(() => embeddingListOf({ model: 'm', data: [{ index: 0, embedding: 'AAAA' }] })).code).toBe(ErrorCode.INTERNAL);
  });
});
