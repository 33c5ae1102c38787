import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { createClient } from 'graphql-ws';
import OpenAI, { toFile } from 'openai';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { silentLogger } from '../lib/logging.js';
import { requestIdOf } from '../subgraphs/batches/index.js';
import { requestRunnerTestHooks, responseIdOf } from '../subgraphs/batches/requestRunner.js';
import { expectValid, loadOpenApiValidator } from './support/openapi.js';
import { loadedModelFromFile } from './support/loadedModel.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { executorWith, tappedRuntimes, type RuntimeTap } from './support/standInRuntimes.js';
import { projectWithKey } from './support/tenants.js';
import { waitFor } from './support/until.js';

/**
 * OpenAI's Batch API (`/v1/batches`) with the official SDK against the whole platform: a real agent over
 * a real tunnel, whose runtime is a stand-in that keeps every request it got (support/standInRuntimes.ts)
 * — what proves that a request ran once, and that a cancelled batch stops. The stand-in can hold the
 * requests of the test's `held` model until the test lets them go, so a batch is caught mid-run.
 */

const MODEL = 'batch-model';
const HELD = 'batch-held';

let t: TestPlatform;
let tap: RuntimeTap;
let agent: Agent;
let sdk: OpenAI;
const openapi = loadOpenApiValidator();
/** Requests for HELD wait here until `release()`. */
let held: (() => void)[] = [];
let holding = true;
const release = () => {
  holding = false;
  for (const go of held.splice(0)) go();
};

/** The requests the runtime got for each custom_id (each line's prompt is its custom_id). */
function receivedPer(prefix: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of tap.received) if (r.prompt.startsWith(prefix)) counts.set(r.prompt, (counts.get(r.prompt) ?? 0) + 1);
  return counts;
}

const chatLine = (customId: string, model = MODEL) =>
  JSON.stringify({ custom_id: customId, method: 'POST', url: '/v1/chat/completions', body: { model, messages: [{ role: 'user', content: customId }] } });

async function batchFile(client: OpenAI, lines: string[], name = 'batch.jsonl') {
  return client.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), name), purpose: 'batch' });
}

const ENDED = ['completed', 'failed', 'expired', 'cancelled'];
const ended = (client: OpenAI, id: string, timeoutMs = 30_000) =>
  waitFor(
    () => client.batches.retrieve(id),
    (b) => ENDED.includes(b.status),
    `batch ${id} to end`,
    timeoutMs,
  );

async function linesOf(client: OpenAI, fileId: string | null | undefined): Promise<any[]> {
  if (!fileId) return [];
  const text = await (await client.files.content(fileId)).text();
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l));
}

beforeAll(async () => {
  t = await startTestPlatform({
    config: {
      inference: { runtimeFreshSeconds: 3600, requestWaitSeconds: 15 },
      batches: { concurrencyPerBatch: 4, concurrencyPerTenant: 8, pollIntervalMs: 50, leaseSeconds: 10 },
    },
  });
  sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0, timeout: 30_000 });
  const base = tappedRuntimes('ok', (active) =>
    active.map((m) => ({ modelId: m.id, desiredReplicas: 1, readyReplicas: 1, inFlightRequests: 0, statusMessage: 'stand-in' })),
  );
  // The held model's requests wait for the test before the stand-in answers them.
  const forward = base.host.forward.bind(base.host);
  base.host.forward = (modelId: string, req: Http2ServerRequest, res: Http2ServerResponse, path: string) => {
    if (modelId === HELD && holding) held.push(() => forward(modelId, req, res, path));
    else forward(modelId, req, res, path);
  };
  tap = base;
  const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "batches" }) { registrationKey } }');
  agent = await startAgent({
    controlPlaneUrl: t.url,
    registrationKey: registerCluster.registrationKey,
    executor: executorWith(tap.host),
    runtimeIntervalMs: 3_600_000,
    logger: silentLogger(),
  });
  await agent.whenConnected();
  for (const id of [MODEL, HELD]) {
    await loadedModelFromFile(t, { id, weights: Buffer.from('weights'), registrationKey: registerCluster.registrationKey, input: { isProjectScoped: false } });
  }
  await agent.reconcileRuntimes();
}, 120_000);

afterAll(async () => {
  release();
  await agent?.close();
  await t?.close();
});

