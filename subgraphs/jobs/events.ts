import type { PubSub } from '../../lib/pubsub.js';
import type { EventRow, JobRow, JobStore, LogRow } from './store.js';

/** Channels (DESIGN §3: notifications carry ids; the rows are in tables). */
export const JOB_UPDATES = 'job_updates';
export const JOB_LOGS = 'job_logs';

/** What a trainer line tells beyond being output (the trainer protocol: agent/README.md "Trainers"). */
export type TrainerLine =
  | { kind: 'metrics'; step: number; totalSteps: number | null; data: Record<string, unknown> }
  | { kind: 'checkpoint'; step: number; metrics: Record<string, unknown> };

/**
 * Trainers report progress as JSON lines among their output: `{"type":"metrics","step":3,
 * "total_steps":10,"train_loss":1.2}` becomes an OpenAI metrics event, `{"type":"checkpoint",
 * "step":5,"metrics":{...}}` a checkpoint. Anything else is plain output.
 */
export function parseTrainerLine(text: string): TrainerLine | null {
  const trimmed = text.trim();
  if (!trimmed.startsWith('{') || !trimmed.endsWith('}')) return null;
  let value: unknown;
  try {
    value = JSON.parse(trimmed);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const record = value as Record<string, unknown>;
  const step = record['step'];
  if (typeof step !== 'number' || !Number.isInteger(step) || step < 0) return null;
  if (record['type'] === 'metrics') {
    const { type: _type, ...data } = record;
    const total = record['total_steps'];
    return { kind: 'metrics', step, totalSteps: typeof total === 'number' ? total : null, data };
  }
  if (record['type'] === 'checkpoint') {
    const metrics = record['metrics'];
    return { kind: 'checkpoint', step, metrics: typeof metrics === 'object' && metrics !== null ? (metrics as Record<string, unknown>) : {} };
  }
  return null;
}

function metricsMessage(line: Extract<TrainerLine, { kind: 'metrics' }>): string {
  const loss = line.data['train_loss'];
  const valid = line.data['valid_loss'];
  const parts = [
    typeof loss === 'number' ? `training loss=${loss.toFixed(4)}` : null,
    typeof valid === 'number' ? `validation loss=${valid.toFixed(4)}` : null,
  ].filter(Boolean);
  return `Step ${line.step}${line.totalSteps ? `/${line.totalSteps}` : ''}${parts.length > 0 ? `: ${parts.join(', ')}` : ''}`;
}

/** Records a job's events and announces changes to its subscribers (across replicas). */
export class JobEvents {
  constructor(
    private readonly store: JobStore,
    private readonly pubsub: PubSub,
  ) {}

  async record(job: Pick<JobRow, 'id'>, event: Pick<EventRow, 'level' | 'message' | 'type'> & { data?: Record<string, unknown> | null }): Promise<void> {
    await this.store.addEvent(job.id, event);
  }

  /** The job's state changed: `jobUpdated` and `jobsUpdated` subscribers read it again. */
  async changed(job: Pick<JobRow, 'id' | 'project_id'>): Promise<void> {
    await this.pubsub.publish(JOB_UPDATES, `${job.project_id} ${job.id}`);
  }

  /** New lines were stored: metrics and checkpoints among them are recorded, followers woken. */
  async logsAppended(jobId: string, lines: LogRow[]): Promise<void> {
    for (const line of lines) {
      const parsed = parseTrainerLine(line.text);
      if (parsed?.kind === 'metrics')
        await this.record({ id: jobId }, { level: 'info', type: 'metrics', message: metricsMessage(parsed), data: { step: parsed.step, ...parsed.data } });
      if (parsed?.kind === 'checkpoint') await this.store.addCheckpoint(jobId, parsed.step, parsed.metrics);
    }
    if (lines.length > 0) await this.pubsub.publish(JOB_LOGS, jobId);
  }
}
