import type { Knex } from '../../lib/db.js';
import { toCount } from '../../lib/db.js';
import type { Identity } from '../../lib/identity.js';
import { newId } from '../../lib/ids.js';
import type { BatchSpec, FineTuningSpec, IntegrationValue, MethodValue, NotebookSpec } from '../../lib/jobSpec.js';
import { paginate, type Page, type PageArgs } from '../../lib/pagination.js';

export type { BatchSpec, FineTuningSpec, HyperparametersValue, IntegrationValue, MethodValue, NotebookSpec } from '../../lib/jobSpec.js';

export const SCHEMA = 'jobs';

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'stopped';
export type JobAction = 'creating' | 'cancelling' | 'starting' | 'stopping' | 'deleting';
export const FINISHED: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];

/** What every job has: its project, lifecycle, placement and dispatch state. */
interface JobBase {
  id: string;
  tenant_id: string;
  organization_id: string;
  project_id: string;
  gpu_count: number;
  status: JobStatus;
  pending_action: JobAction | null;
  error: { code: string; message: string; param: string | null } | null;
  cluster_id: string | null;
  /** The cluster the job was last sent to (dispatcher): its agent may see it and report on it. */
  dispatched_cluster_id: string | null;
  kubernetes_namespace: string | null;
  kueue_queue_name: string | null;
  attempts: number;
  /** Who created the job (their identity, no credential); `principal.apiKey` is the key they used, if any. */
  creator: Identity;
  /** When the job stopped acting for its creator: the API key that created it was deleted. */
  creator_revoked_at: Date | null;
  dispatch_lease_until: Date | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  updated_at: Date;
}

export interface FineTuningJobRow extends JobBase {
  kind: 'fine-tuning';
  model: string;
  training_file: string;
  validation_file: string | null;
  suffix: string;
  method: MethodValue;
  integrations: IntegrationValue[];
  seed: number;
  metadata: Record<string, string> | null;
  fine_tuned_model: string | null;
  result_files: string[];
  trained_tokens: number | null;
  spec: FineTuningSpec;
}

export interface BatchJobRow extends JobBase {
  kind: 'batch';
  image: string;
  command: string;
  envs: Record<string, string>;
  data_files: string[];
  worker_count: number;
  script_names: string[];
  spec: BatchSpec;
}

export interface NotebookRow extends JobBase {
  kind: 'notebook';
  name: string;
  notebook: { image: string; resources: NotebookSpec['resources']; envs: Record<string, string>; ports: number[] };
  /** Encrypted (secrets.ts): Jupyter's token, and the API key made for the notebook. */
  secrets: { token: string; apiKeyId: string; apiKey: string };
  stopped_at: Date | null;
  spec: NotebookSpec;
}

export type JobRow = FineTuningJobRow | BatchJobRow | NotebookRow;
export type JobKind = JobRow['kind'];

export interface SummaryRow {
  bucket: Date;
  kind: JobKind;
  total_created: number;
  completed: number;
  failed: number;
  cancelled: number;
  running: number;
  queued: number;
  stopped: number;
}

export interface LogRow {
  job_id: string;
  offset: number;
  text: string;
  time: Date;
}

export interface EventRow {
  id: string;
  job_id: string;
  level: 'info' | 'warn' | 'error';
  message: string;
  type: 'message' | 'metrics';
  data: Record<string, unknown> | null;
  created_at: Date;
}

export interface CheckpointRow {
  id: string;
  job_id: string;
  step_number: number;
  metrics: Record<string, unknown>;
  created_at: Date;
}

type Generated =
  | 'status'
  | 'pending_action'
  | 'error'
  | 'attempts'
  | 'dispatched_cluster_id'
  | 'creator_revoked_at'
  | 'dispatch_lease_until'
  | 'created_at'
  | 'started_at'
  | 'finished_at'
  | 'updated_at';
