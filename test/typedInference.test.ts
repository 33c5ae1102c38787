import { createClient, type Client } from 'graphql-ws';
import OpenAI, { toFile } from 'openai';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { loadConfig } from '../lib/config.js';
import { silentLogger } from '../lib/logging.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { executorWith, scriptedRuntimes, type ScriptedAnswer, type ScriptedRuntimes } from './support/standInRuntimes.js';
import { projectWithKey } from './support/tenants.js';
import { until, waitFor } from './support/until.js';

/**
 * The typed GraphQL inference fields (chatCompletion, completion, embeddings, chatCompletionStream,
 * completionStream) end to end: over HTTP and a real graphql-ws client through the gateway, a real
 * agent and tunnel, to a runtime that answers as scripted here and keeps the OpenAI bodies it got —
 * what it received proves the typed input's mapping, what the client reads proves the answer's.
 */

const created = 1_700_000_000;
/** Streams the runtime holds after their first chunk, by the first message's content, until the test lets them go. */
const held = new Map<string, Promise<void>>();
const usage = { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 };

/** OpenAI answers as a runtime that supports tools, n, logprobs and response_format gives them. */
function answer(path: string, body: Record<string, any>): ScriptedAnswer {
  const model = body['model'];
  if (path.endsWith('/embeddings')) {
    const inputs: string[] = typeof body['input'] === 'string' ? [body['input']] : body['input'];
    return {
      json: {
        object: 'list',
        model,
        data: inputs.map((text, index) => ({ object: 'embedding', index, embedding: [index, text.length, -0.5] })),
        usage: { prompt_tokens: inputs.length * 2, total_tokens: inputs.length * 2 },
      },
    };
  }
  // A runtime's own limit: it refuses in OpenAI's error shape, naming its parameter.
  if ((body['top_logprobs'] ?? 0) > 5)
    return {
      status: 400,
      json: { error: { message: 'top_logprobs above 5 is not supported', type: 'invalid_request_error', param: 'top_logprobs', code: null } },
    };
  if (path === '/v1/completions') {
    const base = { id: 'cmpl-1', object: 'text_completion', created, model };
    if (body['stream'])
      return {
        events: [
          { ...base, choices: [{ index: 0, text: ' upon', logprobs: null, finish_reason: null }] },
          { ...base, choices: [{ index: 0, text: ' a time', logprobs: null, finish_reason: 'length' }] },
          { ...base, choices: [], usage },
        ],
      };
    const logprobs = body['logprobs']
      ? { tokens: [' upon', ' a'], token_logprobs: [-0.25, -1], top_logprobs: [{ ' in': -2, ' upon': -0.25 }, { ' a': -1 }], text_offset: [4, 9] }
      : null;
    return { json: { ...base, choices: [{ index: 0, text: ' upon a', logprobs, finish_reason: 'length' }], usage } };
  }
  const tool: string | undefined = body['tools']?.[0]?.function?.name;
  // A runtime that fails mid-answer: a chunk, then OpenAI's error object, and no [DONE].
  if (body['stream'] && body['messages']?.[0]?.content === 'fail mid-answer') {
    const chunk = {
      id: 'chatcmpl-1',
      object: 'chat.completion.chunk',
      created,
      model,
      choices: [{ index: 0, delta: { role: 'assistant', content: 'Hel' }, finish_reason: null }],
    };
    return { events: [chunk, { error: { message: 'the runtime ran out of memory', type: 'server_error', param: null, code: null } }], cut: true };
  }
  const base = { id: 'chatcmpl-1', created, model, system_fingerprint: 'fp-scripted' };
  if (body['stream']) {
    const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({
      ...base,
      object: 'chat.completion.chunk',
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    });
    const deltas = tool
      ? [
          chunk({ role: 'assistant', tool_calls: [{ index: 0, id: 'call_0', type: 'function', function: { name: tool, arguments: '' } }] }),
          chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
          chunk({ tool_calls: [{ index: 0, function: { arguments: '"Oslo"}' } }] }),
          chunk({}, 'tool_calls'),
        ]
      : [chunk({ role: 'assistant', content: '' }), chunk({ content: 'Hel' }), chunk({ content: 'lo' }), chunk({}, 'stop')];
    const usageChunk = { ...base, object: 'chat.completion.chunk', choices: [], usage };
    return { events: body['stream_options']?.include_usage ? [...deltas, usageChunk] : deltas, hold: held.get(body['messages'][0].content) };
  }
  const choices = Array.from({ length: body['n'] ?? 1 }, (_, index) => ({
    index,
    message: tool
      ? { role: 'assistant', content: null, tool_calls: [{ id: `call_${index}`, type: 'function', function: { name: tool, arguments: '{"city":"Oslo"}' } }] }
      : { role: 'assistant', content: body['response_format'] ? '{"answer":42}' : 'Hello' },
    finish_reason: tool ? 'tool_calls' : 'stop',
    logprobs: body['logprobs']
      ? {
          content: [
            {
              token: 'Hello',
              logprob: -0.1,
              bytes: [72, 101, 108, 108, 111],
              top_logprobs: [
                { token: 'Hello', logprob: -0.1, bytes: null },
                { token: 'Hi', logprob: -2.5, bytes: null },
              ].slice(0, body['top_logprobs'] ?? 0),
            },
          ],
          refusal: null,
        }
      : null,
  }));
  return { json: { ...base, object: 'chat.completion', choices, usage } };
}

