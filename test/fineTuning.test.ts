import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createClient, type Client } from 'graphql-ws';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startAgent, type Agent } from '../agent/index.js';
import { demoTrainerCommand } from '../agent/trainers/demoTrainer.js';
import { silentLogger } from '../lib/logging.js';
import { defaultSuffix } from '../subgraphs/jobs/validation.js';
import { DEFAULT_TENANT_ID } from '../subgraphs/users/index.js';
import { expectValid, loadOpenApiValidator } from './support/openapi.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { waitFor } from './support/until.js';

const BASE_MODEL = 'tiny-hf';

/** OpenAI chat-format training examples. */
function trainingData(examples: number): Buffer {
  const lines = Array.from({ length: examples }, (_, i) =>
    JSON.stringify({
      messages: [
        { role: 'user', content: `question ${i}` },
        { role: 'assistant', content: `answer ${i}` },
      ],
    }),
  );
  return Buffer.from(lines.join('\n') + '\n');
}

const JOB_LOGS = `subscription Logs($jobId: ID!, $fromOffset: Int) {
  jobLogs(jobId: $jobId, fromOffset: $fromOffset) {
    nextOffset
    lines { offset text }
    job { id status ... on FineTuningJob { baseModel { id ownedBy isBaseModel } } }
  }
}`;

interface LogEvent {
  nextOffset: number;
  lines: { offset: number; text: string }[];
  job: { id: string; status: string; baseModel: { id: string; ownedBy: string; isBaseModel: boolean } };
}

/** Every event of a subscription until it completes (or fails). */
function collect<T>(client: Client, query: string, variables: Record<string, unknown>): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const events: T[] = [];
    client.subscribe<T>(
      { query, variables },
      {
        next: (result) => (result.errors ? reject(new Error(JSON.stringify(result.errors))) : events.push(result.data as T)),
        error: (error) => reject(error instanceof Error ? error : new Error(JSON.stringify(error))),
        complete: () => resolve(events),
      },
    );
  });
}

/** A base model in Hugging Face layout (config.json beside the weights), loaded by the embedded agent's loader. */
async function loadBaseModel(t: TestPlatform): Promise<void> {
  const prefix = `models/${DEFAULT_TENANT_ID}/uploads/${BASE_MODEL}`;
  await t.platform.objectStore.put(`${prefix}/config.json`, Readable.from([Buffer.from('{"model_type":"llama"}')]));
  await t.platform.objectStore.put(`${prefix}/model.safetensors`, Readable.from([Buffer.alloc(64)]));
  await t.gqlOk(`mutation($input: CreateBaseModelInput!) { createBaseModel(input: $input) { id } }`, {
    input: { id: BASE_MODEL, sourceRepository: 'OBJECT_STORE', source: prefix, isProjectScoped: false },
  });
  const loaded = await waitFor(
    () =>
      t.gqlOk<{ model: { loadingStatus: string; formats: string[] } }>(`query { model(id: "${BASE_MODEL}", includeLoading: true) { loadingStatus formats } }`),
    (d) => d.model.loadingStatus === 'SUCCEEDED' || d.model.loadingStatus === 'FAILED',
    'the base model to load',
    60_000,
  );
  expect(loaded.model).toEqual({ loadingStatus: 'SUCCEEDED', formats: ['HUGGING_FACE'] });
}

