import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { createLocalExecutor } from '../agent/localExecutor.js';
import { silentLogger } from '../lib/logging.js';
import { expectValid, loadOpenApiValidator } from './support/openapi.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { writeTinyGguf } from './support/tinyGguf.js';

type FunctionToolCall = OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall;

/**
 * Tool calling and structured outputs with the official SDK against a whole platform serving the demo
 * model (random weights) on the local executor. What is asserted is what the grammar guarantees (a
 * forced call, arguments and outputs matching their schemas: agent/runtimes/README.md); the values are
 * the model's. Every body is checked against OpenAI's own description.
 */
describe('chat tools and structured outputs end to end (OpenAI SDK → platform → local runtime)', () => {
  let t: TestPlatform;
  let agent: Agent;
  let client: OpenAI;
  let dir: string;
  const model = 'tiny-tools';
  const openapi = loadOpenApiValidator();
  const ajv = new Ajv2020({ strict: false });
  const weather = {
    type: 'function' as const,
    function: {
      name: 'get_weather',
      description: 'The weather of a city',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string', enum: ['Paris', 'Tokyo', 'Lima'] }, celsius: { type: 'boolean' } },
        required: ['city', 'celsius'],
        additionalProperties: false,
      },
      strict: true,
    },
  };
  const validWeather = ajv.compile(weather.function.parameters);

  /** The chunks of a raw streamed request, each validated against OpenAI's chunk schema. */
  async function rawStream(body: Record<string, unknown>): Promise<OpenAI.Chat.Completions.ChatCompletionChunk[]> {
    const response = await fetch(`${t.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...body, stream: true }),
    });
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    const chunks = text
      .split('\n\n')
      .filter((event) => event.startsWith('data: ') && event !== 'data: [DONE]')
      .map((event) => JSON.parse(event.slice(6)) as OpenAI.Chat.Completions.ChatCompletionChunk);
    for (const chunk of chunks) expectValid(openapi.validateSchema('CreateChatCompletionStreamResponse', chunk));
    return chunks;
  }

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mariner-tools-'));
    const ggufPath = path.join(dir, 'tiny.gguf');
    // The demo model's context (bin/demoModel.ts): the tools' documentation fills about a thousand tokens.
    writeTinyGguf(ggufPath, { contextLength: 4096 });
    t = await startTestPlatform();
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "local" }) { registrationKey } }');
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: await createLocalExecutor(silentLogger(), { objectStore: t.platform.objectStore, cacheDir: path.join(dir, 'cache') }),
      logger: silentLogger(),
    });
    await agent.whenConnected();
    await loadedModelFromFile(t, { id: model, weights: readFileSync(ggufPath), registrationKey: registerCluster.registrationKey });
    await agent.reconcileRuntimes();
    await agent.reconcileRuntimes();
    client = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
  }, 180_000);
  afterAll(async () => {
    await agent?.close();
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('function calling round trip: the model is made to call the tool, the client answers with a tool message, the model goes on', async () => {
    const question = { role: 'user' as const, content: 'What is the weather in Lima?' };
    const asked = await client.chat.completions.create({
      model,
      messages: [question],
      tools: [weather],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      max_tokens: 300,
    });
    expectValid(openapi.validateSchema('CreateChatCompletionResponse', asked));
    const message = asked.choices[0]!.message;
    expect(asked.choices[0]!.finish_reason).toBe('tool_calls');
    expect(message.tool_calls).toHaveLength(1);
    const call = message.tool_calls![0] as FunctionToolCall;
    expect(call.function.name).toBe('get_weather');
    const args: unknown = JSON.parse(call.function.arguments);
    expect(validWeather(args), JSON.stringify(validWeather.errors)).toBe(true);
    expect(asked.usage!.prompt_tokens).toBeGreaterThan(0);

    const answered = await client.chat.completions.create({
      model,
      messages: [question, message, { role: 'tool', tool_call_id: call.id, content: JSON.stringify({ temperature: 19, sky: 'clear' }) }],
      tools: [weather],
      max_tokens: 6,
    });
    expectValid(openapi.validateSchema('CreateChatCompletionResponse', answered));
    expect(answered.choices[0]!.message).toMatchObject({ role: 'assistant', content: expect.any(String) });
    expect(answered.choices[0]!.message.content).not.toBe('');
    // The tool's answer is part of the prompt: more prompt tokens than the question alone.
    expect(answered.usage!.prompt_tokens).toBeGreaterThan(asked.usage!.prompt_tokens);

    // A tool message that answers nothing is refused, by the runtime, with the parameter named.
    const stray = await client.chat.completions
      .create({ model, messages: [question, { role: 'tool', tool_call_id: 'call_nothing', content: 'x' }], max_tokens: 2 })
      .catch((error: unknown) => error);
    expect(stray).toBeInstanceOf(OpenAI.BadRequestError);
    expect((stray as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('messages[1].tool_call_id');
  });

  it('the same round trip streamed: the SDK assembles the tool call from OpenAI-shaped deltas', async () => {
    const question = { role: 'user' as const, content: 'Weather in Paris?' };
    const stream = client.chat.completions.stream({ model, messages: [question], tools: [weather], tool_choice: 'required', max_tokens: 300 });
    const final = await stream.finalChatCompletion();
    const call = final.choices[0]!.message.tool_calls![0] as FunctionToolCall;
    expect(final.choices[0]!.finish_reason).toBe('tool_calls');
    expect(call.function.name).toBe('get_weather');
    expect(call.id).toMatch(/^call_/);
    expect(validWeather(JSON.parse(call.function.arguments))).toBe(true);

    // On the wire: the call's header first, then its arguments in fragments, then finish_reason tool_calls.
    const chunks = await rawStream({ model, messages: [question], tools: [weather], tool_choice: 'required', max_tokens: 300, seed: 3 });
    const deltas = chunks.flatMap((c) => c.choices.flatMap((choice) => choice.delta.tool_calls ?? []));
    expect(deltas[0]).toMatchObject({ index: 0, id: expect.stringMatching(/^call_/), type: 'function', function: { name: 'get_weather', arguments: '' } });
    expect(deltas.length).toBeGreaterThan(2);
    expect(deltas.slice(1).every((d) => d.index === 0 && d.id === undefined && d.type === undefined && typeof d.function?.arguments === 'string')).toBe(true);
    expect(validWeather(JSON.parse(deltas.map((d) => d.function!.arguments).join('')))).toBe(true);
    expect(chunks.flatMap((c) => c.choices.map((choice) => choice.finish_reason)).filter(Boolean)).toEqual(['tool_calls']);

    // The continuation is cut by max_tokens, which the SDK's stream helper refuses for strict tools: read it chunk by chunk.
    const next = await client.chat.completions.create({
      model,
      messages: [question, final.choices[0]!.message, { role: 'tool', tool_call_id: call.id, content: 'sunny' }],
      tools: [weather],
      max_tokens: 5,
      stream: true,
    });
    let content = '';
    for await (const chunk of next) {
      content += chunk.choices[0]?.delta.content ?? '';
      expect(chunk.choices[0]?.delta.tool_calls).toBeUndefined();
    }
    expect(content).not.toBe('');
  });

  it('tool_choice auto answers a well-formed message (a random model practically never calls)', async () => {
    const completion = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Hello' }], tools: [weather], max_tokens: 6 });
    expectValid(openapi.validateSchema('CreateChatCompletionResponse', completion));
    const choice = completion.choices[0]!;
    if (choice.message.tool_calls?.length) expect(choice.finish_reason).toBe('tool_calls');
    else expect(choice.message.content).toEqual(expect.any(String));
    await rawStream({ model, messages: [{ role: 'user', content: 'Hello' }], tools: [weather], tool_choice: 'auto', max_tokens: 6 });
  });

  it('json_schema (strict): the output parses and validates against its schema, also through the SDK parse helper', async () => {
    const schema = {
      type: 'object',
      properties: {
        title: { type: 'string', maxLength: 16 },
        rating: { type: 'integer' },
        genres: { type: 'array', items: { type: 'string', enum: ['drama', 'comedy', 'noir'] }, maxItems: 2 },
        sequel: { anyOf: [{ type: 'boolean' }, { type: 'null' }] },
      },
      required: ['title', 'rating', 'genres', 'sequel'],
      additionalProperties: false,
    };
    const valid = ajv.compile(schema);
    const response_format = { type: 'json_schema' as const, json_schema: { name: 'film', strict: true, schema } };
    const completion = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'A film, as JSON.' }],
      response_format,
      max_tokens: 300,
    });
    expectValid(openapi.validateSchema('CreateChatCompletionResponse', completion));
    expect(completion.choices[0]!.finish_reason).toBe('stop');
    const output: unknown = JSON.parse(completion.choices[0]!.message.content!);
    expect(valid(output), JSON.stringify(valid.errors)).toBe(true);

    const parsed = await client.chat.completions.parse({ model, messages: [{ role: 'user', content: 'Another film.' }], response_format, max_tokens: 300 });
    expect(valid(parsed.choices[0]!.message.parsed), JSON.stringify(valid.errors)).toBe(true);

    const streamed = await rawStream({ model, messages: [{ role: 'user', content: 'One more.' }], response_format, max_tokens: 300 });
    expect(valid(JSON.parse(streamed.map((c) => c.choices[0]?.delta.content ?? '').join('')))).toBe(true);
  });

  it('n = 2 gives two choices, usage counting both', async () => {
    const completion = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Hi' }], n: 2, max_tokens: 4 });
    expectValid(openapi.validateSchema('CreateChatCompletionResponse', completion));
    expect(completion.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(completion.usage!.completion_tokens).toBe(8);
    const chunks = await rawStream({ model, messages: [{ role: 'user', content: 'Hi' }], n: 2, max_tokens: 3 });
    expect(chunks.flatMap((c) => c.choices.filter((choice) => choice.finish_reason).map((choice) => choice.index))).toEqual([0, 1]);
  });

  it('what cannot be served is a 400 in the OpenAI shape naming the parameter, from the REST layer or the runtime', async () => {
    const user = [{ role: 'user', content: 'x' }];
    const cases: [Record<string, unknown>, string][] = [
      // The REST layer's checks (the same for every runtime).
      [{ tools: [{ type: 'function', function: { name: 'no spaces allowed' } }] }, 'tools[0].function.name'],
      [{ tools: [{ type: 'function' }] }, 'tools[0]'],
      [{ tools: 'get_weather' }, 'tools'],
      [{ tools: [weather], tool_choice: { type: 'function', function: { name: 'get_time' } } }, 'tool_choice'],
      [{ tool_choice: 'required' }, 'tool_choice'],
      [{ response_format: { type: 'xml' } }, 'response_format'],
      [{ n: 0 }, 'n'],
      [{ top_logprobs: 3 }, 'top_logprobs'],
      // The local runtime's (what node-llama-cpp cannot do).
      [{ logprobs: true }, 'logprobs'],
      [
        { tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { n: { type: 'integer', minimum: 1 } } } } }] },
        'tools[0].function.parameters',
      ],
    ];
    for (const [extra, param] of cases) {
      const response = await fetch(`${t.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: user, max_tokens: 2, ...extra }),
      });
      const body = await response.json();
      expect(response.status, JSON.stringify(extra)).toBe(400);
      expectValid(openapi.validateSchema('ErrorResponse', body));
      expect(body.error, JSON.stringify(extra)).toMatchObject({ type: 'invalid_request_error', param });
    }
  });
});