export type NewJob =
  | Omit<FineTuningJobRow, Generated | 'fine_tuned_model' | 'result_files' | 'trained_tokens'>
  | Omit<BatchJobRow, Generated>
  | Omit<NotebookRow, Generated | 'stopped_at'>;

/** Where a project's records are: every user-facing read filters by tenant and project. */
export interface JobScope {
  tenantId: string;
  projectId: string;
}

const JSON_COLUMNS = [
  'method',
  'integrations',
  'metadata',
  'error',
  'result_files',
  'spec',
  'creator',
  'envs',
  'data_files',
  'script_names',
  'notebook',
  'secrets',
] as const;

function encode(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...row };
  for (const column of JSON_COLUMNS) if (out[column] !== undefined && out[column] !== null) out[column] = JSON.stringify(out[column]);
  return out;
}

/** All SQL of the jobs subgraph. State changes happen in single statements guarded by the current state. */
export class JobStore {
  constructor(private readonly knex: Knex) {}

  private jobs(trx: Knex | Knex.Transaction = this.knex): Knex.QueryBuilder {
    return trx.withSchema(SCHEMA).table('jobs');
  }

  private scoped(scope: JobScope): Knex.QueryBuilder {
    return this.jobs().where({ 'jobs.tenant_id': scope.tenantId, 'jobs.project_id': scope.projectId });
  }

  async insert(job: NewJob): Promise<JobRow> {
    const [row] = await this.jobs()
      .insert(encode({ ...job, status: 'queued', pending_action: 'creating', ...(job.kind === 'fine-tuning' ? { result_files: [] } : {}), attempts: 0 }))
      .returning('*');
    return row as JobRow;
  }

  /** A job of the project, of any kind (logs are read the same way for all). */
  async job(scope: JobScope, id: string): Promise<JobRow | undefined> {
    return this.scoped(scope).where({ id }).first();
  }

  /**
   * Asks the agent for a notebook action (start, stop, delete): only from the statuses it applies to,
   * and only when no other action is waiting. Undefined when that did not hold.
   */
  async requestAction(
    scope: JobScope,
    id: string,
    action: 'starting' | 'stopping' | 'deleting',
    from: JobStatus[],
    replacing: JobAction[],
  ): Promise<JobRow | undefined> {
    const [row] = await this.scoped(scope)
      .where({ id })
      .whereIn('status', from)
      .where((q) => q.whereNull('pending_action').orWhereIn('pending_action', replacing))
      .update({ pending_action: action, dispatch_lease_until: null, updated_at: this.knex.fn.now() })
      .returning('*');
    return row as JobRow | undefined;
  }

  /** A job gone from its cluster and from the project (a deleted notebook). */
  async remove(id: string): Promise<void> {
    await this.knex.transaction(async (trx) => {
      await trx.withSchema(SCHEMA).table('jobs').where({ id }).delete();
      for (const table of ['job_logs', 'job_events', 'job_checkpoints']) await trx.withSchema(SCHEMA).table(table).where({ job_id: id }).delete();
    });
  }

  /** A notebook's name is taken in the project. */
  async notebookNamed(scope: JobScope, name: string): Promise<boolean> {
    return Boolean(await this.scoped(scope).where({ kind: 'notebook', name }).first('id'));
  }

  /** Deletes a finished job with its output lines, events and checkpoints (LLMariner delete batch job). */
  async delete(scope: JobScope, id: string): Promise<boolean> {
    return this.knex.transaction(async (trx) => {
      const deleted = await trx
        .withSchema(SCHEMA)
        .table('jobs')
        .where({ tenant_id: scope.tenantId, project_id: scope.projectId, id })
        .whereIn('status', FINISHED)
        .delete();
      if (deleted === 0) return false;
      for (const table of ['job_logs', 'job_events', 'job_checkpoints']) await trx.withSchema(SCHEMA).table(table).where({ job_id: id }).delete();
      return true;
    });
  }

  /** A job by id alone: for subscriptions that already checked access, and for the dispatcher. */
  async byId(id: string): Promise<JobRow | undefined> {
    return this.jobs().where({ id }).first();
  }