const CHAT = `mutation($input: ChatCompletionInput!) { chatCompletion(input: $input) {
  id created model systemFingerprint
  choices { index finishReason message { role content toolCalls { id type function { name arguments } } } logprobs { content { token logprob bytes topLogprobs { token logprob } } } }
  usage { promptTokens completionTokens totalTokens }
} }`;
const CHAT_STREAM = `subscription($input: ChatCompletionInput!, $includeUsage: Boolean! = true) { chatCompletionStream(input: $input, includeUsage: $includeUsage) {
  model choices { index finishReason delta { role content toolCalls { index id function { name arguments } } } } usage { totalTokens }
} }`;

let t: TestPlatform;
let agent: Agent;
let runtime: ScriptedRuntimes;
let ws: Client;
/** A catalog model (every organization may use it) and a model of the admin's project only. */
const model = 'typed-model';
const privateModel = 'admin-private';

function wsClient(token: string): Client {
  return createClient({
    url: t.graphqlUrl.replace('http://', 'ws://'),
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    connectionParams: { authorization: `Bearer ${token}` },
  });
}

/** Every event of a subscription, or the errors it was refused with. */
async function subscribe<T>(
  client: Client,
  query: string,
  variables: Record<string, unknown>,
): Promise<{ events: T[]; errors: { message: string; extensions?: Record<string, unknown> }[] }> {
  const events: T[] = [];
  try {
    for await (const event of client.iterate<T>({ query, variables })) {
      if (event.errors) return { events, errors: event.errors as never };
      events.push(event.data as T);
    }
  } catch (error) {
    return { events, errors: Array.isArray(error) ? error : [{ message: String(error) }] };
  }
  return { events, errors: [] };
}

beforeAll(async () => {
  t = await startTestPlatform({
    // PGlite, with pgvector: the rag test needs a vector index.
    embedded: true,
    config: {
      inference: { runtimeFreshSeconds: 3600, requestWaitSeconds: 1, usageFlushIntervalMs: 20 },
      // The rag test's store is embedded by the scripted runtime.
      vectorStores: { ...loadConfig({}).vectorStores, defaultEmbeddingModel: model },
    },
  });
  runtime = scriptedRuntimes(answer);
  const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "typed" }) { registrationKey } }');
  agent = await startAgent({
    controlPlaneUrl: t.url,
    registrationKey: registerCluster.registrationKey,
    executor: executorWith(runtime.host),
    runtimeIntervalMs: 3_600_000,
    logger: silentLogger(),
  });
  await agent.whenConnected();
  await loadedModelFromFile(t, { id: model, weights: Buffer.from('w'), registrationKey: registerCluster.registrationKey, input: { isProjectScoped: false } });
  await loadedModelFromFile(t, { id: privateModel, weights: Buffer.from('w'), registrationKey: registerCluster.registrationKey });
  await agent.reconcileRuntimes();
  await agent.reconcileRuntimes();
  ws = wsClient(t.adminKey);
}, 120_000);
afterAll(async () => {
  await ws?.dispose();
  await agent?.close();
  await t?.close();
});

