import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
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