describe('OpenAI Batch API', () => {
  it('a 100-line batch completes: answers in the output file, the line naming a missing model in the error file, each run once', async () => {
    const lines = Array.from({ length: 100 }, (_, i) => chatLine(`hundred-${i}`, i === 37 ? 'no-such-model' : MODEL));
    const input = await batchFile(sdk, lines);
    const created = await sdk.batches.create({ input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { run: 'one' } });
    expectValid(openapi.validateSchema('Batch', created));
    expect(created).toMatchObject({ object: 'batch', status: 'validating', input_file_id: input.id, request_counts: { total: 100, completed: 0, failed: 0 } });
    expect(created.expires_at! - created.created_at).toBe(24 * 3600);

    const done = await ended(sdk, created.id);
    expectValid(openapi.validateSchema('Batch', done));
    expect(done).toMatchObject({ status: 'completed', request_counts: { total: 100, completed: 99, failed: 1 }, metadata: { run: 'one' } });
    expect(done.in_progress_at).toBeGreaterThanOrEqual(done.created_at);
    expect(done.completed_at).toBeGreaterThanOrEqual(done.finalizing_at!);

    const output = await linesOf(sdk, done.output_file_id);
    expect(output).toHaveLength(99);
    expect(new Set(output.map((l) => l.custom_id)).size).toBe(99);
    for (const line of output) {
      expect(line).toMatchObject({ id: expect.stringMatching(/^batch_req_/), response: { status_code: 200, request_id: line.id }, error: null });
      // The stand-in runtime's answer (support/standInRuntimes.ts), passed on as it was written.
      expect(line.response.body).toMatchObject({ object: 'chat.completion', choices: [{ message: { content: 'ok' } }] });
    }
    const errors = await linesOf(sdk, done.error_file_id);
    expect(errors).toEqual([expect.objectContaining({ custom_id: 'hundred-37', response: expect.objectContaining({ status_code: 404 }) })]);
    expect(errors[0].response.body.error.message).toContain('no-such-model');
    // The output files are Files of the project, purpose batch_output.
    const file = await sdk.files.retrieve(done.output_file_id!);
    expectValid(openapi.validateSchema('OpenAIFile', file));
    expect(file.purpose).toBe('batch_output');
    // Each request reached the runtime exactly once.
    const received = receivedPer('hundred-');
    expect(received.size).toBe(99);
    expect([...received.values()].every((n) => n === 1)).toBe(true);
  });

  it('refuses a file with a bad line up front, naming the line, and makes no batch', async () => {
    const before = (await sdk.batches.list({ limit: 100 })).data.length;
    const cases: [string[], string][] = [
      [[chatLine('a'), chatLine('b'), '{"custom_id": "c", not json'], 'line 3: not valid JSON'],
      [[chatLine('a'), chatLine('a')], 'line 2: custom_id "a" is used twice'],
      [[chatLine('a'), JSON.stringify({ custom_id: 'b', method: 'POST', url: '/v1/embeddings', body: { model: MODEL, input: 'x' } })], 'line 2: url must be'],
      [[chatLine('a'), '', JSON.stringify({ custom_id: 'c', method: 'POST', url: '/v1/chat/completions', body: { messages: [] } })], 'line 3: body.model'],
    ];
    for (const [lines, message] of cases) {
      const input = await batchFile(sdk, lines);
      const refused = await sdk.batches
        .create({ input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h' })
        .catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
      expect((refused as InstanceType<typeof OpenAI.BadRequestError>).message).toContain(message);
      expect((refused as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('input_file_id');
      expectValid(openapi.validateResponse('post', '/v1/batches', 400, { error: (refused as InstanceType<typeof OpenAI.BadRequestError>).error }));
    }
    const good = await batchFile(sdk, [chatLine('ok')]);
    // /v1/responses lines are checked as POST /v1/responses checks them, less what a batch does not run.
    const responseLine = (customId: string, body: Record<string, unknown>) =>
      JSON.stringify({ custom_id: customId, method: 'POST', url: '/v1/responses', body });
    const responseCases: [string[], string][] = [
      [[chatLine('a')], "line 1: url must be the batch's endpoint /v1/responses"],
      [[responseLine('a', { model: MODEL, input: 'x' }), responseLine('b', { model: MODEL })], "line 2: body.input: Missing required parameter: 'input'"],
      [[responseLine('a', { model: MODEL, input: 'x', previous_response_id: 'resp_123' })], 'line 1: body.previous_response_id'],
      [[responseLine('a', { model: MODEL, input: 'x', tools: [{ type: 'file_search', vector_store_ids: ['vs_1'] }] })], 'line 1: body.tools'],
    ];
    for (const [lines, message] of responseCases) {
      const input = await batchFile(sdk, lines);
      const refused = await sdk.batches.create({ input_file_id: input.id, endpoint: '/v1/responses', completion_window: '24h' }).catch((e: unknown) => e);
      expect(refused).toMatchObject({ status: 400, param: 'input_file_id', message: expect.stringContaining(message) });
    }
    const window = await sdk.batches
      .create({ input_file_id: good.id, endpoint: '/v1/chat/completions', completion_window: '48h' as '24h' })
      .catch((e: unknown) => e);
    expect(window).toMatchObject({ status: 400, param: 'completion_window' });
    const notBatch = await sdk.files.create({ file: await toFile(Buffer.from(chatLine('x')), 'x.jsonl'), purpose: 'user_data' });
    const purpose = await sdk.batches
      .create({ input_file_id: notBatch.id, endpoint: '/v1/chat/completions', completion_window: '24h' })
      .catch((e: unknown) => e);
    expect(purpose).toMatchObject({ status: 400, message: expect.stringContaining('purpose batch') });
    expect((await sdk.batches.list({ limit: 100 })).data.length).toBe(before);
  });

  it('a /v1/responses batch: each output line is the response object, stored and retrievable unless store is false', async () => {
    const line = (customId: string, body: Record<string, unknown>) =>
      JSON.stringify({ custom_id: customId, method: 'POST', url: '/v1/responses', body: { model: MODEL, ...body } });
    const input = await batchFile(sdk, [
      line('resp-stored', { input: 'resp-one', instructions: 'Answer briefly.', metadata: { source: 'batch' } }),
      line('resp-unstored', { input: [{ role: 'user', content: 'resp-two' }], store: false, max_output_tokens: 5 }),
      line('resp-missing', { model: 'no-such-model', input: 'resp-three' }),
    ]);
    const created = await sdk.batches.create({ input_file_id: input.id, endpoint: '/v1/responses', completion_window: '24h' });
    expectValid(openapi.validateSchema('Batch', created));
    const done = await ended(sdk, created.id);
    expect(done).toMatchObject({ status: 'completed', endpoint: '/v1/responses', request_counts: { total: 3, completed: 2, failed: 1 } });
    const output = new Map((await linesOf(sdk, done.output_file_id)).map((l) => [l.custom_id as string, l]));
    expect([...output.keys()].sort()).toEqual(['resp-stored', 'resp-unstored']);
    for (const [customId, out] of output) {
      expect(out).toMatchObject({ id: expect.stringMatching(/^batch_req_/), response: { status_code: 200 }, error: null });
      const response = out.response.body;
      expectValid(openapi.validateResponse('post', '/v1/responses', 200, response));
      // The stand-in runtime answers every chat "ok": the response's one message says it.
      expect(response).toMatchObject({ object: 'response', status: 'completed', model: MODEL, store: customId === 'resp-stored' });
      expect(response.output).toEqual([
        expect.objectContaining({ type: 'message', role: 'assistant', content: [expect.objectContaining({ type: 'output_text', text: 'ok' })] }),
      ]);
      expect(response.usage).toMatchObject({ input_tokens: 3, output_tokens: 2, total_tokens: 5 });
    }
    const stored = output.get('resp-stored')!.response.body;
    expect(stored).toMatchObject({ instructions: 'Answer briefly.', metadata: { source: 'batch' } });
    // Stored in the creator's project: retrievable and continuable as any response; store: false is not.
    const retrieved = await sdk.responses.retrieve(stored.id);
    expect(retrieved).toMatchObject({ id: stored.id, output_text: 'ok' });
    const items = await sdk.responses.inputItems.list(stored.id);
    expect(items.data).toEqual([expect.objectContaining({ type: 'message', role: 'user' })]);
    await expect(sdk.responses.retrieve(output.get('resp-unstored')!.response.body.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    // Another organization does not see the batch's stored response.
    const other = await projectWithKey(t, 'Batch Responses Outsiders', { role: 'OWNER' });
    const outsider = new OpenAI({ apiKey: other.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
    await expect(outsider.responses.retrieve(stored.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    // What the runtime got: the instructions as the system message, then the input; each line once.
    expect(receivedPer('Answer briefly.\nresp-one').get('Answer briefly.\nresp-one')).toBe(1);
    expect(receivedPer('resp-two').get('resp-two')).toBe(1);
    const errors = await linesOf(sdk, done.error_file_id);
    expect(errors).toEqual([expect.objectContaining({ custom_id: 'resp-missing', response: expect.objectContaining({ status_code: 404 }) })]);
  });

  it('a /v1/responses line whose worker died after storing its response and before writing its line stores one response, and runs once', async () => {
    const line = (customId: string) => JSON.stringify({ custom_id: customId, method: 'POST', url: '/v1/responses', body: { model: MODEL, input: customId } });
    const input = await batchFile(sdk, [line('crash-a'), line('crash-b')]);
    // The first line to store its response has its worker "die" right after (the hook throws): the
    // line has no answer yet, so it runs again.
    const storedBeforeCrash: string[] = [];
    requestRunnerTestHooks.afterResponseStored = (_requestId, responseId) => {
      if (storedBeforeCrash.length > 0) return;
      storedBeforeCrash.push(responseId);
      throw new Error('the worker died here');
    };
    try {
      const created = await sdk.batches.create({ input_file_id: input.id, endpoint: '/v1/responses', completion_window: '24h' });
      const done = await ended(sdk, created.id, 60_000);
      expect(done).toMatchObject({ status: 'completed', request_counts: { total: 2, completed: 2, failed: 0 } });
      expect(storedBeforeCrash).toHaveLength(1);
      const output = await linesOf(sdk, done.output_file_id);
      const crashed = output.find((l) => l.response.body.id === storedBeforeCrash[0]);
      // The rerun answered with the response the first run stored: its line names that response...
      expect(crashed).toBeDefined();
      expect(crashed.response).toMatchObject({ status_code: 200, body: { object: 'response', status: 'completed' } });
      expect(await sdk.responses.retrieve(storedBeforeCrash[0]!)).toMatchObject({ id: storedBeforeCrash[0], output_text: 'ok' });
      // ...each line's response id is its own and stable, and the runtime got each line's request once.
      expect(new Set(output.map((l) => l.response.body.id)).size).toBe(2);
      expect(receivedPer('crash-a').get('crash-a')).toBe(1);
      expect(receivedPer('crash-b').get('crash-b')).toBe(1);
    } finally {
      requestRunnerTestHooks.afterResponseStored = null;
    }
  }, 90_000);

  it("a /v1/responses line whose response id another organization stored first fails once, saying so, and the outsider's response stays its own", async () => {
    holding = true;
    const line = JSON.stringify({ custom_id: 'squatted', method: 'POST', url: '/v1/responses', body: { model: HELD, input: 'squatted' } });
    const batch = await sdk.batches.create({ input_file_id: (await batchFile(sdk, [line])).id, endpoint: '/v1/responses', completion_window: '24h' });
    await waitFor(
      async () => held.length,
      (n) => n === 1,
      'the held line',
    );
    // The line's response id is derived from the batch id: an outsider who learnt the batch id stores it first.
    const squatted = responseIdOf(requestIdOf(batch.id, 1)); // `resp_<batch>L1`: lines count from 1
    const other = await projectWithKey(t, 'Batch Response Squatters', { role: 'OWNER' });
    await t.gqlOk(
      'mutation($input: RecordResponseInput!) { recordResponse(input: $input) { id } }',
      { input: { response: { id: squatted, object: 'response', model: MODEL, status: 'completed', output: [] }, inputItems: [] } },
      { token: other.key },
    );
    release();
    const done = await ended(sdk, batch.id);
    expect(done).toMatchObject({ status: 'completed', request_counts: { total: 1, completed: 0, failed: 1 } });
    const [failed] = await linesOf(sdk, done.error_file_id);
    expect(failed).toMatchObject({ custom_id: 'squatted', response: { status_code: 500 } });
    expect(failed.response.body.error.message).toContain('taken by a response outside the batch');
    // Neither side reads the other's: the creator finds no response of that id, the outsider still has its own.
    await expect(sdk.responses.retrieve(squatted)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const outsider = new OpenAI({ apiKey: other.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
    expect(await outsider.responses.retrieve(squatted)).toMatchObject({ id: squatted, output: [] });
  });

  it('cancel stops a running batch: cancelling, then cancelled once the running requests end; nothing more runs', async () => {
    holding = true;
    const input = await batchFile(
      sdk,
      Array.from({ length: 20 }, (_, i) => chatLine(`cancel-${i}`, HELD)),
    );
    const batch = await sdk.batches.create({ input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    // The per-batch cap: 4 requests reach the runtime, and wait there.
    await waitFor(
      async () => held.length,
      (n) => n === 4,
      'four held requests',
    );
    const cancelling = await sdk.batches.cancel(batch.id);
    expect(cancelling.status).toBe('cancelling');
    expectValid(openapi.validateSchema('Batch', cancelling));
    release();
    const done = await ended(sdk, batch.id);
    expect(done).toMatchObject({ status: 'cancelled', request_counts: { total: 20, completed: 4, failed: 0 } });
    expect(done.cancelled_at).toBeGreaterThanOrEqual(done.cancelling_at!);
    expect(await linesOf(sdk, done.output_file_id)).toHaveLength(4);
    const unrun = await linesOf(sdk, done.error_file_id);
    expect(unrun).toHaveLength(16);
    expect(unrun[0]).toMatchObject({ response: null, error: { code: 'batch_cancelled' } });
    expect(receivedPer('cancel-').size).toBe(4);
    // Cancelling again answers the batch as it is; a completed batch cannot be cancelled.
    expect((await sdk.batches.cancel(batch.id)).status).toBe('cancelled');
  });

  it('a restart of the platform mid-batch loses and repeats nothing', async () => {
    holding = true;
    const input = await batchFile(
      sdk,
      Array.from({ length: 40 }, (_, i) => chatLine(`restart-${i}`, HELD)),
    );
    const batch = await sdk.batches.create({ input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    await waitFor(
      async () => held.length,
      (n) => n === 4,
      'four held requests',
    );
    // The platform stops while four requests are at the runtime: it lets them finish, then restarts.
    const restarting = t.restart();
    setTimeout(release, 200);
    await restarting;
    await agent.whenConnected();
    const done = await ended(sdk, batch.id, 40_000);
    expect(done).toMatchObject({ status: 'completed', request_counts: { total: 40, completed: 40, failed: 0 } });
    const output = await linesOf(sdk, done.output_file_id);
    expect(new Set(output.map((l) => l.custom_id)).size).toBe(40);
    const received = receivedPer('restart-');
    expect(received.size).toBe(40);
    expect([...received.entries()].filter(([, n]) => n !== 1)).toEqual([]);
  }, 60_000);

  it('batchUpdated follows a batch over GraphQL: its state at once, its progress, its end; for another organization it is not found', async () => {
    const input = await batchFile(
      sdk,
      Array.from({ length: 6 }, (_, i) => chatLine(`followed-${i}`)),
    );
    const batch = await sdk.batches.create({ input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const follow = (token: string) =>
      createClient({
        url: t.graphqlUrl.replace('http://', 'ws://'),
        webSocketImpl: WebSocket,
        retryAttempts: 0,
        connectionParams: { authorization: `Bearer ${token}` },
      });
    const query = 'subscription($id: ID!) { batchUpdated(id: $id) { id status requestCounts { total completed failed } outputFileId } }';
    const ws = follow(t.adminKey);
    const seen: any[] = [];
    try {
      for await (const event of ws.iterate<Record<string, any>>({ query, variables: { id: batch.id } })) {
        expect(event.errors).toBeUndefined();
        seen.push(event.data!['batchUpdated']);
      }
    } finally {
      await ws.dispose();
    }
    expect(seen[0]).toMatchObject({ id: batch.id, requestCounts: { total: 6 } });
    expect(seen.at(-1)).toMatchObject({
      status: 'COMPLETED',
      requestCounts: { total: 6, completed: 6, failed: 0 },
      outputFileId: expect.stringMatching(/^file-/),
    });
    const order = ['VALIDATING', 'IN_PROGRESS', 'FINALIZING', 'COMPLETED'];
    const statuses = seen.map((b) => order.indexOf(b.status));
    expect(statuses).toEqual([...statuses].sort((a, b) => a - b));
    const other = await projectWithKey(t, 'Batch follower', { role: 'OWNER' });
    const outsider = follow(other.key);
    try {
      const first = await outsider.iterate<Record<string, any>>({ query, variables: { id: batch.id } }).next();
      expect(first.value?.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    } finally {
      await outsider.dispose();
    }
  });

  it('lists batches newest first with after, limit and has_more', async () => {
    const input = await batchFile(sdk, [chatLine('listed')]);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++)
      ids.push((await sdk.batches.create({ input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h' })).id);
    const first = await sdk.batches.list({ limit: 2 });
    expectValid(
      openapi.validateResponse('get', '/v1/batches', 200, { object: 'list', data: first.data, has_more: first.has_more, first_id: ids[2], last_id: ids[1] }),
    );
    expect(first.data.map((b) => b.id)).toEqual([ids[2], ids[1]]);
    expect(first.has_more).toBe(true);
    const second = await sdk.batches.list({ limit: 2, after: ids[1] });
    expect(second.data[0]!.id).toBe(ids[0]);
    for (const id of ids) await ended(sdk, id);
  });

  it('another organization gets 404 for the batch and its files', async () => {
    const input = await batchFile(sdk, [chatLine('private')]);
    const batch = await ended(sdk, (await sdk.batches.create({ input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h' })).id);
    const other = await projectWithKey(t, 'Batch outsider', { role: 'OWNER' });
    const outsider = new OpenAI({ apiKey: other.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
    await expect(outsider.batches.retrieve(batch.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(outsider.batches.cancel(batch.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(outsider.files.retrieve(batch.output_file_id!)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(outsider.files.content(batch.output_file_id!)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    // Nor can it run a batch from the first organization's file.
    await expect(outsider.batches.create({ input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h' })).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
    expect((await outsider.batches.list()).data).toEqual([]);
    // GraphQL says the same.
    const { data } = await t.gql('query($id: ID!) { batch(id: $id) { id } }', { id: batch.id }, { token: other.key });
    expect(data?.batch).toBeNull();
  });

  it("a batch whose creator's API key is deleted fails its requests not yet started, saying why", async () => {
    const org = await projectWithKey(t, 'Batch key owner', { role: 'OWNER' });
    // A second key of the project, to read the batch once the first is gone.
    const { createApiKey: creator } = await t.gqlOk('mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { apiKey { id } secret } }', {
      input: { name: 'batch-creator', projectId: org.projectId, isServiceAccount: true, role: 'OWNER' },
    });
    const client = new OpenAI({ apiKey: creator.secret, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const reader = new OpenAI({ apiKey: org.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
    holding = true;
    const input = await batchFile(
      client,
      Array.from({ length: 10 }, (_, i) => chatLine(`revoked-${i}`, HELD)),
    );
    const batch = await client.batches.create({ input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    await waitFor(
      async () => held.length,
      (n) => n === 4,
      'four held requests',
    );
    await t.gqlOk('mutation($id: ID!) { deleteApiKey(id: $id) { id } }', { id: creator.apiKey.id });
    release();
    const done = await ended(reader, batch.id);
    // The four already at the runtime answer; the six others never start.
    expect(done).toMatchObject({ status: 'completed', request_counts: { total: 10, completed: 4, failed: 6 } });
    const errors = await linesOf(reader, done.error_file_id);
    expect(errors).toHaveLength(6);
    expect(errors[0]).toMatchObject({ response: null, error: { code: 'creator_key_revoked', message: expect.stringContaining(creator.apiKey.id) } });
    expect(receivedPer('revoked-').size).toBe(4);
  });
});

describe('OpenAI Batch API: the completion window', () => {
  let short: TestPlatform;
  beforeAll(async () => {
    // A 2 s window, and a model whose runtime never comes: its requests wait 1 s, are refused as
    // unavailable and given back to try again later, until the batch expires.
    short = await startTestPlatform({
      config: { inference: { requestWaitSeconds: 1 }, batches: { completionWindowSeconds: 2, pollIntervalMs: 50 } },
    });
    const { registerCluster } = await short.gqlOk('mutation { registerCluster(input: { name: "no-agent" }) { registrationKey } }');
    await loadedModelFromFile(short, { id: MODEL, weights: Buffer.from('weights'), registrationKey: registerCluster.registrationKey });
  }, 60_000);
  afterAll(async () => {
    await short?.close();
  });

  it('a batch past its window expires: its requests never run are in the error file as batch_expired', async () => {
    const client = new OpenAI({ apiKey: short.adminKey, baseURL: `${short.url}/v1`, maxRetries: 0 });
    const input = await batchFile(client, [chatLine('late-1'), chatLine('late-2')]);
    const batch = await client.batches.create({ input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    expect(batch.expires_at! - batch.created_at).toBe(2);
    const done = await ended(client, batch.id);
    expectValid(openapi.validateSchema('Batch', done));
    expect(done).toMatchObject({ status: 'expired', request_counts: { total: 2, completed: 0, failed: 0 } });
    expect(done.expired_at).toBeGreaterThanOrEqual(done.expires_at!);
    const errors = await linesOf(client, done.error_file_id);
    expect(errors.map((l) => [l.custom_id, l.error?.code])).toEqual([
      ['late-1', 'batch_expired'],
      ['late-2', 'batch_expired'],
    ]);
    expect(done.output_file_id).toBeUndefined();
  });
});
