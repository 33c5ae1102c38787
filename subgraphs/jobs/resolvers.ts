import { servesOrganization } from '../../lib/clusterAccess.js';
import { isUniqueViolation } from '../../lib/db.js';
import { badInput, conflict, ErrorCode, failedPrecondition, forbidden, MarinerError, notFound, unauthenticated } from '../../lib/errors.js';
import { projectScopeOf, type Worker } from '../../lib/identity.js';
import { isId, newId, randomString } from '../../lib/ids.js';
import type { NotebookSpec } from '../../lib/jobSpec.js';
import { latestOnChange } from '../../lib/latestOnChange.js';
import { JSONScalar } from '../../schema/scalars.js';
import type { JobsContext, LogChunkModel } from './context.js';
import { JOB_LOGS, JOB_UPDATES } from './events.js';
import type { Resolvers } from './generated/resolvers.js';
import type { OnBehalfOf, InputFile } from './dependencies.js';
import { placeJob } from './placement.js';
import {
  FINISHED,
  type BatchJobRow,
  type BatchSpec,
  type FineTuningJobRow,
  type FineTuningSpec,
  type JobKind,
  type JobRow,
  type NotebookRow,
} from './store.js';
import { validBatchInput, validJobInput, validNotebookInput } from './validation.js';

const MAX_LINES_PER_APPEND = 1000;
const MAX_LINE_CHARS = 16 * 1024;
const LOG_PAGE = 500;

const callerOf = (ctx: JobsContext): OnBehalfOf => ({ requestId: ctx.requestId, identity: ctx.identity });

function workerOf(ctx: JobsContext): Worker {
  if (!ctx.worker) throw unauthenticated('A cluster registration key is required');
  return ctx.worker;
}

const isFinished = (job: JobRow) => FINISHED.includes(job.status);

/** A file of the project fit for fine-tuning (OpenAI: purpose fine-tune). */
async function trainingFile(ctx: JobsContext, id: string, field: string): Promise<InputFile> {
  const file = await ctx.dependencies.file(callerOf(ctx), id);
  if (!file) throw badInput(`${field}: file ${id} does not exist in this project`, field);
  if (file.purpose !== 'fine-tune') throw badInput(`${field}: file ${id} has purpose ${file.purpose}; fine-tuning needs purpose fine-tune`, field);
  if (file.status === 'ERROR') throw badInput(`${field}: file ${id} failed processing`, field);
  return file;
}

/** The scope that reads each kind of job (LLMariner §9). */
const KIND_SCOPE: Record<JobKind, string> = { 'fine-tuning': 'api.fine_tuning.jobs', batch: 'api.batch.jobs', notebook: 'api.workspaces.notebooks' };
const KIND_NAME: Record<JobKind, string> = { 'fine-tuning': 'fine-tuning job', batch: 'batch job', notebook: 'notebook' };

/**
 * The job of the project, for user-facing calls: of `kind` when given (else either), and only if the
 * caller's role may read that kind (the policy let either kind's readers through for logs and updates).
 */
async function projectJob<K extends JobKind>(ctx: JobsContext, id: string, kind?: K): Promise<Extract<JobRow, { kind: K }>> {
  const plausible = isId('fineTuningJob', id) || isId('batchJob', id) || isId('notebook', id);
  const job = plausible ? await ctx.store.job(projectScopeOf(ctx.identity), id) : undefined;
  if (!job || (kind && job.kind !== kind)) throw notFound(kind ? KIND_NAME[kind] : 'job', id);
  if (!ctx.identity?.project?.scopes.includes(`${KIND_SCOPE[job.kind]}.read`))
    throw forbidden(`Missing scope ${KIND_SCOPE[job.kind]}.read for ${KIND_NAME[job.kind]} ${id}`);
  return job as Extract<JobRow, { kind: K }>;
}

/** A fine-tuning or batch job to follow (`jobLogs`, `jobUpdated`); notebooks have neither a log nor the `Job` states. */
async function followableJob(ctx: JobsContext, id: string): Promise<JobRow> {
  const job = await projectJob(ctx, id);
  if (job.kind === 'notebook') throw badInput(`${id} is a notebook: follow it with the notebook query, not job subscriptions`, 'jobId');
  return job;
}