describe('fine-tuning jobs on the local executor (OpenAI SDK, through the gateway)', () => {
  let t: TestPlatform;
  let sdk: OpenAI;
  let ws: Client;
  const extraAgents: Agent[] = [];
  const openapi = loadOpenApiValidator();

  beforeAll(async () => {
    // Quick steps: a job of a few examples takes well under a second of "training".
    process.env['MARINER_DEMO_TRAINER_STEP_MS'] = '10';
    t = await startTestPlatform({
      defaultCluster: true,
      config: { jobs: { dispatchIntervalMs: 500, localTrainerCommand: demoTrainerCommand() } },
    });
    sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
    ws = createClient({
      url: t.graphqlUrl.replace('http://', 'ws://'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${t.adminKey}` },
    });
    await loadBaseModel(t);
  });
  afterAll(async () => {
    await ws?.dispose();
    await Promise.all(extraAgents.map((a) => a.close()));
    await t?.close();
  });

  const upload = async (examples: number, purpose: 'fine-tune' | 'assistants' = 'fine-tune') =>
    (await sdk.files.create({ file: await toFile(trainingData(examples), 'train.jsonl'), purpose })).id;
  const finished = (id: string) =>
    waitFor(
      () => sdk.fineTuning.jobs.retrieve(id),
      (job) => ['succeeded', 'failed', 'cancelled'].includes(job.status),
      `job ${id} to finish`,
    );

  it('trains: events until succeeded, then the fine-tuned model is listed, with checkpoints and the full log', async () => {
    const trainingFile = await upload(6);
    const created = await sdk.fineTuning.jobs.create({ model: BASE_MODEL, training_file: trainingFile, suffix: 'support', hyperparameters: { n_epochs: 2 } });
    expect(created).toMatchObject({ object: 'fine_tuning.job', status: 'queued', model: BASE_MODEL, training_file: trainingFile, fine_tuned_model: null });
    expectValid(openapi.validateSchema('FineTuningJob', created));

    // Follow the job's log live over graphql-ws: each event's `job.baseModel` fields are resolved
    // by the models subgraph (the rest of the query plan), and the stream ends with the job.
    const events = await collect<{ jobLogs: LogEvent }>(ws, JOB_LOGS, { jobId: created.id });
    const job = await finished(created.id);
    expect(job.error).toBeNull();
    expect(job.status).toBe('succeeded');
    expect(job.fine_tuned_model).toMatch(/^ft:tiny-hf:support-[a-z0-9]{6}$/);
    expect(job.trained_tokens).toBeGreaterThan(0);
    expectValid(openapi.validateSchema('FineTuningJob', job));

    const lines = events.flatMap((e) => e.jobLogs.lines);
    expect(lines.map((l) => l.offset)).toEqual(lines.map((_, i) => i));
    expect(lines[0]!.text).toContain('demo trainer: 6 examples, 2 epochs');
    expect(lines.filter((l) => l.text.includes('"type":"metrics"'))).toHaveLength(12);
    expect(events.at(-1)!.jobLogs.job.baseModel).toEqual({ id: BASE_MODEL, ownedBy: expect.any(String), isBaseModel: true });

    // Resuming from an offset gives the rest: no gap, no duplicate.
    const resumed = (await collect<{ jobLogs: LogEvent }>(ws, JOB_LOGS, { jobId: created.id, fromOffset: 5 })).flatMap((e) => e.jobLogs.lines);
    expect(resumed).toEqual(lines.slice(5));

    const page = await sdk.fineTuning.jobs.listEvents(created.id, { limit: 100 });
    for (const event of page.data) expectValid(openapi.validateSchema('FineTuningJobEvent', event));
    const messages = page.data.map((e) => e.message);
    expect(messages[0]).toBe('The job has successfully completed');
    expect(messages).toContain(`New fine-tuned model created: ${job.fine_tuned_model}`);
    expect(messages.at(-1)).toBe(`Created fine-tuning job: ${created.id}`);
    const metrics = page.data.filter((e) => e.type === 'metrics');
    expect(metrics).toHaveLength(12);
    expect(metrics[0]!.data).toMatchObject({ step: 12, total_steps: 12, train_loss: expect.any(Number) });

    const checkpoints = await sdk.fineTuning.jobs.checkpoints.list(created.id);
    expect(checkpoints.data.map((c) => c.step_number)).toEqual([12, 6]);
    expect(checkpoints.data[0]!.fine_tuned_model_checkpoint).toBe(`${job.fine_tuned_model}:ckpt-step-12`);
    for (const checkpoint of checkpoints.data) expectValid(openapi.validateSchema('FineTuningJobCheckpoint', checkpoint));

    const models = (await sdk.models.list()).data.map((m) => m.id);
    expect(models).toContain(job.fine_tuned_model);
    // The model's weights are the trainer's output, stored under the job's prefix.
    const stored: string[] = [];
    for await (const object of t.platform.objectStore.list(`models/${DEFAULT_TENANT_ID}/fine-tuned/${created.id}/`)) stored.push(path.basename(object.key));
    expect(stored.sort()).toEqual(['adapter_config.json', 'adapter_model.gguf', 'adapter_model.safetensors']);

    const list = await sdk.fineTuning.jobs.list();
    expect(list.data.map((j) => j.id)).toContain(created.id);
  });

  it('a job without a suffix (OpenAI makes it optional) trains, its model named after the base model', async () => {
    const trainingFile = await upload(2);
    const created = await sdk.fineTuning.jobs.create({ model: BASE_MODEL, training_file: trainingFile });
    expectValid(openapi.validateSchema('FineTuningJob', created));
    expect(created).toMatchObject({ status: 'queued', model: BASE_MODEL });
    const job = await finished(created.id);
    expect(job.status).toBe('succeeded');
    expect(job.fine_tuned_model).toBe(`ft:${BASE_MODEL}:${BASE_MODEL}-${created.id.slice('ftjob-'.length, 'ftjob-'.length + 6).toLowerCase()}`);
    expect((await sdk.models.list()).data.map((m) => m.id)).toContain(job.fine_tuned_model);
    // The same through GraphQL, where suffix is optional too.
    const { createFineTuningJob } = await t.gqlOk('mutation($input: CreateFineTuningJobInput!) { createFineTuningJob(input: $input) { id suffix } }', {
      input: { model: BASE_MODEL, trainingFile },
    });
    expect(createFineTuningJob.suffix).toBe(BASE_MODEL);
    await sdk.fineTuning.jobs.cancel(createFineTuningJob.id).catch(() => undefined);
    // Base model names that are not suffixes: their last segment, cleaned.
    expect(defaultSuffix('meta-llama/Llama-3.1-8B-Instruct')).toBe('llama-3-1-8b-instr');
    expect(defaultSuffix('org/___')).toBe('ft');
  });

  it('a follower that joins a shared log subscription late is handed the lines so far, then the rest', async () => {
    const created = await sdk.fineTuning.jobs.create({
      model: BASE_MODEL,
      training_file: await upload(10),
      suffix: 'shared',
      hyperparameters: { n_epochs: 2 },
    });
    const first: LogEvent[] = [];
    let joined: Promise<{ jobLogs: LogEvent }[]> | undefined;
    await new Promise<void>((resolve, reject) => {
      ws.subscribe<{ jobLogs: LogEvent }>(
        { query: JOB_LOGS, variables: { jobId: created.id } },
        {
          next: (result) => {
            first.push(result.data!.jobLogs);
            // The same operation, variables and project: the gateway shares one upstream with the first follower.
            joined ??= collect<{ jobLogs: LogEvent }>(ws, JOB_LOGS, { jobId: created.id });
          },
          error: reject,
          complete: resolve,
        },
      );
    });
    const late = (await joined!).flatMap((e) => e.jobLogs.lines);
    const all = first.flatMap((e) => e.lines);
    expect(all.length).toBeGreaterThan(20);
    expect(late).toEqual(all);
  });

  it('cancels a running job: the trainer is stopped and the job ends cancelled', async () => {
    const trainingFile = await upload(40);
    const created = await sdk.fineTuning.jobs.create({ model: BASE_MODEL, training_file: trainingFile, suffix: 'long', hyperparameters: { n_epochs: 50 } });
    await waitFor(
      () => sdk.fineTuning.jobs.retrieve(created.id),
      (j) => j.status === 'running',
      'the job to run',
    );
    const cancelling = await sdk.fineTuning.jobs.cancel(created.id);
    expect(['running', 'cancelled']).toContain(cancelling.status);
    const job = await finished(created.id);
    expect(job.status).toBe('cancelled');
    expect(job.fine_tuned_model).toBeNull();
    const again = await sdk.fineTuning.jobs.cancel(created.id).catch((error: unknown) => error);
    expect(again).toBeInstanceOf(OpenAI.BadRequestError);
    expect((await sdk.fineTuning.jobs.listEvents(created.id)).data[0]!.message).toBe('Job cancelled');
  });

  it('refuses bad jobs with a 400 naming the parameter, and creates nothing', async () => {
    const before = (await sdk.fineTuning.jobs.list()).data.length;
    const trainingFile = await upload(2);
    const noModel = await sdk.fineTuning.jobs.create({ model: 'no-such-model', training_file: trainingFile, suffix: 'x' }).catch((e: unknown) => e);
    expect(noModel).toBeInstanceOf(OpenAI.BadRequestError);
    expect((noModel as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('model');

    const wrongPurpose = await sdk.fineTuning.jobs
      .create({ model: BASE_MODEL, training_file: await upload(2, 'assistants'), suffix: 'x' })
      .catch((e: unknown) => e);
    expect((wrongPurpose as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('training_file');

    const badSuffix = await sdk.fineTuning.jobs.create({ model: BASE_MODEL, training_file: trainingFile, suffix: 'Not A Suffix' }).catch((e: unknown) => e);
    expect((badSuffix as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('suffix');

    const badEpochs = await sdk.fineTuning.jobs
      .create({ model: BASE_MODEL, training_file: trainingFile, suffix: 'x', hyperparameters: { n_epochs: 0 } })
      .catch((e: unknown) => e);
    expect((badEpochs as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('hyperparameters.n_epochs');
    expect((await sdk.fineTuning.jobs.list()).data).toHaveLength(before);
  });

  it('fails a job whose trainer fails, with its last output as the reason', async () => {
    // A cluster of its own whose trainer runs out of memory, and a project assigned to it.
    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "oom" }) { registrationKey cluster { id } } }');
    const agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: 'local',
      objectStore: t.platform.objectStore,
      cacheDir: path.join(t.dataDir, 'oom-agent'),
      jobs: { trainerCommand: [process.execPath, '-e', 'console.log("loading base model"); console.error("CUDA out of memory"); process.exit(3)'] },
      logger: silentLogger(),
    });
    extraAgents.push(agent);
    await agent.reportStatus();
    const project = await projectWithKey(t, 'ft-oom', { assignments: [{ clusterId: registerCluster.cluster.id, namespace: 'training' }] });
    const projectSdk = new OpenAI({ apiKey: project.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const file = await projectSdk.files.create({ file: await toFile(trainingData(2), 'train.jsonl'), purpose: 'fine-tune' });
    const created = await projectSdk.fineTuning.jobs.create({ model: BASE_MODEL, training_file: file.id, suffix: 'oom' });
    expect(created).toMatchObject({ cluster_id: registerCluster.cluster.id, kubernetes_namespace: 'training' });
    const job = await waitFor(
      () => projectSdk.fineTuning.jobs.retrieve(created.id),
      (j) => j.status !== 'queued' && j.status !== 'running',
      'the job to fail',
    );
    expect(job.status).toBe('failed');
    // Its last lines (stdout and stderr, each in order) are the reason, as LLMariner's termination log.
    expect(job.error).toMatchObject({ code: 'job_failed', param: null });
    expect(job.error!.message.split('\n').sort()).toEqual(['CUDA out of memory', 'loading base model', 'the trainer exited with code 3']);
  });

  it("keeps another project's jobs out of reach", async () => {
    const trainingFile = await upload(1);
    const created = await sdk.fineTuning.jobs.create({ model: BASE_MODEL, training_file: trainingFile, suffix: 'private' });
    const other = await projectWithKey(t, 'ft-other');
    const otherSdk = new OpenAI({ apiKey: other.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
    await expect(otherSdk.fineTuning.jobs.retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(otherSdk.fineTuning.jobs.cancel(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect((await otherSdk.fineTuning.jobs.list()).data).toEqual([]);
    await finished(created.id);
  });

  it('loses no job when the agent dies mid-training: the restarted agent gets it again and it succeeds', async () => {
    const trainingFile = await upload(30);
    const created = await sdk.fineTuning.jobs.create({ model: BASE_MODEL, training_file: trainingFile, suffix: 'survivor', hyperparameters: { n_epochs: 3 } });
    await waitFor(
      () =>
        t.gqlOk<{ fineTuningJob: { logs: { lines: unknown[] } } }>(`query($id: ID!) { fineTuningJob(id: $id) { logs { lines { offset } } } }`, {
          id: created.id,
        }),
      (d) => d.fineTuningJob.logs.lines.length >= 3,
      'the trainer to report its first steps',
    );
    // The embedded agent goes away with its trainer; a new agent process of the same cluster comes up.
    await t.platform.agent!.close();
    const agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: readFileSync(path.join(t.dataDir, 'default-cluster-registration-key'), 'utf8').trim(),
      executor: 'local',
      objectStore: t.platform.objectStore,
      cacheDir: path.join(t.dataDir, 'restarted-agent'),
      jobs: { trainerCommand: demoTrainerCommand() },
      logger: silentLogger(),
    });
    extraAgents.push(agent);
    const job = await finished(created.id);
    expect(job.status).toBe('succeeded');
    const messages = (await sdk.fineTuning.jobs.listEvents(created.id, { limit: 100 })).data.map((e) => e.message);
    expect(messages.some((m) => m.includes('lost the job') && m.endsWith('queued again'))).toBe(true);
    // The second attempt's output follows the first's in the log: offsets stay unique and in order.
    const { fineTuningJob } = await t.gqlOk<{ fineTuningJob: { attempts: number; logs: { lines: { offset: number; text: string }[] } } }>(
      `query($id: ID!) { fineTuningJob(id: $id) { attempts logs(limit: 1000) { lines { offset text } } } }`,
      { id: created.id },
    );
    expect(fineTuningJob.attempts).toBe(2);
    const starts = fineTuningJob.logs.lines.filter((l) => l.text.startsWith('demo trainer:'));
    expect(starts).toHaveLength(2);
    expect(fineTuningJob.logs.lines.map((l) => l.offset)).toEqual(fineTuningJob.logs.lines.map((_, i) => i));
  });
});

describe('followers of a long job log through the gateway', () => {
  let t: TestPlatform;
  let ws: Client;

  beforeAll(async () => {
    process.env['MARINER_DEMO_TRAINER_STEP_MS'] = '10';
    // A small history bound, so that a job's log soon outgrows what the gateway keeps for late joiners.
    t = await startTestPlatform({
      defaultCluster: true,
      config: { jobs: { dispatchIntervalMs: 300, localTrainerCommand: demoTrainerCommand() }, subscriptions: { maxQueuedEvents: 5 } },
    });
    ws = createClient({
      url: t.graphqlUrl.replace('http://', 'ws://'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${t.adminKey}` },
    });
    await loadBaseModel(t);
  });
  afterAll(async () => {
    await ws?.dispose();
    await t?.close();
  });

  it('late joiners share one replaying upstream, not one each, and see every line', async () => {
    const sdk = new OpenAI({ apiKey: t.adminKey, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const file = await sdk.files.create({ file: await toFile(trainingData(100), 'train.jsonl'), purpose: 'fine-tune' });
    const created = await sdk.fineTuning.jobs.create({ model: BASE_MODEL, training_file: file.id, suffix: 'long', hyperparameters: { n_epochs: 5 } });
    const first: LogEvent[] = [];
    let late: Promise<{ jobLogs: LogEvent }[]>[] = [];
    let upstreamsWithLateJoiners = 0;
    await new Promise<void>((resolve, reject) => {
      ws.subscribe<{ jobLogs: LogEvent }>(
        { query: JOB_LOGS, variables: { jobId: created.id } },
        {
          next: (result) => {
            if (result.errors) return reject(new Error(JSON.stringify(result.errors)));
            first.push(result.data!.jobLogs);
            // Past the bound of 5 events: three more followers of the same operation join. (A loaded
            // machine batches the log into fewer, larger events: the job is long enough to go on after.)
            if (first.length === 6) {
              late = [1, 2, 3].map(() => collect<{ jobLogs: LogEvent }>(ws, JOB_LOGS, { jobId: created.id }));
              setTimeout(() => (upstreamsWithLateJoiners = t.platform.gatewaySharedSubscriptions()), 200);
            }
          },
          error: reject,
          complete: resolve,
        },
      );
    });
    expect(first.length).toBeGreaterThan(6);
    const all = first.flatMap((e) => e.lines);
    for (const follower of await Promise.all(late)) expect(follower.flatMap((e) => e.jobLogs.lines)).toEqual(all);
    // The first follower's upstream, and one that replays the log for the three late joiners.
    expect(upstreamsWithLateJoiners).toBe(2);
  });
});