  async list<K extends JobKind>(scope: JobScope, kind: K, page: PageArgs): Promise<Page<Extract<JobRow, { kind: K }>> & { totalItems: number }> {
    const ofKind = () => this.scoped(scope).where('jobs.kind', kind);
    const result = await paginate<Extract<JobRow, { kind: K }>>(() => ofKind().select('jobs.*'), 'jobs', { ...page, order: 'desc' });
    const [{ count }] = (await ofKind().count({ count: '*' })) as [{ count: unknown }];
    return { ...result, totalItems: toCount(count) };
  }

  /** Every job placed on a cluster that has not finished (the rescheduler looks for abandoned clusters). */
  async unfinishedPlaced(): Promise<JobRow[]> {
    return this.jobs().whereNotNull('cluster_id').whereNotIn('status', FINISHED).orderBy('created_at');
  }

  /**
   * Moves a job off a cluster that stopped reporting (LLMariner rescheduler): queued again on its new
   * cluster and namespace. Guarded by the old cluster, so a report that came meanwhile wins.
   */
  async reassign(id: string, fromClusterId: string, to: { clusterId: string; namespace: string; kueueQueueName: string | null }): Promise<JobRow | undefined> {
    const [row] = await this.jobs()
      .where({ id, cluster_id: fromClusterId })
      .whereNotIn('status', FINISHED)
      .update({
        cluster_id: to.clusterId,
        kubernetes_namespace: to.namespace,
        kueue_queue_name: to.kueueQueueName,
        spec: this.knex.raw(`spec || jsonb_build_object('namespace', ?::text, 'kueueQueueName', ?::text)`, [to.namespace, to.kueueQueueName]),
        status: 'queued',
        pending_action: 'creating',
        // The new cluster has not been sent the job yet; the old one no longer has a say in it.
        dispatched_cluster_id: null,
        dispatch_lease_until: null,
        started_at: null,
        updated_at: this.knex.fn.now(),
      })
      .returning('*');
    return row as JobRow | undefined;
  }

  /**
   * Job counts of the project per time bucket and kind (LLMariner job summaries): created and finished
   * (by outcome) and notebooks stopped within each bucket, running and queued at its end. Buckets
   * without jobs are absent.
   */
  async summaries(scope: JobScope, start: Date, end: Date, intervalSeconds: number): Promise<SummaryRow[]> {
    const iv = `make_interval(secs => ${Number(intervalSeconds)})`;
    const at = `b.bucket + ${iv}`;
    const { rows } = (await this.knex.raw(
      `select b.bucket, j.kind,
         count(*) filter (where j.created_at >= b.bucket and j.created_at < ${at})::int as total_created,
         count(*) filter (where j.finished_at >= b.bucket and j.finished_at < ${at} and j.status = 'succeeded')::int as completed,
         count(*) filter (where j.finished_at >= b.bucket and j.finished_at < ${at} and j.status = 'failed')::int as failed,
         count(*) filter (where j.finished_at >= b.bucket and j.finished_at < ${at} and j.status = 'cancelled')::int as cancelled,
         count(*) filter (where j.status = 'stopped' and j.stopped_at >= b.bucket and j.stopped_at < ${at})::int as stopped,
         count(*) filter (where j.started_at < ${at} and (j.finished_at is null or j.finished_at >= ${at}) and (j.stopped_at is null or j.stopped_at >= ${at}))::int as running,
         count(*) filter (where j.created_at < ${at} and (j.started_at is null or j.started_at >= ${at}) and (j.finished_at is null or j.finished_at >= ${at}))::int as queued
       from generate_series(?::timestamptz, ?::timestamptz, ${iv}) as b(bucket)
       cross join (select kind, status, created_at, started_at, finished_at, stopped_at from ??.jobs where tenant_id = ? and project_id = ? and created_at < ?) as j
       where b.bucket < ?
       group by b.bucket, j.kind
       order by b.bucket, j.kind`,
      [start.toISOString(), end.toISOString(), SCHEMA, scope.tenantId, scope.projectId, end.toISOString(), end.toISOString()],
    )) as { rows: SummaryRow[] };
    return rows;
  }

