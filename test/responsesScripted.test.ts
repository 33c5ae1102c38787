import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { silentLogger } from '../lib/logging.js';
import { expectValid, loadOpenApiValidator } from './support/openapi.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { executorWith, scriptedRuntimes, type ScriptedAnswer, type ScriptedRuntimes } from './support/standInRuntimes.js';
import { projectWithKey } from './support/tenants.js';

/**
 * The Responses API against a runtime that answers as each test scripts (standInRuntimes.ts): what a
 * random model cannot be made to do on demand — text and then two parallel tool calls in one answer, a
 * failure mid-stream, a refusal — and what the response makes of it.
 */

const MODEL = 'scripted-responses';
const created = Math.floor(Date.now() / 1000);
const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({
  id: 'chatcmpl-1',
  object: 'chat.completion.chunk',
  created,
  model: MODEL,
  choices: [{ index: 0, delta, finish_reason: finish }],
});
const usageChunk = {
  id: 'chatcmpl-1',
  object: 'chat.completion.chunk',
  created,
  model: MODEL,
  choices: [],
  usage: { prompt_tokens: 7, completion_tokens: 5, total_tokens: 12 },
};

/** What the runtime answers next (each test sets it). */
let script: ScriptedAnswer = { events: [] };

describe('the Responses API and what a runtime answers', () => {
  let t: TestPlatform;
  let agent: Agent;
  let runtime: ScriptedRuntimes;
  let sdk: OpenAI;
  const spec = loadOpenApiValidator();

  beforeAll(async () => {
    // Two requests a minute per API key: the rate-limit test's key runs out; the admin key is excluded below.
    t = await startTestPlatform({ config: { inference: { runtimeFreshSeconds: 3600, requestWaitSeconds: 1, rateLimitRequestsPerMinute: 2 } } });
    const { apiKeys } = await t.gqlOk('{ apiKeys { items { id } } }');
    for (const key of apiKeys.items as { id: string }[]) {
      await t.gqlOk('mutation($id: ID!) { updateApiKey(input: { id: $id, excludedFromRateLimiting: true }) { id } }', { id: key.id });
    }
    runtime = scriptedRuntimes(() => script);
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "scripted" }) { registrationKey } }');
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: executorWith(runtime.host),
      runtimeIntervalMs: 3_600_000,
      logger: silentLogger(),
    });
    await agent.whenConnected();
    await loadedModelFromFile(t, { id: MODEL, weights: Buffer.from('w'), registrationKey: registerCluster.registrationKey });
    await agent.reconcileRuntimes();
    await agent.reconcileRuntimes();
    sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
  }, 60_000);

  afterAll(async () => {
    await agent?.close();
    await t?.close();
  });

  it('text, then two parallel tool calls: a message and two function_call items, each with its events, arguments whole at the end', async () => {
    script = {
      events: [
        chunk({ role: 'assistant', content: 'Let me check.' }),
        chunk({ tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'weather', arguments: '{"city":' } }] }),
        chunk({ tool_calls: [{ index: 1, id: 'call_b', type: 'function', function: { name: 'time', arguments: '{"zone":"CET"}' } }] }),
        chunk({ tool_calls: [{ index: 0, function: { arguments: '"Oslo"}' } }] }),
        chunk({}, 'tool_calls'),
        usageChunk,
      ],
    };
    const tools = ['weather', 'time'].map((name) => ({ type: 'function' as const, name, parameters: { type: 'object', properties: {} }, strict: false }));
    const stream = await sdk.responses.create({ model: MODEL, input: 'Weather and time in Oslo?', tools, stream: true });
    const events: { type: string; [key: string]: any }[] = [];
    for await (const event of stream) {
      expectValid(spec.validateSchema('ResponseStreamEvent', event));
      events.push(event);
    }
    expect(events.map((e) => [e.type, e['output_index'] ?? null])).toEqual([
      ['response.created', null],
      ['response.in_progress', null],
      ['response.output_item.added', 0],
      ['response.content_part.added', 0],
      ['response.output_text.delta', 0],
      // Text is finished before the first tool call starts: output items come in order.
      ['response.output_text.done', 0],
      ['response.content_part.done', 0],
      ['response.output_item.done', 0],
      ['response.output_item.added', 1],
      ['response.function_call_arguments.delta', 1],
      ['response.output_item.added', 2],
      ['response.function_call_arguments.delta', 2],
      ['response.function_call_arguments.delta', 1],
      ['response.function_call_arguments.done', 1],
      ['response.output_item.done', 1],
      ['response.function_call_arguments.done', 2],
      ['response.output_item.done', 2],
      ['response.completed', null],
    ]);
    const response = events.at(-1)!['response'];
    expect(response.output.map((i: { type: string }) => i.type)).toEqual(['message', 'function_call', 'function_call']);
    expect(response.output[1]).toMatchObject({ call_id: 'call_a', name: 'weather', arguments: '{"city":"Oslo"}', status: 'completed' });
    expect(response.output[2]).toMatchObject({ call_id: 'call_b', name: 'time', arguments: '{"zone":"CET"}' });
    expect(response.usage).toMatchObject({ input_tokens: 7, output_tokens: 5, total_tokens: 12 });
    expect(runtime.received.at(-1)!.body['parallel_tool_calls']).toBe(true);

    // Both calls answered: the runtime gets one assistant message with both calls, then a tool message each.
    script = { events: [chunk({ content: 'Rain, 10:00.' }, 'stop'), usageChunk] };
    const next = await sdk.responses.create({
      model: MODEL,
      previous_response_id: response.id,
      input: [
        { type: 'function_call_output', call_id: 'call_a', output: 'rain' },
        { type: 'function_call_output', call_id: 'call_b', output: '10:00' },
      ],
    });
    expect(next.output_text).toBe('Rain, 10:00.');
    expect(runtime.received.at(-1)!.body['messages']).toEqual([
      { role: 'user', content: 'Weather and time in Oslo?' },
      { role: 'assistant', content: 'Let me check.' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'call_a', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } },
          { id: 'call_b', type: 'function', function: { name: 'time', arguments: '{"zone":"CET"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_a', content: 'rain' },
      { role: 'tool', tool_call_id: 'call_b', content: '10:00' },
    ]);
  });

  it('a runtime that fails mid-stream: an error event, then response.failed, and the response is stored as failed', async () => {
    script = {
      events: [chunk({ role: 'assistant', content: 'Once upon' }), { error: { message: 'the runtime ran out of memory', type: 'server_error' } }],
      cut: true,
    };
    const stream = await sdk.responses.create({ model: MODEL, input: 'A story', stream: true });
    const events: { type: string; [key: string]: any }[] = [];
    for await (const event of stream) events.push(event);
    const types = events.map((e) => e.type);
    expect(types.slice(-2)).toEqual(['error', 'response.failed']);
    for (const event of events) expectValid(spec.validateSchema('ResponseStreamEvent', event));
    const failed = events.at(-1)!['response'];
    expect(failed).toMatchObject({ status: 'failed', error: { code: 'server_error' } });
    expect(failed.output[0]).toMatchObject({ type: 'message', status: 'incomplete', content: [{ type: 'output_text', text: 'Once upon' }] });
    expect(await sdk.responses.retrieve(failed.id)).toMatchObject({ id: failed.id, status: 'failed' });
  });

  it('a runtime that refuses the request: its 400 in OpenAI’s shape, not a response', async () => {
    script = { status: 400, json: { error: { message: 'This model has no tools', type: 'invalid_request_error', param: 'tools', code: null } } };
    const answer = await fetch(`${t.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, input: 'x', tools: [{ type: 'function', name: 'f' }] }),
    });
    expect(answer.status).toBe(400);
    const body = (await answer.json()) as { error: { message: string; param: string | null } };
    expect(body.error.message).toContain('This model has no tools');
    expectValid(spec.validateResponse('post', '/v1/responses', 400, body));
    expect(runtime.received.at(-1)!.body['tools']).toEqual([{ type: 'function', function: { name: 'f' } }]);
  });

  it('text.format json_schema reaches the runtime as response_format, and input_items pages through the request’s items', async () => {
    script = { events: [chunk({ role: 'assistant', content: '{"ok":true}' }, 'stop'), usageChunk] };
    const format = { type: 'json_schema' as const, name: 'answer', schema: { type: 'object', properties: { ok: { type: 'boolean' } } }, strict: true };
    const response = await sdk.responses.create({
      model: MODEL,
      input: [
        { role: 'system', content: 'Answer in JSON.' },
        { role: 'user', content: 'First' },
        { role: 'user', content: 'Second' },
      ],
      text: { format },
    });
    expect(response.text).toEqual({ format });
    expect(runtime.received.at(-1)!.body['response_format']).toEqual({
      type: 'json_schema',
      json_schema: { name: 'answer', schema: format.schema, strict: true },
    });
    // Newest first by default (OpenAI), a page at a time with after and has_more.
    const texts = (page: { data: unknown[] }) => page.data.map((item) => (item as { content: { text: string }[] }).content[0]!.text);
    const newest = await sdk.responses.inputItems.list(response.id, { limit: 2 });
    expect(texts(newest)).toEqual(['Second', 'First']);
    expect(newest.has_more).toBe(true);
    const rest = await sdk.responses.inputItems.list(response.id, { limit: 2, after: newest.data[1]!.id });
    expect(texts(rest)).toEqual(['Answer in JSON.']);
    expect(rest.has_more).toBe(false);
    expect(texts(await sdk.responses.inputItems.list(response.id, { order: 'asc' }))).toEqual(['Answer in JSON.', 'First', 'Second']);

    // Two items with one id: refused before anything runs.
    const before = runtime.received.length;
    await expect(
      sdk.responses.create({
        model: MODEL,
        input: [
          { type: 'message', id: 'msg_same', role: 'user', content: [{ type: 'input_text', text: 'a' }] },
          { type: 'message', id: 'msg_same', role: 'user', content: [{ type: 'input_text', text: 'b' }] },
        ] as never,
      }),
    ).rejects.toMatchObject({ status: 400, param: 'input[1].id' });
    expect(runtime.received.length).toBe(before);
  });

  it('GraphQL: the response and its items typed; another organization’s deleteResponse is NOT_FOUND and changes nothing; the owner’s deletes it', async () => {
    script = { events: [chunk({ role: 'assistant', content: 'Hello!' }, 'stop'), usageChunk] };
    const response = await sdk.responses.create({ model: MODEL, input: 'Hi', instructions: 'Be kind.' });
    const read = `query($id: ID!) { response(id: $id) { id model status instructions outputText usage { inputTokens outputTokens totalTokens } output { type role text } } }`;
    expect((await t.gqlOk(read, { id: response.id })).response).toEqual({
      id: response.id,
      model: MODEL,
      status: 'COMPLETED',
      instructions: 'Be kind.',
      outputText: 'Hello!',
      usage: { inputTokens: 7, outputTokens: 5, totalTokens: 12 },
      output: [{ type: 'message', role: 'assistant', text: 'Hello!' }],
    });
    const other = await projectWithKey(t, 'responses-graphql-other');
    const remove = 'mutation($id: ID!) { deleteResponse(id: $id) { id deleted } }';
    const refused = await t.gql(remove, { id: response.id }, { token: other.key });
    expect(refused.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    expect((await t.gqlOk(read, { id: response.id })).response.id).toBe(response.id);
    expect((await t.gqlOk(remove, { id: response.id })).deleteResponse).toEqual({ id: response.id, deleted: true });
    expect((await t.gqlOk(read, { id: response.id })).response).toBeNull();
  });

  it('a response counts against the caller’s rate limit as a chat completion does: past it, a 429 with Retry-After, streamed or not', async () => {
    script = { events: [chunk({ role: 'assistant', content: 'Hi' }, 'stop'), usageChunk] };
    const { createApiKey } = await t.gqlOk('mutation { createApiKey(input: { name: "limited" }) { secret } }');
    const limited = new OpenAI({ apiKey: createApiKey.secret, baseURL: `${t.url}/v1`, maxRetries: 0 });
    // One chat completion and one response spend the key's two requests (the runtime here always streams).
    for await (const _chunk of await limited.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], stream: true })) void _chunk;
    const { response } = await limited.responses.create({ model: MODEL, input: 'Hi' }).withResponse();
    expect(response.headers.get('x-ratelimit-limit-requests')).toBe('2');
    expect(response.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    const before = runtime.received.length;
    for (const stream of [false, true]) {
      const refused = await fetch(`${t.url}/v1/responses`, {
        method: 'POST',
        headers: { authorization: `Bearer ${createApiKey.secret}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, input: 'Hi', stream }),
      });
      expect(refused.status).toBe(429);
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
      const body = (await refused.json()) as { error: { code: string } };
      expect(body.error.code).toBe('rate_limit_exceeded');
      expectValid(spec.validateResponse('post', '/v1/responses', 429, body));
    }
    expect(runtime.received.length).toBe(before);
  });
});
