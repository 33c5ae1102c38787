import type { AgentReport } from '../lib/agentContract.js';
import { ErrorCode, MarinerError } from '../lib/errors.js';
import type { Logger } from '../lib/logging.js';

export type JobPhase = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED' | 'LOST';

export interface PhaseReport {
  phase: JobPhase;
  message?: string | null;
  outputPath?: string | null;
  trainedTokens?: number | null;
}

/** The trainer's summary line (`{"type":"summary","trained_tokens":N}`, agent/README.md): N, else null. */
export function trainedTokensOf(line: string): number | null {
  if (!line.includes('"trained_tokens"')) return null;
  try {
    const summary = JSON.parse(line) as { type?: unknown; trained_tokens?: unknown };
    return summary.type === 'summary' && typeof summary.trained_tokens === 'number' ? summary.trained_tokens : null;
  } catch {
    return null;
  }
}

const BATCH_LINES = 500;
const FLUSH_DELAY_MS = 100;

interface JobQueue {
  nextOffset: number;
  lines: { offset: number; text: string; time: string }[];
  phases: PhaseReport[];
  draining: Promise<void> | undefined;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Delivers a job's output and phase changes to the control plane, up the agent's tunnel (`send`: the
 * report outbox, agent/reportOutbox.ts), in order and at least once: lines carry offsets (the control
 * plane ignores those it has), a phase goes only after every line before it (a follower that sees the
 * job finished has seen all of its output), one report of a job is in flight at a time, and a report
 * that was not delivered (no tunnel, the tunnel cut, the control plane restarting) is sent again with
 * backoff until it is — nothing is lost.
 */
export class JobReporter {
  private readonly queues = new Map<string, JobQueue>();
  private closed = false;

  constructor(
    /** Resolves once the control plane has the report; rejects with its refusal (a MarinerError) or a transport failure. */
    private readonly send: (report: AgentReport) => Promise<void>,
    private readonly logger: Logger,
    private readonly retry = { initialMs: 250, maxMs: 10_000 },
  ) {}

  private queue(jobId: string): JobQueue {
    let queue = this.queues.get(jobId);
    if (!queue) {
      queue = { nextOffset: 0, lines: [], phases: [], draining: undefined, timer: undefined };
      this.queues.set(jobId, queue);
    }
    return queue;
  }

  /** Starts a job's output over (a new attempt replaces the old attempt's lines from `offset`). */
  resetOffset(jobId: string, offset: number): void {
    this.queue(jobId).nextOffset = offset;
  }

  /** Queues a line of output; lines are sent in batches shortly after. */
  line(jobId: string, text: string): void {
    const queue = this.queue(jobId);
    queue.lines.push({ offset: queue.nextOffset++, text, time: new Date().toISOString() });
    // `deliver` retries until it succeeds or the reporter closes: the drain never rejects.
    if (queue.lines.length >= BATCH_LINES) void this.drain(jobId);
    else queue.timer ??= setTimeout(() => void this.drain(jobId), FLUSH_DELAY_MS);
  }

  /** Queues a phase change, sent after the lines before it. Resolves when the control plane has it. */
  phase(jobId: string, report: PhaseReport): Promise<void> {
    this.queue(jobId).phases.push(report);
    return this.drain(jobId);
  }

  private drain(jobId: string): Promise<void> {
    const queue = this.queue(jobId);
    if (queue.timer) clearTimeout(queue.timer);
    queue.timer = undefined;
    queue.draining ??= this.deliver(jobId, queue).finally(() => {
      queue.draining = undefined;
      if (queue.lines.length > 0 || queue.phases.length > 0) void this.drain(jobId);
    });
    return queue.draining;
  }

  private async deliver(jobId: string, queue: JobQueue): Promise<void> {
    let delay = this.retry.initialMs;
    while (!this.closed && (queue.lines.length > 0 || queue.phases.length > 0)) {
      try {
        if (queue.lines.length > 0) {
          const batch = queue.lines.slice(0, BATCH_LINES);
          await this.send({ kind: 'jobLogs', jobId, lines: batch });
          queue.lines.splice(0, batch.length);
        } else {
          const report = queue.phases[0]!;
          await this.send({ kind: 'jobStatus', jobId, ...report });
          queue.phases.shift();
        }
        delay = this.retry.initialMs;
      } catch (error) {
        if (error instanceof MarinerError && (error.code === ErrorCode.NOT_FOUND || error.code === ErrorCode.BAD_USER_INPUT)) {
          // The control plane no longer has this job on our cluster (deleted, moved), or refuses
          // the report: retrying cannot help.
          this.logger.warn({ jobId, err: error.message }, 'the control plane refused a job report; dropping it');
          if (queue.lines.length > 0) queue.lines.length = 0;
          else queue.phases.shift();
          continue;
        }
        this.logger.debug({ jobId, err: (error as Error).message, retryInMs: delay }, 'job report failed; retrying');
        await new Promise((resolve) => setTimeout(resolve, delay * (0.5 + Math.random() / 2)));
        delay = Math.min(delay * 2, this.retry.maxMs);
      }
    }
  }

  /** Forgets a finished job once its reports went out. */
  async forget(jobId: string): Promise<void> {
    const queue = this.queues.get(jobId);
    if (!queue) return;
    await this.drain(jobId);
    if (queue.lines.length === 0 && queue.phases.length === 0) this.queues.delete(jobId);
  }

  /** Sends what is queued (waiting at most `graceMs`), then stops retrying. */
  async close(graceMs = 5_000): Promise<void> {
    const pending = [...this.queues.keys()].map((jobId) => this.drain(jobId));
    await Promise.race([Promise.all(pending), new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
    this.closed = true;
    for (const queue of this.queues.values()) if (queue.timer) clearTimeout(queue.timer);
  }
}