  /** How many jobs there are by kind and status (the `mariner_jobs` metric). */
  async countByStatus(): Promise<{ kind: string; status: string; count: number }[]> {
    const rows = (await this.jobs().select('kind', 'status').count({ count: '*' }).groupBy('kind', 'status')) as {
      kind: string;
      status: string;
      count: unknown;
    }[];
    return rows.map((r) => ({ kind: r.kind, status: r.status, count: toCount(r.count) }));
  }

  /**
   * Jobs placed on a cluster and sent to it that have not finished: what its agent should be running.
   * A job placed there but not sent yet is not shown (the dispatcher checks the cluster may have it first).
   */
  async unfinishedSentTo(tenantId: string, clusterId: string): Promise<JobRow[]> {
    return this.jobs()
      .where({ tenant_id: tenantId, cluster_id: clusterId, dispatched_cluster_id: clusterId })
      .whereNotIn('status', FINISHED)
      .orderBy('created_at');
  }

  /**
   * The dispatcher is about to send the job to `clusterId`: from now on its agent may see it. False when
   * the job is no longer there (moved meanwhile): it must not be sent.
   */
  async sending(id: string, clusterId: string): Promise<boolean> {
    return (await this.jobs().where({ id, cluster_id: clusterId }).update({ dispatched_cluster_id: clusterId })) > 0;
  }

  /**
   * Jobs still acting for an API key of their creator: notebooks (their own API key lives as long as
   * they do) not being deleted, created with an API key, not revoked yet.
   */
  async notebooksActingForApiKeys(): Promise<NotebookRow[]> {
    return this.jobs()
      .where({ kind: 'notebook' })
      .whereNull('creator_revoked_at')
      .whereRaw(`jsonb_typeof(creator->'principal'->'apiKey') = 'object'`)
      .where((q) => q.whereNull('pending_action').orWhereNot('pending_action', 'deleting'))
      .orderBy('created_at');
  }

  /**
   * The job no longer acts for its creator (the API key that created it was deleted); the reason is
   * kept as its error. `fail`: the job fails now (it was about to act for them), unless it finished.
   * Otherwise, once: a notebook that is queued or running is stopped (its agent scales it down).
   */
  async creatorRevoked(id: string, error: NonNullable<JobRow['error']>, options: { fail: boolean }): Promise<JobRow | undefined> {
    const query = this.jobs().where({ id });
    if (options.fail) query.whereNotIn('status', FINISHED);
    else query.whereNull('creator_revoked_at');
    const [row] = await query
      .update({
        creator_revoked_at: this.knex.raw('coalesce(creator_revoked_at, now())'),
        error: JSON.stringify(error),
        ...(options.fail
          ? { status: 'failed', pending_action: null, finished_at: this.knex.fn.now() }
          : {
              pending_action: this.knex.raw(
                `case when kind = 'notebook' and status in ('queued', 'running') and pending_action is distinct from 'deleting' then 'stopping' else pending_action end`,
              ),
            }),
        dispatch_lease_until: null,
        updated_at: this.knex.fn.now(),
      })
      .returning('*');
    return row as JobRow | undefined;
  }

  /**
   * Claims up to `limit` jobs that wait for an agent (to start or to stop them) on the given
   * clusters, for `leaseSeconds`: another replica skips them meanwhile, and a replica that dies
   * while dispatching lets them go when the lease runs out.
   */
  async claimForDispatch(clusterIds: string[], leaseSeconds: number, limit = 20): Promise<JobRow[]> {
    if (clusterIds.length === 0) return [];
    const waiting = this.jobs()
      .select('id')
      .whereIn('cluster_id', clusterIds)
      .whereNotNull('pending_action')
      // A failed notebook being deleted still has its cluster clean up after it.
      .where((q) => q.whereNotIn('status', FINISHED).orWhere('pending_action', 'deleting'))
      .where((q) => q.whereNull('dispatch_lease_until').orWhere('dispatch_lease_until', '<', this.knex.fn.now()))
      .orderBy('created_at')
      .limit(limit)
      .forUpdate()
      .skipLocked();
    return (await this.jobs()
      .whereIn('id', waiting)
      .update({ dispatch_lease_until: this.knex.raw(`now() + make_interval(secs => ?)`, [leaseSeconds]) })
      .returning('*')) as JobRow[];
  }

