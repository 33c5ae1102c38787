import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import type { RuntimeHost } from '../agent/executor.js';
import { createLocalExecutor } from '../agent/localExecutor.js';
import { loadConfig } from '../lib/config.js';
import { silentLogger } from '../lib/logging.js';
import { expectValid, loadOpenApiValidator } from './support/openapi.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { writeTinyGguf } from './support/tinyGguf.js';
import { waitFor } from './support/until.js';

/**
 * OpenAI's Responses API end to end with the official SDK: the embedded platform (PGlite with pgvector,
 * for file_search), a tiny GGUF model with random weights served by the local executor. The model's
 * words mean nothing, so what a response says is not checked; what the runtime received is (the
 * runtime's HTTP server is tapped): the chained conversation, the instructions, the retrieved context.
 */

const MODEL = 'tiny-responses';
const PLANTED = 'The lighthouse keeper hides the spare key under the blue whale statue.';

interface ChatMessage {
  role: string;
  content: string | null;
  tool_calls?: unknown[];
  tool_call_id?: string;
}

interface Usage {
  api_key_id: string;
  model_id: string;
  total_requests: number;
  total_prompt_tokens: number;
  total_completion_tokens: number;
}

describe('the Responses API through the OpenAI SDK', () => {
  let t: TestPlatform;
  let agent: Agent;
  let sdk: OpenAI;
  let dir: string;
  /** Chat request bodies as the runtime received them. */
  const received: { messages: ChatMessage[]; tools?: unknown; tool_choice?: unknown; max_tokens?: number }[] = [];
  const spec = loadOpenApiValidator();

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mariner-responses-'));
    const ggufPath = path.join(dir, 'tiny.gguf');
    // A longer context than the default 512 tokens: chained conversations and retrieved context go into the prompt.
    writeTinyGguf(ggufPath, { contextLength: 4096 });
    t = await startTestPlatform({
      embedded: true,
      config: {
        vectorStores: { ...loadConfig({}).vectorStores, defaultEmbeddingModel: MODEL },
        inference: { runtimeFreshSeconds: 90, requestWaitSeconds: 30, usageFlushIntervalMs: 50 },
      },
    });
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "local" }) { registrationKey } }');
    const executor = await createLocalExecutor(silentLogger(), { objectStore: t.platform.objectStore, cacheDir: path.join(dir, 'cache') });
    const runtimes = executor.runtimes!;
    const tapped: RuntimeHost = {
      ...runtimes,
      reconcile: (models) => runtimes.reconcile(models),
      status: () => runtimes.status(),
      close: () => runtimes.close(),
      forward(modelId, req, res, runtimePath) {
        if (runtimePath.endsWith('/chat/completions')) {
          const parts: Buffer[] = [];
          req.on('data', (part: Buffer) => parts.push(part));
          req.on('end', () => received.push(JSON.parse(Buffer.concat(parts).toString('utf8'))));
        }
        runtimes.forward(modelId, req, res, runtimePath);
      },
    };
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: { ...executor, runtimes: tapped },
      logger: silentLogger(),
    });
    await agent.whenConnected();
    sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
    await loadedModelFromFile(t, {
      id: MODEL,
      weights: readFileSync(ggufPath),
      registrationKey: registerCluster.registrationKey,
      input: { isProjectScoped: false },
    });
    await agent.reconcileRuntimes();
    await agent.reconcileRuntimes();
  }, 120_000);

  afterAll(async () => {
    await agent?.close();
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const rest = async (method: string, route: string, body?: unknown, key = t.adminKey) => {
    const response = await fetch(`${t.url}/v1${route}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, body: (await response.json()) as Record<string, any> };
  };
  const usageOf = async (): Promise<Usage | undefined> => {
    const { body } = await rest('GET', '/api_usages');
    return (body['usages'] as Usage[]).find((u) => u.model_id === MODEL);
  };

  it('creates a response from a string with instructions: the runtime gets them as a system message, the body is OpenAI’s, and usage is recorded', async () => {
    const before = await usageOf();
    received.length = 0;
    const response = await sdk.responses.create({ model: MODEL, input: 'Hello there', instructions: 'Answer in one word.', max_output_tokens: 4 });
    expect(response).toMatchObject({ object: 'response', model: MODEL, instructions: 'Answer in one word.', store: true });
    expect(['completed', 'incomplete']).toContain(response.status);
    expect(response.output[0]).toMatchObject({ type: 'message', role: 'assistant' });
    expect(typeof response.output_text).toBe('string');
    expect(response.usage!.output_tokens).toBeLessThanOrEqual(4);
    expect(received).toHaveLength(1);
    expect(received[0]!.messages).toEqual([
      { role: 'system', content: 'Answer in one word.' },
      { role: 'user', content: 'Hello there' },
    ]);
    expect(received[0]!.max_tokens).toBe(4);

    const raw = await rest('POST', '/responses', { model: MODEL, input: 'Hi', max_output_tokens: 2 });
    expect(raw.status).toBe(200);
    expectValid(spec.validateResponse('post', '/v1/responses', 200, raw.body));
    // Usage records, as for chat: one request more for this model, with this response's tokens.
    const after = await waitFor(
      usageOf,
      (usage) => (usage?.total_requests ?? 0) >= (before?.total_requests ?? 0) + 2,
      'the usage records of the two responses',
    );
    expect(after!.total_prompt_tokens - (before?.total_prompt_tokens ?? 0)).toBe(response.usage!.input_tokens + raw.body['usage'].input_tokens);
  });

  it('streams OpenAI’s typed events in order, with sequence numbers, and the stored response is the streamed one', async () => {
    const stream = await sdk.responses.create({ model: MODEL, input: [{ role: 'user', content: 'Tell me a story' }], max_output_tokens: 6, stream: true });
    const events: { type: string; sequence_number: number; [key: string]: any }[] = [];
    for await (const event of stream) events.push(event as (typeof events)[number]);
    const types = events.map((e) => e.type);
    expect(types.slice(0, 4)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    expect(types).toContain('response.output_text.delta');
    expect(types.slice(-4)).toEqual([
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      expect.stringMatching(/^response\.(completed|incomplete)$/),
    ]);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_e, i) => i));
    const text = events
      .filter((e) => e.type === 'response.output_text.delta')
      .map((e) => e.delta as string)
      .join('');
    const last = events.at(-1)!['response'];
    expect(last.output[0].content[0].text).toBe(text);
    for (const event of events) expectValid(spec.validateSchema('ResponseStreamEvent', event));

    const stored = await sdk.responses.retrieve(last.id);
    expect(stored.output_text).toBe(text);
    expect(stored.usage).toEqual(last.usage);
  });

  it('previous_response_id: the second request’s prompt holds the first exchange; retrieve, input_items, GraphQL and delete', async () => {
    const first = await sdk.responses.create({ model: MODEL, input: 'My name is Ada.', instructions: 'Be brief.', max_output_tokens: 3 });
    received.length = 0;
    const second = await sdk.responses.create({
      model: MODEL,
      previous_response_id: first.id,
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'What is my name?' }] }],
      max_output_tokens: 3,
    });
    expect(second.previous_response_id).toBe(first.id);
    // The runtime saw the first exchange (not its instructions: OpenAI does not carry them over), then the new message.
    expect(received[0]!.messages).toEqual([
      { role: 'user', content: 'My name is Ada.' },
      { role: 'assistant', content: first.output_text },
      { role: 'user', content: 'What is my name?' },
    ]);

    const retrieved = await sdk.responses.retrieve(second.id);
    expect(retrieved).toMatchObject({ id: second.id, previous_response_id: first.id, output_text: second.output_text });
    const raw = await rest('GET', `/responses/${second.id}`);
    expectValid(spec.validateResponse('get', '/v1/responses/{response_id}', 200, raw.body));

    const items = await sdk.responses.inputItems.list(second.id);
    expect(items.data).toHaveLength(1);
    expect(items.data[0]).toMatchObject({ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'What is my name?' }] });
    const rawItems = await rest('GET', `/responses/${first.id}/input_items`);
    expectValid(spec.validateResponse('get', '/v1/responses/{response_id}/input_items', 200, rawItems.body));
    expect(rawItems.body['data'][0]).toMatchObject({ id: expect.stringMatching(/^msg_/), role: 'user' });

    // GraphQL sees the same response, its input items and the conversation a third response would continue.
    const data = await t.gqlOk(
      `query($id: ID!) { response(id: $id) { id status previousResponseId outputText usage { inputTokens } conversation { type role text } }
         responseInputItems(responseId: $id) { items { type role text } hasMore } }`,
      { id: second.id },
    );
    expect(data.response).toMatchObject({
      id: second.id,
      previousResponseId: first.id,
      outputText: second.output_text,
      usage: { inputTokens: second.usage!.input_tokens },
    });
    expect(data.response.conversation.map((i: { role: string; text: string }) => [i.role, i.text])).toEqual([
      ['user', 'My name is Ada.'],
      ['assistant', first.output_text],
      ['user', 'What is my name?'],
      ['assistant', second.output_text],
    ]);
    expect(data.responseInputItems).toEqual({ items: [{ type: 'message', role: 'user', text: 'What is my name?' }], hasMore: false });

    const deleted = await rest('DELETE', `/responses/${first.id}`);
    expect(deleted).toEqual({ status: 200, body: { id: first.id, object: 'response', deleted: true } });
    await expect(sdk.responses.retrieve(first.id)).rejects.toMatchObject({ status: 404 });
    await expect(sdk.responses.create({ model: MODEL, previous_response_id: first.id, input: 'again' })).rejects.toMatchObject({ status: 404 });
    // The chain of the second stops where the first was.
    const { response } = await t.gqlOk('query($id: ID!) { response(id: $id) { conversation { text } } }', { id: second.id });
    expect(response.conversation).toHaveLength(2);
  });

  it('store: false answers the response but keeps nothing', async () => {
    const response = await sdk.responses.create({ model: MODEL, input: 'Forget this', store: false, max_output_tokens: 2 });
    expect((response as unknown as { store: boolean }).store).toBe(false);
    await expect(sdk.responses.retrieve(response.id)).rejects.toMatchObject({ status: 404 });
    await expect(sdk.responses.create({ model: MODEL, previous_response_id: response.id, input: 'x' })).rejects.toMatchObject({ status: 404 });
  });

  it('file_search: the caller’s vector store is searched and its chunks reach the prompt; another project’s store is a 404', async () => {
    const file = await sdk.files.create({ file: await toFile(Buffer.from(`${PLANTED}\n`), 'keeper.txt'), purpose: 'assistants' });
    const store = await sdk.vectorStores.create({ name: 'lighthouse', file_ids: [file.id] });
    expect((await sdk.vectorStores.files.poll(store.id, file.id, { pollIntervalMs: 50 })).status).toBe('completed');

    received.length = 0;
    const response = await sdk.responses.create({
      model: MODEL,
      input: PLANTED,
      tools: [{ type: 'file_search', vector_store_ids: [store.id] }],
      include: ['file_search_call.results'],
      max_output_tokens: 2,
    });
    const search = response.output[0]!;
    expect(search).toMatchObject({ type: 'file_search_call', status: 'completed', queries: [PLANTED] });
    expect((search as { results: { file_id: string; text: string }[] }).results[0]).toMatchObject({ file_id: file.id, filename: 'keeper.txt' });
    expect(received[0]!.messages[0]!.role).toBe('system');
    expect(received[0]!.messages[0]!.content).toContain(PLANTED);
    expect(received[0]!.tools).toBeUndefined();

    // Streamed: the file search's events come first.
    const stream = await sdk.responses.create({
      model: MODEL,
      input: PLANTED,
      tools: [{ type: 'file_search', vector_store_ids: [store.id] }],
      max_output_tokens: 2,
      stream: true,
    });
    const types: string[] = [];
    for await (const event of stream) {
      expectValid(spec.validateSchema('ResponseStreamEvent', event));
      types.push(event.type);
    }
    expect(types.slice(2, 7)).toEqual([
      'response.output_item.added',
      'response.file_search_call.in_progress',
      'response.file_search_call.searching',
      'response.file_search_call.completed',
      'response.output_item.done',
    ]);

    // Another organization's store: not found, and the runtime sees nothing.
    const other = await projectWithKey(t, 'responses-other');
    const otherSdk = new OpenAI({ apiKey: other.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const theirs = await otherSdk.vectorStores.create({ name: 'theirs' });
    received.length = 0;
    await expect(
      sdk.responses.create({ model: MODEL, input: 'hi', tools: [{ type: 'file_search', vector_store_ids: [theirs.id] }], max_output_tokens: 2 }),
    ).rejects.toMatchObject({ status: 404 });
    expect(received).toHaveLength(0);
  });

  it('another organization gets 404 for a response id, through REST and GraphQL, and cannot chain to it or delete it', async () => {
    const mine = await sdk.responses.create({ model: MODEL, input: 'private', max_output_tokens: 2 });
    const other = await projectWithKey(t, 'responses-intruder');
    const otherSdk = new OpenAI({ apiKey: other.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const missing = 'resp_000000000000000000000000';
    for (const id of [mine.id, missing]) {
      await expect(otherSdk.responses.retrieve(id)).rejects.toMatchObject({ status: 404 });
      await expect(otherSdk.responses.inputItems.list(id)).rejects.toMatchObject({ status: 404 });
      await expect(otherSdk.responses.delete(id)).rejects.toMatchObject({ status: 404 });
      await expect(otherSdk.responses.create({ model: MODEL, previous_response_id: id, input: 'x' })).rejects.toMatchObject({ status: 404 });
    }
    const raw = await rest('GET', `/responses/${mine.id}`, undefined, other.key);
    expect(raw.status).toBe(404);
    expectValid(spec.validateResponse('get', '/v1/responses/{response_id}', 404, raw.body));
    const { data } = await t.gql('query($id: ID!) { response(id: $id) { id } }', { id: mine.id }, { token: other.key });
    expect(data?.response).toBeNull();
    // Still there for its owner.
    expect((await sdk.responses.retrieve(mine.id)).id).toBe(mine.id);
  });

  it('bad input is a 400 naming the parameter, and nothing is stored or generated', async () => {
    received.length = 0;
    const cases: [Record<string, unknown>, string][] = [
      [{ input: 'x' }, 'model'],
      [{ model: MODEL }, 'input'],
      [{ model: MODEL, input: [{ role: 'robot', content: 'x' }] }, 'input[0].role'],
      [{ model: MODEL, input: 'x', tools: [{ type: 'web_search' }] }, 'tools[0].type'],
      [{ model: MODEL, input: 'x', background: true }, 'background'],
      [{ model: MODEL, input: 'x', temperature: 5 }, 'temperature'],
    ];
    for (const [body, param] of cases) {
      const answer = await rest('POST', '/responses', body);
      expect(answer.status, JSON.stringify(answer.body)).toBe(400);
      expect(answer.body['error']).toMatchObject({ type: 'invalid_request_error', param });
      expectValid(spec.validateResponse('post', '/v1/responses', 400, answer.body));
    }
    expect(received).toHaveLength(0);
    const unknownModel = await rest('POST', '/responses', { model: 'no-such-model', input: 'x' });
    expect(unknownModel.status).toBe(404);
  });

  it('function tools become chat tools, and the runtime’s tool calls come back as function_call items', async () => {
    const tools = [
      {
        type: 'function' as const,
        name: 'get_weather',
        description: 'The weather in a city',
        parameters: { type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Rome'] } }, required: ['city'], additionalProperties: false },
        strict: true,
      },
    ];
    received.length = 0;
    const response = await sdk.responses.create({
      model: MODEL,
      input: 'Weather in Paris?',
      tools,
      tool_choice: { type: 'function', name: 'get_weather' },
      max_output_tokens: 40,
    });
    expect(received[0]!.tools).toEqual([
      { type: 'function', function: { name: 'get_weather', description: 'The weather in a city', parameters: tools[0]!.parameters, strict: true } },
    ]);
    expect(received[0]!.tool_choice).toEqual({ type: 'function', function: { name: 'get_weather' } });
    expect(response.tools[0]).toMatchObject({ type: 'function', name: 'get_weather' });
    const call = response.output.find((item) => item.type === 'function_call');
    expect(call, JSON.stringify(response.output)).toBeDefined();
    if (call?.type !== 'function_call') return;
    expect(call.name).toBe('get_weather');
    expect(() => JSON.parse(call.arguments)).not.toThrow();

    // Streamed: the call's arguments arrive as function_call_arguments deltas, then done with the whole of them.
    const stream = await sdk.responses.create({ model: MODEL, input: 'Weather in Rome?', tools, tool_choice: 'required', max_output_tokens: 40, stream: true });
    const events: { type: string; [key: string]: any }[] = [];
    for await (const event of stream) {
      expectValid(spec.validateSchema('ResponseStreamEvent', event));
      events.push(event);
    }
    const deltas = events.filter((e) => e.type === 'response.function_call_arguments.delta').map((e) => e.delta as string);
    const done = events.find((e) => e.type === 'response.function_call_arguments.done')!;
    expect(deltas.length).toBeGreaterThan(0);
    expect(done).toMatchObject({ name: 'get_weather', arguments: deltas.join('') });
    expect(events.at(-1)!['response'].output).toContainEqual(
      expect.objectContaining({ type: 'function_call', arguments: done['arguments'], status: 'completed' }),
    );

    // The client answers the call; the runtime gets the call and its output as tool messages.
    received.length = 0;
    await sdk.responses.create({
      model: MODEL,
      previous_response_id: response.id,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"celsius": 21}' }],
      tools,
      max_output_tokens: 2,
    });
    const messages = received[0]!.messages;
    expect(messages.at(-2)).toMatchObject({
      role: 'assistant',
      tool_calls: [{ id: call.call_id, type: 'function', function: { name: 'get_weather', arguments: call.arguments } }],
    });
    expect(messages.at(-1)).toEqual({ role: 'tool', tool_call_id: call.call_id, content: '{"celsius": 21}' });
  });
});
