import { EventEmitter } from 'node:events';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent, type Executor } from '../../agent/index.js';
import type { DispatchedJob } from '../../agent/executor.js';
import { silentLogger } from '../../lib/logging.js';
import { loadedModelFromFile } from '../support/loadedModel.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { projectWithKey } from '../support/tenants.js';
import { until, waitFor } from '../support/until.js';

/**
 * Issue 14: organizations are isolated from each other's clusters. Another organization's owner
 * registers a cluster that reports many free GPUs; the jobs, notebooks (with their secrets) and reports
 * of this organization never reach it. Every cluster here runs a recording executor: what its agent
 * was sent through the tunnel is what the test checks, besides what the worker API shows it.
 */

/** What one cluster's agent received through the tunnel (kept across agent restarts). */
interface Recorder {
  executor: Executor;
  received: { action: 'start' | 'cancel' | 'stop' | 'resume' | 'remove'; job: DispatchedJob }[];
  /** Resolves when the agent has received `action` for the job. */
  receivedFor(jobId: string, action?: Recorder['received'][number]['action']): Promise<DispatchedJob>;
  ids(): string[];
}

function recordingExecutor(gpus: number): Recorder {
  const received: Recorder['received'] = [];
  const arrivals = new EventEmitter();
  const has = new Set<string>();
  const record = (action: Recorder['received'][number]['action'], job: DispatchedJob) => {
    received.push({ action, job });
    arrivals.emit('job');
  };
  const executor: Executor = {
    kind: 'local',
    kubeApi: null,
    runtimes: null,
    jobs: {
      start: async (job) => {
        record('start', job);
        has.add(job.id);
        return 'started';
      },
      cancel: async (id) => {
        record('cancel', { id, spec: { kind: 'unknown' } });
        return has.has(id);
      },
      stop: async (job) => {
        record('stop', job);
        return has.has(job.id);
      },
      resume: async (job) => {
        record('resume', job);
        return has.has(job.id);
      },
      remove: async (job) => {
        record('remove', job);
        return has.delete(job.id);
      },
      has: async (job) => has.has(job.id),
      close: async () => undefined,
    },
    clusterStatus: async () => ({
      nodes: [{ name: 'node-1', ready: true, gpuCapacity: gpus, gpuAllocatable: gpus, gpuProduct: gpus > 0 ? 'H100' : null, cpuCores: 32, memoryBytes: 256e9 }],
      gpuCapacity: gpus,
      gpuAllocated: 0,
      gpuPods: [],
      provisionableResources: [],
    }),
    applyConfig: async () => undefined,
    // The agent closes its executor; the recording outlives it (the same cluster's next agent).
    close: async () => undefined,
  };
  return {
    executor,
    received,
    ids: () => received.map((r) => r.job.id),
    receivedFor: (jobId, action = 'start') =>
      new Promise((resolve) => {
        const look = () => {
          const found = received.find((r) => r.job.id === jobId && r.action === action);
          if (!found) return;
          arrivals.off('job', look);
          resolve(found.job);
        };
        arrivals.on('job', look);
        look();
      }),
  };
}

/** A one-example fine-tuning file, uploaded through the OpenAI SDK as `sdk`'s caller. */
async function trainingFile(sdk: OpenAI) {
  const example = {
    messages: [
      { role: 'user', content: 'q' },
      { role: 'assistant', content: 'a' },
    ],
  };
  return sdk.files.create({ file: await toFile(Buffer.from(`${JSON.stringify(example)}\n`), 'train.jsonl'), purpose: 'fine-tune' });
}

const REGISTER = `mutation($input: RegisterClusterInput!) { registerCluster(input: $input) { registrationKey cluster { id } } }`;
const CREATE_BATCH = `mutation($input: CreateBatchJobInput!) { createBatchJob(input: $input) { id clusterId status } }`;
const BATCH = `query($id: ID!) { batchJob(id: $id) { id status clusterId pendingAction error { code message } } }`;
const CREATE_NOTEBOOK = `mutation($input: CreateNotebookInput!) { createNotebook(input: $input) { id clusterId } }`;
const NOTEBOOK = `query($id: ID!) { notebook(id: $id) { id status clusterId pendingAction error { code message } } }`;
const WORKER_JOBS = `query { workerJobs { id spec } }`;
const REPORT = `mutation($input: JobStatusReportInput!) { reportJobStatus(input: $input) { id status } }`;
const APPEND = `mutation($jobId: ID!, $lines: [JobLogLineInput!]!) { appendJobLogs(jobId: $jobId, lines: $lines) }`;

