import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from '../lib/http.js';
import { unixSeconds } from '../lib/unixSeconds.js';
import { RestError } from './errors.js';
import type { GatewayClient } from './gatewayClient.js';
import { isJsonObject, readJsonBody } from './json.js';
import { strictBody, type BodyShape } from './strictBody.js';
import { listParams } from './lists.js';
import type { RouteContext } from './router.js';

const BATCH_FIELDS = `id createdAt finishedAt status image command envs { name value } dataFiles scripts gpuCount workerCount
  projectId clusterId kubernetesNamespace error { code message }`;

interface GraphQLBatchJob {
  id: string;
  createdAt: string;
  finishedAt: string | null;
  status: string;
  image: string;
  command: string;
  envs: { name: string; value: string }[];
  dataFiles: string[];
  scripts: string[];
  gpuCount: number;
  workerCount: number;
  projectId: string;
  clusterId: string | null;
  kubernetesNamespace: string | null;
  error: { code: string; message: string } | null;
}

/** LLMariner's BatchJob (job-manager batch_service.proto, JSON names). */
function toBatchJob(job: GraphQLBatchJob) {
  return {
    id: job.id,
    object: 'batch.job',
    created_at: unixSeconds(job.createdAt, 0),
    finished_at: unixSeconds(job.finishedAt, 0),
    error: job.error,
    status: job.status.toLowerCase(),
    image: job.image,
    command: job.command,
    resources: { gpu_count: job.gpuCount },
    envs: Object.fromEntries(job.envs.map((e) => [e.name, e.value])),
    data_files: job.dataFiles,
    scripts: job.scripts,
    project_id: job.projectId,
    kubernetes_namespace: job.kubernetesNamespace ?? '',
    cluster_id: job.clusterId ?? '',
    kind: { pytorch: { worker_count: job.workerCount } },
  };
}

function objectParam(body: Record<string, unknown>, name: string): Record<string, unknown> | undefined {
  const value = body[name];
  if (value === undefined || value === null) return undefined;
  if (!isJsonObject(value)) throw RestError.badRequest(`'${name}' must be an object`, name);
  return value;
}

/** LLMariner CreateBatchJobRequest. */
const CREATE_BODY: BodyShape = {
  image: null,
  command: null,
  scripts: null,
  resources: { gpu_count: null },
  envs: null,
  data_files: null,
  kind: { pytorch: { worker_count: null } },
};

/** LLMariner POST /v1/batch/jobs body → CreateBatchJobInput. */
function createInput(body: Record<string, unknown>) {
  const image = body['image'];
  const command = body['command'];
  if (typeof image !== 'string' || image === '') throw RestError.badRequest("Missing required parameter: 'image'", 'image');
  if (typeof command !== 'string' || command === '') throw RestError.badRequest("Missing required parameter: 'command'", 'command');
  const scripts = Object.entries(objectParam(body, 'scripts') ?? {}).map(([name, content]) => {
    // proto `bytes` travel as base64 in JSON.
    if (typeof content !== 'string') throw RestError.badRequest(`scripts.${name} must be base64 text`, 'scripts');
    return { name, contentBase64: content };
  });
  const envs = Object.entries(objectParam(body, 'envs') ?? {}).map(([name, value]) => {
    if (typeof value !== 'string') throw RestError.badRequest(`envs.${name} must be a string`, 'envs');
    return { name, value };
  });
  const dataFiles = body['data_files'];
  if (dataFiles !== undefined && dataFiles !== null && !(Array.isArray(dataFiles) && dataFiles.every((f) => typeof f === 'string'))) {
    throw RestError.badRequest('data_files must be a list of file ids', 'data_files');
  }
  const gpuCount = (objectParam(body, 'resources') ?? {})['gpu_count'];
  const workerCount = ((objectParam(body, 'kind') ?? {})['pytorch'] as { worker_count?: unknown } | undefined)?.worker_count;
  for (const [value, param] of [
    [gpuCount, 'resources.gpu_count'],
    [workerCount, 'kind.pytorch.worker_count'],
  ] as const) {
    if (value !== undefined && value !== null && typeof value !== 'number') throw RestError.badRequest(`${param} must be an integer`, param);
  }
  return {
    image,
    command,
    scripts,
    envs,
    dataFiles: (dataFiles as string[] | undefined) ?? null,
    gpuCount: gpuCount ?? null,
    workerCount: workerCount ?? null,
  };
}

/** LLMariner batch jobs (reference §4b): create, list, get, cancel, delete. */
export function batchJobRoutes({ gateway }: { gateway: GatewayClient }) {
  const one = async (req: IncomingMessage, ctx: RouteContext, query: string, variables: Record<string, unknown>) => {
    const data = await gateway.request<Record<string, GraphQLBatchJob | null>>(req, ctx.requestId, query, variables);
    const job = Object.values(data)[0];
    if (!job) throw RestError.notFound(`Batch job ${String(variables['id'] ?? '')} not found`);
    return toBatchJob(job);
  };

  async function create(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    // Scripts may hold 1 MB, which is a third more as base64.
    const input = createInput(strictBody(await readJsonBody(req, 2 * 1024 * 1024), CREATE_BODY));
    sendJson(
      res,
      200,
      await one(req, ctx, `mutation CreateBatchJob($input: CreateBatchJobInput!) { createBatchJob(input: $input) { ${BATCH_FIELDS} } }`, { input }),
      ctx.headers,
    );
  }

  async function list(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const { after, limit } = listParams(ctx.url, 'desc');
    const { batchJobs } = await gateway.request<{ batchJobs: { items: GraphQLBatchJob[]; hasMore: boolean; totalItems: number } }>(
      req,
      ctx.requestId,
      `query BatchJobs($after: String, $limit: Int) { batchJobs(after: $after, limit: $limit) { items { ${BATCH_FIELDS} } hasMore totalItems } }`,
      { after, limit: ctx.url.searchParams.has('limit') ? limit : 20 },
    );
    sendJson(res, 200, { jobs: batchJobs.items.map(toBatchJob), has_more: batchJobs.hasMore, total_items: batchJobs.totalItems }, ctx.headers);
  }

  const retrieve = async (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) =>
    sendJson(res, 200, await one(req, ctx, `query BatchJob($id: ID!) { batchJob(id: $id) { ${BATCH_FIELDS} } }`, { id: ctx.params['id']! }), ctx.headers);

  const cancel = async (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) =>
    sendJson(
      res,
      200,
      await one(req, ctx, `mutation CancelBatchJob($id: ID!) { cancelBatchJob(id: $id) { ${BATCH_FIELDS} } }`, { id: ctx.params['id']! }),
      ctx.headers,
    );

  async function remove(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const { deleteBatchJob } = await gateway.request<{ deleteBatchJob: { id: string } }>(
      req,
      ctx.requestId,
      `mutation DeleteBatchJob($id: ID!) { deleteBatchJob(id: $id) { id } }`,
      {
        id: ctx.params['id']!,
      },
    );
    sendJson(res, 200, { id: deleteBatchJob.id, object: 'batch.job', deleted: true }, ctx.headers);
  }

  return [
    { method: 'POST', path: '/v1/batch/jobs', handler: create },
    { method: 'GET', path: '/v1/batch/jobs', handler: list },
    { method: 'GET', path: '/v1/batch/jobs/:id', handler: retrieve },
    { method: 'POST', path: '/v1/batch/jobs/:id/cancel', handler: cancel },
    { method: 'DELETE', path: '/v1/batch/jobs/:id', handler: remove },
  ];
}
