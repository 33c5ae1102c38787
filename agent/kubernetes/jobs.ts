/**
 * Fine-tuning jobs on Kubernetes: the JobHost of the Kubernetes executor, the sibling of
 * agent/localJobHost.ts (LLMariner dispatcher + lifecycle manager). A dispatched job becomes a
 * Secret of presigned URLs and a batch/v1 Job (jobManifests.ts); the host then follows it: its pod
 * running → RUNNING (and its log is followed into the job's output), its pod or Job succeeded with
 * the adapter in the store → SUCCEEDED, failed → FAILED with the termination message, the Job gone
 * while the job was not finished → LOST (the control plane queues it again). The Job outlives the
 * agent: an agent that restarts finds it again (`has`) and goes on following it.
 *
 * This file is the host's commands and its poll; each concern is its own module: the jobs followed
 * (followedJobs.ts), creating a Job (jobLaunch.ts) with its inputs (jobInputs.ts), the phase from the
 * Job and its pods (jobStatus.ts), the log (jobLogs.ts), and notebooks (notebooks.ts).
 */
import { AppsV1Api, BatchV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { JobSpec } from '../../lib/jobSpec.js';
import type { Logger } from '../../lib/logging.js';
import type { ObjectStore } from '../../lib/objectStore/index.js';
import { JobRefusedError, type DispatchedJob, type JobHost } from '../executor.js';
import type { JobReporter } from '../jobReporter.js';
import { ignoreNotFound } from './apiErrors.js';
import { createFollowedJobs, type Followed } from './followedJobs.js';
import { createJobInputs } from './jobInputs.js';
import { createJobLauncher } from './jobLaunch.js';
import { createJobLogFollower } from './jobLogs.js';
import { ATTEMPT_ANNOTATION, jobObjectName } from './jobManifests.js';
import { jobSettingsWithDefaults, type KubernetesJobSettings } from './jobSettings.js';
import { createJobStatusCheck } from './jobStatus.js';
import { createNotebookHost } from './notebooks.js';

export type { KubernetesJobSettings } from './jobSettings.js';

export function createKubernetesJobHost(options: {
  kubeConfig: KubeConfig;
  objectStore: ObjectStore | undefined;
  reporter: JobReporter;
  logger: Logger;
  settings: KubernetesJobSettings;
  /** The LocalQueue of a namespace whose project has a GPU quota (kueueQueues.ts), else null. */
  kueueQueueIn?: (namespace: string) => string | null;
}): JobHost {
  const { reporter, logger, objectStore } = options;
  const settings = jobSettingsWithDefaults(options.settings);
  const batch = options.kubeConfig.makeApiClient(BatchV1Api);
  const apps = options.kubeConfig.makeApiClient(AppsV1Api);
  const core = options.kubeConfig.makeApiClient(CoreV1Api);
  const followed = createFollowedJobs(reporter);
  const notebooks = createNotebookHost({ apps, core, followed, reporter, logger, settings });
  const jobStatus = createJobStatusCheck({
    batch,
    core,
    objectStore,
    followed,
    followLog: createJobLogFollower({ kubeConfig: options.kubeConfig, reporter, logger }),
    reporter,
  });
  const launchJob = createJobLauncher({
    batch,
    core,
    inputs: createJobInputs({ core, objectStore, settings }),
    readJob: jobStatus.readJob,
    followed,
    logger,
    settings,
    ...(options.kueueQueueIn ? { kueueQueueIn: options.kueueQueueIn } : {}),
  });
  let closed = false;

  async function check(entry: Followed): Promise<void> {
    if (entry.finished || entry.cancelled) return;
    if (entry.spec.kind === 'notebook') return notebooks.check(entry);
    return jobStatus.check(entry);
  }

  const timer = setInterval(() => {
    for (const entry of followed.values()) {
      check(entry).catch((error: Error) => logger.warn({ jobId: entry.jobId, err: error.message }, 'could not read a job; retrying'));
    }
  }, settings.pollIntervalMs);
  timer.unref();

  return {
    async start(job: DispatchedJob) {
      const spec = job.spec as unknown as JobSpec;
      if (spec.kind !== 'fine-tuning' && spec.kind !== 'batch' && spec.kind !== 'notebook')
        throw new JobRefusedError(`the Kubernetes executor does not run ${(spec as { kind: string }).kind} jobs`);
      const needsUrls = spec.kind === 'fine-tuning' || (spec.kind === 'batch' && spec.dataFiles.length > 0);
      if (needsUrls && !objectStore?.presignedUrl) {
        throw new JobRefusedError("this cluster's agent cannot presign object-store URLs for the job's pods: its object store must be S3");
      }
      if (!spec.namespace) throw new JobRefusedError('the job has no namespace');
      const namespace = spec.namespace;
      const attempt = spec.attempt ?? 1;
      const existing = followed.get(job.id);
      if (existing && existing.attempt === attempt) return 'running';
      if (spec.kind === 'notebook') return notebooks.start(job, spec, namespace, attempt);
      return launchJob(job, spec, namespace, attempt);
    },
    async stop(job) {
      const spec = job.spec as unknown as JobSpec;
      if (spec.kind !== 'notebook' || !spec.namespace) return false;
      const stopped = await notebooks.scale(jobObjectName(job.id), spec.namespace, 0);
      const entry = followed.get(job.id);
      if (entry) entry.running = false;
      return stopped;
    },
    async resume(job) {
      const spec = job.spec as unknown as JobSpec;
      if (spec.kind !== 'notebook' || !spec.namespace) return false;
      if (!(await notebooks.scale(jobObjectName(job.id), spec.namespace, 1))) return false;
      const entry = followed.get(job.id) ?? followed.follow(job.id, spec, spec.attempt ?? 1);
      entry.running = false;
      return true;
    },
    async remove(job) {
      const spec = job.spec as unknown as JobSpec;
      followed.delete(job.id);
      if (!spec.namespace) return false;
      return spec.kind === 'notebook' ? notebooks.remove(jobObjectName(job.id), spec.namespace) : false;
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
      const existing =
        spec.kind === 'notebook' ? await notebooks.read(jobObjectName(job.id), spec.namespace) : await jobStatus.readJob(jobObjectName(job.id), spec.namespace);
      if (!existing) return false;
      // Found again after a restart: follow it from where this attempt's output started.
      followed.follow(job.id, spec, Number(existing.metadata?.annotations?.[ATTEMPT_ANNOTATION] ?? spec.attempt ?? 1));
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
