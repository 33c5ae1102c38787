import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from '../lib/http.js';
import { unixSeconds } from '../lib/unixSeconds.js';
import { RestError } from './errors.js';
import type { GatewayClient } from './gatewayClient.js';
import { isJsonObject, readJsonBody } from './json.js';
import { listParams } from './lists.js';
import type { RouteContext } from './router.js';

const JOB_FIELDS = `id createdAt finishedAt model status fineTunedModel trainedTokens trainingFile validationFile resultFiles seed suffix
  gpuCount metadata organizationId projectId clusterId kubernetesNamespace
  error { code message param }
  method { type hyperparameters { batchSize learningRateMultiplier nEpochs beta } }
  integrations { type wandb { project name entity tags } }`;

interface Hyperparameters {
  batchSize: number | null;
  learningRateMultiplier: number | null;
  nEpochs: number | null;
  beta: number | null;
}

interface GraphQLJob {
  id: string;
  createdAt: string;
  finishedAt: string | null;
  model: string;
  status: string;
  fineTunedModel: string | null;
  trainedTokens: number | null;
  trainingFile: string;
  validationFile: string | null;
  resultFiles: string[];
  seed: number;
  suffix: string;
  gpuCount: number;
  metadata: Record<string, string> | null;
  organizationId: string;
  projectId: string;
  clusterId: string | null;
  kubernetesNamespace: string | null;
  error: { code: string; message: string; param: string | null } | null;
  method: { type: string; hyperparameters: Hyperparameters };
  integrations: { type: string; wandb: { project: string; name: string | null; entity: string | null; tags: string[] } }[];
}

/** OpenAI hyperparameters: what the trainer picks is `auto`. */
function openAIHyperparameters(h: Hyperparameters, method: string) {
  return {
    batch_size: h.batchSize ?? 'auto',
    learning_rate_multiplier: h.learningRateMultiplier ?? 'auto',
    n_epochs: h.nEpochs ?? 'auto',
    ...(method === 'dpo' ? { beta: h.beta ?? 'auto' } : {}),
  };
}

/** OpenAI API: the fine_tuning.job object, with LLMariner's fields beside (project, cluster, namespace). */
export function toOpenAIJob(job: GraphQLJob) {
  const hyperparameters = openAIHyperparameters(job.method.hyperparameters, job.method.type);
  return {
    id: job.id,
    object: 'fine_tuning.job' as const,
    created_at: unixSeconds(job.createdAt),
    error: job.error,
    fine_tuned_model: job.fineTunedModel,
    finished_at: unixSeconds(job.finishedAt, null),
    hyperparameters: {
      batch_size: hyperparameters.batch_size,
      learning_rate_multiplier: hyperparameters.learning_rate_multiplier,
      n_epochs: hyperparameters.n_epochs,
    },
    model: job.model,
    organization_id: job.organizationId,
    result_files: job.resultFiles,
    status: job.status.toLowerCase(),
    trained_tokens: job.trainedTokens,
    training_file: job.trainingFile,
    validation_file: job.validationFile,
    integrations: job.integrations.length > 0 ? job.integrations.map((i) => ({ type: i.type, wandb: i.wandb })) : null,
    seed: job.seed,
    estimated_finish: null,
    method: { type: job.method.type, [job.method.type]: { hyperparameters } },
    metadata: job.metadata,
    suffix: job.suffix,
    project_id: job.projectId,
    cluster_id: job.clusterId ?? '',
    kubernetes_namespace: job.kubernetesNamespace ?? '',
    resources: { gpu_count: job.gpuCount },
  };
}

/** OpenAI allows `"auto"` for any hyperparameter: the trainer decides (null here). */
function hyperparametersInput(raw: unknown, param: string): Record<string, unknown> | null {
  if (raw === undefined || raw === null) return null;
  if (!isJsonObject(raw)) throw RestError.badRequest(`${param} must be an object`, param);
  const h = raw;
  const value = (name: string) => {
    const v = h[name];
    if (v === undefined || v === null || v === 'auto') return null;
    if (typeof v !== 'number') throw RestError.badRequest(`${param}.${name} must be a number or "auto"`, `${param}.${name}`);
    return v;
  };
  return { batchSize: value('batch_size'), learningRateMultiplier: value('learning_rate_multiplier'), nEpochs: value('n_epochs'), beta: value('beta') };
}

