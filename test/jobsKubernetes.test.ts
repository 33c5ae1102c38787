import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../agent/index.js';
import { DEFAULT_FINE_TUNING_IMAGE, fineTuningCommand } from '../agent/kubernetes/fineTuningCommand.js';
import { jobObjectName } from '../agent/kubernetes/jobManifests.js';
import { silentLogger } from '../lib/logging.js';
import { createObjectStore, type ObjectStore } from '../lib/objectStore/index.js';
import { startTestS3Server, type TestS3Server } from '../lib/objectStore/testS3Server.js';
import { DEFAULT_TENANT_ID } from '../subgraphs/users/index.js';
import { kubeConfigFor, startKubeApiServer, type KubeApiServer } from './support/kubeApiServer.js';
import { startTestPlatform, type TestPlatform } from './support/platform.js';
import { projectWithKey } from './support/tenants.js';
import { waitFor } from './support/until.js';

const NS = 'training';
const IMAGE = 'registry.example.com/trainers/lora-sft:1.0';
/** The agent's W&B API key Secret (MARINER_WANDB_API_KEY_SECRET), and the key's value, which no Job may carry. */
const WANDB_SECRET = 'wandb-api-key';
const WANDB_KEY = 'wandb-secret-value-0123456789abcdef';

const chat = (i: number) =>
  JSON.stringify({
    messages: [
      { role: 'user', content: `q${i}` },
      { role: 'assistant', content: `a${i}` },
    ],
  });