  /**
   * The agent took the job (`creating` done): it waits for the trainer to start. `logOffset` is where
   * this attempt's output starts (an agent that restarts and finds the job again resumes there).
   */
  async dispatched(id: string, action: JobAction, logOffset?: number): Promise<JobRow | undefined> {
    const [row] = await this.jobs()
      .where({ id, pending_action: action })
      .update({
        pending_action: null,
        dispatch_lease_until: null,
        dispatched_cluster_id: this.knex.ref('cluster_id'),
        updated_at: this.knex.fn.now(),
        ...(action === 'creating'
          ? { attempts: this.knex.raw('attempts + 1'), spec: this.knex.raw(`spec || jsonb_build_object('logOffset', ?::int)`, [logOffset ?? 0]) }
          : {}),
        // A notebook scaled down is stopped; one started again waits for its pod, as a new one does.
        ...(action === 'stopping' ? { status: 'stopped', stopped_at: this.knex.fn.now() } : {}),
        ...(action === 'starting' ? { status: 'queued', stopped_at: null, started_at: null } : {}),
      })
      .returning('*');
    return row as JobRow | undefined;
  }

  /** The dispatch did not happen (agent unreachable): try again after `retrySeconds`. */
  async retryDispatchLater(id: string, retrySeconds: number): Promise<void> {
    await this.jobs()
      .where({ id })
      .update({ dispatch_lease_until: this.knex.raw(`now() + make_interval(secs => ?)`, [retrySeconds]) });
  }

  /** OpenAI cancel: a job no agent has yet is cancelled at once; otherwise its agent is asked to stop it. */
  async cancel(scope: JobScope, id: string): Promise<JobRow | undefined> {
    const [now] = await this.scoped(scope)
      .where({ id, status: 'queued', pending_action: 'creating' })
      .update({ status: 'cancelled', pending_action: null, finished_at: this.knex.fn.now(), updated_at: this.knex.fn.now() })
      .returning('*');
    if (now) return now as JobRow;
    const [later] = await this.scoped(scope)
      .where({ id })
      .whereIn('status', ['queued', 'running'])
      .update({ pending_action: 'cancelling', dispatch_lease_until: null, updated_at: this.knex.fn.now() })
      .returning('*');
    return later as JobRow | undefined;
  }

  /** The trainer of a job on `clusterId` started. */
  async started(clusterId: string, id: string): Promise<JobRow | undefined> {
    const [row] = await this.jobs()
      .where({ id, cluster_id: clusterId, status: 'queued' })
      .update({ status: 'running', started_at: this.knex.fn.now(), updated_at: this.knex.fn.now() })
      .returning('*');
    return row as JobRow | undefined;
  }

  /** Ends a job of `clusterId` that has not finished yet; undefined when it had. */
  async finish(
    clusterId: string,
    id: string,
    outcome: { status: 'succeeded' | 'failed' | 'cancelled'; error?: JobRow['error']; fineTunedModel?: string | null; trainedTokens?: number | null },
  ): Promise<JobRow | undefined> {
    const [row] = await this.jobs()
      .where({ id, cluster_id: clusterId })
      .whereNotIn('status', FINISHED)
      .update({
        status: outcome.status,
        pending_action: null,
        dispatch_lease_until: null,
        error: outcome.error ? JSON.stringify(outcome.error) : null,
        ...(outcome.fineTunedModel ? { fine_tuned_model: outcome.fineTunedModel } : {}),
        ...(outcome.trainedTokens != null ? { trained_tokens: outcome.trainedTokens } : {}),
        finished_at: this.knex.fn.now(),
        updated_at: this.knex.fn.now(),
      })
      .returning('*');
    return row as JobRow | undefined;
  }