describe('jobs and notebooks stay on the clusters their organization may use', () => {
  let t: TestPlatform;
  const agents: Agent[] = [];
  /** A platform cluster every organization may use (1 GPU). */
  const shared = { id: '', key: '', recorder: recordingExecutor(1) };
  /** Organization B's own cluster, claiming 64 free GPUs. */
  const rogue = { id: '', key: '', recorder: recordingExecutor(64) };
  let orgA: Awaited<ReturnType<typeof projectWithKey>>;
  let orgB: Awaited<ReturnType<typeof projectWithKey>>;

  const connect = async (cluster: { key: string; recorder: Recorder }) => {
    const agent = await startAgent({ controlPlaneUrl: t.url, registrationKey: cluster.key, executor: cluster.recorder.executor, logger: silentLogger() });
    agents.push(agent);
    await agent.whenConnected();
    await agent.reportStatus();
    return agent;
  };
  /** Registers a cluster (as `token`) and connects a recording agent to it. */
  const cluster = async (input: Record<string, unknown>, gpus: number, token = t.adminKey) => {
    const { registerCluster } = await t.gqlOk(REGISTER, { input }, { token });
    const registered = { id: registerCluster.cluster.id as string, key: registerCluster.registrationKey as string, recorder: recordingExecutor(gpus) };
    return { ...registered, agent: await connect(registered) };
  };
  /** Stops the cluster's agent and waits until the control plane has no tunnel to it (its status stays fresh). */
  const disconnect = async (agent: Agent, clusterId: string) => {
    await agent.close();
    await until(() => !t.platform.sessions.transport.allConnectedClusters().includes(clusterId), `cluster ${clusterId} to be disconnected`);
  };
  const asWorker = (key: string) => ({ token: key });

  beforeAll(async () => {
    t = await startTestPlatform({ config: { jobs: { dispatchIntervalMs: 200 } } });
    orgA = await projectWithKey(t, 'A', { role: 'OWNER' });
    orgB = await projectWithKey(t, 'B', { role: 'OWNER' });
    const { registerCluster: s } = await t.gqlOk(REGISTER, { input: { name: 'shared' } });
    Object.assign(shared, { id: s.cluster.id, key: s.registrationKey });
    await connect(shared);
    // B's owner registers a cluster of B's own: the platform does not stop them, it only keeps it B's.
    const { registerCluster: r } = await t.gqlOk(REGISTER, { input: { name: 'fast' } }, { token: orgB.key });
    Object.assign(rogue, { id: r.cluster.id, key: r.registrationKey });
    await connect(rogue);
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await t?.close();
  });

  it("places org A's fine-tuning jobs, batch jobs and notebooks (with their secrets) on A's clusters, never on org B's cluster with more free GPUs", async () => {
    await loadedModelFromFile(t, {
      id: 'tiny-hf',
      weights: Buffer.alloc(64),
      registrationKey: shared.key,
      formats: ['HUGGING_FACE'],
      input: { isProjectScoped: false },
      activate: false,
    });
    const sdkA = new OpenAI({ apiKey: orgA.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const training = await trainingFile(sdkA);
    const fineTuning = await sdkA.fineTuning.jobs.create({ model: 'tiny-hf', training_file: training.id, suffix: 'private' });
    const { createBatchJob: batch } = await t.gqlOk(
      CREATE_BATCH,
      { input: { image: 'busybox:1.36', command: 'true', envs: [{ name: 'A_SECRET', value: 'a-only' }] } },
      { token: orgA.key },
    );
    const { createNotebook: notebook } = await t.gqlOk(CREATE_NOTEBOOK, { input: { name: 'research', image: 'jupyter-lab-base' } }, { token: orgA.key });
    const mine = [fineTuning.id, batch.id, notebook.id];

    // Each reaches the shared cluster's agent: the notebook with its token and API key.
    for (const id of mine) await shared.recorder.receivedFor(id);
    const sentNotebook = await shared.recorder.receivedFor(notebook.id);
    expect(sentNotebook.spec).toMatchObject({ kind: 'notebook', secrets: { token: expect.any(String), apiKey: expect.stringMatching(/^sk-/) } });
    expect([batch.clusterId, notebook.clusterId]).toEqual([shared.id, shared.id]);
    expect(await sdkA.fineTuning.jobs.retrieve(fineTuning.id)).toMatchObject({ status: 'queued' });

    // B's cluster got none of it through its tunnel, and its worker API shows none of it.
    expect(rogue.recorder.received).toEqual([]);
    expect((await t.gqlOk(WORKER_JOBS, {}, asWorker(rogue.key))).workerJobs).toEqual([]);
    expect((await t.gqlOk(WORKER_JOBS, {}, asWorker(shared.key))).workerJobs.map((j: { id: string }) => j.id).sort()).toEqual([...mine].sort());

    // Claiming A's job ids gets B's agent nowhere: no report or output line is taken, nothing changes.
    for (const id of mine) {
      const report = await t.gql(REPORT, { input: { jobId: id, phase: 'FAILED', message: 'stolen' } }, asWorker(rogue.key));
      expect(report.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
      const append = await t.gql(APPEND, { jobId: id, lines: [{ offset: 0, text: 'injected' }] }, asWorker(rogue.key));
      expect(append.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    }
    const after = await t.gqlOk(BATCH, { id: batch.id }, { token: orgA.key });
    expect(after.batchJob).toMatchObject({ status: 'QUEUED', clusterId: shared.id, error: null });
    expect(
      (await t.gqlOk(`query($id: ID!) { batchJob(id: $id) { logs { lines { text } } } }`, { id: batch.id }, { token: orgA.key })).batchJob.logs.lines,
    ).toEqual([]);
    expect((await t.gqlOk(NOTEBOOK, { id: notebook.id }, { token: orgA.key })).notebook.error).toBeNull();

    // B's own jobs do go to B's cluster, the one with the most free GPUs it may use.
    const { createBatchJob: theirs } = await t.gqlOk(CREATE_BATCH, { input: { image: 'busybox:1.36', command: 'true' } }, { token: orgB.key });
    expect(theirs.clusterId).toBe(rogue.id);
    await rogue.recorder.receivedFor(theirs.id);
    expect(rogue.recorder.ids()).toEqual([theirs.id]);
  });

  it("refuses a job whose project names only another organization's cluster, creating nothing", async () => {
    const { createProject } = await t.gqlOk(`mutation($input: CreateProjectInput!) { createProject(input: $input) { id } }`, {
      input: { organizationId: orgA.organizationId, title: 'pinned', assignments: [{ clusterId: rogue.id, namespace: 'pinned' }] },
    });
    const { createApiKey } = await t.gqlOk(`mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }`, {
      input: { name: 'pinned', projectId: createProject.id, isServiceAccount: true, role: 'OWNER' },
    });
    const pinned = createApiKey.secret as string;
    const receivedBefore = rogue.recorder.received.length;
    for (const [query, input] of [
      [CREATE_BATCH, { image: 'busybox:1.36', command: 'true' }],
      [CREATE_NOTEBOOK, { name: 'pinned', image: 'jupyter-lab-base' }],
    ] as const) {
      const refused = await t.gql(query, { input }, { token: pinned });
      expect(refused.errors?.[0]?.extensions?.code).toBe('FAILED_PRECONDITION');
      expect(refused.errors?.[0]?.message).toContain("no cluster is available to the project's organization");
    }
    const { batchJobs, notebooks } = await t.gqlOk(`query { batchJobs { totalItems } notebooks { totalItems } }`, {}, { token: pinned });
    expect([batchJobs.totalItems, notebooks.totalItems]).toEqual([0, 0]);
    // No API key was made for a notebook that was not created.
    expect((await t.gqlOk(`query { apiKeys { items { name } } }`, {}, { token: pinned })).apiKeys.items.map((k: { name: string }) => k.name)).toEqual([
      'pinned',
    ]);
    // The clusters the project can use are none of B's.
    expect((await t.gqlOk(`query { jobClusters { id } }`, {}, { token: pinned })).jobClusters).toEqual([]);
    expect(rogue.recorder.received).toHaveLength(receivedBefore);
  });

  it('does not send a job to a cluster whose grant was revoked after the job was placed there; that cluster no longer sees or reports on it', async () => {
    // A platform cluster granted to org A only; the project may use it alone.
    const granted = await cluster({ name: 'granted', sharedWithAllOrganizations: false, grantedOrganizationIds: [orgA.organizationId] }, 8);
    const { createProject } = await t.gqlOk(`mutation($input: CreateProjectInput!) { createProject(input: $input) { id } }`, {
      input: { organizationId: orgA.organizationId, title: 'granted only', assignments: [{ clusterId: granted.id, namespace: 'granted-only' }] },
    });
    const { createApiKey } = await t.gqlOk(`mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }`, {
      input: { name: 'granted', projectId: createProject.id, isServiceAccount: true, role: 'OWNER' },
    });
    const key = createApiKey.secret as string;

    // Running there while the grant holds; its agent sees it and reports on it.
    const { createBatchJob: running } = await t.gqlOk(CREATE_BATCH, { input: { image: 'busybox:1.36', command: 'sleep 60' } }, { token: key });
    await granted.recorder.receivedFor(running.id);
    expect((await t.gqlOk(REPORT, { input: { jobId: running.id, phase: 'RUNNING' } }, asWorker(granted.key))).reportJobStatus.status).toBe('RUNNING');

    // Placed there while its agent is away: not sent, so not the cluster's to see or report on yet.
    await disconnect(granted.agent, granted.id);
    const { createBatchJob: waiting } = await t.gqlOk(
      CREATE_BATCH,
      { input: { image: 'busybox:1.36', command: 'true', envs: [{ name: 'TOKEN', value: 'placed-not-sent' }] } },
      { token: key },
    );
    expect(waiting.clusterId).toBe(granted.id);
    expect((await t.gqlOk(WORKER_JOBS, {}, asWorker(granted.key))).workerJobs.map((j: { id: string }) => j.id)).toEqual([running.id]);
    expect((await t.gql(REPORT, { input: { jobId: waiting.id, phase: 'RUNNING' } }, asWorker(granted.key))).errors?.[0]?.extensions?.code).toBe('NOT_FOUND');

    // The grant is revoked; the cluster's agent comes back.
    await t.gqlOk(`mutation($id: ID!) { setClusterGrants(clusterId: $id, input: { sharedWithAllOrganizations: false, organizationIds: [] }) { id } }`, {
      id: granted.id,
    });
    await connect(granted);
    const failed = await waitFor(
      () => t.gqlOk(BATCH, { id: waiting.id }, { token: key }),
      (d) => d.batchJob.status === 'FAILED',
      'the waiting job to fail',
    );
    expect(failed.batchJob.error).toMatchObject({
      code: 'cluster_not_available',
      message: expect.stringContaining(`Cluster ${granted.id} no longer serves organization ${orgA.organizationId}`),
    });
    expect(granted.recorder.ids()).not.toContain(waiting.id);

    // Nor does it see or report on the job it ran for A.
    expect((await t.gqlOk(WORKER_JOBS, {}, asWorker(granted.key))).workerJobs).toEqual([]);
    expect((await t.gql(REPORT, { input: { jobId: running.id, phase: 'SUCCEEDED' } }, asWorker(granted.key))).errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    expect((await t.gqlOk(BATCH, { id: running.id }, { token: key })).batchJob.status).not.toBe('SUCCEEDED');
  });

  it('moves a job placed on a cluster that no longer serves its organization to one that does', async () => {
    const granted = await cluster({ name: 'granted-two', sharedWithAllOrganizations: false, grantedOrganizationIds: [orgA.organizationId] }, 8);
    const fallback = await cluster({ name: 'fallback', sharedWithAllOrganizations: false, grantedOrganizationIds: [orgA.organizationId] }, 1);
    const { createProject } = await t.gqlOk(`mutation($input: CreateProjectInput!) { createProject(input: $input) { id } }`, {
      input: {
        organizationId: orgA.organizationId,
        title: 'two clusters',
        assignments: [
          { clusterId: granted.id, namespace: 'two' },
          { clusterId: fallback.id, namespace: 'two' },
        ],
      },
    });
    const { createApiKey } = await t.gqlOk(`mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }`, {
      input: { name: 'two', projectId: createProject.id, isServiceAccount: true, role: 'OWNER' },
    });
    const key = createApiKey.secret as string;
    // Both away: the one with more GPUs is chosen.
    await disconnect(granted.agent, granted.id);
    await disconnect(fallback.agent, fallback.id);
    const { createBatchJob: job } = await t.gqlOk(CREATE_BATCH, { input: { image: 'busybox:1.36', command: 'true' } }, { token: key });
    expect(job.clusterId).toBe(granted.id);

    await t.gqlOk(`mutation($id: ID!) { setClusterGrants(clusterId: $id, input: { sharedWithAllOrganizations: false, organizationIds: [] }) { id } }`, {
      id: granted.id,
    });
    // Its agent comes back first: the dispatcher finds the cluster may no longer have the job, and moves it.
    await connect(granted);
    await connect(fallback);
    await fallback.recorder.receivedFor(job.id);
    expect((await t.gqlOk(BATCH, { id: job.id }, { token: key })).batchJob).toMatchObject({ clusterId: fallback.id, status: 'QUEUED' });
    expect(granted.recorder.ids()).not.toContain(job.id);
  });
});

describe('jobs stop acting for a creator whose API key was deleted', () => {
  let t: TestPlatform;
  const agents: Agent[] = [];
  const recorder = recordingExecutor(1);
  let clusterKey = '';

  beforeAll(async () => {
    t = await startTestPlatform({ config: { jobs: { dispatchIntervalMs: 200 } } });
    const { registerCluster } = await t.gqlOk(REGISTER, { input: { name: 'shared' } });
    clusterKey = registerCluster.registrationKey;
    const agent = await startAgent({ controlPlaneUrl: t.url, registrationKey: clusterKey, executor: recorder.executor, logger: silentLogger() });
    agents.push(agent);
    await agent.whenConnected();
    await agent.reportStatus();
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await t?.close();
  });

  /** A project's service-account key (the creator), and a second key of the same user to look on with. */
  const creatorKeys = async (title: string, assignments?: { clusterId: string; namespace: string }[]) => {
    const org = await projectWithKey(t, title, { role: 'OWNER', ...(assignments ? { assignments } : {}) });
    const { createApiKey } = await t.gqlOk(`mutation { createApiKey(input: { name: "onlooker" }) { secret } }`, {}, { token: org.key });
    const { apiKeys } = await t.gqlOk(`query { apiKeys { items { id name } } }`, {}, { token: org.key });
    const creatorKeyId = apiKeys.items.find((k: { name: string }) => k.name === `${title}-key`).id as string;
    const revoke = () => t.gqlOk(`mutation($id: ID!) { deleteApiKey(id: $id) { id } }`, { id: creatorKeyId }, { token: org.key });
    return { creator: org.key, onlooker: createApiKey.secret as string, creatorKeyId, revoke };
  };

  it("a notebook's own API key dies with its creator's key; the notebook is stopped and cannot be started again", async () => {
    const keys = await creatorKeys('nb-owner');
    const { createNotebook } = await t.gqlOk(CREATE_NOTEBOOK, { input: { name: 'lab', image: 'jupyter-lab-base' } }, { token: keys.creator });
    const sent = await recorder.receivedFor(createNotebook.id);
    const notebookKey = (sent.spec['secrets'] as { apiKey: string }).apiKey;
    const models = (key: string) => fetch(`${t.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    expect((await models(notebookKey)).status).toBe(200);

    await keys.revoke();
    await waitFor(
      () => models(notebookKey).then((r) => r.status),
      (status) => status === 401,
      "the notebook's API key to be refused",
    );
    await recorder.receivedFor(createNotebook.id, 'stop');
    const stopped = await waitFor(
      () => t.gqlOk(NOTEBOOK, { id: createNotebook.id }, { token: keys.onlooker }),
      (d) => d.notebook.status === 'STOPPED',
      'the notebook to be stopped',
    );
    expect(stopped.notebook.error).toMatchObject({ code: 'creator_key_revoked', message: expect.stringContaining(keys.creatorKeyId) });

    await t.gqlOk(`mutation($id: ID!) { startNotebook(id: $id) { id } }`, { id: createNotebook.id }, { token: keys.onlooker });
    const failed = await waitFor(
      () => t.gqlOk(NOTEBOOK, { id: createNotebook.id }, { token: keys.onlooker }),
      (d) => d.notebook.status === 'FAILED',
      'the start to be refused',
    );
    expect(failed.notebook.error.code).toBe('creator_key_revoked');
    expect(recorder.received.filter((r) => r.job.id === createNotebook.id && r.action === 'resume')).toEqual([]);
  });

  it("a fine-tuning job whose creator's key was deleted fails instead of registering its model", async () => {
    await loadedModelFromFile(t, {
      id: 'tiny-hf',
      weights: Buffer.alloc(64),
      registrationKey: clusterKey,
      formats: ['HUGGING_FACE'],
      input: { isProjectScoped: false },
      activate: false,
    });
    const keys = await creatorKeys('ft-owner');
    const sdk = new OpenAI({ apiKey: keys.creator, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const training = await trainingFile(sdk);
    const job = await sdk.fineTuning.jobs.create({ model: 'tiny-hf', training_file: training.id, suffix: 'gone' });
    await recorder.receivedFor(job.id);
    await t.gqlOk(REPORT, { input: { jobId: job.id, phase: 'RUNNING' } }, { token: clusterKey });

    await keys.revoke();
    const { reportJobStatus } = await t.gqlOk(
      REPORT,
      { input: { jobId: job.id, phase: 'SUCCEEDED', outputPath: `models/out/${job.id}/` } },
      { token: clusterKey },
    );
    expect(reportJobStatus.status).toBe('FAILED');
    const onlooker = new OpenAI({ apiKey: keys.onlooker, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const failed = await onlooker.fineTuning.jobs.retrieve(job.id);
    expect(failed).toMatchObject({
      status: 'failed',
      fine_tuned_model: null,
      error: { code: 'creator_key_revoked', message: expect.stringContaining('not registered') },
    });
    expect((await onlooker.models.list()).data.map((m) => m.id).filter((id) => id.startsWith('ft:'))).toEqual([]);
  });

  it('a job waiting for its cluster is not started once its creator key was deleted', async () => {
    const { registerCluster } = await t.gqlOk(REGISTER, { input: { name: 'later' } });
    const later = recordingExecutor(0);
    const connectLater = async () => {
      const agent = await startAgent({
        controlPlaneUrl: t.url,
        registrationKey: registerCluster.registrationKey,
        executor: later.executor,
        logger: silentLogger(),
      });
      agents.push(agent);
      await agent.whenConnected();
      await agent.reportStatus();
      return agent;
    };
    // The cluster reported its status, and its agent is away: the job waits there.
    await (await connectLater()).close();
    await until(() => !t.platform.sessions.transport.allConnectedClusters().includes(registerCluster.cluster.id), 'the cluster to be disconnected');
    const keys = await creatorKeys('batch-owner', [{ clusterId: registerCluster.cluster.id, namespace: 'later' }]);
    const { createBatchJob } = await t.gqlOk(CREATE_BATCH, { input: { image: 'busybox:1.36', command: 'true' } }, { token: keys.creator });
    expect(createBatchJob.clusterId).toBe(registerCluster.cluster.id);

    await keys.revoke();
    await connectLater();
    const failed = await waitFor(
      () => t.gqlOk(BATCH, { id: createBatchJob.id }, { token: keys.onlooker }),
      (d) => d.batchJob.status === 'FAILED',
      'the job to fail',
    );
    expect(failed.batchJob.error).toMatchObject({ code: 'creator_key_revoked', message: expect.stringContaining(keys.creatorKeyId) });
    expect(later.received).toEqual([]);
  });
});