describe('chatCompletion over HTTP', () => {
  it('a typed request reaches the runtime as the OpenAI body, and its answer comes back typed: tool calls, n choices, logprobs, usage', async () => {
    const { chatCompletion } = await t.gqlOk(CHAT, {
      input: {
        model,
        messages: [
          { role: 'SYSTEM', content: 'Use tools.' },
          { role: 'USER', contentParts: [{ type: 'TEXT', text: 'Weather in Oslo?' }] },
          { role: 'ASSISTANT', toolCalls: [{ id: 'call_a', function: { name: 'weather', arguments: '{"city":"Bergen"}' } }] },
          { role: 'TOOL', toolCallId: 'call_a', content: 'rain' },
        ],
        temperature: 0.2,
        topP: 0.9,
        maxTokens: 32,
        stop: ['END'],
        seed: 42,
        n: 2,
        tools: [
          { name: 'weather', description: 'Current weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
        ],
        toolChoice: { function: 'weather' },
        parallelToolCalls: false,
        logprobs: true,
        topLogprobs: 2,
        user: 'dashboard-1',
      },
    });
    expect(runtime.received.at(-1)).toMatchObject({ modelId: model, path: '/v1/chat/completions' });
    expect(runtime.received.at(-1)!.body).toEqual({
      model,
      stream: false,
      messages: [
        { role: 'system', content: 'Use tools.' },
        { role: 'user', content: [{ type: 'text', text: 'Weather in Oslo?' }] },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_a', type: 'function', function: { name: 'weather', arguments: '{"city":"Bergen"}' } }] },
        { role: 'tool', tool_call_id: 'call_a', content: 'rain' },
      ],
      temperature: 0.2,
      top_p: 0.9,
      max_tokens: 32,
      stop: ['END'],
      seed: 42,
      n: 2,
      user: 'dashboard-1',
      tools: [
        {
          type: 'function',
          function: {
            name: 'weather',
            description: 'Current weather',
            parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
          },
        },
      ],
      tool_choice: { type: 'function', function: { name: 'weather' } },
      parallel_tool_calls: false,
      logprobs: true,
      top_logprobs: 2,
    });
    expect(chatCompletion).toEqual({
      id: 'chatcmpl-1',
      created: '2023-11-14T22:13:20.000Z',
      model,
      systemFingerprint: 'fp-scripted',
      choices: [0, 1].map((index) => ({
        index,
        finishReason: 'tool_calls',
        message: {
          role: 'ASSISTANT',
          content: null,
          toolCalls: [{ id: `call_${index}`, type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } }],
        },
        logprobs: {
          content: [
            {
              token: 'Hello',
              logprob: -0.1,
              bytes: [72, 101, 108, 108, 111],
              topLogprobs: [
                { token: 'Hello', logprob: -0.1 },
                { token: 'Hi', logprob: -2.5 },
              ],
            },
          ],
        },
      })),
      usage: { promptTokens: 7, completionTokens: 3, totalTokens: 10 },
    });
  });

  it('a client gets only the fields it selects; responseFormat travels as response_format', async () => {
    const result = await t.gqlOk(
      `mutation($input: ChatCompletionInput!) { chatCompletion(input: $input) { choices { message { content } } usage { totalTokens } } }`,
      {
        input: {
          model,
          messages: [{ role: 'USER', content: 'Answer in JSON' }],
          responseFormat: {
            type: 'JSON_SCHEMA',
            jsonSchema: { name: 'answer', schema: { type: 'object', properties: { answer: { type: 'number' } } }, strict: true },
          },
        },
      },
    );
    expect(result).toEqual({ chatCompletion: { choices: [{ message: { content: '{"answer":42}' } }], usage: { totalTokens: 10 } } });
    expect(runtime.received.at(-1)!.body['response_format']).toEqual({
      type: 'json_schema',
      json_schema: { name: 'answer', schema: { type: 'object', properties: { answer: { type: 'number' } } }, strict: true },
    });
  });
});