/** OpenAI cancel (both kinds): a job no agent has yet is cancelled at once; otherwise its agent is asked to stop it. */
async function cancelJob<K extends JobKind>(ctx: JobsContext, id: string, kind: K): Promise<Extract<JobRow, { kind: K }>> {
  const job = await projectJob(ctx, id, kind);
  if (isFinished(job)) throw failedPrecondition(`${KIND_NAME[kind]} ${id} has already ${job.status === 'cancelled' ? 'been cancelled' : job.status}`);
  const updated = await ctx.store.cancel(projectScopeOf(ctx.identity), id);
  if (!updated) throw failedPrecondition(`${KIND_NAME[kind]} ${id} finished meanwhile`);
  if (updated.status === 'cancelled') await ctx.events.record(updated, { level: 'info', type: 'message', message: 'Job cancelled' });
  await ctx.events.changed(updated);
  ctx.dispatcher.nudge();
  return updated as Extract<JobRow, { kind: K }>;
}

/**
 * Where a new job runs (scheduler.ts), from the caller's project assignments and the clusters its
 * organization may use; FAILED_PRECONDITION (nothing created) when there is none.
 */
async function place(ctx: JobsContext, gpuCount: number | null) {
  const scope = projectScopeOf(ctx.identity);
  const owner = {
    requestId: ctx.requestId,
    identity: ctx.identity,
    tenantId: scope.tenantId,
    organizationId: scope.organizationId,
    projectId: scope.projectId,
  };
  return placeJob(ctx.dependencies, new Set(ctx.transport.allConnectedClusters()), owner, gpuCount);
}

/** The columns every new job has: its project, where it was placed, and who created it. */
function placedRow(ctx: JobsContext, placement: Awaited<ReturnType<typeof place>>) {
  const scope = projectScopeOf(ctx.identity);
  return {
    tenant_id: scope.tenantId,
    organization_id: scope.organizationId,
    project_id: scope.projectId,
    gpu_count: placement.gpuCount,
    cluster_id: placement.clusterId,
    kubernetes_namespace: placement.namespace,
    kueue_queue_name: placement.kueueQueueName,
    creator: ctx.identity!,
  };
}

/** Records a new job and hands it to the dispatcher. */
async function queued<T extends JobRow>(ctx: JobsContext, job: T, what: string): Promise<T> {
  await ctx.events.record(job, { level: 'info', type: 'message', message: `Created ${what}: ${job.id}` });
  await ctx.events.changed(job);
  ctx.dispatcher.nudge();
  return job;
}

/** A log page of any job (`fromOffset`, `limit` up to 1000). */
async function logPage(ctx: JobsContext, job: JobRow, fromOffset: number | null | undefined, limit: number | null | undefined) {
  const from = fromOffset ?? 0;
  if (!Number.isInteger(from) || from < 0) throw badInput('fromOffset must be a non-negative integer', 'fromOffset');
  const max = limit ?? LOG_PAGE;
  if (!Number.isInteger(max) || max < 1 || max > 1000) throw badInput('limit must be between 1 and 1000', 'limit');
  const lines = await ctx.store.logs(job.id, from, max + 1);
  const page = lines.slice(0, max);
  return { lines: page, hasMore: lines.length > max, nextOffset: page.length > 0 ? page[page.length - 1]!.offset + 1 : from };
}

/** A notebook action (LLMariner start/stop/delete) the agent carries out; refused from states it does not apply to. */
async function notebookAction(ctx: JobsContext, id: string, action: 'starting' | 'stopping' | 'deleting'): Promise<NotebookRow> {
  const notebook = await projectJob(ctx, id, 'notebook');
  if (!ctx.identity?.project?.scopes.includes('api.workspaces.notebooks.write')) throw forbidden('Missing scope api.workspaces.notebooks.write');
  const rules = {
    stopping: { from: ['queued', 'running'], replacing: ['creating', 'starting', 'stopping'], refusal: 'only a queued or running notebook can be stopped' },
    starting: { from: ['stopped'], replacing: ['stopping', 'starting'], refusal: 'only a stopped notebook can be started' },
    deleting: {
      from: ['queued', 'running', 'stopped', 'failed'],
      replacing: ['creating', 'starting', 'stopping', 'deleting'],
      refusal: 'the notebook is being deleted',
    },
  } as const;
  const rule = rules[action];
  const updated = await ctx.store.requestAction(projectScopeOf(ctx.identity), notebook.id, action, [...rule.from], [...rule.replacing]);
  if (!updated) throw failedPrecondition(`notebook ${id} is ${notebook.status}: ${rule.refusal}`);
  await ctx.events.changed(updated);
  ctx.dispatcher.nudge();
  return updated as NotebookRow;
}

