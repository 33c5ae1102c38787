/**
 * Fine-tuning jobs on Kubernetes: the JobHost of the Kubernetes executor, the sibling of
 * agent/localJobHost.ts (LLMariner dispatcher + lifecycle manager). A dispatched job becomes a
 * Secret of presigned URLs and a batch/v1 Job (jobManifests.ts); the host then follows it: its pod
 * running → RUNNING (and its log is followed into the job's output), its pod or Job succeeded with
 * the adapter in the store → SUCCEEDED, failed → FAILED with the termination message, the Job gone
 * while the job was not finished → LOST (the control plane queues it again). The Job outlives the
 * agent: an agent that restarts finds it again (`has`) and goes on following it.
 */
import { PassThrough } from 'node:stream';
import { createInterface } from 'node:readline';
import { AppsV1Api, BatchV1Api, CoreV1Api, Log, type KubeConfig, type V1Deployment, type V1Job, type V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../../lib/logging.js';
import type { ObjectStore } from '../../lib/objectStore/index.js';
import type { FineTuningSpec, JobSpec, NotebookSpec } from '../../lib/jobSpec.js';
import { JobRefusedError, type DispatchedJob, type JobHost } from '../executor.js';
import { trainedTokensOf, type JobReporter } from '../jobReporter.js';
import { ignoreNotFound, orNotFound } from './apiErrors.js';
import {
  ADAPTER_FILES,
  ATTEMPT_ANNOTATION,
  batchJobManifests,
  fineTuningManifests,
  jobObjectName,
  notebookManifests,
  trainerWandb,
  type SecretKeyRef,
  type TrainerWandb,
} from './jobManifests.js';

/** The container whose log and termination message tell the job's story, by kind (jobManifests.ts). */
const MAIN_CONTAINER = { 'fine-tuning': 'trainer', batch: 'main', notebook: 'jupyterlab' } as const;

export interface KubernetesJobSettings {
  /** The trainer image (MARINER_FINE_TUNING_IMAGE); it needs /bin/sh and curl. Unset: fine-tuning jobs are refused. */
  image?: string | undefined;
  /** The trainer's argv inside the image (MARINER_FINE_TUNING_COMMAND), run with the MARINER_* environment. */
  command?: string[] | undefined;
  /** The Kueue queue of projects that name none (MARINER_KUEUE_DEFAULT_QUEUE); unset: no queue label. */
  defaultQueue?: string | undefined;
  /** How long presigned URLs stay valid (a job may wait in a queue; S3 allows 7 days at most). */
  urlTtlSeconds?: number;
  /** How often followed Jobs and their pods are read. */
  pollIntervalMs?: number;
  /** The OpenAI API as pods reach it, given to batch jobs as OPENAI_BASE_URL (LLMariner batchjob.go). */
  openaiBaseUrl?: string | undefined;
  /**
   * The Secret (and key) holding the W&B API key, given to trainers of jobs with a `wandb` integration as
   * WANDB_API_KEY (MARINER_WANDB_API_KEY_SECRET, MARINER_WANDB_API_KEY_SECRET_KEY; LLMariner's
   * `wandbApiKeySecret`). It must exist in every namespace fine-tuning jobs run in. Unset: such jobs are refused.
   */
  wandbApiKeySecret?: SecretKeyRef | undefined;
}

interface Followed {
  jobId: string;
  spec: JobSpec;
  name: string;
  namespace: string;
  attempt: number;
  running: boolean;
  finished: boolean;
  cancelled: boolean;
  /** The pod whose log is followed, and when that follow ends. */
  logPod: string | undefined;
  logDone: Promise<void> | undefined;
  tail: string[];
  trainedTokens: number | null;
}


const TAIL_LINES = 20;

export function createKubernetesJobHost(options: {
  kubeConfig: KubeConfig;
  objectStore: ObjectStore | undefined;
  reporter: JobReporter;
  logger: Logger;
  settings: KubernetesJobSettings;
}): JobHost {
  const { reporter, logger, settings } = options;
  const batch = options.kubeConfig.makeApiClient(BatchV1Api);
  const apps = options.kubeConfig.makeApiClient(AppsV1Api);
  const core = options.kubeConfig.makeApiClient(CoreV1Api);
  const logs = new Log(options.kubeConfig);
  const followed = new Map<string, Followed>();
  const urlTtl = settings.urlTtlSeconds ?? 7 * 24 * 3600;
  let closed = false;

  async function presign(spec: FineTuningSpec) {
    const store = options.objectStore!;
    const sign = (key: string, method: 'GET' | 'PUT') => store.presignedUrl!(key, method, urlTtl);
    const modelKey = store.keyFromUri(spec.baseModel.source);
    if (!modelKey) throw new JobRefusedError(`the base model's weights (${spec.baseModel.source}) are not in this cluster's object store`);
    const modelFiles: { path: string; url: string }[] = [];
    for await (const object of store.list(`${modelKey.replace(/\/+$/, '')}/`)) {
      modelFiles.push({ path: object.key.slice(modelKey.replace(/\/+$/, '').length + 1), url: await sign(object.key, 'GET') });
    }
    if (modelFiles.length === 0) throw new JobRefusedError(`no weights found under ${spec.baseModel.source}`);
    return {
      training: await sign(spec.trainingFile.objectKey, 'GET'),
      validation: spec.validationFile ? await sign(spec.validationFile.objectKey, 'GET') : null,
      modelFiles,
      outputs: Object.fromEntries(await Promise.all(ADAPTER_FILES.map(async (file) => [file, await sign(spec.outputPrefix + file, 'PUT')]))) as Record<
        (typeof ADAPTER_FILES)[number],
        string
      >,
    };
  }

  /**
   * The trainer's W&B settings. Its API key Secret must be in the job's namespace: a pod that refers to a
   * missing one never starts (CreateContainerConfigError), so the job is refused with the reason instead.
   */
  async function wandbFor(spec: FineTuningSpec, namespace: string): Promise<TrainerWandb | null> {
    const wandb = trainerWandb(spec.integrations, settings.wandbApiKeySecret);
    if (!wandb) return null;
    const { name, key } = wandb.apiKeySecret;
    const secret = await orNotFound(core.readNamespacedSecret({ name, namespace }));
    if (!secret) throw new JobRefusedError(`the W&B API key Secret ${name} is not in namespace ${namespace}: create it there, with the key in ${key}`);
    // Only whether the key is there: its value goes nowhere else.
    if (secret.data?.[key] === undefined) throw new JobRefusedError(`the W&B API key Secret ${namespace}/${name} has no key ${key}`);
    return wandb;
  }

  function follow(jobId: string, spec: JobSpec, attempt: number): Followed {
    const entry: Followed = {
      jobId,
      spec,
      name: jobObjectName(jobId),
      namespace: spec.namespace!,
      attempt,
      running: false,
      finished: false,
      cancelled: false,
      logPod: undefined,
      logDone: undefined,
      tail: [],
      trainedTokens: null,
    };
    reporter.resetOffset(jobId, spec.logOffset ?? 0);
    followed.set(jobId, entry);
    return entry;
  }

  const readJob = (name: string, namespace: string): Promise<V1Job | null> => orNotFound(batch.readNamespacedJob({ name, namespace }));

  /** Streams the pod's log into the job's output (from its start: offsets make a re-read harmless). */
  function followLog(entry: Followed, pod: string): void {
    entry.logPod = pod;
    const stream = new PassThrough();
    const lines = createInterface({ input: stream });
    lines.on('line', (text) => {
      reporter.line(entry.jobId, text);
      entry.tail.push(text);
      if (entry.tail.length > TAIL_LINES) entry.tail.shift();
      entry.trainedTokens = trainedTokensOf(text) ?? entry.trainedTokens;
    });
    entry.logDone = new Promise<void>((resolve) => {
      lines.once('close', () => resolve());
      logs
        .log(entry.namespace, pod, MAIN_CONTAINER[entry.spec.kind], stream, { follow: true })
        .then((request) => stream.once('close', () => request.abort()))
        .catch((error: Error) => {
          logger.warn({ jobId: entry.jobId, pod, err: error.message }, 'could not follow the trainer log');
          stream.end();
        });
    });
  }

  async function finish(entry: Followed, report: Parameters<JobReporter['phase']>[1]): Promise<void> {
    entry.finished = true;
    // The log's last lines go before the outcome (a follower that sees the end has seen them).
    await Promise.race([entry.logDone, new Promise((resolve) => setTimeout(resolve, 5_000).unref())]);
    await reporter.phase(entry.jobId, report);
    followed.delete(entry.jobId);
  }

  const readDeployment = (name: string, namespace: string): Promise<V1Deployment | null> => orNotFound(apps.readNamespacedDeployment({ name, namespace }));

  /**
   * A notebook is RUNNING once its Deployment has a ready replica (again, after a start). One whose
   * Deployment disappeared without being deleted through the platform is LOST (the control plane
   * creates it anew); a stopped one is left alone.
   */
  async function checkNotebook(entry: Followed): Promise<void> {
    const deployment = await readDeployment(entry.name, entry.namespace);
    if (!deployment) return finish(entry, { phase: 'LOST', message: `its Deployment ${entry.namespace}/${entry.name} was deleted` });
    if ((deployment.spec?.replicas ?? 1) === 0) return;
    if (!entry.running && (deployment.status?.readyReplicas ?? 0) > 0) {
      entry.running = true;
      await reporter.phase(entry.jobId, { phase: 'RUNNING' });
    }
  }

  /** A notebook's Secret, Deployment and Service, replacing what an earlier attempt left. */
  async function startNotebook(job: DispatchedJob, spec: NotebookSpec, namespace: string, attempt: number): Promise<'started' | 'running'> {
    if (!spec.secrets) throw new JobRefusedError("the notebook came without its token and API key");
    const objects = notebookManifests({
      jobId: job.id,
      attempt,
      namespace,
      name: spec.name,
      image: spec.image,
      resources: spec.resources,
      envs: spec.envs,
      ports: spec.ports,
      gpuCount: spec.gpuCount,
      kueueQueueName: spec.kueueQueueName ?? settings.defaultQueue ?? null,
      secrets: spec.secrets,
      openaiBaseUrl: settings.openaiBaseUrl ?? null,
      basePath: spec.basePath ?? null,
    });
    const name = objects.deployment.metadata!.name!;
    const current = await readDeployment(name, namespace);
    if (current?.metadata?.annotations?.[ATTEMPT_ANNOTATION] === String(attempt)) {
      follow(job.id, spec, attempt);
      return 'running';
    }
    await removeNotebook(name, namespace);
    await core.createNamespacedSecret({ namespace, body: objects.secret as never });
    await core.createNamespacedService({ namespace, body: objects.service as never });
    await apps.createNamespacedDeployment({ namespace, body: objects.deployment as never });
    logger.info({ jobId: job.id, namespace, name }, 'created the notebook');
    follow(job.id, spec, attempt);
    return 'started';
  }

  /** Deletes a notebook's objects; true when there was any. */
  async function removeNotebook(name: string, namespace: string): Promise<boolean> {
    const results = await Promise.all([
      orNotFound(apps.deleteNamespacedDeployment({ name, namespace })),
      orNotFound(core.deleteNamespacedService({ name, namespace })),
      orNotFound(core.deleteNamespacedSecret({ name: `${name}-secrets`, namespace })),
    ]);
    return results.some((deleted) => deleted !== null);
  }

  /** Scales a notebook's Deployment; false when it is not there. */
  async function scaleNotebook(name: string, namespace: string, replicas: number): Promise<boolean> {
    return (await orNotFound(apps.patchNamespacedDeploymentScale({ name, namespace, body: [{ op: 'replace', path: '/spec/replicas', value: replicas }] }))) !== null;
  }

  async function check(entry: Followed): Promise<void> {
    if (entry.finished || entry.cancelled) return;
    if (entry.spec.kind === 'notebook') return checkNotebook(entry);
    const job = await readJob(entry.name, entry.namespace);
    if (!job) return finish(entry, { phase: 'LOST', message: `its Kubernetes Job ${entry.namespace}/${entry.name} was deleted` });
    const pods = (await core.listNamespacedPod({ namespace: entry.namespace, labelSelector: `job-name=${entry.name}` })).items;
    const workers = entry.spec.kind === 'batch' ? entry.spec.workerCount : 1;
    const index = (p: V1Pod) => p.metadata?.annotations?.['batch.kubernetes.io/job-completion-index'] ?? '0';
    // The log followed is worker 0's (the PyTorch master), its newest pod.
    const pod: V1Pod | undefined = pods
      .filter((p) => index(p) === '0')
      .sort((a, b) => String(b.metadata?.creationTimestamp ?? '').localeCompare(String(a.metadata?.creationTimestamp ?? '')))[0];
    const phase = pod?.status?.phase;
    if (pod && phase && phase !== 'Pending' && entry.logPod !== pod.metadata!.name) followLog(entry, pod.metadata!.name!);
    if (!entry.running && pods.some((p) => ['Running', 'Succeeded', 'Failed'].includes(p.status?.phase ?? ''))) {
      entry.running = true;
      await reporter.phase(entry.jobId, { phase: 'RUNNING' });
    }
    const conditions = job.status?.conditions ?? [];
    const succeededPods = new Set(pods.filter((p) => p.status?.phase === 'Succeeded').map(index)).size;
    const failedPod = pods.find((p) => p.status?.phase === 'Failed');
    const succeeded = succeededPods >= workers || (job.status?.succeeded ?? 0) >= workers || conditions.some((c) => c.type === 'Complete' && c.status === 'True');
    const failed = failedPod !== undefined || (job.status?.failed ?? 0) > 0 || conditions.some((c) => c.type === 'Failed' && c.status === 'True');
    if (succeeded && entry.spec.kind === 'batch') return finish(entry, { phase: 'SUCCEEDED' });
    if (succeeded && entry.spec.kind === 'fine-tuning') {
      const store = options.objectStore!;
      const missing: string[] = [];
      for (const file of ADAPTER_FILES) if (!(await store.head(entry.spec.outputPrefix + file))) missing.push(file);
      if (missing.length > 0) return finish(entry, { phase: 'FAILED', message: [`the trainer finished but did not upload ${missing.join(', ')}`, ...entry.tail].join('\n') });
      return finish(entry, { phase: 'SUCCEEDED', outputPath: store.uri(entry.spec.outputPrefix.replace(/\/+$/, '')), trainedTokens: entry.trainedTokens });
    }
    if (failed) {
      const terminated = (failedPod ?? pod)?.status?.containerStatuses?.find((c) => c.name === MAIN_CONTAINER[entry.spec.kind])?.state?.terminated;
      const why = terminated?.message?.trim() || terminated?.reason || conditions.find((c) => c.type === 'Failed')?.message || `the job's pod ${failedPod?.metadata?.name ?? ''} failed`.replace(/ +failed$/, ' failed');
      return finish(entry, { phase: 'FAILED', message: [why, ...(terminated?.message ? [] : entry.tail)].join('\n') });
    }
  }

  const timer = setInterval(() => {
    for (const entry of followed.values()) {
      check(entry).catch((error: Error) => logger.warn({ jobId: entry.jobId, err: error.message }, 'could not read a job; retrying'));
    }
  }, settings.pollIntervalMs ?? 2_000);
  timer.unref();

  return {
    async start(job: DispatchedJob) {
      const spec = job.spec as unknown as JobSpec;
      if (spec.kind !== 'fine-tuning' && spec.kind !== 'batch' && spec.kind !== 'notebook') throw new JobRefusedError(`the Kubernetes executor does not run ${(spec as { kind: string }).kind} jobs`);
      if (spec.kind === 'fine-tuning' && !settings.image) throw new JobRefusedError('this cluster has no fine-tuning trainer image: set MARINER_FINE_TUNING_IMAGE on its agent');
      const needsUrls = spec.kind === 'fine-tuning' || (spec.kind === 'batch' && spec.dataFiles.length > 0);
      if (needsUrls && !options.objectStore?.presignedUrl) {
        throw new JobRefusedError("this cluster's agent cannot presign object-store URLs for the job's pods: its object store must be S3");
      }
      if (!spec.namespace) throw new JobRefusedError('the job has no namespace');
      const namespace = spec.namespace;
      const attempt = spec.attempt ?? 1;
      const existing = followed.get(job.id);
      if (existing && existing.attempt === attempt) return 'running';
      if (spec.kind === 'notebook') return startNotebook(job, spec, namespace, attempt);
      const name = jobObjectName(job.id);
      const current = await readJob(name, namespace);
      if (current && current.metadata?.annotations?.[ATTEMPT_ANNOTATION] === String(attempt)) {
        // This attempt's Job exists already (a dispatch whose answer was lost): follow it.
        follow(job.id, spec, attempt);
        return 'running';
      }
      const queue = spec.kueueQueueName ?? settings.defaultQueue ?? null;
      const wandb = spec.kind === 'fine-tuning' ? await wandbFor(spec, namespace) : null;
      const objects =
        spec.kind === 'fine-tuning'
          ? fineTuningManifests({
              jobId: job.id,
              attempt,
              namespace,
              image: settings.image!,
              command: settings.command ?? [],
              gpuCount: spec.gpuCount,
              kueueQueueName: queue,
              method: spec.method.type,
              hyperparameters: spec.method.hyperparameters,
              seed: spec.seed,
              baseModelId: spec.baseModel.id,
              wandb,
              urls: await presign(spec),
              ttlSecondsAfterFinished: 24 * 3600,
            })
          : batchJobManifests({
              jobId: job.id,
              attempt,
              namespace,
              image: spec.image,
              command: spec.command,
              scripts: spec.scripts,
              envs: spec.envs,
              dataFiles: await Promise.all(spec.dataFiles.map(async (f) => ({ filename: f.filename, url: await options.objectStore!.presignedUrl!(f.objectKey, 'GET', urlTtl) }))),
              gpuCount: spec.gpuCount,
              workerCount: spec.workerCount,
              kueueQueueName: queue,
              openaiBaseUrl: settings.openaiBaseUrl ?? null,
              ttlSecondsAfterFinished: 24 * 3600,
            });
      if (current) {
        // An earlier attempt's Job is in the way: remove it before creating this one.
        await batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Background' }).catch(() => undefined);
      }
      // The objects the Job uses, replaced if an earlier attempt left them.
      interface Companion {
        kind: string;
        create(): Promise<unknown>;
        remove(): Promise<unknown>;
        patch(body: object[]): Promise<unknown>;
      }
      const secretName = objects.secret.metadata!.name!;
      const companions: Companion[] = [
        {
          kind: 'Secret',
          create: () => core.createNamespacedSecret({ namespace, body: objects.secret as never }),
          remove: () => core.deleteNamespacedSecret({ name: secretName, namespace }),
          patch: (body) => core.patchNamespacedSecret({ name: secretName, namespace, body }),
        },
      ];
      const batchObjects = spec.kind === 'batch' ? (objects as ReturnType<typeof batchJobManifests>) : null;
      if (batchObjects) {
        const configMap = batchObjects.configMap;
        const configMapName = configMap.metadata!.name!;
        companions.push({
          kind: 'ConfigMap',
          create: () => core.createNamespacedConfigMap({ namespace, body: configMap as never }),
          remove: () => core.deleteNamespacedConfigMap({ name: configMapName, namespace }),
          patch: (body) => core.patchNamespacedConfigMap({ name: configMapName, namespace, body }),
        });
      }
      if (batchObjects?.service) {
        const service = batchObjects.service;
        companions.push({
          kind: 'Service',
          create: () => core.createNamespacedService({ namespace, body: service as never }),
          remove: () => core.deleteNamespacedService({ name, namespace }),
          patch: (body) => core.patchNamespacedService({ name, namespace, body }),
        });
      }
      for (const companion of companions) {
        await companion.remove().catch(() => undefined);
        await companion.create();
      }
      const created = await batch.createNamespacedJob({ namespace, body: objects.job as never });
      // They go with their Job (garbage collection by owner reference).
      const owner = [{ op: 'add', path: '/metadata/ownerReferences', value: [{ apiVersion: 'batch/v1', kind: 'Job', name: created.metadata!.name!, uid: created.metadata!.uid! }] }];
      for (const companion of companions) {
        await companion.patch(owner).catch((error: Error) => logger.warn({ jobId: job.id, kind: companion.kind, err: error.message }, 'could not tie an object to its Job'));
      }
      logger.info({ jobId: job.id, kind: spec.kind, namespace, name: created.metadata!.name }, 'created the Job');
      follow(job.id, spec, attempt);
      return 'started';
    },
    async stop(job) {
      const spec = job.spec as unknown as JobSpec;
      if (spec.kind !== 'notebook' || !spec.namespace) return false;
      const stopped = await scaleNotebook(jobObjectName(job.id), spec.namespace, 0);
      const entry = followed.get(job.id);
      if (entry) entry.running = false;
      return stopped;
    },
    async resume(job) {
      const spec = job.spec as unknown as JobSpec;
      if (spec.kind !== 'notebook' || !spec.namespace) return false;
      if (!(await scaleNotebook(jobObjectName(job.id), spec.namespace, 1))) return false;
      const entry = followed.get(job.id) ?? follow(job.id, spec, spec.attempt ?? 1);
      entry.running = false;
      return true;
    },
    async remove(job) {
      const spec = job.spec as unknown as JobSpec;
      followed.delete(job.id);
      if (!spec.namespace) return false;
      return spec.kind === 'notebook' ? removeNotebook(jobObjectName(job.id), spec.namespace) : false;
    },
    async cancel(jobId) {
      const entry = followed.get(jobId);
      if (!entry) return false;
      entry.cancelled = true;
      await batch.deleteNamespacedJob({ name: entry.name, namespace: entry.namespace, propagationPolicy: 'Background' }).catch(ignoreNotFound);
      followed.delete(jobId);
      await reporter.phase(jobId, { phase: 'CANCELLED' });
      return true;
    },
    async has(job) {
      if (followed.has(job.id)) return true;
      const spec = job.spec as unknown as JobSpec;
      if (!spec.namespace || closed) return false;
      const existing = spec.kind === 'notebook' ? await readDeployment(jobObjectName(job.id), spec.namespace) : await readJob(jobObjectName(job.id), spec.namespace);
      if (!existing) return false;
      // Found again after a restart: follow it from where this attempt's output started.
      follow(job.id, spec, Number(existing.metadata?.annotations?.[ATTEMPT_ANNOTATION] ?? spec.attempt ?? 1));
      return true;
    },
    async close() {
      closed = true;
      clearInterval(timer);
      // The Jobs go on without the agent; the next agent finds them again.
      followed.clear();
    },
  };
}