describe('chatCompletionStream over graphql-ws', () => {
  it('streams typed deltas with the selected fields, then the usage; includeUsage: false leaves the usage out', async () => {
    const input = { model, messages: [{ role: 'USER', content: 'Hi' }], maxTokens: 8 };
    const { events, errors } = await subscribe<{ chatCompletionStream: any }>(ws, CHAT_STREAM, { input });
    expect(errors).toEqual([]);
    const chunks = events.map((e) => e.chatCompletionStream);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? null).join('')).toBe('Hello');
    expect(chunks[0].choices[0].delta.role).toBe('ASSISTANT');
    expect(chunks.at(-2).choices[0].finishReason).toBe('stop');
    expect(chunks.at(-1)).toEqual({ model, choices: [], usage: { totalTokens: 10 } });
    expect(Object.keys(chunks[0]).sort()).toEqual(['choices', 'model', 'usage']);
    expect(runtime.received.at(-1)!.body).toMatchObject({ stream: true, max_tokens: 8, stream_options: { include_usage: true } });

    const hidden = await subscribe<{ chatCompletionStream: any }>(ws, CHAT_STREAM, { input, includeUsage: false });
    expect(hidden.errors).toEqual([]);
    expect(hidden.events.map((e) => e.chatCompletionStream.usage)).toEqual(hidden.events.map(() => null));
    expect(hidden.events.map((e) => e.chatCompletionStream.choices[0]?.delta.content ?? '').join('')).toBe('Hello');
  });

  it('two identical streams at once are two generations: a completion is never shared between subscribers, as a feed would be', async () => {
    let release!: () => void;
    held.set('together', new Promise<void>((resolve) => (release = resolve)));
    const other = wsClient(t.adminKey);
    try {
      const variables = { input: { model, messages: [{ role: 'USER', content: 'together' }] } };
      const both = Promise.all([
        subscribe<{ chatCompletionStream: any }>(ws, CHAT_STREAM, variables),
        subscribe<{ chatCompletionStream: any }>(other, CHAT_STREAM, variables),
      ]);
      await until(() => runtime.received.filter((r) => r.body['messages']?.[0]?.content === 'together').length === 2, 'both requests at the runtime');
      release();
      for (const { events, errors } of await both) {
        expect(errors).toEqual([]);
        expect(events.map((e) => e.chatCompletionStream.choices[0]?.delta.content ?? '').join('')).toBe('Hello');
        expect(events.at(-1)!.chatCompletionStream.usage).toEqual({ totalTokens: 10 });
      }
    } finally {
      release();
      await other.dispose();
    }
  });

  it('streams tool calls in parts: the id and name first, the arguments in pieces', async () => {
    const { events, errors } = await subscribe<{ chatCompletionStream: any }>(ws, CHAT_STREAM, {
      input: { model, messages: [{ role: 'USER', content: 'Weather?' }], tools: [{ name: 'weather' }], toolChoice: { mode: 'REQUIRED' } },
    });
    expect(errors).toEqual([]);
    expect(runtime.received.at(-1)!.body).toMatchObject({ tools: [{ type: 'function', function: { name: 'weather' } }], tool_choice: 'required' });
    const parts = events.flatMap((e) => e.chatCompletionStream.choices.flatMap((c: any) => c.delta.toolCalls ?? []));
    expect(parts[0]).toEqual({ index: 0, id: 'call_0', function: { name: 'weather', arguments: '' } });
    expect(parts.map((p: any) => p.function.arguments).join('')).toBe('{"city":"Oslo"}');
    expect(events.map((e) => e.chatCompletionStream.choices[0]?.finishReason).filter(Boolean)).toEqual(['tool_calls']);
  });

  it('a runtime that fails mid-answer ends the stream with UNAVAILABLE and its message, after the chunks it sent', async () => {
    const { events, errors } = await subscribe<{ chatCompletionStream: any }>(ws, CHAT_STREAM, {
      input: { model, messages: [{ role: 'USER', content: 'fail mid-answer' }] },
    });
    expect(events.map((e) => e.chatCompletionStream.choices[0].delta.content)).toEqual(['Hel']);
    expect(errors[0]).toMatchObject({ message: expect.stringContaining('the runtime ran out of memory'), extensions: { code: 'UNAVAILABLE' } });
  });
});

