/**
 * The jobs this agent follows on the cluster: one entry per job, from its start (or its discovery
 * after an agent restart) until its outcome is reported. What each entry has seen (running yet, the
 * pod whose log is followed, the log's last lines, trained tokens) is what the status checks
 * (jobStatus.ts, notebooks.ts) decide from.
 */
import type { JobSpec } from '../../lib/jobSpec.js';
import type { JobReporter } from '../jobReporter.js';
import { jobObjectName } from './jobManifests.js';

/** The container whose log and termination message tell the job's story, by kind (jobManifests.ts). */
export const MAIN_CONTAINER = { 'fine-tuning': 'trainer', batch: 'main', notebook: 'jupyterlab' } as const;

export interface Followed {
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

/** How long a finishing job waits for the rest of its log before its outcome is reported. */
const LOG_GRACE_MS = 5_000;

export function createFollowedJobs(reporter: JobReporter) {
  const followed = new Map<string, Followed>();
  return {
    get: (jobId: string) => followed.get(jobId),
    has: (jobId: string) => followed.has(jobId),
    delete: (jobId: string) => followed.delete(jobId),
    clear: () => followed.clear(),
    values: () => followed.values(),

    /** Follows a job from now on; its output is reported from the offset its spec gives. */
    follow(jobId: string, spec: JobSpec, attempt: number): Followed {
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
    },

    /** Reports the job's outcome and stops following it. */
    async finish(entry: Followed, report: Parameters<JobReporter['phase']>[1]): Promise<void> {
      entry.finished = true;
      // The log's last lines go before the outcome (a follower that sees the end has seen them).
      await Promise.race([entry.logDone, new Promise((resolve) => setTimeout(resolve, LOG_GRACE_MS).unref())]);
      await reporter.phase(entry.jobId, report);
      followed.delete(entry.jobId);
    },
  };
}

export type FollowedJobs = ReturnType<typeof createFollowedJobs>;
