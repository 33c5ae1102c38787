import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logging.js';
import { expectValid, loadOpenApiValidator } from '../../test/support/openapi.js';
import { TINY_GGUF, writeTinyGguf } from '../../test/support/tinyGguf.js';
import { type LocalRuntime, LocalRuntimeManager } from './localRuntimes.js';

const MODEL = 'tiny-llama';
const openapi = loadOpenApiValidator();

let dir: string;
let manager: LocalRuntimeManager;
let runtime: LocalRuntime;
let client: OpenAI;

interface Metrics {
  inFlight: number;
  served: number;
  cancelled: number;
}
const metrics = async (): Promise<Metrics> => (await fetch(`${runtime.url}/metrics`)).json() as Promise<Metrics>;

/** Polls the runtime's /metrics (state of another process) until `condition` holds. */
async function metricsUntil(condition: (m: Metrics) => boolean, what: string, timeoutMs = 15_000): Promise<Metrics> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const current = await metrics();
    if (condition(current)) return current;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(current)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function post(route: string, body: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`${runtime.url}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'mariner-llama-'));
  const modelPath = path.join(dir, 'tiny.gguf');
  // A long context so that a generation can outlast the time an abort takes to arrive.
  writeTinyGguf(modelPath, { seed: 3, contextLength: 4096 });
  manager = new LocalRuntimeManager({ logger: silentLogger(), parallel: 2, threads: 1 });
  runtime = await manager.ensure(MODEL, modelPath);
  client = new OpenAI({ baseURL: `${runtime.url}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await manager?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the node-llama-cpp runtime (OpenAI API)', () => {
  it('answers a chat completion in the OpenAI shape, with usage', async () => {
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: [{ type: 'text', text: 'Say something.' }] },
      ],
      max_tokens: 12,
      seed: 7,
    });
    expectValid(openapi.validateSchema('CreateChatCompletionResponse', completion));
    expect(completion).toMatchObject({ object: 'chat.completion', model: MODEL, choices: [{ index: 0, message: { role: 'assistant' } }] });
    expect(completion.id).toMatch(/^chatcmpl-/);
    expect(completion.choices[0]!.message.content).not.toBe('');
    const usage = completion.usage!;
    expect(usage.prompt_tokens).toBeGreaterThan(0);
    expect(usage.completion_tokens).toBeGreaterThan(0);
    expect(usage.completion_tokens).toBeLessThanOrEqual(12);
    expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);
  });

  it('streams a chat completion as chunks: role first, content deltas, a finish reason, usage, then the end', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Tell me a story.' }],
      max_completion_tokens: 20,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) {
      expectValid(openapi.validateSchema('CreateChatCompletionStreamResponse', chunk));
      chunks.push(chunk);
    }
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    const content = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(content).not.toBe('');
    const finishes = chunks.flatMap((c) => c.choices.map((choice) => choice.finish_reason)).filter(Boolean);
    expect(finishes).toEqual(['length']);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ completion_tokens: 20 });

    // On the wire: Server-Sent Events closed by [DONE].
    const raw = await fetch(`${runtime.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, stream: true }),
    });
    expect(raw.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const text = await raw.text();
    expect(text.startsWith('data: {')).toBe(true);
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
  });

  it('stops at max_tokens with finish_reason "length"', async () => {
    const chat = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Count to ten.' }], max_tokens: 3 });
    expect(chat.choices[0]!.finish_reason).toBe('length');
    expect(chat.usage!.completion_tokens).toBeLessThanOrEqual(3);
    const legacy = await client.completions.create({ model: MODEL, prompt: 'One, two,', max_tokens: 3 });
    expect(legacy.choices[0]!.finish_reason).toBe('length');
    expect(legacy.usage!.completion_tokens).toBeLessThanOrEqual(3);
  });

  it('ends at a stop sequence with finish_reason "stop", leaving the sequence out', async () => {
    const request = { model: MODEL, prompt: 'The quick brown fox', temperature: 0, max_tokens: 24 };
    const full = (await client.completions.create(request)).choices[0]!.text;
    // A stop string that first occurs inside the (greedy, so repeatable) answer.
    const start = [...full].findIndex((_, i) => i > 0 && full.indexOf(full.slice(i, i + 2)) === i);
    expect(start).toBeGreaterThan(0);
    const stop = full.slice(start, start + 2);
    const stopped = await client.completions.create({ ...request, stop: [stop] });
    expect(stopped.choices[0]).toMatchObject({ text: full.slice(0, start), finish_reason: 'stop' });
  });

  it('answers legacy completions, streamed or not', async () => {
    const completion = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 8 });
    expectValid(openapi.validateSchema('CreateCompletionResponse', completion));
    expect(completion).toMatchObject({ object: 'text_completion', model: MODEL });
    expect(completion.choices[0]!.text).not.toBe('');
    expect(completion.usage).toMatchObject({ completion_tokens: 8 });

    const stream = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 8, stream: true });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('text_completion');
      text += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(text).not.toBe('');
    expect(finish).toBe('length');
  });

  it('embeds in base64 (the SDK default) and as floats, the same vectors of the model dimension', async () => {
    const input = ['hello world', 'another text'];
    const viaBase64 = await client.embeddings.create({ model: MODEL, input });
    const asFloats = await post('/v1/embeddings', { model: MODEL, input, encoding_format: 'float' });
    expect(asFloats.status).toBe(200);
    expectValid(openapi.validateSchema('CreateEmbeddingResponse', asFloats.body));
    expect(viaBase64.data).toHaveLength(2);
    for (const [index, item] of viaBase64.data.entries()) {
      expect(item.index).toBe(index);
      expect(item.embedding).toHaveLength(TINY_GGUF.embeddingLength);
      expect(item.embedding).toEqual(asFloats.body.data[index].embedding);
    }
    expect(viaBase64.data[0]!.embedding).not.toEqual(viaBase64.data[1]!.embedding);
    expect(viaBase64.usage.prompt_tokens).toBeGreaterThan(0);
    const raw = await post('/v1/embeddings', { model: MODEL, input: 'hello world', encoding_format: 'base64' });
    expect(typeof raw.body.data[0].embedding).toBe('string');
    expect(Buffer.from(raw.body.data[0].embedding, 'base64').length).toBe(4 * TINY_GGUF.embeddingLength);
  });

  it('tokenizes a prompt or chat messages (vLLM /tokenize) as a completion of them counts its prompt_tokens', async () => {
    const prompt = await post('/tokenize', { model: MODEL, prompt: 'Once upon' });
    expect(prompt.status).toBe(200);
    expect(prompt.body.tokens[0]).toBe(TINY_GGUF.bosTokenId);
    expect(prompt.body).toMatchObject({ count: prompt.body.tokens.length, max_model_len: 4096 });
    expect((await client.completions.create({ model: MODEL, prompt: 'Once upon', max_tokens: 1 })).usage!.prompt_tokens).toBe(prompt.body.count);
    const messages = [
      { role: 'system' as const, content: 'Be brief.' },
      { role: 'user' as const, content: 'Once upon' },
    ];
    const chat = await post('/tokenize', { model: MODEL, messages });
    expect(chat.body.count).toBeGreaterThan(prompt.body.count);
    expect((await client.chat.completions.create({ model: MODEL, messages, max_tokens: 1 })).usage!.prompt_tokens).toBe(chat.body.count);
    expect(await post('/tokenize', { model: MODEL, prompt: 'a', messages })).toMatchObject({ status: 400, body: { error: { param: 'messages' } } });
    expect(await post('/tokenize', { model: MODEL })).toMatchObject({ status: 400, body: { error: { param: 'prompt' } } });
    expect(await post('/tokenize', { model: 'other', prompt: 'a' })).toMatchObject({ status: 404, body: { error: { code: 'model_not_found' } } });
  });

  it('serves four concurrent requests on two sequences: the extra ones queue, none fails', async () => {
    const results = await Promise.all(
      [1, 2, 3, 4].map((i) => client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: `Request ${i}` }], max_tokens: 30 })),
    );
    for (const result of results) {
      expect(result.choices[0]!.finish_reason).toBe('length');
      expect(result.choices[0]!.message.content).not.toBe('');
    }
    expect((await metrics()).inFlight).toBe(0);
  });

  it('stops generating when a streaming client aborts, and frees the sequence', async () => {
    const before = await metrics();
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model: MODEL, messages: [{ role: 'user', content: 'Go on forever.' }], max_tokens: 4000, stream: true },
      { signal: controller.signal },
    );
    let received = 0;
    // Abort after the third content chunk; chunks the SDK had already parsed are not counted (under
    // load several arrive in one read, and the iterator may still hand them out after the abort).
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) received++;
      if (received === 3) {
        controller.abort();
        break;
      }
    }
    expect(received).toBe(3);
    const after = await metricsUntil((m) => m.inFlight === 0 && m.cancelled === before.cancelled + 1, 'the aborted generation to stop');
    expect(after.cancelled).toBe(before.cancelled + 1);
    const next = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Next' }], max_tokens: 4 });
    expect(next.usage!.completion_tokens).toBeGreaterThan(0);
  });

  it('drops a queued request whose client leaves before a sequence frees up', async () => {
    const before = await metrics();
    const busy = [new AbortController(), new AbortController()];
    // Two long generations hold both sequences (their first chunk proves they run).
    const running = await Promise.all(
      busy.map(async (controller) => {
        const stream = await client.completions.create({ model: MODEL, prompt: 'Long', max_tokens: 4000, stream: true }, { signal: controller.signal });
        const iterator = stream[Symbol.asyncIterator]();
        await iterator.next();
        return iterator;
      }),
    );
    const queued = new AbortController();
    const waiting = client.completions.create({ model: MODEL, prompt: 'Queued', max_tokens: 4 }, { signal: queued.signal });
    await metricsUntil((m) => m.inFlight === 3, 'the third request to queue');
    queued.abort();
    await expect(waiting).rejects.toThrow(/abort/i);
    await metricsUntil((m) => m.cancelled === before.cancelled + 1 && m.inFlight === 2, 'the queued request to be dropped');
    busy.forEach((controller) => controller.abort());
    await Promise.all(running.map(async (iterator) => iterator.return?.()));
    await metricsUntil((m) => m.inFlight === 0 && m.cancelled === before.cancelled + 3, 'the generations to stop');
  });

  it('answers bad input with 400 in the OpenAI error shape, and another model with 404 model_not_found', async () => {
    const cases: [unknown, string | null][] = [
      [{ model: MODEL }, 'messages'],
      [{ model: MODEL, messages: [] }, 'messages'],
      [{ model: MODEL, messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
      [{ model: MODEL, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'messages[0].content[0].type'],
      [{ model: MODEL, messages: [{ role: 'user', content: 'x' }], temperature: 7 }, 'temperature'],
      [{ model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 0 }, 'max_tokens'],
      [{ model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 3, max_completion_tokens: 4 }, 'max_completion_tokens'],
      [{ messages: [{ role: 'user', content: 'x' }] }, 'model'],
      ['{not json', null],
    ];
    for (const [body, param] of cases) {
      const answer = await post('/v1/chat/completions', body);
      expect(answer.status, JSON.stringify(body)).toBe(400);
      expectValid(openapi.validateSchema('ErrorResponse', answer.body));
      expect(answer.body.error).toMatchObject({ type: 'invalid_request_error', param });
    }
    for (const stream of [false, true]) {
      const tooLong = await post('/v1/completions', { model: MODEL, prompt: 'a'.repeat(5000), max_tokens: 1, stream });
      expect(tooLong).toMatchObject({ status: 400, body: { error: { code: 'context_length_exceeded', param: 'prompt' } } });
    }
    const embedding = await post('/v1/embeddings', { model: MODEL, input: [] });
    expect(embedding).toMatchObject({ status: 400, body: { error: { param: 'input' } } });

    const otherModel = await post('/v1/completions', { model: 'gpt-4o', prompt: 'x' });
    expect(otherModel).toMatchObject({ status: 404, body: { error: { code: 'model_not_found', type: 'invalid_request_error' } } });
    await expect(client.chat.completions.create({ model: MODEL, messages: [] })).rejects.toMatchObject({ status: 400 });

    const health = await fetch(`${runtime.url}/health`);
    expect(health.status).toBe(200);
    expect((await metrics()).inFlight).toBe(0);
  });
});

/** Tools and structured outputs: the demo model is random, so what is asserted is what the grammar guarantees. */
describe('the node-llama-cpp runtime: tools, structured outputs and n', () => {
  const weather = {
    type: 'function' as const,
    function: {
      name: 'get_weather',
      description: 'The weather of a city',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string', enum: ['Paris', 'Tokyo'] }, metric: { type: 'boolean' } },
        required: ['city', 'metric'],
        additionalProperties: false,
      },
      strict: true,
    },
  };
  const clock = { type: 'function' as const, function: { name: 'get_time', parameters: { type: 'object', properties: { utc: { type: 'boolean' } } } } };
  const ajv = new Ajv2020({ strict: false });
  const validWeather = ajv.compile(weather.function.parameters);

  it('forces the named function through the grammar: arguments valid against its parameters, streamed in OpenAI delta shape', async () => {
    const request = {
      model: MODEL,
      messages: [{ role: 'user' as const, content: 'Weather in Paris?' }],
      tools: [weather, clock],
      tool_choice: { type: 'function' as const, function: { name: 'get_weather' } },
      max_tokens: 300,
      seed: 11,
    };
    const completion = await client.chat.completions.create(request);
    expectValid(openapi.validateSchema('CreateChatCompletionResponse', completion));
    const choice = completion.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBeNull();
    const [call] = choice.message.tool_calls!;
    expect(call).toMatchObject({ type: 'function', function: { name: 'get_weather' } });
    expect(call!.id).toMatch(/^call_/);
    const args: unknown = JSON.parse((call as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall).function.arguments);
    expect(validWeather(args), JSON.stringify(validWeather.errors)).toBe(true);

    const stream = await client.chat.completions.create({ ...request, stream: true });
    const deltas: OpenAI.Chat.Completions.ChatCompletionChunk.Choice.Delta.ToolCall[] = [];
    const finishes: (string | null)[] = [];
    for await (const chunk of stream) {
      expectValid(openapi.validateSchema('CreateChatCompletionStreamResponse', chunk));
      for (const c of chunk.choices) {
        deltas.push(...(c.delta.tool_calls ?? []));
        finishes.push(c.finish_reason);
      }
    }
    // The header first (index, id, type, name, empty arguments), then argument fragments only.
    expect(deltas[0]).toMatchObject({ index: 0, type: 'function', function: { name: 'get_weather', arguments: '' } });
    expect(deltas[0]!.id).toMatch(/^call_/);
    expect(deltas.slice(1).every((d) => d.index === 0 && d.id === undefined && d.function?.name === undefined)).toBe(true);
    expect(deltas.length).toBeGreaterThan(2);
    // The same seed, the same call: streamed or not, one generation.
    expect(deltas.map((d) => d.function!.arguments).join('')).toBe((call as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall).function.arguments);
    expect(finishes.filter(Boolean)).toEqual(['tool_calls']);
  });

  it('tool_choice "required" picks one of the tools, name and arguments from the grammar; a tool message continues the turn', async () => {
    for (const stream of [false, true]) {
      const request = {
        model: MODEL,
        messages: [{ role: 'user' as const, content: 'Weather or time?' }],
        tools: [weather, clock],
        tool_choice: 'required' as const,
        max_tokens: 300,
        seed: 5,
      };
      let name = '';
      let args = '';
      let id = '';
      if (stream) {
        for await (const chunk of await client.chat.completions.create({ ...request, stream: true })) {
          for (const delta of chunk.choices[0]?.delta.tool_calls ?? []) {
            if (delta.id) id = delta.id;
            if (delta.function?.name) name = delta.function.name;
            args += delta.function?.arguments ?? '';
          }
        }
      } else {
        const call = (await client.chat.completions.create(request)).choices[0]!.message
          .tool_calls![0] as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall;
        ({ id } = call);
        ({ name, arguments: args } = call.function);
      }
      expect(['get_weather', 'get_time']).toContain(name);
      const parsed: unknown = JSON.parse(args);
      if (name === 'get_weather') expect(validWeather(parsed)).toBe(true);
      else expect(parsed).toEqual({ utc: expect.any(Boolean) });

      const next = await client.chat.completions.create({
        model: MODEL,
        messages: [
          { role: 'user', content: 'Weather or time?' },
          { role: 'assistant', content: null, tool_calls: [{ id, type: 'function', function: { name, arguments: args } }] },
          { role: 'tool', tool_call_id: id, content: '{"answer": 42}' },
        ],
        tools: [weather, clock],
        max_tokens: 5,
      });
      expectValid(openapi.validateSchema('CreateChatCompletionResponse', next));
      expect(next.choices[0]!.message.content).not.toBe('');
    }
  });

  it('tool_choice "auto" answers in the OpenAI shape (the random model practically never calls), "none" ignores the tools', async () => {
    for (const tool_choice of ['auto', 'none'] as const) {
      const completion = await client.chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content: 'Hi' }],
        tools: [weather],
        tool_choice,
        max_tokens: 8,
      });
      expectValid(openapi.validateSchema('CreateChatCompletionResponse', completion));
      const choice = completion.choices[0]!;
      if (choice.message.tool_calls?.length) expect(choice.finish_reason).toBe('tool_calls');
      else expect(choice).toMatchObject({ finish_reason: 'length', message: { role: 'assistant', content: expect.any(String) } });
    }
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
      tools: [weather],
      max_tokens: 8,
      stream: true,
    });
    for await (const chunk of stream) expectValid(openapi.validateSchema('CreateChatCompletionStreamResponse', chunk));
  });

  it('json_schema output parses and validates against its schema; json_object is JSON', async () => {
    const schema = {
      type: 'object',
      properties: {
        answer: { type: 'string', maxLength: 12 },
        score: { type: 'integer' },
        tags: { type: 'array', items: { type: 'string', enum: ['a', 'b'] }, maxItems: 3 },
        note: { anyOf: [{ type: 'boolean' }, { type: 'null' }] },
      },
      required: ['answer', 'score', 'tags', 'note'],
      additionalProperties: false,
    };
    const valid = ajv.compile(schema);
    for (const seed of [1, 2, 3]) {
      const completion = await client.chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content: 'Answer in JSON.' }],
        response_format: { type: 'json_schema', json_schema: { name: 'answer', strict: true, schema } },
        max_tokens: 300,
        seed,
      });
      expectValid(openapi.validateSchema('CreateChatCompletionResponse', completion));
      expect(completion.choices[0]!.finish_reason).toBe('stop');
      const output: unknown = JSON.parse(completion.choices[0]!.message.content!);
      expect(valid(output), JSON.stringify(valid.errors)).toBe(true);
    }
    // json_object: any object, so the model decides when its strings end, and this random one rarely
    // closes one: the grammar guarantees an object that has begun, and valid JSON once it finishes.
    for (const seed of [1, 2]) {
      const json = await client.chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content: 'JSON please.' }],
        response_format: { type: 'json_object' },
        max_tokens: 50,
        seed,
      });
      const content = json.choices[0]!.message.content!;
      expect(content).toMatch(/^\s*\{/);
      if (json.choices[0]!.finish_reason === 'stop') expect(JSON.parse(content)).toBeTypeOf('object');
      else expect(() => JSON.parse(content)).toThrow();
    }
  });

  it('n generates that many choices (streamed with their index), usage counting them all', async () => {
    const completion = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], n: 2, max_tokens: 6 });
    expectValid(openapi.validateSchema('CreateChatCompletionResponse', completion));
    expect(completion.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(completion.usage!.completion_tokens).toBe(12);
    // Two choices drawn with their own seeds: not the same text (a collision of 6 random characters is negligible).
    expect(completion.choices[0]!.message.content).not.toBe(completion.choices[1]!.message.content);
    const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], n: 3, max_tokens: 3, stream: true });
    const finished: number[] = [];
    for await (const chunk of stream) for (const c of chunk.choices) if (c.finish_reason) finished.push(c.index);
    expect(finished).toEqual([0, 1, 2]);
  });

  it('refuses what it cannot do with a 400 naming the parameter', async () => {
    const user = [{ role: 'user', content: 'x' }];
    const cases: [Record<string, unknown>, string][] = [
      [{ logprobs: true }, 'logprobs'],
      [{ top_logprobs: 2 }, 'top_logprobs'],
      [{ n: 9 }, 'n'],
      [{ tools: [{ type: 'function', function: { name: 'has space' } }] }, 'tools[0].function.name'],
      [{ tools: [{ type: 'retrieval' }] }, 'tools[0]'],
      [
        { tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { s: { type: 'string', pattern: 'a+' } } } } }] },
        'tools[0].function.parameters',
      ],
      [{ tools: [weather], tool_choice: { type: 'function', function: { name: 'other' } } }, 'tool_choice'],
      [{ tool_choice: 'required' }, 'tool_choice'],
      [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'number', minimum: 3 } } } }, 'response_format'],
      [{ response_format: { type: 'yaml' } }, 'response_format'],
      [{ tools: [weather], response_format: { type: 'json_object' } }, 'response_format'],
    ];
    for (const [extra, param] of cases) {
      const answer = await post('/v1/chat/completions', { model: MODEL, messages: user, ...extra });
      expect(answer.status, JSON.stringify(extra)).toBe(400);
      expectValid(openapi.validateSchema('ErrorResponse', answer.body));
      expect(answer.body.error).toMatchObject({ type: 'invalid_request_error', param });
    }
    const history: [unknown[], string][] = [
      [[...user, { role: 'tool', tool_call_id: 'call_1', content: 'r' }], 'messages[1].tool_call_id'],
      [
        [...user, { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }] }, ...user],
        'messages',
      ],
      [
        [...user, { role: 'assistant', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{oops' } }] }],
        'messages[1].tool_calls[0].function.arguments',
      ],
    ];
    for (const [messages, param] of history) {
      const answer = await post('/v1/chat/completions', { model: MODEL, messages, max_tokens: 1 });
      expect(answer.status, JSON.stringify(messages)).toBe(400);
      expect(answer.body.error).toMatchObject({ param });
    }
    expect((await metrics()).inFlight).toBe(0);
  });
});