/** LLMariner NotebookState from the row: INITIALIZING once its cluster has it, until its pod is ready. */
function notebookStatus(n: NotebookRow): 'QUEUED' | 'INITIALIZING' | 'RUNNING' | 'STOPPED' | 'FAILED' {
  switch (n.status) {
    case 'running':
      return 'RUNNING';
    case 'stopped':
      return 'STOPPED';
    case 'queued':
      return n.pending_action === null && n.attempts > 0 ? 'INITIALIZING' : 'QUEUED';
    default:
      return 'FAILED';
  }
}

/** Fields every kind of job resolves the same way. */
const commonJobFields = {
  createdAt: (j: JobRow) => j.created_at.toISOString(),
  startedAt: (j: JobRow) => j.started_at?.toISOString() ?? null,
  finishedAt: (j: JobRow) => j.finished_at?.toISOString() ?? null,
  status: (j: JobRow) => j.status.toUpperCase() as 'QUEUED',
  pendingAction: (j: JobRow) => (j.pending_action ? (j.pending_action.toUpperCase() as 'CREATING') : null),
  gpuCount: (j: JobRow) => j.gpu_count,
  organizationId: (j: JobRow) => j.organization_id,
  projectId: (j: JobRow) => j.project_id,
  clusterId: (j: JobRow) => j.cluster_id,
  cluster: (j: JobRow) => (j.cluster_id ? { id: j.cluster_id } : null),
  kubernetesNamespace: (j: JobRow) => j.kubernetes_namespace,
  logs: (j: JobRow, { fromOffset, limit }: { fromOffset?: number | null; limit?: number | null }, ctx: JobsContext) => logPage(ctx, j, fromOffset, limit),
};

/**
 * Whether the calling agent's cluster has the job: placed on it and sent to it (not one placed there
 * and not sent yet, nor one moved away), in its tenant, of an organization it serves (a grant revoked
 * counts as soon as the agent's credential is checked again).
 */
const workerHas = (worker: Worker, job: JobRow) =>
  job.tenant_id === worker.tenantId &&
  job.cluster_id === worker.clusterId &&
  job.dispatched_cluster_id === worker.clusterId &&
  servesOrganization(worker, job.organization_id);

/** A job of the calling agent's cluster (an agent cannot see or touch any other job: NOT_FOUND, as for no job). */
async function clusterJob(ctx: JobsContext, id: string): Promise<JobRow> {
  const worker = workerOf(ctx);
  const job = await ctx.store.byId(id);
  if (!job || !workerHas(worker, job)) throw notFound('job', id);
  return job;
}

const workerJob = (job: JobRow) => job;

/**
 * The fine-tuned model's suffix: the user's, plus 6 characters of the job id, so two jobs with the
 * same suffix do not collide (`ft:<base>:<suffix>-<6>`).
 */
const registrationSuffix = (job: FineTuningJobRow) => `${job.suffix}-${job.id.slice('ftjob-'.length, 'ftjob-'.length + 6).toLowerCase()}`;

/** The outcome of a job whose trainer succeeded: its output registered as a fine-tuned model (LLMariner post-processor). */
async function publishModel(ctx: JobsContext, job: FineTuningJobRow, outputPath: string): Promise<{ model: string } | { error: string }> {
  const suffix = registrationSuffix(job);
  try {
    // On behalf of the job's creator: the model lands in their project, under their rights.
    const model = await ctx.dependencies.registerFineTunedModel(
      { requestId: ctx.requestId, identity: job.creator },
      { baseModelId: job.model, suffix, source: outputPath },
    );
    return { model };
  } catch (error) {
    // An earlier report registered it already, and its answer was lost: the model is there.
    if (error instanceof MarinerError && error.code === ErrorCode.CONFLICT) return { model: `ft:${job.model}:${suffix}` };
    return { error: (error as Error).message };
  }
}