  /** The cluster lost the job (LLMariner RECREATE): queue it again, unless it was being cancelled. */
  async requeue(clusterId: string, id: string): Promise<JobRow | undefined> {
    const [cancelled] = await this.jobs()
      .where({ id, cluster_id: clusterId, pending_action: 'cancelling' })
      .whereNotIn('status', FINISHED)
      .update({ status: 'cancelled', pending_action: null, finished_at: this.knex.fn.now(), updated_at: this.knex.fn.now() })
      .returning('*');
    if (cancelled) return cancelled as JobRow;
    const [row] = await this.jobs()
      .where({ id, cluster_id: clusterId })
      .whereNotIn('status', FINISHED)
      .update({ status: 'queued', pending_action: 'creating', dispatch_lease_until: null, started_at: null, updated_at: this.knex.fn.now() })
      .returning('*');
    return row as JobRow | undefined;
  }

  /** Stores lines not stored yet (an agent resending after a lost answer duplicates nothing); returns the new ones. */
  async appendLogs(jobId: string, lines: { offset: number; text: string; time: Date }[]): Promise<LogRow[]> {
    if (lines.length === 0) return [];
    return (await this.knex
      .withSchema(SCHEMA)
      .table('job_logs')
      .insert(lines.map((l) => ({ job_id: jobId, offset: l.offset, text: l.text, time: l.time })))
      .onConflict(['job_id', 'offset'])
      .ignore()
      .returning('*')) as LogRow[];
  }

  async logs(jobId: string, fromOffset: number, limit: number): Promise<LogRow[]> {
    return this.knex.withSchema(SCHEMA).table('job_logs').where({ job_id: jobId }).where('offset', '>=', fromOffset).orderBy('offset').limit(limit);
  }

  /** The offset after the last stored line. */
  async nextLogOffset(jobId: string): Promise<number> {
    const row = (await this.knex.withSchema(SCHEMA).table('job_logs').where({ job_id: jobId }).max({ last: 'offset' }).first()) as
      { last: number | null } | undefined;
    return row?.last === null || row?.last === undefined ? 0 : Number(row.last) + 1;
  }

  async addEvent(jobId: string, event: Pick<EventRow, 'level' | 'message' | 'type'> & { data?: Record<string, unknown> | null }): Promise<void> {
    await this.knex
      .withSchema(SCHEMA)
      .table('job_events')
      .insert({
        id: newId('fineTuningEvent'),
        job_id: jobId,
        level: event.level,
        message: event.message,
        type: event.type,
        data: event.data ? JSON.stringify(event.data) : null,
      });
  }

  events(jobId: string, page: PageArgs): Promise<Page<EventRow>> {
    return paginate<EventRow>(() => this.knex.withSchema(SCHEMA).table('job_events').where({ job_id: jobId }).select('job_events.*'), 'job_events', {
      ...page,
      order: 'desc',
    });
  }

  async addCheckpoint(jobId: string, stepNumber: number, metrics: Record<string, unknown>): Promise<void> {
    await this.knex
      .withSchema(SCHEMA)
      .table('job_checkpoints')
      .insert({ id: newId('fineTuningCheckpoint'), job_id: jobId, step_number: stepNumber, metrics: JSON.stringify(metrics) })
      .onConflict(['job_id', 'step_number'])
      .ignore();
  }

  checkpoints(jobId: string, page: PageArgs): Promise<Page<CheckpointRow>> {
    return paginate<CheckpointRow>(
      () => this.knex.withSchema(SCHEMA).table('job_checkpoints').where({ job_id: jobId }).select('job_checkpoints.*'),
      'job_checkpoints',
      { ...page, order: 'desc' },
    );
  }
}