describe('jobs on the Kubernetes executor (against the Kubernetes API test double)', () => {
  let s3: TestS3Server;
  let kube: KubeApiServer;
  let t: TestPlatform;
  let agent: Agent;
  let agentStore: ObjectStore;
  let sdk: OpenAI;
  let core: CoreV1Api;
  let apps: AppsV1Api;
  let kubeconfigDir: string;
  let registrationKey: string;

  beforeAll(async () => {
    s3 = await startTestS3Server();
    kube = await startKubeApiServer({ nodes: [{ name: 'gpu-node', gpus: 4 }] });
    t = await startTestPlatform({ config: { objectStore: s3.config, jobs: { dispatchIntervalMs: 300, localTrainerCommand: undefined } } });
    const kc = kubeConfigFor(kube);
    core = kc.makeApiClient(CoreV1Api);
    apps = kc.makeApiClient(AppsV1Api);
    await core.createNamespace({ body: { metadata: { name: NS } } });
    kubeconfigDir = mkdtempSync(path.join(tmpdir(), 'mariner-kubeconfig-'));
    writeFileSync(path.join(kubeconfigDir, 'config'), kc.exportConfig());

    const { registerCluster } = await t.gqlOk('mutation { registerCluster(input: { name: "gpu-cluster" }) { registrationKey cluster { id } } }');
    // The agent's own object-store client (S3, as in a worker cluster): it presigns the pods' URLs.
    registrationKey = registerCluster.registrationKey;
    agentStore = await createObjectStore(s3.config);
    process.env['MARINER_RUNTIMES'] = 'off';
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey: registerCluster.registrationKey,
      executor: 'kubernetes',
      kubeconfig: path.join(kubeconfigDir, 'config'),
      objectStore: agentStore,
      loader: { objectStore: agentStore, huggingFace: { endpoint: 'http://127.0.0.1:9' } },
      jobs: { kubernetes: { image: IMAGE, command: ['python', '/app/sft.py'], pollIntervalMs: 100, wandbApiKeySecret: { name: WANDB_SECRET, key: 'apiKey' } } },
      logger: silentLogger(),
    });
    await agent.reportStatus();

    const project = await projectWithKey(t, 'gpu-team', { assignments: [{ clusterId: registerCluster.cluster.id, namespace: NS, kueueQueueName: 'team-a' }] });
    sdk = new OpenAI({ apiKey: project.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
    // A tenant-wide base model in Hugging Face layout in the store, loaded by this agent's loader.
    const prefix = `models/${DEFAULT_TENANT_ID}/uploads/llama-hf`;
    await t.platform.objectStore.put(`${prefix}/config.json`, Readable.from([Buffer.from('{"model_type":"llama"}')]));
    await t.platform.objectStore.put(`${prefix}/model.safetensors`, Readable.from([Buffer.alloc(32)]));
    await t.gqlOk(`mutation($input: CreateBaseModelInput!) { createBaseModel(input: $input) { id } }`, {
      input: { id: 'llama-hf', sourceRepository: 'OBJECT_STORE', source: prefix, isProjectScoped: false },
    });
    await waitFor(
      () => t.gqlOk(`{ model(id: "llama-hf", includeLoading: true) { loadingStatus } }`),
      (d) => d.model.loadingStatus === 'SUCCEEDED',
      'the base model to load',
    );
  });
  afterAll(async () => {
    delete process.env['MARINER_RUNTIMES'];
    await agent?.close();
    await agentStore?.close();
    await t?.close();
    await kube?.close();
    await s3?.close();
    if (kubeconfigDir) rmSync(kubeconfigDir, { recursive: true, force: true });
  });

  const createJob = async (suffix: string) => {
    const file = await sdk.files.create({ file: await toFile(Buffer.from([chat(1), chat(2)].join('\n') + '\n'), 'train.jsonl'), purpose: 'fine-tune' });
    return sdk.fineTuning.jobs.create({ model: 'llama-hf', training_file: file.id, suffix, hyperparameters: { n_epochs: 1 } });
  };
  const jobObject = (jobId: string): Promise<any> =>
    waitFor(async () => kube.objects('Job', NS).find((j) => j.metadata.name === jobObjectName(jobId)), Boolean, 'the Kubernetes Job');
  const secretOf = (jobId: string) => {
    const secret = kube.objects('Secret', NS).find((s) => s.metadata.name === `${jobObjectName(jobId)}-urls`);
    return Object.fromEntries(Object.entries<string>(secret.data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
  };
  /** What the Job controller and kubelet would do: a pod of the Job, then its phase. */
  const startPod = async (jobId: string, pod: string, index = '0', container = 'trainer') => {
    await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: { name: pod, labels: { 'job-name': jobObjectName(jobId) }, annotations: { 'batch.kubernetes.io/job-completion-index': index } },
        spec: { containers: [{ name: container, image: IMAGE }] },
      },
    });
    await core.replaceNamespacedPodStatus({ name: pod, namespace: NS, body: { metadata: { name: pod }, status: { phase: 'Running' } } });
  };
  const endPod = (pod: string, status: object) => core.replaceNamespacedPodStatus({ name: pod, namespace: NS, body: { metadata: { name: pod }, status } });

  it('creates a Job with the GPU limit, the Kueue queue and presigned URLs; the pod drives the job to success', async () => {
    const created = await createJob('k8s');
    expect(created).toMatchObject({ kubernetes_namespace: NS, resources: { gpu_count: 1 } });
    const job = await jobObject(created.id);
    expect(job.metadata.labels).toMatchObject({ 'kueue.x-k8s.io/queue-name': 'team-a', 'mariner.dev/job-id': created.id });
    expect(job.spec).toMatchObject({ backoffLimit: 0, suspend: true });
    const container = job.spec.template.spec.containers[0];
    expect(container.image).toBe(IMAGE);
    expect(container.command.slice(-2)).toEqual(['python', '/app/sft.py']);
    expect(container.resources.limits).toEqual({ 'nvidia.com/gpu': '1' });
    const env = Object.fromEntries(container.env.map((e: { name: string; value: string }) => [e.name, e.value]));
    expect(JSON.parse(env['MARINER_HYPERPARAMETERS'])).toMatchObject({ nEpochs: 1 });
    expect(env).toMatchObject({ MARINER_JOB_ID: created.id, MARINER_BASE_MODEL: 'llama-hf', MARINER_GPU_COUNT: '1', MARINER_METHOD: 'supervised' });
    // No object-store credentials in the pod: time-limited URLs, in a Secret owned by the Job.
    expect(JSON.stringify(job)).not.toContain(s3.config.secretAccessKey!);
    const urls = secretOf(created.id);
    // Tied to the Job right after the Job is created (the Job is visible a moment before).
    const ownerReferences = await waitFor(
      async () => kube.objects('Secret', NS).find((s) => s.metadata.name === `${jobObjectName(created.id)}-urls`).metadata.ownerReferences,
      Boolean,
      'the Secret tied to its Job',
    );
    expect(ownerReferences).toEqual([expect.objectContaining({ kind: 'Job', name: jobObjectName(created.id) })]);
    expect(await (await fetch(urls['training']!)).text()).toBe([chat(1), chat(2)].join('\n') + '\n');
    expect(
      urls['model-files']!.split('\n')
        .filter(Boolean)
        .map((line) => line.split(' ')[0])
        .sort(),
    ).toEqual(['config.json', 'model.safetensors']);

    await startPod(created.id, 'trainer-pod-1');
    await waitFor(
      () => sdk.fineTuning.jobs.retrieve(created.id),
      (j) => j.status === 'running',
      'the job to run',
    );
    kube.appendLog(NS, 'trainer-pod-1', 'mariner: inputs downloaded; starting the trainer');
    kube.appendLog(NS, 'trainer-pod-1', JSON.stringify({ type: 'metrics', step: 1, total_steps: 1, train_loss: 0.7 }));
    kube.appendLog(NS, 'trainer-pod-1', JSON.stringify({ type: 'summary', trained_tokens: 42 }));
    // The trainer uploads its adapter with the presigned PUTs.
    for (const file of ['adapter_config.json', 'adapter_model.safetensors']) {
      expect((await fetch(urls[`output-${file}`]!, { method: 'PUT', body: `${file} bytes` })).status).toBe(200);
    }
    kube.endLog(NS, 'trainer-pod-1');
    await endPod('trainer-pod-1', { phase: 'Succeeded' });

    const done = await waitFor(
      () => sdk.fineTuning.jobs.retrieve(created.id),
      (j) => j.status !== 'running',
      'the job to finish',
    );
    expect(done).toMatchObject({ status: 'succeeded', trained_tokens: 42, fine_tuned_model: expect.stringMatching(/^ft:llama-hf:k8s-[a-z0-9]{6}$/) });
    const events = (await sdk.fineTuning.jobs.listEvents(created.id)).data;
    expect(events.find((e) => e.type === 'metrics')?.message).toBe('Step 1/1: training loss=0.7000');
    const { fineTuningJob } = await t.gqlOk(
      `query($id: ID!) { fineTuningJob(id: $id) { logs { lines { text } } } }`,
      { id: created.id },
      { token: sdk.apiKey },
    );
    expect(fineTuningJob.logs.lines[0].text).toBe('mariner: inputs downloaded; starting the trainer');
  });

  it('gives a job with a W&B integration the WANDB_* environment and the API key from the Secret, and refuses it where the Secret is missing', async () => {
    const file = await sdk.files.create({ file: await toFile(Buffer.from(chat(1) + '\n'), 'train.jsonl'), purpose: 'fine-tune' });
    const create = () =>
      sdk.fineTuning.jobs.create({
        model: 'llama-hf',
        training_file: file.id,
        suffix: 'wandb',
        integrations: [{ type: 'wandb', wandb: { project: 'llm-sft', name: 'run-7', entity: 'acme', tags: ['lora', 'nightly'] } }],
      });
    // No Secret in the namespace yet: the pod could never start, so the job fails with the reason.
    const refused = await create();
    const failed = await waitFor(
      () => sdk.fineTuning.jobs.retrieve(refused.id),
      (j) => j.status !== 'queued',
      'the job to be refused',
    );
    expect(failed.status).toBe('failed');
    expect(failed.error?.message).toContain(`the W&B API key Secret ${WANDB_SECRET} is not in namespace ${NS}`);
    expect(kube.objects('Job', NS).some((j) => j.metadata.name === jobObjectName(refused.id))).toBe(false);

    await core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: WANDB_SECRET }, data: { apiKey: Buffer.from(WANDB_KEY).toString('base64') } },
    });
    const created = await create();
    const job = await jobObject(created.id);
    const env = job.spec.template.spec.containers[0].env as { name: string; value?: string; valueFrom?: unknown }[];
    expect(env.filter((e) => e.name.startsWith('WANDB_'))).toEqual([
      { name: 'WANDB_API_KEY', valueFrom: { secretKeyRef: { name: WANDB_SECRET, key: 'apiKey' } } },
      { name: 'WANDB_PROJECT', value: 'llm-sft' },
      { name: 'WANDB_NAME', value: 'run-7' },
      { name: 'WANDB_ENTITY', value: 'acme' },
      { name: 'WANDB_TAGS', value: 'lora,nightly' },
    ]);
    // The key is only referred to: neither the Job nor the job's own Secret holds it.
    expect(JSON.stringify(job)).not.toContain(WANDB_KEY);
    expect(JSON.stringify(secretOf(created.id))).not.toContain(WANDB_KEY);
    await sdk.fineTuning.jobs.cancel(created.id);
    await waitFor(
      () => sdk.fineTuning.jobs.retrieve(created.id),
      (j) => j.status === 'cancelled',
      'the job to be cancelled',
    );
  });

  it('fails the job with the pod’s termination message', async () => {
    const created = await createJob('oom');
    await jobObject(created.id);
    await startPod(created.id, 'trainer-pod-2');
    await waitFor(
      () => sdk.fineTuning.jobs.retrieve(created.id),
      (j) => j.status === 'running',
      'the job to run',
    );
    kube.endLog(NS, 'trainer-pod-2');
    await endPod('trainer-pod-2', {
      phase: 'Failed',
      containerStatuses: [
        {
          name: 'trainer',
          image: IMAGE,
          imageID: '',
          ready: false,
          restartCount: 0,
          state: { terminated: { exitCode: 137, reason: 'OOMKilled', message: 'CUDA out of memory' } },
        },
      ],
    });
    const done = await waitFor(
      () => sdk.fineTuning.jobs.retrieve(created.id),
      (j) => j.status !== 'running',
      'the job to fail',
    );
    expect(done).toMatchObject({ status: 'failed', error: { code: 'job_failed', message: 'CUDA out of memory' } });
  });

  it('queues the job again when its Job object is deleted, and creates the next attempt', async () => {
    const created = await createJob('again');
    const first = await jobObject(created.id);
    expect(first.metadata.annotations['mariner.dev/attempt']).toBe('1');
    await fetch(`${kube.url}/apis/batch/v1/namespaces/${NS}/jobs/${first.metadata.name}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${kube.token}` },
    });
    const second: any = await waitFor(
      async () => kube.objects('Job', NS).find((j) => j.metadata.name === jobObjectName(created.id) && j.metadata.annotations['mariner.dev/attempt'] === '2'),
      Boolean,
      'the second attempt',
    );
    expect(second.metadata.labels['mariner.dev/job-id']).toBe(created.id);
    const events = (await sdk.fineTuning.jobs.listEvents(created.id)).data.map((e) => e.message);
    expect(events.some((m) => m.includes('was deleted') && m.endsWith('queued again'))).toBe(true);
    // Cancelling deletes the Job.
    expect((await sdk.fineTuning.jobs.cancel(created.id)).id).toBe(created.id);
    await waitFor(
      () => sdk.fineTuning.jobs.retrieve(created.id),
      (j) => j.status === 'cancelled',
      'the job to be cancelled',
    );
    expect(kube.objects('Job', NS).some((j) => j.metadata.name === jobObjectName(created.id))).toBe(false);
  });

  it('runs a 2-worker PyTorch batch job as an Indexed Job with its scripts, data files and rendezvous, and finishes when both workers do', async () => {
    const sdkFile = await sdk.files.create({ file: await toFile(Buffer.from('1,2,3\n'), 'numbers.csv'), purpose: 'user_data' });
    const response = await fetch(`${t.url}/v1/batch/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${sdk.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        image: 'pytorch-2.1',
        command: 'torchrun train.py /data/numbers.csv',
        scripts: { 'train.py': Buffer.from('print("training")\n').toString('base64') },
        envs: { EPOCHS: '3' },
        data_files: [sdkFile.id],
        resources: { gpu_count: 2 },
        kind: { pytorch: { worker_count: 2 } },
      }),
    });
    const created = (await response.json()) as { id: string; status: string };
    expect(created.status).toBe('queued');
    const job = await jobObject(created.id);
    const name = jobObjectName(created.id);
    expect(job.spec).toMatchObject({ completionMode: 'Indexed', completions: 2, parallelism: 2, backoffLimit: 0, suspend: true });
    expect(job.spec.template.spec.subdomain).toBe(name);
    const container = job.spec.template.spec.containers[0];
    expect(container.image).toBe('pytorch/pytorch:2.1.2-cuda12.1-cudnn8-runtime');
    expect(container.resources.limits).toEqual({ 'nvidia.com/gpu': '2' });
    const env = Object.fromEntries(container.env.map((e: { name: string; value?: string; valueFrom?: unknown }) => [e.name, e.value ?? e.valueFrom]));
    expect(env).toMatchObject({
      EPOCHS: '3',
      MARINER_COMMAND: 'torchrun train.py /data/numbers.csv',
      MASTER_ADDR: `${name}-0.${name}`,
      MASTER_PORT: '23456',
      WORLD_SIZE: '2',
      RANK: { fieldRef: { fieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']" } },
      OPENAI_BASE_URL: `${t.url}/v1`,
    });
    // The headless Service gives the workers stable names; the scripts are a ConfigMap; the data file a presigned URL.
    expect(kube.objects('Service', NS).find((s) => s.metadata.name === name).spec.clusterIP).toBe('None');
    const scripts = kube.objects('ConfigMap', NS).find((c) => c.metadata.name === `${name}-scripts`);
    expect(Buffer.from(scripts.binaryData['train.py'], 'base64').toString()).toBe('print("training")\n');
    const [dataLine] = secretOf(created.id)['data-files']!.split('\n');
    const [filename, url] = dataLine!.split(' ');
    expect(filename).toBe('numbers.csv');
    expect(await (await fetch(url!)).text()).toBe('1,2,3\n');

    await startPod(created.id, 'worker-0', '0', 'main');
    await startPod(created.id, 'worker-1', '1', 'main');
    await waitFor(
      () =>
        fetch(`${t.url}/v1/batch/jobs/${created.id}`, { headers: { authorization: `Bearer ${sdk.apiKey}` } }).then(
          (r) => r.json() as Promise<{ status: string }>,
        ),
      (j) => j.status === 'running',
      'the job to run',
    );
    kube.appendLog(NS, 'worker-0', 'rank 0: epoch 1 loss 0.5');
    kube.endLog(NS, 'worker-0');
    await endPod('worker-0', { phase: 'Succeeded' });
    // One worker done is not the job done.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(
      ((await (await fetch(`${t.url}/v1/batch/jobs/${created.id}`, { headers: { authorization: `Bearer ${sdk.apiKey}` } })).json()) as { status: string })
        .status,
    ).toBe('running');
    kube.endLog(NS, 'worker-1');
    await endPod('worker-1', { phase: 'Succeeded' });
    const done = await waitFor(
      () =>
        fetch(`${t.url}/v1/batch/jobs/${created.id}`, { headers: { authorization: `Bearer ${sdk.apiKey}` } }).then(
          (r) => r.json() as Promise<{ status: string }>,
        ),
      (j) => j.status !== 'running',
      'the job to finish',
    );
    expect(done.status).toBe('succeeded');
    const { batchJob } = await t.gqlOk(`query($id: ID!) { batchJob(id: $id) { logs { lines { text } } } }`, { id: created.id }, { token: sdk.apiKey });
    expect(batchJob.logs.lines.map((l: { text: string }) => l.text)).toEqual(['rank 0: epoch 1 loss 0.5']);
  });

  it('runs a notebook as a Deployment and Service with its token and an API key of its own; stop, start and delete act on them', async () => {
    const call = async (method: string, path: string, body?: unknown, key = sdk.apiKey) => {
      const response = await fetch(`${t.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      return { status: response.status, body: (await response.json()) as any };
    };
    const created = await call('POST', '/v1/workspaces/notebooks', {
      name: 'lab',
      image: { type: 'jupyter-lab-base' },
      resources: { cpu_milicore: { requests: 500, limits: 1000 }, memory_megabytes: { requests: 1024 } },
      envs: { FOO: 'bar' },
      additional_exposed_ports: [6006],
    });
    expect(created.status).toBe(200);
    expect(created.body).toMatchObject({
      name: 'lab',
      status: 'QUEUED',
      image: 'quay.io/jupyter/base-notebook:latest',
      kubernetes_namespace: NS,
      additional_exposed_ports: [6006],
    });
    expect(created.body.token).toMatch(/^[A-Za-z0-9]{48}$/);
    const id = created.body.id as string;
    expect((await call('POST', '/v1/workspaces/notebooks', { name: 'lab', image: { type: 'jupyter-lab-base' } })).status).toBe(409);
    expect((await call('POST', '/v1/workspaces/notebooks', { name: 'Not_A_Name', image: { type: 'jupyter-lab-base' } })).body.error.param).toBe('name');

    const name = jobObjectName(id);
    const deployment: any = await waitFor(async () => kube.objects('Deployment', NS).find((d) => d.metadata.name === name), Boolean, 'the Deployment');
    const container = deployment.spec.template.spec.containers[0];
    // Jupyter serves under the notebook's public path (subgraphs/sessions/notebookProxy.ts), which its Service announces.
    const publicPath = kube.objects('Service', NS).find((svc) => svc.metadata.name === name).metadata.annotations['mariner.dev/jupyter-base-path'];
    expect(publicPath).toMatch(new RegExp(`^/v1/sessions/cluster-[A-Za-z0-9]+/v1/services/notebooks/lab/${NS}/$`));
    expect(container).toMatchObject({
      name: 'jupyterlab',
      image: 'quay.io/jupyter/base-notebook:latest',
      args: ['start-notebook.py', '--IdentityProvider.token=$(NOTEBOOK_TOKEN)', `--ServerApp.base_url=${publicPath}`],
    });
    expect(container.ports.map((p: { containerPort: number }) => p.containerPort)).toEqual([8888, 6006]);
    expect(container.resources).toEqual({ requests: { cpu: '500m', memory: '1024M' }, limits: { cpu: '1000m' } });
    expect(container.env).toEqual(
      expect.arrayContaining([
        { name: 'FOO', value: 'bar' },
        { name: 'OPENAI_BASE_URL', value: `${t.url}/v1` },
      ]),
    );
    expect(
      kube
        .objects('Service', NS)
        .find((svc) => svc.metadata.name === name)
        .spec.ports.map((p: { port: number }) => p.port),
    ).toEqual([8888, 6006]);
    const secret = kube.objects('Secret', NS).find((x) => x.metadata.name === `${name}-secrets`);
    const secretValue = (key: string) => Buffer.from(secret.data[key], 'base64').toString('utf8');
    expect(secretValue('NOTEBOOK_TOKEN')).toBe(created.body.token);
    // The notebook's OpenAI key is a real key of the project: code in the notebook can call the API.
    const notebookKey = secretValue('OPENAI_API_KEY');
    expect((await call('GET', '/v1/workspaces/notebooks', undefined, notebookKey)).body.notebooks.map((n: { id: string }) => n.id)).toContain(id);

    expect(
      (
        await waitFor(
          () => call('GET', `/v1/workspaces/notebooks/${id}`),
          (r) => r.body.status === 'INITIALIZING',
          'the notebook to be initializing',
        )
      ).status,
    ).toBe(200);
    await apps.replaceNamespacedDeploymentStatus({ name, namespace: NS, body: { metadata: { name }, status: { replicas: 1, readyReplicas: 1 } } });
    await waitFor(
      () => call('GET', `/v1/workspaces/notebooks/${id}`),
      (r) => r.body.status === 'RUNNING',
      'the notebook to run',
    );

    expect((await call('POST', `/v1/workspaces/notebooks/${id}/actions:stop`)).body.pending_action).toBe('STOPPING');
    await waitFor(
      () => call('GET', `/v1/workspaces/notebooks/${id}`),
      (r) => r.body.status === 'STOPPED',
      'the notebook to stop',
    );
    expect(kube.objects('Deployment', NS).find((d) => d.metadata.name === name).spec.replicas).toBe(0);
    expect((await call('POST', `/v1/workspaces/notebooks/${id}/actions:stop`)).status).toBe(400);

    await call('POST', `/v1/workspaces/notebooks/${id}/actions:start`);
    await waitFor(
      () => call('GET', `/v1/workspaces/notebooks/${id}`),
      (r) => r.body.status === 'RUNNING',
      'the notebook to run again',
    );
    expect(kube.objects('Deployment', NS).find((d) => d.metadata.name === name).spec.replicas).toBe(1);

    expect((await call('DELETE', `/v1/workspaces/notebooks/${id}`)).body.pending_action).toBe('DELETING');
    await waitFor(
      () => call('GET', `/v1/workspaces/notebooks/${id}`),
      (r) => r.status === 404,
      'the notebook to be deleted',
    );
    expect(kube.objects('Deployment', NS).some((d) => d.metadata.name === name)).toBe(false);
    expect(kube.objects('Secret', NS).some((x) => x.metadata.name === `${name}-secrets`)).toBe(false);
    // Its API key went with it.
    expect((await call('GET', '/v1/workspaces/notebooks', undefined, notebookKey)).status).toBe(401);
  });

  it('without MARINER_FINE_TUNING_IMAGE, runs LLMariner’s fine-tuning image with the command generated from the job’s hyperparameters, as non-root, queued by Kueue', async () => {
    // The same cluster's agent again, with no trainer image configured (the default).
    await agent.close();
    agent = await startAgent({
      controlPlaneUrl: t.url,
      registrationKey,
      executor: 'kubernetes',
      kubeconfig: path.join(kubeconfigDir, 'config'),
      objectStore: agentStore,
      jobs: { kubernetes: { pollIntervalMs: 100 } },
      logger: silentLogger(),
    });
    await agent.reportStatus();
    const file = await sdk.files.create({ file: await toFile(Buffer.from(chat(1) + '\n'), 'train.jsonl'), purpose: 'fine-tune' });
    const created = await sdk.fineTuning.jobs.create({
      model: 'llama-hf',
      training_file: file.id,
      suffix: 'default-trainer',
      seed: 7,
      hyperparameters: { n_epochs: 2, batch_size: 2, learning_rate_multiplier: 0.5 },
    });
    const job = await jobObject(created.id);
    expect(job.metadata.labels).toMatchObject({ 'kueue.x-k8s.io/queue-name': 'team-a' });
    const pod = job.spec.template.spec;
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
    const container = pod.containers[0];
    expect(container.image).toBe(DEFAULT_FINE_TUNING_IMAGE);
    const script: string = container.command.at(-2);
    expect(script).toBe(
      fineTuningCommand({
        method: { type: 'supervised', hyperparameters: { nEpochs: 2, batchSize: 2, learningRateMultiplier: 0.5, beta: null } },
        gpuCount: 1,
        validationFile: null,
        integrations: [],
      }),
    );
    expect(script).toContain('--per_device_train_batch_size=2 \\\n  --learning_rate=0.0001 \\\n  --num_train_epochs=2\n');
    // The GGML adapter's upload: a presigned PUT into the job's output, beside the PEFT adapter's.
    const urls = secretOf(created.id);
    const put = await fetch(urls['output-ggml-adapter-model.bin']!, { method: 'PUT', body: 'ggml' });
    expect(put.status).toBe(200);
    expect(new URL(urls['output-ggml-adapter-model.bin']!).pathname).toContain(
      new URL(urls['output-adapter_config.json']!).pathname.replace(/adapter_config\.json$/, ''),
    );
    await sdk.fineTuning.jobs.cancel(created.id);
  });
});
