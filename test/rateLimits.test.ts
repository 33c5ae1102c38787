import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { createLocalExecutor } from '../agent/localExecutor.js';
import { silentLogger } from '../lib/logging.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { writeTinyGguf } from './support/tinyGguf.js';

const CREATE_KEY = `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id name } } }`;

const RPM = 3;
const TPM = 100_000;

interface Usage {
  user_id: string;
  api_key_id: string;
  api_key_name: string;
  model_id: string;
  total_requests: number;
  failed_requests: number;
  avg_latency_ms: number;
  avg_time_to_first_token_ms: number;
  total_prompt_tokens: number;
  total_completion_tokens: number;
}

/** Polls `check` until it returns a value (usage records are written in batches, off the request path). */
async function eventually<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('per-API-key rate limits, usage records and tokenize on the OpenAI inference endpoints', () => {
  let t: TestPlatform;
  let agent: Agent;
  let dir: string;
  const modelId = 'tiny-limited';

  const sdk = (apiKey: string) => new OpenAI({ apiKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
  /** A new API key of the bootstrap admin, in the default project (where the model is). */
  async function newKey(name: string, excludedFromRateLimiting = false, projectId?: string): Promise<{ id: string; secret: string; name: string }> {
    const { createApiKey } = await t.gqlOk(CREATE_KEY, { input: { name, excludedFromRateLimiting, ...(projectId ? { projectId } : {}) } });
    return { id: createApiKey.apiKey.id, name: createApiKey.apiKey.name, secret: createApiKey.secret };
  }
  const rest = (key: string, pathAndQuery: string, init: RequestInit = {}) =>
    fetch(`${t.url}${pathAndQuery}`, { ...init, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(init.headers ?? {}) } });
  async function usages(key: string, query = ''): Promise<Usage[]> {
    const response = await rest(key, `/v1/api_usages${query}`);
    expect(response.status, await response.clone().text()).toBe(200);
    return ((await response.json()) as { usages: Usage[] }).usages;
  }

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mariner-ratelimits-'));
    const ggufPath = path.join(dir, 'tiny.gguf');
    writeTinyGguf(ggufPath);
    // Embedded (`mariner up`: PGlite with pgvector), so vector stores work; the limiter's SQL on
    // PostgreSQL with several replicas is covered by subgraphs/inference/rateLimits.test.ts.
    t = await startTestPlatform({
      embedded: true,
      config: {
        inference: { runtimeFreshSeconds: 90, requestWaitSeconds: 1, rateLimitRequestsPerMinute: RPM, rateLimitTokensPerMinute: TPM, usageFlushIntervalMs: 50 },
      },
    });
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "local" }) { registrationKey } }');
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: await createLocalExecutor(silentLogger(), { objectStore: t.platform.objectStore, cacheDir: path.join(dir, 'cache') }),
      logger: silentLogger(),
    });
    await agent.whenConnected();
    await loadedModelFromFile(t, { id: modelId, weights: readFileSync(ggufPath), registrationKey: registerCluster.registrationKey });
    await agent.reconcileRuntimes();
    await agent.reconcileRuntimes();
  }, 180_000);
  afterAll(async () => {
    await agent?.close();
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`the request after ${RPM} in a minute is a 429 in OpenAI's shape, with the rate-limit headers and Retry-After`, async () => {
    const key = await newKey('limited');
    const client = sdk(key.secret);
    let spent = 0;
    for (let i = 1; i <= RPM; i++) {
      const { data, response } = await client.chat.completions
        .create({ model: modelId, messages: [{ role: 'user', content: `Hi ${i}` }], max_tokens: 2 })
        .withResponse();
      spent += data.usage!.total_tokens;
      expect(response.headers.get('x-ratelimit-limit-requests')).toBe(String(RPM));
      expect(response.headers.get('x-ratelimit-remaining-requests')).toBe(String(RPM - i));
      expect(response.headers.get('x-ratelimit-reset-requests')).toMatch(/^(\d+m)?\d+(\.\d)?s$|^\d+ms$/);
      expect(response.headers.get('x-ratelimit-limit-tokens')).toBe(String(TPM));
      // The tokens each response used (prompt + completion) are charged before it is answered.
      expect(response.headers.get('x-ratelimit-remaining-tokens')).toBe(String(TPM - spent));
      expect(response.headers.get('x-ratelimit-reset-tokens')).toBeTruthy();
    }
    const refused = await client.chat.completions
      .create({ model: modelId, messages: [{ role: 'user', content: 'one more' }], max_tokens: 2 })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    const error = refused as InstanceType<typeof OpenAI.RateLimitError>;
    expect(error.status).toBe(429);
    expect(error.code).toBe('rate_limit_exceeded');
    expect(error.type).toBe('rate_limit_exceeded');
    expect(error.message).toMatch(/Rate limit reached/);
    const retryAfter = Number(error.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(error.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    expect(error.headers.get('x-ratelimit-limit-requests')).toBe(String(RPM));

    // The other endpoints count against the same budget: embeddings and completions are refused too.
    await expect(client.embeddings.create({ model: modelId, input: 'x' })).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    const raw = await rest(key.secret, '/v1/completions', { method: 'POST', body: JSON.stringify({ model: modelId, prompt: 'x', max_tokens: 1 }) });
    expect(raw.status).toBe(429);
    expect(await raw.json()).toEqual({
      error: { message: expect.stringMatching(/Rate limit reached/), type: 'rate_limit_exceeded', param: null, code: 'rate_limit_exceeded' },
    });
    // A streaming request is refused before any event, as an ordinary error response.
    await expect(client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'x' }], stream: true })).rejects.toBeInstanceOf(
      OpenAI.RateLimitError,
    );

    // The refusals are recorded too, as failed requests of the key.
    const recorded = await eventually(async () => {
      const row = (await usages(t.adminKey)).find((u) => u.api_key_id === key.id);
      return row?.total_requests === RPM + 4 ? row : undefined;
    }, 'the usage records of the limited key');
    expect(recorded).toMatchObject({ model_id: modelId, failed_requests: 4, total_prompt_tokens: expect.any(Number) });
  });

  it('a key excluded from rate limiting is not limited and gets no rate-limit headers', async () => {
    const key = await newKey('unlimited', true);
    const client = sdk(key.secret);
    for (let i = 0; i < RPM + 2; i++) {
      const { response } = await client.embeddings.create({ model: modelId, input: `text ${i}` }).withResponse();
      expect(response.headers.get('x-ratelimit-limit-requests')).toBeNull();
    }
  });

  it('a streaming chat gets the headers, and its usage is charged when the stream ends', async () => {
    const key = await newKey('streaming');
    const client = sdk(key.secret);
    const { data: stream, response } = await client.chat.completions
      .create({ model: modelId, messages: [{ role: 'user', content: 'Stream' }], max_tokens: 4, stream: true })
      .withResponse();
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(response.headers.get('x-ratelimit-limit-requests')).toBe(String(RPM));
    expect(response.headers.get('x-ratelimit-remaining-requests')).toBe(String(RPM - 1));
    let usage: OpenAI.CompletionUsage | undefined;
    // No stream_options: the usage chunk comes anyway (LLMariner forces include_usage).
    for await (const chunk of stream) usage = chunk.usage ?? usage;
    expect(usage!.total_tokens).toBeGreaterThan(0);

    // include_usage: false hides the usage chunk, but the tokens are still charged.
    const quiet = await client.chat.completions.create({
      model: modelId,
      messages: [{ role: 'user', content: 'Quiet' }],
      max_tokens: 3,
      stream: true,
      stream_options: { include_usage: false },
    });
    for await (const chunk of quiet) expect(chunk.usage ?? null).toBeNull();

    const { data, response: last } = await client.completions.create({ model: modelId, prompt: 'after', max_tokens: 2 }).withResponse();
    expect(last.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    const remaining = Number(last.headers.get('x-ratelimit-remaining-tokens'));
    // Both streams and this completion are charged: strictly less than what the first stream and this one used.
    expect(remaining).toBeLessThan(TPM - usage!.total_tokens - data.usage!.total_tokens);
  });

  it('usage records appear with token counts, per user, key and model, filtered by time', async () => {
    const key = await newKey('metered', true);
    const client = sdk(key.secret);
    const before = Math.floor(Date.now() / 1000) - 1;
    const chat = await client.chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'Count me' }], max_tokens: 3 });
    let streamed: OpenAI.CompletionUsage | undefined;
    for await (const chunk of await client.chat.completions.create({
      model: modelId,
      messages: [{ role: 'user', content: 'Me too' }],
      max_tokens: 3,
      stream: true,
    })) {
      streamed = chunk.usage ?? streamed;
    }
    await expect(client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] })).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );

    const mine = await eventually(async () => {
      const rows = (await usages(key.secret, `?start_time=${before}`)).filter((u) => u.api_key_id === key.id && u.model_id === modelId);
      return rows[0]?.total_requests === 2 ? rows[0] : undefined;
    }, 'the usage records of the metered key');
    expect(mine).toMatchObject({
      api_key_name: 'metered',
      total_requests: 2,
      failed_requests: 0,
      total_prompt_tokens: chat.usage!.prompt_tokens + streamed!.prompt_tokens,
      total_completion_tokens: chat.usage!.completion_tokens + streamed!.completion_tokens,
    });
    expect(mine.user_id).toBeTruthy();
    expect(mine.avg_latency_ms).toBeGreaterThan(0);
    // Only the stream had a first token to time.
    expect(mine.avg_time_to_first_token_ms).toBeGreaterThan(0);
    expect(mine.avg_time_to_first_token_ms).toBeLessThanOrEqual(mine.avg_latency_ms * 2);
    const failed = await eventually(
      async () => (await usages(key.secret)).find((u) => u.api_key_id === key.id && u.model_id === 'no-such-model'),
      'the failed request',
    );
    expect(failed).toMatchObject({ total_requests: 1, failed_requests: 1, total_prompt_tokens: 0 });

    // The time range filters: nothing after now, nothing before the first request.
    const later = Math.floor(Date.now() / 1000) + 3600;
    expect(await usages(key.secret, `?start_time=${later}`)).toEqual([]);
    expect((await usages(key.secret, `?end_time=${before - 3600}`)).filter((u) => u.api_key_id === key.id)).toEqual([]);
    expect((await usages(key.secret, `?start_time=${new Date(before * 1000).toISOString()}`)).some((u) => u.api_key_id === key.id)).toBe(true);
    const bad = await rest(key.secret, '/v1/api_usages?start_time=yesterday');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { param: string } }).error.param).toBe('start_time');
    const reversed = await rest(key.secret, `/v1/api_usages?start_time=${later}&end_time=${before}`);
    expect(reversed.status).toBe(400);
  });

  it("another project's key sees only its own project's usage", async () => {
    const { self } = await t.gqlOk('{ self { organizationRoleBindings { organization { id } } } }');
    const { createProject } = await t.gqlOk('mutation($o: ID!) { createProject(input: { organizationId: $o, title: "usage-elsewhere" }) { id } }', {
      o: self.organizationRoleBindings[0].organization.id,
    });
    const other = await newKey('elsewhere', true, createProject.id);
    // Its own request (the model is not visible in its project) is recorded under its project.
    await expect(sdk(other.secret).chat.completions.create({ model: modelId, messages: [{ role: 'user', content: 'x' }] })).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
    const seen = await eventually(async () => {
      const rows = await usages(other.secret);
      return rows.some((u) => u.api_key_id === other.id) ? rows : undefined;
    }, "the other project's own record");
    expect(seen.map((u) => u.api_key_id)).toEqual([other.id]);
    // ...and the default project does not see it.
    expect((await usages(t.adminKey)).some((u) => u.api_key_id === other.id)).toBe(false);
  });

  it('tokenize counts the tokens a completion reports as its prompt_tokens; bad input is an OpenAI 400', async () => {
    const key = await newKey('tokenizer', true);
    const messages = [{ role: 'user' as const, content: 'How many tokens is this?' }];
    const response = await rest(key.secret, '/v1/tokenize', { method: 'POST', body: JSON.stringify({ model: modelId, messages }) });
    expect(response.status).toBe(200);
    const tokenized = (await response.json()) as { count: number; max_model_len: number; tokens: number[] };
    expect(tokenized.tokens).toHaveLength(tokenized.count);
    expect(tokenized.max_model_len).toBeGreaterThan(tokenized.count);
    const chat = await sdk(key.secret).chat.completions.create({ model: modelId, messages, max_tokens: 1 });
    expect(chat.usage!.prompt_tokens).toBe(tokenized.count);

    const prompt = await rest(key.secret, '/v1/tokenize', { method: 'POST', body: JSON.stringify({ model: modelId, prompt: 'Once upon a time' }) });
    const promptCount = ((await prompt.json()) as { count: number }).count;
    const completion = await sdk(key.secret).completions.create({ model: modelId, prompt: 'Once upon a time', max_tokens: 1 });
    expect(completion.usage!.prompt_tokens).toBe(promptCount);

    for (const [body, param] of [
      [{ model: modelId }, 'prompt'],
      [{ model: modelId, prompt: 'a', messages }, 'messages'],
      [{ prompt: 'a' }, 'model'],
      [{ model: modelId, prompt: 42 }, 'prompt'],
    ] as const) {
      const bad = await rest(key.secret, '/v1/tokenize', { method: 'POST', body: JSON.stringify(body) });
      expect(bad.status, JSON.stringify(body)).toBe(400);
      expect(await bad.json()).toMatchObject({ error: { type: 'invalid_request_error', param } });
    }
    const unknown = await rest(key.secret, '/v1/tokenize', { method: 'POST', body: JSON.stringify({ model: 'no-such-model', prompt: 'a' }) });
    expect(unknown.status).toBe(404);
  });

  it("a vector store's own embeddings (ingestion, search) do not spend the key's budget", async () => {
    const key = await newKey('vector-limited');
    const client = sdk(key.secret);
    const file = await client.files.create({ file: await toFile(Buffer.from('Ferries leave the harbour at dawn.\n'), 'harbour.txt'), purpose: 'assistants' });
    const store = await client.vectorStores.create({ name: 'limited-store', embedding_model: modelId, file_ids: [file.id] } as Parameters<
      typeof client.vectorStores.create
    >[0]);
    expect((await client.vectorStores.files.poll(store.id, file.id, { pollIntervalMs: 50 })).status).toBe('completed');
    for (let i = 0; i <= RPM; i++) await client.vectorStores.search(store.id, { query: `ferries ${i}` });
    const { response } = await client.embeddings.create({ model: modelId, input: 'mine' }).withResponse();
    expect(response.headers.get('x-ratelimit-remaining-requests')).toBe(String(RPM - 1));
  });

  it('GET /v1/inference/status lists the cluster, its engine and the ready model', async () => {
    const response = await rest(t.adminKey, '/v1/inference/status');
    expect(response.status).toBe(200);
    const status = (await response.json()) as {
      cluster_statuses: { engine_statuses: { ready: boolean; models: { id: string; is_ready: boolean }[] }[]; model_count: number }[];
      task_status: { in_progress_task_counts: Record<string, number> };
    };
    expect(status.cluster_statuses).toHaveLength(1);
    expect(status.cluster_statuses[0]!.model_count).toBe(1);
    expect(status.cluster_statuses[0]!.engine_statuses[0]!.models).toEqual([expect.objectContaining({ id: modelId, is_ready: true })]);
    expect(status.task_status.in_progress_task_counts).toHaveProperty(modelId);
  });
});