function methodInput(raw: unknown): Record<string, unknown> | null {
  if (raw === undefined || raw === null) return null;
  if (!isJsonObject(raw)) throw RestError.badRequest('method must be an object', 'method');
  const method = raw;
  const type = method['type'];
  if (typeof type !== 'string') throw RestError.badRequest("method.type is required: 'supervised' or 'dpo'", 'method.type');
  const detail = method[type] as Record<string, unknown> | undefined;
  return { type, hyperparameters: hyperparametersInput(detail?.['hyperparameters'], `method.${type}.hyperparameters`) };
}

function optionalString(body: Record<string, unknown>, name: string): string | null {
  const value = body[name];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') throw RestError.badRequest(`'${name}' must be a string`, name);
  return value;
}

function requiredString(body: Record<string, unknown>, name: string): string {
  const value = optionalString(body, name);
  if (value === null || value === '') throw RestError.badRequest(`Missing required parameter: '${name}'`, name);
  return value;
}

function integrationsInput(raw: unknown): Record<string, unknown>[] | null {
  if (raw === undefined || raw === null) return null;
  if (!Array.isArray(raw)) throw RestError.badRequest('integrations must be an array', 'integrations');
  return raw.map((item, i) => {
    const integration = item as Record<string, any>;
    if (typeof integration?.['type'] !== 'string' || typeof integration['wandb'] !== 'object' || integration['wandb'] === null) {
      throw RestError.badRequest(`integrations[${i}] must be {type: "wandb", wandb: {project, ...}}`, 'integrations');
    }
    const wandb = integration['wandb'];
    return {
      type: integration['type'],
      wandb: { project: String(wandb.project ?? ''), name: wandb.name ?? null, entity: wandb.entity ?? null, tags: wandb.tags ?? null },
    };
  });
}

