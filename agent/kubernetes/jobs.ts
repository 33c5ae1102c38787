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
import { BatchV1Api, CoreV1Api, Log, type KubeConfig, type V1Job, type V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../../lib/logging.js';
import type { ObjectStore } from '../../lib/objectStore/index.js';
import { JobRefusedError, type DispatchedJob, type JobHost } from '../executor.js';
import { trainedTokensOf, type JobReporter } from '../jobReporter.js';
import { ADAPTER_FILES, ATTEMPT_ANNOTATION, fineTuningManifests, jobObjectName } from './jobManifests.js';

/** The fine-tuning spec as the jobs subgraph sends it (subgraphs/jobs/store.ts FineTuningSpec). */
interface FineTuningSpec {
  kind: 'fine-tuning';
  baseModel: { id: string; source: string };
  trainingFile: { objectKey: string };
  validationFile: { objectKey: string } | null;
  outputPrefix: string;
  method: { type: string; hyperparameters: unknown };
  seed: number;
  gpuCount: number;
  namespace: string | null;
  kueueQueueName: string | null;
  attempt?: number;
  logOffset?: number;
}

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
}

interface Followed {
  jobId: string;
  spec: FineTuningSpec;
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

function statusCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
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

  function follow(jobId: string, spec: FineTuningSpec, attempt: number): Followed {
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

  async function readJob(name: string, namespace: string): Promise<V1Job | null> {
    try {
      return await batch.readNamespacedJob({ name, namespace });
    } catch (error) {
      if (statusCode(error) === 404) return null;
      throw error;
    }
  }

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
        .log(entry.namespace, pod, 'trainer', stream, { follow: true })
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

  async function check(entry: Followed): Promise<void> {
    if (entry.finished || entry.cancelled) return;
    const job = await readJob(entry.name, entry.namespace);
    if (!job) return finish(entry, { phase: 'LOST', message: `its Kubernetes Job ${entry.namespace}/${entry.name} was deleted` });
    const pods = (await core.listNamespacedPod({ namespace: entry.namespace, labelSelector: `job-name=${entry.name}` })).items;
    const pod: V1Pod | undefined = pods.sort((a, b) => String(b.metadata?.creationTimestamp ?? '').localeCompare(String(a.metadata?.creationTimestamp ?? '')))[0];
    const phase = pod?.status?.phase;
    if (pod && phase && phase !== 'Pending' && entry.logPod !== pod.metadata!.name) followLog(entry, pod.metadata!.name!);
    if (!entry.running && (phase === 'Running' || phase === 'Succeeded' || phase === 'Failed')) {
      entry.running = true;
      await reporter.phase(entry.jobId, { phase: 'RUNNING' });
    }
    const conditions = job.status?.conditions ?? [];
    const succeeded = phase === 'Succeeded' || (job.status?.succeeded ?? 0) > 0 || conditions.some((c) => c.type === 'Complete' && c.status === 'True');
    const failed = phase === 'Failed' || (job.status?.failed ?? 0) > 0 || conditions.some((c) => c.type === 'Failed' && c.status === 'True');
    if (succeeded) {
      const store = options.objectStore!;
      const missing: string[] = [];
      for (const file of ADAPTER_FILES) if (!(await store.head(entry.spec.outputPrefix + file))) missing.push(file);
      if (missing.length > 0) return finish(entry, { phase: 'FAILED', message: [`the trainer finished but did not upload ${missing.join(', ')}`, ...entry.tail].join('\n') });
      return finish(entry, { phase: 'SUCCEEDED', outputPath: store.uri(entry.spec.outputPrefix.replace(/\/+$/, '')), trainedTokens: entry.trainedTokens });
    }
    if (failed) {
      const terminated = pod?.status?.containerStatuses?.find((c) => c.name === 'trainer')?.state?.terminated;
      const why = terminated?.message?.trim() || terminated?.reason || conditions.find((c) => c.type === 'Failed')?.message || 'the trainer pod failed';
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
      const spec = job.spec as unknown as FineTuningSpec;
      if (spec.kind !== 'fine-tuning') throw new JobRefusedError(`the Kubernetes executor runs fine-tuning jobs only, not ${spec.kind}`);
      if (!settings.image) throw new JobRefusedError('this cluster has no fine-tuning trainer image: set MARINER_FINE_TUNING_IMAGE on its agent');
      if (!options.objectStore?.presignedUrl) {
        throw new JobRefusedError("this cluster's agent cannot presign object-store URLs for the trainer pod: its object store must be S3");
      }
      if (!spec.namespace) throw new JobRefusedError('the job has no namespace');
      const attempt = spec.attempt ?? 1;
      const existing = followed.get(job.id);
      if (existing && existing.attempt === attempt) return 'running';
      const manifests = fineTuningManifests({
        jobId: job.id,
        attempt,
        namespace: spec.namespace,
        image: settings.image,
        command: settings.command ?? [],
        gpuCount: spec.gpuCount,
        kueueQueueName: spec.kueueQueueName ?? settings.defaultQueue ?? null,
        method: spec.method.type,
        hyperparameters: spec.method.hyperparameters,
        seed: spec.seed,
        baseModelId: spec.baseModel.id,
        urls: await presign(spec),
        ttlSecondsAfterFinished: 24 * 3600,
      });
      const current = await readJob(manifests.job.metadata!.name!, spec.namespace);
      if (current && current.metadata?.annotations?.[ATTEMPT_ANNOTATION] === String(attempt)) {
        // This attempt's Job exists already (a dispatch whose answer was lost): follow it.
        follow(job.id, spec, attempt);
        return 'running';
      }
      if (current) {
        // An earlier attempt's Job is in the way: remove it before creating this one.
        await batch.deleteNamespacedJob({ name: current.metadata!.name!, namespace: spec.namespace, propagationPolicy: 'Background' }).catch(() => undefined);
      }
      await core.deleteNamespacedSecret({ name: manifests.secret.metadata!.name!, namespace: spec.namespace }).catch(() => undefined);
      await core.createNamespacedSecret({ namespace: spec.namespace, body: manifests.secret as never });
      const created = await batch.createNamespacedJob({ namespace: spec.namespace, body: manifests.job as never });
      // The Secret goes with its Job (garbage collection by owner reference).
      await core
        .patchNamespacedSecret({
          name: manifests.secret.metadata!.name!,
          namespace: spec.namespace,
          body: [{ op: 'add', path: '/metadata/ownerReferences', value: [{ apiVersion: 'batch/v1', kind: 'Job', name: created.metadata!.name!, uid: created.metadata!.uid! }] }],
        })
        .catch((error: Error) => logger.warn({ jobId: job.id, err: error.message }, 'could not tie the URL Secret to its Job'));
      logger.info({ jobId: job.id, namespace: spec.namespace, name: created.metadata!.name }, 'created the fine-tuning Job');
      follow(job.id, spec, attempt);
      return 'started';
    },
    async cancel(jobId) {
      const entry = followed.get(jobId);
      if (!entry) return false;
      entry.cancelled = true;
      await batch.deleteNamespacedJob({ name: entry.name, namespace: entry.namespace, propagationPolicy: 'Background' }).catch((error) => {
        if (statusCode(error) !== 404) throw error;
      });
      followed.delete(jobId);
      await reporter.phase(jobId, { phase: 'CANCELLED' });
      return true;
    },
    async has(job) {
      if (followed.has(job.id)) return true;
      const spec = job.spec as unknown as FineTuningSpec;
      if (spec.kind !== 'fine-tuning' || !spec.namespace || closed) return false;
      const existing = await readJob(jobObjectName(job.id), spec.namespace);
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
