/**
 * A fine-tuning or batch job becomes a batch/v1 Job and its companions (a Secret of presigned URLs; a
 * batch job's ConfigMap of scripts and, with several workers, its headless Service), from
 * jobManifests.ts. An attempt whose Job exists already is followed, not created again; an earlier
 * attempt's objects are replaced. The companions are tied to the Job, so they go with it.
 */
import type { BatchV1Api, CoreV1Api, V1Job } from '@kubernetes/client-node';
import type { BatchSpec, FineTuningSpec } from '../../lib/jobSpec.js';
import type { Logger } from '../../lib/logging.js';
import type { DispatchedJob } from '../executor.js';
import type { FollowedJobs } from './followedJobs.js';
import type { JobInputs } from './jobInputs.js';
import { defaultTrainer } from './fineTuningCommand.js';
import { ATTEMPT_ANNOTATION, batchJobManifests, fineTuningManifests, jobObjectName } from './jobManifests.js';
import type { ResolvedJobSettings } from './jobSettings.js';

/** How long a finished Job is kept (its pods' logs with it). */
const TTL_AFTER_FINISHED_SECONDS = 24 * 3600;

/** An object a Job uses, replaced if an earlier attempt left it. */
interface Companion {
  kind: string;
  create(): Promise<unknown>;
  remove(): Promise<unknown>;
  patch(body: object[]): Promise<unknown>;
}

export function createJobLauncher(options: {
  batch: BatchV1Api;
  core: CoreV1Api;
  inputs: JobInputs;
  readJob: (name: string, namespace: string) => Promise<V1Job | null>;
  followed: FollowedJobs;
  logger: Logger;
  settings: ResolvedJobSettings;
  /** The LocalQueue the agent keeps in a namespace whose project has a GPU quota (kueueQueues.ts), else null. */
  kueueQueueIn?: (namespace: string) => string | null;
}) {
  const { batch, core, inputs, readJob, followed, logger, settings } = options;

  /** Starts the job's attempt, or follows it when its Job is there already (a dispatch whose answer was lost). */
  return async function launchJob(job: DispatchedJob, spec: FineTuningSpec | BatchSpec, namespace: string, attempt: number): Promise<'started' | 'running'> {
    const name = jobObjectName(job.id);
    const current = await readJob(name, namespace);
    if (current && current.metadata?.annotations?.[ATTEMPT_ANNOTATION] === String(attempt)) {
      // This attempt's Job exists already (a dispatch whose answer was lost): follow it.
      followed.follow(job.id, spec, attempt);
      return 'running';
    }
    // The project's queue; else, where its project has a GPU quota, the queue the agent keeps for it (a Job
    // without the label would run beside the quota); else the default queue, if any.
    const queue = spec.kueueQueueName ?? options.kueueQueueIn?.(namespace) ?? settings.defaultQueue ?? null;
    const wandb = spec.kind === 'fine-tuning' ? await inputs.wandbFor(spec, namespace) : null;
    // MARINER_FINE_TUNING_IMAGE (and _COMMAND) when set; else LLMariner's image with the generated command.
    const trainer =
      spec.kind !== 'fine-tuning' ? null : settings.image ? { image: settings.image, command: settings.command ?? [], extraOutputs: [] } : defaultTrainer(spec);
    const objects =
      spec.kind === 'fine-tuning'
        ? fineTuningManifests({
            jobId: job.id,
            attempt,
            namespace,
            image: trainer!.image,
            command: trainer!.command,
            gpuCount: spec.gpuCount,
            kueueQueueName: queue,
            method: spec.method.type,
            hyperparameters: spec.method.hyperparameters,
            seed: spec.seed,
            baseModelId: spec.baseModel.id,
            wandb,
            urls: await inputs.fineTuningUrls(spec, trainer!.extraOutputs),
            ttlSecondsAfterFinished: TTL_AFTER_FINISHED_SECONDS,
          })
        : batchJobManifests({
            jobId: job.id,
            attempt,
            namespace,
            image: spec.image,
            command: spec.command,
            scripts: spec.scripts,
            envs: spec.envs,
            dataFiles: await inputs.dataFileUrls(spec),
            gpuCount: spec.gpuCount,
            workerCount: spec.workerCount,
            kueueQueueName: queue,
            openaiBaseUrl: settings.openaiBaseUrl ?? null,
            ttlSecondsAfterFinished: TTL_AFTER_FINISHED_SECONDS,
          });
    if (current) {
      // An earlier attempt's Job is in the way: remove it before creating this one.
      await batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Background' }).catch(() => undefined);
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
    const owner = [
      {
        op: 'add',
        path: '/metadata/ownerReferences',
        value: [{ apiVersion: 'batch/v1', kind: 'Job', name: created.metadata!.name!, uid: created.metadata!.uid! }],
      },
    ];
    for (const companion of companions) {
      await companion
        .patch(owner)
        .catch((error: Error) => logger.warn({ jobId: job.id, kind: companion.kind, err: error.message }, 'could not tie an object to its Job'));
    }
    logger.info({ jobId: job.id, kind: spec.kind, namespace, name: created.metadata!.name }, 'created the Job');
    followed.follow(job.id, spec, attempt);
    return 'started';
  };
}

export type JobLauncher = ReturnType<typeof createJobLauncher>;