describe('completions and embeddings', () => {
  it('completion: the prompt and logprobs travel as OpenAI names them; the logprobs come back as lists', async () => {
    const { completion } = await t.gqlOk(
      `mutation($input: CompletionInput!) { completion(input: $input) {
        model choices { index text finishReason logprobs { tokens tokenLogprobs textOffset topLogprobs { token logprob } } } usage { completionTokens }
      } }`,
      { input: { model, prompt: 'Once', maxTokens: 2, logprobs: 2, stop: ['.'] } },
    );
    expect(runtime.received.at(-1)).toMatchObject({
      path: '/v1/completions',
      body: { model, prompt: 'Once', max_tokens: 2, logprobs: 2, stop: ['.'], stream: false },
    });
    expect(completion).toEqual({
      model,
      choices: [
        {
          index: 0,
          text: ' upon a',
          finishReason: 'length',
          logprobs: {
            tokens: [' upon', ' a'],
            tokenLogprobs: [-0.25, -1],
            textOffset: [4, 9],
            topLogprobs: [
              [
                { token: ' upon', logprob: -0.25 },
                { token: ' in', logprob: -2 },
              ],
              [{ token: ' a', logprob: -1 }],
            ],
          },
        },
      ],
      usage: { completionTokens: 3 },
    });
  });

  it('completionStream: the text in chunks, then the usage', async () => {
    const { events, errors } = await subscribe<{ completionStream: any }>(
      ws,
      'subscription($input: CompletionInput!) { completionStream(input: $input) { choices { text finishReason } usage { totalTokens } } }',
      { input: { model, prompt: ['Once'] } },
    );
    expect(errors).toEqual([]);
    expect(events.map((e) => e.completionStream.choices[0]?.text ?? '').join('')).toBe(' upon a time');
    expect(events.at(-1)!.completionStream).toEqual({ choices: [], usage: { totalTokens: 10 } });
  });

  it('embeddings: one vector of floats per text, asked of the runtime as floats', async () => {
    const { embeddings } = await t.gqlOk(
      'mutation($input: EmbeddingInput!) { embeddings(input: $input) { model data { index embedding } usage { promptTokens totalTokens } } }',
      { input: { model, input: ['alpha', 'be'] } },
    );
    expect(runtime.received.at(-1)).toMatchObject({ path: '/v1/embeddings', body: { model, input: ['alpha', 'be'], encoding_format: 'float' } });
    expect(embeddings).toEqual({
      model,
      data: [
        { index: 0, embedding: [0, 5, -0.5] },
        { index: 1, embedding: [1, 2, -0.5] },
      ],
      usage: { promptTokens: 4, totalTokens: 4 },
    });
  });
});

