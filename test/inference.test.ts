import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createClient } from 'graphql-ws';
import OpenAI from 'openai';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { createLocalExecutor } from '../agent/localExecutor.js';
import { silentLogger } from '../lib/logging.js';
import { expectValid, loadOpenApiValidator } from './support/openapi.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { writeTinyGguf } from './support/tinyGguf.js';

describe('inference end to end: a GGUF model served by the local executor, called with the OpenAI SDK', () => {
  let t: TestPlatform;
  let agent: Agent;
  let client: OpenAI;
  let dir: string;
  const modelId = 'tiny-chat';

  let registrationKey: string;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mariner-inference-'));
    const ggufPath = path.join(dir, 'tiny.gguf');
    writeTinyGguf(ggufPath);
    // A short wait for runtimes: the 503 case below must not hold its request for long.
    t = await startTestPlatform({ config: { inference: { runtimeFreshSeconds: 90, requestWaitSeconds: 1 } } });
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "local" }) { registrationKey } }');
    registrationKey = registerCluster.registrationKey;
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey,
      executor: await createLocalExecutor(silentLogger(), { objectStore: t.platform.objectStore, cacheDir: path.join(dir, 'cache') }),
      logger: silentLogger(),
    });
    await agent.whenConnected();
    await loadedModelFromFile(t, { id: modelId, weights: readFileSync(ggufPath), registrationKey });
    await agent.reconcileRuntimes();
    await agent.reconcileRuntimes();
    client = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
  }, 180_000);
  afterAll(async () => {
    await agent?.close();
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('runtimesUpdated streams the runtimes: the current state, then each change an agent reports', async () => {
    const ws = createClient({
      url: t.graphqlUrl.replace('http://', 'ws://'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${t.adminKey}` },
    });
    const events = ws.iterate<Record<string, any>>({
      query: 'subscription { runtimesUpdated { readyModelIds runtimes { modelId clusterId readyReplicas } } }',
    });
    try {
      const first = (await events.next()).value;
      expect(first.data.runtimesUpdated.readyModelIds).toEqual([modelId]);
      // The cluster reports its runtime without a ready replica (a change: streamed)...
      const report = `mutation($runtimes: [RuntimeReportInput!]!) { reportRuntimes(runtimes: $runtimes) { modelId } }`;
      const down = [{ modelId, desiredReplicas: 1, readyReplicas: 0, inFlightRequests: 0, statusMessage: 'restarting' }];
      await t.gqlOk(report, { runtimes: down }, { token: registrationKey });
      const second = (await events.next()).value;
      expect(second.data.runtimesUpdated.readyModelIds).toEqual([]);
      // ...then its agent reports it ready again, up its tunnel (a change again: streamed).
      await agent.reconcileRuntimes();
      const third = (await events.next()).value;
      expect(third.data.runtimesUpdated.runtimes).toContainEqual(expect.objectContaining({ modelId, readyReplicas: 1 }));
    } finally {
      await events.return?.();
      await ws.dispose();
    }
  });

  it('the runtime shows up ready in GraphQL', async () => {
    const { inferenceStatus } = await t.gqlOk('{ inferenceStatus { readyModelIds runtimes { modelId readyReplicas statusMessage } } }');
    expect(inferenceStatus.runtimes, JSON.stringify(inferenceStatus)).toHaveLength(1);
    expect(inferenceStatus.readyModelIds, JSON.stringify(inferenceStatus)).toEqual([modelId]);
    expect(inferenceStatus.runtimes[0]).toMatchObject({ modelId, readyReplicas: 1 });
  });

  it('a chat completion through REST → gateway → inference subgraph → tunnel → agent → runtime', async () => {
    const completion = await client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 5 });
    expect(completion.object).toBe('chat.completion');
    expect(completion.choices[0]!.message.role).toBe('assistant');
    expect(completion.usage!.completion_tokens).toBeLessThanOrEqual(5);
    const raw = await fetch(`${t.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: modelId, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 }),
    });
    expect(raw.status).toBe(200);
    expect(raw.headers.get('x-request-id')).toBeTruthy();
    expectValid(loadOpenApiValidator().validateResponse('post', '/v1/chat/completions', 200, await raw.json()));
  });

  it('streams a chat completion as server-sent events the SDK reads to the end', async () => {
    const stream = await client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'Tell me' }], max_tokens: 8, stream: true });
    const chunks: string[] = [];
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      chunks.push(chunk.choices[0]?.delta?.content ?? '');
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(chunks.length).toBeGreaterThan(1);
    expect(finish).toBeTruthy();

    // Every chunk on the wire matches OpenAI's description, and the usage chunk comes when asked for.
    const raw = await fetch(`${t.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: modelId,
        messages: [{ role: 'user', content: 'Go' }],
        max_tokens: 6,
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    expect(raw.status).toBe(200);
    expect(raw.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const text = await raw.text();
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    const events = text
      .split('\n\n')
      .filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]')
      .map((e) => JSON.parse(e.slice(6)));
    const spec = loadOpenApiValidator();
    for (const event of events) expectValid(spec.validateSchema('CreateChatCompletionStreamResponse', event));
    expect(events.at(-1).usage).toMatchObject({ completion_tokens: expect.any(Number), prompt_tokens: expect.any(Number) });
  });

  it('completions and embeddings (the SDK asks base64 by default)', async () => {
    const completion = await client.completions.create({ model: modelId, prompt: 'Once', max_tokens: 4 });
    expect(completion.object).toBe('text_completion');
    const embedding = await client.embeddings.create({ model: modelId, input: ['alpha', 'beta'] });
    expect(embedding.data).toHaveLength(2);
    expect(embedding.data[0]!.embedding.length).toBeGreaterThan(0);
  });

  it("a stream passes the runtime's events through: include_usage decides whether the usage chunk is there, and it ends with [DONE]", async () => {
    const streamed = async (streamOptions?: Record<string, unknown>) => {
      const response = await fetch(`${t.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model: modelId,
          messages: [{ role: 'user', content: 'Hi' }],
          max_tokens: 3,
          stream: true,
          ...(streamOptions ? { stream_options: streamOptions } : {}),
        }),
      });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const text = await response.text();
      expect(text).toMatch(/data: \[DONE\]\n\n$/);
      const events = text
        .split('\n\n')
        .filter((e) => e.startsWith('data: {'))
        .map((e) => JSON.parse(e.slice(6)) as { usage?: unknown; choices: unknown[] });
      return { events, usage: events.filter((e) => e.usage) };
    };
    const hidden = await streamed({ include_usage: false });
    expect(hidden.events.length).toBeGreaterThan(0);
    expect(hidden.usage).toEqual([]);
    const shown = await streamed({ include_usage: true });
    expect(shown.usage).toHaveLength(1);
    expect(shown.usage[0]).toMatchObject({ usage: { completion_tokens: expect.any(Number), prompt_tokens: expect.any(Number) } });
  });

  it('GraphQL clients keep the deprecated chatCompletionChunks: the same completion over graphql-ws, chunk by chunk', async () => {
    const ws = createClient({
      url: t.graphqlUrl.replace('http://', 'ws://'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${t.adminKey}` },
    });
    try {
      const chunks: { choices?: { delta?: { content?: string } }[] }[] = [];
      for await (const event of ws.iterate<{ chatCompletionChunks: (typeof chunks)[number] }>({
        query: 'subscription($request: JSON!) { chatCompletionChunks(request: $request) }',
        variables: { request: { model: modelId, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, stream: true } },
      })) {
        expect(event.errors).toBeUndefined();
        chunks.push(event.data!.chatCompletionChunks);
      }
      expect(chunks.length).toBeGreaterThan(0);
      expect(chunks.some((c) => typeof c.choices?.[0]?.delta?.content === 'string')).toBe(true);
    } finally {
      await ws.dispose();
    }
  });

  it("GraphQL clients get it typed: chatCompletionStream's selected fields chunk by chunk, then the usage, from the real runtime", async () => {
    const ws = createClient({
      url: t.graphqlUrl.replace('http://', 'ws://'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${t.adminKey}` },
    });
    try {
      type Chunk = {
        choices: { delta: { role: string | null; content: string | null }; finishReason: string | null }[];
        usage: { completionTokens: number } | null;
      };
      const chunks: Chunk[] = [];
      for await (const event of ws.iterate<{ chatCompletionStream: Chunk }>({
        query: `subscription($input: ChatCompletionInput!) {
          chatCompletionStream(input: $input) { choices { delta { role content } finishReason } usage { completionTokens } }
        }`,
        variables: { input: { model: modelId, messages: [{ role: 'USER', content: 'Hi' }], maxTokens: 3 } },
      })) {
        expect(event.errors).toBeUndefined();
        chunks.push(event.data!.chatCompletionStream);
      }
      expect(chunks[0]!.choices[0]!.delta.role).toBe('ASSISTANT');
      expect(chunks.some((c) => c.choices[0]?.finishReason)).toBe(true);
      const last = chunks.at(-1)!;
      expect(last.choices).toEqual([]);
      expect(last.usage!.completionTokens).toBeGreaterThan(0);
      expect(last.usage!.completionTokens).toBeLessThanOrEqual(3);
    } finally {
      await ws.dispose();
    }
  });

  it("typed embeddings from the real runtime are floats; the runtime's refusal of a parameter names the typed field", async () => {
    const { embeddings } = await t.gqlOk(
      'mutation($input: EmbeddingInput!) { embeddings(input: $input) { data { index embedding } usage { promptTokens } } }',
      {
        input: { model: modelId, input: ['alpha', 'beta'] },
      },
    );
    expect(embeddings.data.map((d: { index: number }) => d.index)).toEqual([0, 1]);
    expect(embeddings.data[0].embedding.length).toBeGreaterThan(0);
    expect(embeddings.data[0].embedding.every((x: unknown) => typeof x === 'number')).toBe(true);
    // The tiny model's vectors have a fixed length: the runtime refuses another (OpenAI param `dimensions`).
    const refused = await t.gql('mutation($input: EmbeddingInput!) { embeddings(input: $input) { model } }', {
      input: { model: modelId, input: ['alpha'], dimensions: embeddings.data[0].embedding.length + 1 },
    });
    expect(refused.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'dimensions' });
  });

  it('the inference data plane answers only the gateway: no internal token, or one minted for another subgraph, is a 401', async () => {
    const url = t.platform.subgraphUrls.inference.replace(/\/graphql$/, '/inference/v1/chat/completions');
    const body = JSON.stringify({ model: modelId, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
    const bare = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(bare.status).toBe(401);
    const forModels = await t.platform.tokens.mint('models', 'req-plane', null, true);
    const wrongAudience = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-mariner-internal-token': forModels }, body });
    expect(wrongAudience.status).toBe(401);
  });

  it('a cancelled stream frees the runtime: the next request is served', async () => {
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model: modelId, messages: [{ role: 'user', content: 'A long story' }], max_tokens: 200, stream: true },
      { signal: controller.signal },
    );
    for await (const _chunk of stream) {
      controller.abort();
      break;
    }
    const after = await client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'Again' }], max_tokens: 2 });
    expect(after.choices).toHaveLength(1);
  });

  it('errors: unknown model 404, inactive model 400, another project cannot use the model, bad body 400', async () => {
    await expect(client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] })).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
    await expect(client.chat.completions.create({ model: modelId, messages: [] })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    const other = await projectWithKey(t, 'no-models-here', { role: 'READER' });
    const otherClient = new OpenAI({ apiKey: other.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
    await expect(otherClient.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'x' }] })).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
    await t.gqlOk('mutation($id: ID!) { deactivateModel(id: $id) { activationStatus } }', { id: modelId });
    try {
      await expect(client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'x' }] })).rejects.toBeInstanceOf(
        OpenAI.BadRequestError,
      );
    } finally {
      await t.gqlOk('mutation($id: ID!) { activateModel(id: $id) { activationStatus } }', { id: modelId });
    }
  });

  it('routing under failure: a runtime that died before answering is skipped; one that dies mid-stream ends the stream with an error', async () => {
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "second" }) { registrationKey cluster { id } } }');
    const second = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: await createLocalExecutor(silentLogger(), { objectStore: t.platform.objectStore, cacheDir: path.join(dir, 'cache-2') }),
      logger: silentLogger(),
    });
    try {
      await second.whenConnected();
      await second.reconcileRuntimes();
      await second.reconcileRuntimes();
      const runtimes = async () =>
        (await t.gqlOk('{ inferenceStatus { runtimes { clusterId modelId readyReplicas statusMessage } } }')).inferenceStatus.runtimes.filter(
          (r: { modelId: string }) => r.modelId === modelId,
        ) as { clusterId: string; readyReplicas: number; statusMessage: string }[];
      const ready = await runtimes();
      expect(ready.map((r) => r.readyReplicas)).toEqual([1, 1]);
      // The router tries the runtimes in a stable order when equally busy: kill the first one's
      // process; its report still says ready, so the request reaches it first and must be retried.
      const [first] = [...ready].sort((a, b) => (a.clusterId < b.clusterId ? -1 : 1));
      const pid = Number(/pid (\d+)/.exec(first!.statusMessage)![1]);
      process.kill(pid, 'SIGKILL');
      for (let i = 0; i < 3; i++) {
        const completion = await client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'still there?' }], max_tokens: 2 });
        expect(completion.object).toBe('chat.completion');
      }

      // Mid-stream: the serving runtime dies after the first chunk; the stream ends with an error.
      await agent.reconcileRuntimes();
      await second.reconcileRuntimes();
      const response = await fetch(`${t.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: modelId, messages: [{ role: 'user', content: 'a long one' }], max_tokens: 400, stream: true }),
      });
      expect(response.status).toBe(200);
      const reader = response.body!.getReader();
      await reader.read();
      for (const runtime of await runtimes()) {
        const running = /pid (\d+)/.exec(runtime.statusMessage);
        if (running) process.kill(Number(running[1]), 'SIGKILL');
      }
      let text = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString();
      }
      expect(text).toContain('The runtime stopped before the stream finished');
      expect(text).not.toContain('[DONE]');
    } finally {
      await second.close();
      // Bring this file's own runtime back for the tests after this one.
      await agent.reconcileRuntimes();
      await agent.reconcileRuntimes();
    }
  }, 120_000);

  it('no ready runtime: 503 with Retry-After', async () => {
    // An active model whose runtime fails to start here (GGUF by its formats, but not a model): the
    // agent tries again at each reconciliation, so requests wait for it. (A model the cluster cannot run
    // at all, not GGUF, is refused at once instead: test/failFastModels.test.ts.)
    await loadedModelFromFile(t, { id: 'unrunnable', weights: Buffer.from('not a model'), registrationKey, formats: ['GGUF'] });
    await agent.reconcileRuntimes();
    const response = await fetch(`${t.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'unrunnable', messages: [{ role: 'user', content: 'x' }] }),
    });
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('5');
    expect(await response.json()).toMatchObject({ error: { type: 'server_error' } });
    // Streaming alike: the refusal comes before any event, as an ordinary error response.
    const streamed = await fetch(`${t.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'unrunnable', messages: [{ role: 'user', content: 'x' }], stream: true }),
    });
    expect(streamed.status).toBe(503);
    expect(streamed.headers.get('retry-after')).toBe('5');
    const { inferenceStatus } = await t.gqlOk('{ inferenceStatus { runtimes { modelId readyReplicas statusMessage } } }');
    expect(inferenceStatus.runtimes).toContainEqual({ modelId: 'unrunnable', readyReplicas: 0, statusMessage: expect.any(String) });
  });
});

describe('scale from zero: a model with on-demand allocation is activated by its first request', () => {
  let t: TestPlatform;
  let agent: Agent;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mariner-on-demand-'));
    t = await startTestPlatform({ config: { inference: { runtimeFreshSeconds: 90, requestWaitSeconds: 90 } } });
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "on-demand" }) { registrationKey } }');
    // A slow reconciler timer: only the control plane's nudge can start the runtime in time.
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: await createLocalExecutor(silentLogger(), { objectStore: t.platform.objectStore, cacheDir: path.join(dir, 'cache') }),
      runtimeIntervalMs: 3_600_000,
      logger: silentLogger(),
    });
    await agent.whenConnected();
    const ggufPath = path.join(dir, 'tiny.gguf');
    writeTinyGguf(ggufPath);
    await loadedModelFromFile(t, {
      id: 'lazy',
      weights: readFileSync(ggufPath),
      registrationKey: registerCluster.registrationKey,
      input: { config: { clusterAllocationPolicy: { enableOnDemandAllocation: true } } },
      activate: false,
    });
  }, 120_000);
  afterAll(async () => {
    await agent?.close();
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the first chat request activates the model, waits for its runtime, and is answered', async () => {
    const before = await t.gqlOk('{ model(id: "lazy") { activationStatus } }');
    expect(before.model.activationStatus).toBe('INACTIVE');
    const client = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0, timeout: 100_000 });
    const completion = await client.chat.completions.create({ model: 'lazy', messages: [{ role: 'user', content: 'Wake up' }], max_tokens: 3 });
    expect(completion.object).toBe('chat.completion');
    const after = await t.gqlOk('{ model(id: "lazy") { activationStatus } }');
    expect(after.model.activationStatus).toBe('ACTIVE');
  }, 120_000);
});