async function* followLogs(ctx: JobsContext, jobId: string, fromOffset: number): AsyncGenerator<LogChunkModel> {
  let offset = fromOffset;
  /** The job as the last event carried it. */
  let lastSent: JobRow | undefined;
  let pending = true;
  let wake: (() => void) | undefined;
  const listener = (payload: string) => {
    if (payload === jobId || payload.endsWith(` ${jobId}`)) {
      pending = true;
      wake?.();
    }
  };
  // Listen before the first read: a line stored in between wakes the loop instead of being missed.
  const stops = [await ctx.pubsub.subscribe(JOB_LOGS, listener), await ctx.pubsub.subscribe(JOB_UPDATES, listener)];
  try {
    for (;;) {
      if (!pending) await new Promise<void>((resolve) => (wake = resolve));
      pending = false;
      wake = undefined;
      // The state first, then the lines: agents store every line before they report the end, so
      // once a finished job's lines are read, there are no more.
      const job = await ctx.store.byId(jobId);
      if (!job) return;
      for (;;) {
        const lines = await ctx.store.logs(jobId, offset, LOG_PAGE);
        if (lines.length === 0) break;
        offset = lines[lines.length - 1]!.offset + 1;
        yield { jobId, job, lines, nextOffset: offset };
        lastSent = job;
      }
      if (isFinished(job)) {
        // The last event carries the final state (issue 24 item 8): lines sent while the job ran carry
        // RUNNING, and a job that ends without new lines would otherwise complete on that.
        if (lastSent !== job) yield { jobId, job, lines: [], nextOffset: offset };
        return;
      }
    }
  } finally {
    await Promise.all(stops.map((stop) => stop()));
  }
}

async function* jobChanges(ctx: JobsContext, jobId: string): AsyncGenerator<JobRow> {
  const changes = latestOnChange(
    (changed) => ctx.pubsub.subscribe(JOB_UPDATES, (payload) => payload.endsWith(` ${jobId}`) && changed()),
    () => ctx.store.byId(jobId),
  );
  for await (const job of changes) {
    if (!job) return;
    yield job;
    if (isFinished(job)) return;
  }
}

async function* projectChanges(ctx: JobsContext, projectId: string): AsyncGenerator<JobRow> {
  const queue: string[] = [];
  let wake: (() => void) | undefined;
  const stop = await ctx.pubsub.subscribe(JOB_UPDATES, (payload) => {
    const [project, jobId] = payload.split(' ');
    if (project !== projectId || !jobId) return;
    if (!queue.includes(jobId)) queue.push(jobId);
    wake?.();
  });
  try {
    for (;;) {
      if (queue.length === 0) await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
      const jobId = queue.shift();
      if (!jobId) continue;
      const job = await ctx.store.byId(jobId);
      // The `Job` interface is fine-tuning and batch jobs, each for callers who may read its kind.
      if (job && job.kind !== 'notebook' && ctx.identity?.project?.scopes.includes(`${KIND_SCOPE[job.kind]}.read`)) yield job;
    }
  } finally {
    await stop();
  }
}