describe('bad input', () => {
  it('is BAD_USER_INPUT naming the field, over HTTP and graphql-ws, and changes nothing: the runtime never sees it and no usage is recorded', async () => {
    const c = await projectWithKey(t, 'Org C', { role: 'OWNER' });
    const usageOfC = async () =>
      (await t.gqlOk('{ apiUsages { modelId totalRequests failedRequests } }', {}, { token: c.key })).apiUsages as {
        modelId: string;
        totalRequests: number;
        failedRequests: number;
      }[];
    const received = runtime.received.length;
    const hi = [{ role: 'USER', content: 'Hi' }];
    for (const [input, field] of [
      [{ model, messages: [] }, 'messages'],
      [{ model, messages: hi, temperature: 2.5 }, 'temperature'],
      [{ model, messages: hi, topP: 1.5 }, 'topP'],
      [{ model, messages: [{ role: 'TOOL', content: 'rain' }] }, 'messages[0].toolCallId'],
      [{ model, messages: hi, toolChoice: { function: 'weather' }, tools: [{ name: 'other' }] }, 'toolChoice.function'],
      [{ model, messages: hi, responseFormat: { type: 'JSON_SCHEMA' } }, 'responseFormat.jsonSchema'],
    ] as const) {
      const result = await t.gql(CHAT, { input }, { token: c.key });
      expect(result.data, JSON.stringify(input)).toBeNull();
      expect(result.errors?.[0]?.extensions, JSON.stringify(input)).toMatchObject({ code: 'BAD_USER_INPUT', field });
    }
    const empty = await t.gql('mutation($input: EmbeddingInput!) { embeddings(input: $input) { model } }', { input: { model, input: [] } }, { token: c.key });
    expect(empty.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input' });
    const streamed = await subscribe(wsClient(c.key), CHAT_STREAM, { input: { model, messages: hi, n: 0 } });
    expect(streamed.events).toEqual([]);
    expect(streamed.errors[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'n' });
    // A value GraphQL itself refuses (a role that does not exist) never reaches the resolver either.
    const unknownRole = await t.gql(CHAT, { input: { model, messages: [{ role: 'ROBOT', content: 'x' }] } }, { token: c.key });
    expect(unknownRole.errors?.[0]?.message).toMatch(/ROBOT/);
    expect(runtime.received.length).toBe(received);

    // One good request afterwards: once it is recorded, it is the organization's only record.
    await t.gqlOk(CHAT, { input: { model, messages: hi } }, { token: c.key });
    expect(runtime.received.length).toBe(received + 1);
    const recorded = await waitFor(usageOfC, (rows) => rows.length > 0, "org C's usage record");
    expect(recorded).toEqual([{ modelId: model, totalRequests: 1, failedRequests: 0 }]);
  });

  it("a runtime's refusal is BAD_USER_INPUT naming the typed field, not the runtime's parameter", async () => {
    const result = await t.gql(CHAT, { input: { model, messages: [{ role: 'USER', content: 'Hi' }], logprobs: true, topLogprobs: 10 } });
    expect(result.errors?.[0]).toMatchObject({
      message: 'top_logprobs above 5 is not supported',
      extensions: { code: 'BAD_USER_INPUT', field: 'topLogprobs' },
    });
    expect(runtime.received.at(-1)!.body['top_logprobs']).toBe(10);
  });
});

describe('rag', () => {
  it("rag puts what the project's vector store holds before the conversation, and never reaches the runtime as a tool; an unknown store is NOT_FOUND", async () => {
    const sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const fact = 'The harbour ferry leaves at 06:40 from pier 3.';
    const file = await sdk.files.create({ file: await toFile(Buffer.from(fact), 'ferry.txt'), purpose: 'assistants' });
    const store = await sdk.vectorStores.create({ name: 'ferries', file_ids: [file.id] });
    expect((await sdk.vectorStores.files.poll(store.id, file.id, { pollIntervalMs: 50 })).status).toBe('completed');

    const { chatCompletion } = await t.gqlOk(CHAT, {
      input: { model, messages: [{ role: 'USER', content: 'When does the ferry leave?' }], tools: [{ name: 'weather' }], rag: { vectorStoreName: 'ferries' } },
    });
    expect(chatCompletion.choices[0].message.toolCalls[0].function.name).toBe('weather');
    const sent = runtime.received.at(-1)!.body;
    expect(sent['messages'][0]).toEqual({ role: 'system', content: expect.stringContaining(fact) });
    expect(sent['messages'][1]).toEqual({ role: 'user', content: 'When does the ferry leave?' });
    expect(sent['tools']).toEqual([{ type: 'function', function: { name: 'weather' } }]);

    const received = runtime.received.length;
    const missing = await t.gql(CHAT, { input: { model, messages: [{ role: 'USER', content: 'x' }], rag: { vectorStoreName: 'no-such-store' } } });
    expect(missing.errors?.[0]).toMatchObject({ message: 'vector store named no-such-store not found', extensions: { code: 'NOT_FOUND' } });
    expect(runtime.received.length).toBe(received);
  });
});

describe('between organizations', () => {
  it("another organization cannot use a model of the admin's project: NOT_FOUND as for a model that does not exist, and the runtime sees nothing", async () => {
    // The admin's own project is served.
    const own = await t.gqlOk(CHAT, { input: { model: privateModel, messages: [{ role: 'USER', content: 'mine' }] } });
    expect(own.chatCompletion.choices[0].message.content).toBe('Hello');
    const b = await projectWithKey(t, 'Org B', { role: 'OWNER' });
    const servedBefore = runtime.received.filter((r) => r.modelId === privateModel).length;
    const missing = await t.gql(CHAT, { input: { model: 'no-such-model', messages: [{ role: 'USER', content: 'x' }] } }, { token: b.key });
    expect(missing.errors?.[0]).toMatchObject({ message: 'model no-such-model not found', extensions: { code: 'NOT_FOUND' } });
    const other = await t.gql(CHAT, { input: { model: privateModel, messages: [{ role: 'USER', content: 'x' }] } }, { token: b.key });
    expect(other.errors?.[0]).toMatchObject({ message: `model ${privateModel} not found`, extensions: { code: 'NOT_FOUND' } });
    const bWs = wsClient(b.key);
    try {
      const stream = await subscribe(bWs, CHAT_STREAM, { input: { model: privateModel, messages: [{ role: 'USER', content: 'x' }] } });
      expect(stream.events).toEqual([]);
      expect(stream.errors[0]?.extensions).toMatchObject({ code: 'NOT_FOUND' });
      const embedded = await t.gql(
        'mutation($input: EmbeddingInput!) { embeddings(input: $input) { model } }',
        { input: { model: privateModel, input: ['x'] } },
        { token: b.key },
      );
      expect(embedded.errors?.[0]?.extensions).toMatchObject({ code: 'NOT_FOUND' });
    } finally {
      await bWs.dispose();
    }
    expect(runtime.received.filter((r) => r.modelId === privateModel)).toHaveLength(servedBefore);
    // The catalog model is everyone's.
    const shared = await t.gqlOk(CHAT, { input: { model, messages: [{ role: 'USER', content: 'x' }] } }, { token: b.key });
    expect(shared.chatCompletion.choices[0].message.content).toBe('Hello');
  });

  it('a caller without a key is refused before anything runs', async () => {
    const anonymous = await t.gql(CHAT, { input: { model, messages: [{ role: 'USER', content: 'x' }] } }, { token: undefined });
    expect(anonymous.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });
});
