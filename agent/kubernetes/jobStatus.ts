/**
 * A fine-tuning or batch job's phase, from its Job and its pods (LLMariner lifecycle manager): a pod
 * running → RUNNING (and worker 0's log is followed); the pods or the Job succeeded → SUCCEEDED (a
 * fine-tuning job only with the adapter in the store); failed → FAILED with the termination message (or
 * the log's last lines); the Job gone while the job was not finished → LOST (the control plane queues
 * it again).
 */
import type { BatchV1Api, CoreV1Api, V1Job, V1Pod } from '@kubernetes/client-node';
import type { ObjectStore } from '../../lib/objectStore/index.js';
import type { JobReporter } from '../jobReporter.js';
import { orNotFound } from './apiErrors.js';
import { MAIN_CONTAINER, type Followed, type FollowedJobs } from './followedJobs.js';
import { ADAPTER_FILES } from './jobManifests.js';
import type { JobLogFollower } from './jobLogs.js';

export function createJobStatusCheck(options: {
  batch: BatchV1Api;
  core: CoreV1Api;
  objectStore: ObjectStore | undefined;
  followed: FollowedJobs;
  followLog: JobLogFollower;
  reporter: JobReporter;
}) {
  const { batch, core, followed, followLog, reporter } = options;
  const finish = followed.finish;

  const readJob = (name: string, namespace: string): Promise<V1Job | null> => orNotFound(batch.readNamespacedJob({ name, namespace }));

  return {
    readJob,

    /** Reads the job's Job and pods once, and reports what changed. */
    async check(entry: Followed): Promise<void> {
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
      const succeeded =
        succeededPods >= workers || (job.status?.succeeded ?? 0) >= workers || conditions.some((c) => c.type === 'Complete' && c.status === 'True');
      const failed = failedPod !== undefined || (job.status?.failed ?? 0) > 0 || conditions.some((c) => c.type === 'Failed' && c.status === 'True');
      if (succeeded && entry.spec.kind === 'batch') return finish(entry, { phase: 'SUCCEEDED' });
      if (succeeded && entry.spec.kind === 'fine-tuning') {
        const store = options.objectStore!;
        const missing: string[] = [];
        for (const file of ADAPTER_FILES) if (!(await store.head(entry.spec.outputPrefix + file))) missing.push(file);
        if (missing.length > 0)
          return finish(entry, { phase: 'FAILED', message: [`the trainer finished but did not upload ${missing.join(', ')}`, ...entry.tail].join('\n') });
        return finish(entry, { phase: 'SUCCEEDED', outputPath: store.uri(entry.spec.outputPrefix.replace(/\/+$/, '')), trainedTokens: entry.trainedTokens });
      }
      if (failed) {
        const terminated = (failedPod ?? pod)?.status?.containerStatuses?.find((c) => c.name === MAIN_CONTAINER[entry.spec.kind])?.state?.terminated;
        const why =
          terminated?.message?.trim() ||
          terminated?.reason ||
          conditions.find((c) => c.type === 'Failed')?.message ||
          `the job's pod ${failedPod?.metadata?.name ?? ''} failed`.replace(/ +failed$/, ' failed');
        return finish(entry, { phase: 'FAILED', message: [why, ...(terminated?.message ? [] : entry.tail)].join('\n') });
      }
    },
  };
}

export type JobStatusCheck = ReturnType<typeof createJobStatusCheck>;