export const resolvers: Resolvers<JobsContext> = {
  JSON: JSONScalar,
  Query: {
    jobClusters: async (_p, _a, ctx) => {
      const scope = projectScopeOf(ctx.identity);
      // Only clusters the project's organization may use, as the scheduler sees them.
      const [assignments, clusters] = await Promise.all([
        ctx.dependencies.assignments(callerOf(ctx), scope.projectId),
        ctx.dependencies.schedulingClusters(ctx.requestId, scope.tenantId, scope.organizationId),
      ]);
      return clusters
        .map((c) => ({ cluster: c, namespaces: [...new Set(assignments.filter((a) => a.clusterId === null || a.clusterId === c.id).map((a) => a.namespace))] }))
        .filter(({ namespaces }) => namespaces.length > 0)
        .map(({ cluster, namespaces }) => ({
          id: cluster.id,
          name: cluster.name,
          gpuCapacity: cluster.gpuCapacity,
          gpuAllocated: cluster.gpuAllocated,
          gpuPodCount: cluster.gpuPodCount,
          stale: cluster.stale,
          lastUpdatedAt: cluster.statusUpdatedAt,
          namespaces,
        }));
    },
    jobSummaries: async (_p, { start, end, intervalSeconds }, ctx) => {
      const until = end ? new Date(end) : new Date();
      const interval = intervalSeconds ?? 24 * 3600;
      const from = start ? new Date(start) : new Date(until.getTime() - 7 * interval * 1000);
      if (Number.isNaN(until.getTime())) throw badInput('end is not a date', 'end');
      if (Number.isNaN(from.getTime())) throw badInput('start is not a date', 'start');
      if (!Number.isInteger(interval) || interval < 60) throw badInput('intervalSeconds must be an integer of at least 60', 'intervalSeconds');
      if (from >= until) throw badInput('start must be before end', 'start');
      const buckets = Math.ceil((until.getTime() - from.getTime()) / (interval * 1000));
      if (buckets > 1000) throw badInput(`at most 1000 buckets: ${buckets} asked (widen intervalSeconds or narrow the range)`, 'intervalSeconds');
      const rows = await ctx.store.summaries(projectScopeOf(ctx.identity), from, until, interval);
      const types = { 'fine-tuning': 'FINE_TUNING', batch: 'BATCH', notebook: 'NOTEBOOK' } as const;
      return Array.from({ length: buckets }, (_, i) => {
        const timestamp = new Date(from.getTime() + i * interval * 1000);
        return {
          timestamp: timestamp.toISOString(),
          values: (['fine-tuning', 'batch', 'notebook'] as const).map((kind) => {
            const row = rows.find((r) => new Date(r.bucket).getTime() === timestamp.getTime() && r.kind === kind);
            const n = (value: number | undefined) => Number(value ?? 0);
            return {
              jobType: types[kind],
              totalCreated: n(row?.total_created),
              completed: n(row?.completed),
              failed: n(row?.failed),
              cancelled: n(row?.cancelled),
              running: n(row?.running),
              queued: n(row?.queued),
              stopped: n(row?.stopped),
              unfinished: n(row?.running) + n(row?.queued),
            };
          }),
        };
      });
    },
    fineTuningJobs: (_p, { after, limit }, ctx) => ctx.store.list(projectScopeOf(ctx.identity), 'fine-tuning', { after, limit }),
    fineTuningJob: async (_p, { id }, ctx) => {
      const job = isId('fineTuningJob', id) ? await ctx.store.job(projectScopeOf(ctx.identity), id) : undefined;
      return job?.kind === 'fine-tuning' ? job : null;
    },
    batchJobs: (_p, { after, limit }, ctx) => ctx.store.list(projectScopeOf(ctx.identity), 'batch', { after, limit }),
    batchJob: async (_p, { id }, ctx) => {
      const job = isId('batchJob', id) ? await ctx.store.job(projectScopeOf(ctx.identity), id) : undefined;
      return job?.kind === 'batch' ? job : null;
    },
    notebooks: (_p, { after, limit }, ctx) => ctx.store.list(projectScopeOf(ctx.identity), 'notebook', { after, limit }),
    notebook: async (_p, { id }, ctx) => {
      const job = isId('notebook', id) ? await ctx.store.job(projectScopeOf(ctx.identity), id) : undefined;
      return job?.kind === 'notebook' ? job : null;
    },
    workerJobs: async (_p, _a, ctx) => {
      const worker = workerOf(ctx);
      return (await ctx.store.unfinishedSentTo(worker.tenantId, worker.clusterId)).filter((job) => workerHas(worker, job)).map(workerJob);
    },
  },
  Mutation: {
    createFineTuningJob: async (_p, { input }, ctx) => {
      const scope = projectScopeOf(ctx.identity);
      const valid = validJobInput(input);
      const model = await ctx.dependencies.model(callerOf(ctx), valid.model);
      if (!model) throw badInput(`input.model: model ${valid.model} does not exist or is not visible to this project`, 'input.model');
      if (!model.isBaseModel) throw badInput(`input.model: ${model.id} is a fine-tuned model; fine-tuning starts from a base model`, 'input.model');
      if (model.loadingStatus !== 'SUCCEEDED')
        throw badInput(`input.model: ${model.id} is not loaded yet (loading status ${model.loadingStatus})`, 'input.model');
      if (!model.formats.includes('HUGGING_FACE')) {
        throw badInput(
          `input.model: ${model.id} is in ${model.formats.join(', ') || 'no known'} format; the trainer needs a model in Hugging Face format`,
          'input.model',
        );
      }
      const training = await trainingFile(ctx, valid.trainingFile, 'input.trainingFile');
      const validation = valid.validationFile ? await trainingFile(ctx, valid.validationFile, 'input.validationFile') : null;
      const placement = await place(ctx, valid.gpuCount);
      const id = newId('fineTuningJob');
      const spec: FineTuningSpec = {
        kind: 'fine-tuning',
        requestId: ctx.requestId,
        baseModel: { id: model.id, source: model.source, formats: model.formats },
        trainingFile: { id: training.id, objectKey: training.objectKey, filename: training.filename },
        validationFile: validation ? { id: validation.id, objectKey: validation.objectKey, filename: validation.filename } : null,
        outputPrefix: `models/${scope.tenantId}/fine-tuned/${id}/`,
        method: valid.method,
        seed: valid.seed,
        gpuCount: placement.gpuCount,
        namespace: placement.namespace,
        kueueQueueName: placement.kueueQueueName,
        integrations: valid.integrations,
      };
      const job = await ctx.store.insert({
        kind: 'fine-tuning',
        id,
        model: model.id,
        training_file: training.id,
        validation_file: validation?.id ?? null,
        suffix: valid.suffix,
        method: valid.method,
        integrations: valid.integrations,
        seed: valid.seed,
        metadata: valid.metadata,
        spec,
        ...placedRow(ctx, placement),
      });
      return queued(ctx, job as FineTuningJobRow, 'fine-tuning job');
    },
    cancelFineTuningJob: (_p, { id }, ctx) => cancelJob(ctx, id, 'fine-tuning'),
    createBatchJob: async (_p, { input }, ctx) => {
      const valid = validBatchInput(input, ctx.batchImages);
      const dataFiles = [];
      for (const [i, fileId] of valid.dataFiles.entries()) {
        const file = await ctx.dependencies.file(callerOf(ctx), fileId);
        if (!file) throw badInput(`input.dataFiles.${i}: file ${fileId} does not exist in this project`, `input.dataFiles.${i}`);
        dataFiles.push({ id: file.id, objectKey: file.objectKey, filename: file.filename });
      }
      const placement = await place(ctx, valid.gpuCount);
      const spec: BatchSpec = {
        kind: 'batch',
        requestId: ctx.requestId,
        image: valid.image,
        command: valid.command,
        scripts: valid.scripts,
        envs: valid.envs,
        dataFiles,
        gpuCount: placement.gpuCount,
        workerCount: valid.workerCount,
        namespace: placement.namespace,
        kueueQueueName: placement.kueueQueueName,
      };
      const job = await ctx.store.insert({
        kind: 'batch',
        id: newId('batchJob'),
        image: valid.image,
        command: valid.command,
        envs: valid.envs,
        data_files: dataFiles.map((f) => f.id),
        worker_count: valid.workerCount,
        script_names: Object.keys(valid.scripts),
        spec,
        ...placedRow(ctx, placement),
      });
      return queued(ctx, job as BatchJobRow, 'batch job');
    },
    cancelBatchJob: (_p, { id }, ctx) => cancelJob(ctx, id, 'batch'),
    createNotebook: async (_p, { input }, ctx) => {
      const scope = projectScopeOf(ctx.identity);
      const valid = validNotebookInput(input, ctx.notebookImages);
      if (await ctx.store.notebookNamed(scope, valid.name)) throw conflict(`a notebook named ${valid.name} exists in this project`);
      // A notebook without a GPU count gets none (LLMariner), unlike a training job.
      const placement = await place(ctx, valid.gpuCount ?? 0);
      const spec: NotebookSpec = {
        kind: 'notebook',
        requestId: ctx.requestId,
        name: valid.name,
        image: valid.image,
        resources: valid.resources,
        envs: valid.envs,
        ports: valid.ports,
        gpuCount: placement.gpuCount,
        namespace: placement.namespace,
        kueueQueueName: placement.kueueQueueName,
      };
      // The OpenAI API inside the notebook acts as its creator, in this project, with a key of its own.
      const key = await ctx.dependencies.createApiKey(callerOf(ctx), { name: `notebook ${valid.name}`, projectId: scope.projectId });
      try {
        const notebook = await ctx.store.insert({
          kind: 'notebook',
          id: newId('notebook'),
          name: valid.name,
          notebook: { image: valid.image, resources: valid.resources, envs: valid.envs, ports: valid.ports },
          secrets: { token: ctx.secrets.seal(randomString(48)), apiKeyId: key.id, apiKey: ctx.secrets.seal(key.secret) },
          spec,
          ...placedRow(ctx, placement),
        });
        return queued(ctx, notebook as NotebookRow, 'notebook');
      } catch (error) {
        await ctx.dependencies.deleteApiKey(callerOf(ctx), key.id).catch(() => undefined);
        if (isUniqueViolation(error)) throw conflict(`a notebook named ${valid.name} exists in this project`);
        throw error;
      }
    },
    stopNotebook: (_p, { id }, ctx) => notebookAction(ctx, id, 'stopping'),
    startNotebook: (_p, { id }, ctx) => notebookAction(ctx, id, 'starting'),
    deleteNotebook: (_p, { id }, ctx) => notebookAction(ctx, id, 'deleting'),
    deleteBatchJob: async (_p, { id }, ctx) => {
      const job = await projectJob(ctx, id, 'batch');
      if (!isFinished(job)) throw failedPrecondition(`batch job ${id} is ${job.status}: cancel it first`);
      if (!(await ctx.store.delete(projectScopeOf(ctx.identity), id))) throw notFound('batch job', id);
      return { id, deleted: true };
    },
    reportJobStatus: async (_p, { input }, ctx) => {
      const job = await clusterJob(ctx, input.jobId);
      const clusterId = job.cluster_id!;
      const message = input.message?.slice(0, 4000) ?? null;
      let updated: JobRow | undefined;
      switch (input.phase) {
        case 'RUNNING':
          updated = await ctx.store.started(clusterId, job.id);
          if (updated) await ctx.events.record(updated, { level: 'info', type: 'message', message: `Fine-tuning job started on cluster ${clusterId}` });
          break;
        case 'SUCCEEDED': {
          if (isFinished(job)) break;
          if (job.kind !== 'fine-tuning') {
            updated = await ctx.store.finish(clusterId, job.id, { status: 'succeeded' });
            if (updated) await ctx.events.record(updated, { level: 'info', type: 'message', message: 'The job has successfully completed' });
            break;
          }
          if (!input.outputPath) throw badInput('input.outputPath: a succeeded job reports where its output is', 'input.outputPath');
          // The model is registered for the job's creator: only while the key that created the job exists.
          const revoked = await ctx.credentials.refusal(job);
          if (revoked) {
            updated = await ctx.credentials.revoke(job, `${revoked}: the fine-tuned model is not registered for its creator`, { fail: true });
            // revoke() announced the change already.
            return workerJob(updated ?? (await ctx.store.byId(job.id))!);
          }
          const outcome = await publishModel(ctx, job, input.outputPath);
          if ('error' in outcome) {
            updated = await ctx.store.finish(clusterId, job.id, {
              status: 'failed',
              error: { code: 'model_registration_failed', message: outcome.error, param: null },
            });
            if (updated)
              await ctx.events.record(updated, { level: 'error', type: 'message', message: `The fine-tuned model could not be registered: ${outcome.error}` });
            break;
          }
          updated = await ctx.store.finish(clusterId, job.id, {
            status: 'succeeded',
            fineTunedModel: outcome.model,
            trainedTokens: input.trainedTokens ?? null,
          });
          if (updated) {
            await ctx.events.record(updated, { level: 'info', type: 'message', message: `New fine-tuned model created: ${outcome.model}` });
            await ctx.events.record(updated, { level: 'info', type: 'message', message: 'The job has successfully completed' });
          }
          break;
        }
        case 'FAILED':
          updated = await ctx.store.finish(clusterId, job.id, {
            status: 'failed',
            error: { code: 'job_failed', message: message ?? 'the trainer failed', param: null },
          });
          if (updated) await ctx.events.record(updated, { level: 'error', type: 'message', message: `The job failed: ${message ?? 'the trainer failed'}` });
          break;
        case 'CANCELLED':
          updated = await ctx.store.finish(clusterId, job.id, { status: 'cancelled' });
          if (updated) await ctx.events.record(updated, { level: 'info', type: 'message', message: 'Job cancelled' });
          break;
        case 'LOST':
          updated = await ctx.store.requeue(clusterId, job.id);
          if (updated) {
            const why = `Cluster ${clusterId} lost the job${message ? ` (${message})` : ''}`;
            await ctx.events.record(updated, {
              level: 'warn',
              type: 'message',
              message: updated.status === 'cancelled' ? `${why}; it was being cancelled: cancelled` : `${why}; queued again`,
            });
            ctx.dispatcher.nudge();
          }
          break;
      }
      if (updated) await ctx.events.changed(updated);
      return workerJob(updated ?? (await ctx.store.byId(job.id))!);
    },
    appendJobLogs: async (_p, { jobId, lines }, ctx) => {
      const job = await clusterJob(ctx, jobId);
      if (lines.length > MAX_LINES_PER_APPEND) throw badInput(`lines: at most ${MAX_LINES_PER_APPEND} per call`, 'lines');
      const rows = lines.map((line, i) => {
        if (!Number.isInteger(line.offset) || line.offset < 0) throw badInput(`lines.${i}.offset must be a non-negative integer`, `lines.${i}.offset`);
        const time = line.time ? new Date(line.time) : new Date();
        if (Number.isNaN(time.getTime())) throw badInput(`lines.${i}.time is not a date`, `lines.${i}.time`);
        return { offset: line.offset, text: line.text.slice(0, MAX_LINE_CHARS), time };
      });
      const stored = await ctx.store.appendLogs(job.id, rows);
      await ctx.events.logsAppended(job.id, stored);
      return ctx.store.nextLogOffset(job.id);
    },
  },
  Subscription: {
    jobLogs: {
      subscribe: async (_p, { jobId, fromOffset }, ctx) => {
        const job = await followableJob(ctx, jobId);
        if (fromOffset != null && (!Number.isInteger(fromOffset) || fromOffset < 0)) throw badInput('fromOffset must be a non-negative integer', 'fromOffset');
        return followLogs(ctx, job.id, fromOffset ?? 0);
      },
      resolve: (chunk: LogChunkModel) => chunk,
    },
    jobUpdated: {
      subscribe: async (_p, { jobId }, ctx) => jobChanges(ctx, (await followableJob(ctx, jobId)).id),
      resolve: (job: JobRow) => job,
    },
    jobsUpdated: {
      subscribe: (_p, _a, ctx) => projectChanges(ctx, projectScopeOf(ctx.identity).projectId),
      resolve: (job: JobRow) => job,
    },
  },
  Job: {
    __resolveType: (j) => (j.kind === 'batch' ? 'BatchJob' : 'FineTuningJob'),
  },
  FineTuningJob: {
    __resolveReference: async (ref, ctx) => {
      const job = await ctx.store.job(projectScopeOf(ctx.identity), ref.id);
      return job?.kind === 'fine-tuning' ? job : null;
    },
    ...commonJobFields,
    baseModel: (j) => ({ id: j.model }),
    fineTunedModel: (j) => j.fine_tuned_model,
    hyperparameters: (j) => j.method.hyperparameters,
    trainingFile: (j) => j.training_file,
    validationFile: (j) => j.validation_file,
    resultFiles: (j) => j.result_files,
    trainedTokens: (j) => j.trained_tokens,
    events: (j, { after, limit }, ctx) => ctx.store.events(j.id, { after, limit }),
    checkpoints: async (j, { after, limit }, ctx) => {
      const page = await ctx.store.checkpoints(j.id, { after, limit });
      const model = j.fine_tuned_model ?? `ft:${j.model}:${registrationSuffix(j)}`;
      return { ...page, items: page.items.map((c) => ({ ...c, modelName: model })) };
    },
  },
  BatchJob: {
    __resolveReference: async (ref, ctx) => {
      const job = await ctx.store.job(projectScopeOf(ctx.identity), ref.id);
      return job?.kind === 'batch' ? job : null;
    },
    ...commonJobFields,
    envs: (j) => Object.entries(j.envs).map(([name, value]) => ({ name, value })),
    dataFiles: (j) => j.data_files,
    scripts: (j) => j.script_names,
    workerCount: (j) => j.worker_count,
  },
  Notebook: {
    __resolveReference: async (ref, ctx) => {
      const job = await ctx.store.job(projectScopeOf(ctx.identity), ref.id);
      return job?.kind === 'notebook' ? job : null;
    },
    createdAt: commonJobFields.createdAt,
    startedAt: commonJobFields.startedAt,
    stoppedAt: (n) => n.stopped_at?.toISOString() ?? null,
    status: (n) => notebookStatus(n),
    pendingAction: commonJobFields.pendingAction,
    organizationId: commonJobFields.organizationId,
    projectId: commonJobFields.projectId,
    clusterId: commonJobFields.clusterId,
    cluster: commonJobFields.cluster,
    kubernetesNamespace: commonJobFields.kubernetesNamespace,
    image: (n) => n.notebook.image,
    resources: (n) => ({ ...n.notebook.resources, gpuCount: n.gpu_count }),
    envs: (n) => Object.entries(n.notebook.envs).map(([name, value]) => ({ name, value })),
    additionalExposedPorts: (n) => n.notebook.ports,
    token: (n, _a, ctx) => ctx.secrets.open(n.secrets.token),
  },
  WorkerJob: {
    kind: (j) => j.spec.kind,
    status: (j) => j.status.toUpperCase() as 'QUEUED',
    pendingAction: (j) => (j.pending_action ? (j.pending_action.toUpperCase() as 'CREATING') : null),
    // The attempt the agent runs (or is about to): after a dispatch, `spec.logOffset` is where its output starts.
    spec: (j) => ({ ...j.spec, attempt: j.attempts + (j.pending_action === 'creating' ? 1 : 0) }),
  },
  JobLogLine: {
    time: (l) => l.time.toISOString(),
  },
  FineTuningJobEvent: {
    createdAt: (e) => e.created_at.toISOString(),
  },
  FineTuningJobCheckpoint: {
    createdAt: (c) => c.created_at.toISOString(),
    stepNumber: (c) => c.step_number,
    fineTunedModelCheckpoint: (c) => `${c.modelName}:ckpt-step-${c.step_number}`,
    fineTuningJobId: (c) => c.job_id,
  },
};
