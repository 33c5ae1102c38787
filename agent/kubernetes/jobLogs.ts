/**
 * A job's log: its main container's, in the pod that tells the job's story, followed into the job's
 * output (jobReporter.ts) line by line. The last lines are kept for a failure's message, and the
 * trainer's summary line gives the trained tokens.
 */
import { PassThrough } from 'node:stream';
import { createInterface } from 'node:readline';
import { Log, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../lib/logging.js';
import { trainedTokensOf, type JobReporter } from '../jobReporter.js';
import { MAIN_CONTAINER, type Followed } from './followedJobs.js';

/** The log lines kept for a failure's message. */
const TAIL_LINES = 20;

export function createJobLogFollower(options: { kubeConfig: KubeConfig; reporter: JobReporter; logger: Logger }) {
  const { reporter, logger } = options;
  const logs = new Log(options.kubeConfig);

  /** Streams the pod's log into the job's output (from its start: offsets make a re-read harmless). */
  return function followLog(entry: Followed, pod: string): void {
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
  };
}

export type JobLogFollower = ReturnType<typeof createJobLogFollower>;