/** OpenAI fine-tuning routes (reference §4a), events and checkpoints included. */
export function fineTuningRoutes({ gateway }: { gateway: GatewayClient }) {
  async function create(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const body = await readJsonBody(req);
    const resources = body['resources'] as { gpu_count?: unknown } | undefined;
    const gpuCount = resources?.gpu_count;
    if (gpuCount !== undefined && gpuCount !== null && typeof gpuCount !== 'number')
      throw RestError.badRequest('resources.gpu_count must be an integer', 'resources.gpu_count');
    const seed = body['seed'];
    if (seed !== undefined && seed !== null && typeof seed !== 'number') throw RestError.badRequest('seed must be an integer', 'seed');
    const input = {
      model: requiredString(body, 'model'),
      trainingFile: requiredString(body, 'training_file'),
      validationFile: optionalString(body, 'validation_file'),
      suffix: optionalString(body, 'suffix'),
      hyperparameters: hyperparametersInput(body['hyperparameters'], 'hyperparameters'),
      method: methodInput(body['method']),
      integrations: integrationsInput(body['integrations']),
      seed: seed ?? null,
      gpuCount: gpuCount ?? null,
      metadata: body['metadata'] ?? null,
    };
    const { createFineTuningJob } = await gateway.request<{ createFineTuningJob: GraphQLJob }>(
      req,
      ctx.requestId,
      `mutation CreateFineTuningJob($input: CreateFineTuningJobInput!) { createFineTuningJob(input: $input) { ${JOB_FIELDS} } }`,
      { input },
    );
    sendJson(res, 200, toOpenAIJob(createFineTuningJob), ctx.headers);
  }

  async function list(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const { after, limit } = listParams(ctx.url, 'desc');
    const { fineTuningJobs } = await gateway.request<{ fineTuningJobs: { items: GraphQLJob[]; hasMore: boolean; totalItems: number } }>(
      req,
      ctx.requestId,
      `query FineTuningJobs($after: String, $limit: Int) { fineTuningJobs(after: $after, limit: $limit) { items { ${JOB_FIELDS} } hasMore totalItems } }`,
      // OpenAI and LLMariner: 20 jobs unless asked otherwise.
      { after, limit: ctx.url.searchParams.has('limit') ? limit : 20 },
    );
    sendJson(
      res,
      200,
      { object: 'list', data: fineTuningJobs.items.map(toOpenAIJob), has_more: fineTuningJobs.hasMore, total_items: fineTuningJobs.totalItems },
      ctx.headers,
    );
  }

  async function retrieve(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const id = ctx.params['id']!;
    const { fineTuningJob } = await gateway.request<{ fineTuningJob: GraphQLJob | null }>(
      req,
      ctx.requestId,
      `query FineTuningJob($id: ID!) { fineTuningJob(id: $id) { ${JOB_FIELDS} } }`,
      { id },
    );
    if (!fineTuningJob) throw RestError.notFound(`Fine-tuning job ${id} not found`);
    sendJson(res, 200, toOpenAIJob(fineTuningJob), ctx.headers);
  }

  async function cancel(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const { cancelFineTuningJob } = await gateway.request<{ cancelFineTuningJob: GraphQLJob }>(
      req,
      ctx.requestId,
      `mutation CancelFineTuningJob($id: ID!) { cancelFineTuningJob(id: $id) { ${JOB_FIELDS} } }`,
      { id: ctx.params['id']! },
    );
    sendJson(res, 200, toOpenAIJob(cancelFineTuningJob), ctx.headers);
  }

  async function events(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const id = ctx.params['id']!;
    const { after, limit } = listParams(ctx.url, 'desc');
    const { fineTuningJob } = await gateway.request<{
      fineTuningJob: {
        events: { items: { id: string; createdAt: string; level: string; message: string; type: string; data: unknown }[]; hasMore: boolean };
      } | null;
    }>(
      req,
      ctx.requestId,
      `query FineTuningJobEvents($id: ID!, $after: String, $limit: Int) { fineTuningJob(id: $id) { events(after: $after, limit: $limit) { items { id createdAt level message type data } hasMore } } }`,
      { id, after, limit: ctx.url.searchParams.has('limit') ? limit : 20 },
    );
    if (!fineTuningJob) throw RestError.notFound(`Fine-tuning job ${id} not found`);
    const data = fineTuningJob.events.items.map((e) => ({
      object: 'fine_tuning.job.event',
      id: e.id,
      created_at: unixSeconds(e.createdAt),
      level: e.level,
      message: e.message,
      type: e.type,
      data: e.data ?? {},
    }));
    sendJson(res, 200, { object: 'list', data, has_more: fineTuningJob.events.hasMore }, ctx.headers);
  }

  async function checkpoints(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const id = ctx.params['id']!;
    const { after, limit } = listParams(ctx.url, 'desc');
    const { fineTuningJob } = await gateway.request<{
      fineTuningJob: {
        checkpoints: {
          items: {
            id: string;
            createdAt: string;
            stepNumber: number;
            fineTunedModelCheckpoint: string;
            metrics: Record<string, unknown>;
            fineTuningJobId: string;
          }[];
          hasMore: boolean;
        };
      } | null;
    }>(
      req,
      ctx.requestId,
      `query FineTuningJobCheckpoints($id: ID!, $after: String, $limit: Int) { fineTuningJob(id: $id) { checkpoints(after: $after, limit: $limit) { items { id createdAt stepNumber fineTunedModelCheckpoint metrics fineTuningJobId } hasMore } } }`,
      { id, after, limit: ctx.url.searchParams.has('limit') ? limit : 10 },
    );
    if (!fineTuningJob) throw RestError.notFound(`Fine-tuning job ${id} not found`);
    const data = fineTuningJob.checkpoints.items.map((c) => ({
      object: 'fine_tuning.job.checkpoint',
      id: c.id,
      created_at: unixSeconds(c.createdAt),
      fine_tuned_model_checkpoint: c.fineTunedModelCheckpoint,
      fine_tuning_job_id: c.fineTuningJobId,
      metrics: c.metrics,
      step_number: c.stepNumber,
    }));
    sendJson(
      res,
      200,
      { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: fineTuningJob.checkpoints.hasMore },
      ctx.headers,
    );
  }

  return [
    { method: 'POST', path: '/v1/fine_tuning/jobs', handler: create },
    { method: 'GET', path: '/v1/fine_tuning/jobs', handler: list },
    { method: 'GET', path: '/v1/fine_tuning/jobs/:id', handler: retrieve },
    { method: 'POST', path: '/v1/fine_tuning/jobs/:id/cancel', handler: cancel },
    { method: 'GET', path: '/v1/fine_tuning/jobs/:id/events', handler: events },
    { method: 'GET', path: '/v1/fine_tuning/jobs/:id/checkpoints', handler: checkpoints },
  ];
}
