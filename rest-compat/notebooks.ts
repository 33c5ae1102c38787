import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from '../lib/http.js';
import { unixSeconds } from '../lib/unixSeconds.js';
import { RestError } from './errors.js';
import type { GatewayClient } from './gatewayClient.js';
import { readJsonBody } from './json.js';
import { strictBody, type BodyShape } from './strictBody.js';
import { listParams } from './lists.js';
import type { RouteContext } from './router.js';

const NOTEBOOK_FIELDS = `id name createdAt startedAt stoppedAt image status pendingAction token projectId organizationId clusterId kubernetesNamespace
  additionalExposedPorts envs { name value } error { code message }
  resources { gpuCount cpuMillicores { requests limits } memoryMegabytes { requests limits } storageMegabytes { requests limits } }`;

interface Amount {
  requests: number | null;
  limits: number | null;
}

interface GraphQLNotebook {
  id: string;
  name: string;
  createdAt: string;
  startedAt: string | null;
  stoppedAt: string | null;
  image: string;
  status: string;
  pendingAction: string | null;
  token: string;
  projectId: string;
  organizationId: string;
  clusterId: string | null;
  kubernetesNamespace: string | null;
  additionalExposedPorts: number[];
  envs: { name: string; value: string }[];
  error: { code: string; message: string } | null;
  resources: { gpuCount: number; cpuMillicores: Amount; memoryMegabytes: Amount; storageMegabytes: Amount };
}

const amountOut = (a: Amount) => ({ requests: a.requests ?? 0, limits: a.limits ?? 0 });

/** LLMariner's Notebook (job-manager workspace_service.proto, JSON names). */
function toNotebook(n: GraphQLNotebook) {
  return {
    id: n.id,
    object: 'workspace.notebook',
    name: n.name,
    created_at: unixSeconds(n.createdAt, 0),
    started_at: unixSeconds(n.startedAt, 0),
    stopped_at: unixSeconds(n.stoppedAt, 0),
    image: n.image,
    resources: {
      cpu_milicore: amountOut(n.resources.cpuMillicores),
      memory_megabytes: amountOut(n.resources.memoryMegabytes),
      storage_megabytes: amountOut(n.resources.storageMegabytes),
      gpu_count: n.resources.gpuCount,
    },
    envs: Object.fromEntries(n.envs.map((e) => [e.name, e.value])),
    additional_exposed_ports: n.additionalExposedPorts,
    error: n.error,
    status: n.status,
    pending_action: n.pendingAction,
    token: n.token,
    project_id: n.projectId,
    organization_id: n.organizationId,
    kubernetes_namespace: n.kubernetesNamespace ?? '',
    cluster_id: n.clusterId ?? '',
  };
}

function amountIn(raw: unknown, param: string): { requests: number | null; limits: number | null } | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object') throw RestError.badRequest(`${param} must be {requests, limits}`, param);
  const value = raw as Record<string, unknown>;
  const number = (name: string) => {
    const v = value[name];
    if (v === undefined || v === null || v === 0) return null;
    if (typeof v !== 'number') throw RestError.badRequest(`${param}.${name} must be an integer`, `${param}.${name}`);
    return v;
  };
  return { requests: number('requests'), limits: number('limits') };
}

const AMOUNT: BodyShape = { requests: null, limits: null };
/** LLMariner CreateNotebookRequest. */
const CREATE_BODY: BodyShape = {
  name: null,
  image: { type: null, uri: null },
  resources: { cpu_milicore: AMOUNT, memory_megabytes: AMOUNT, storage_megabytes: AMOUNT, gpu_count: null },
  envs: null,
  additional_exposed_ports: null,
};

/** LLMariner POST /v1/workspaces/notebooks → CreateNotebookInput. */
function createInput(body: Record<string, unknown>) {
  const name = body['name'];
  if (typeof name !== 'string' || name === '') throw RestError.badRequest("Missing required parameter: 'name'", 'name');
  const image = body['image'] as { type?: unknown; uri?: unknown } | undefined;
  const imageRef = typeof image?.uri === 'string' && image.uri !== '' ? image.uri : typeof image?.type === 'string' ? image.type : undefined;
  if (!imageRef) throw RestError.badRequest("Missing required parameter: 'image' ({type: preset} or {uri})", 'image');
  const resources = (body['resources'] ?? {}) as Record<string, unknown>;
  const envs = Object.entries((body['envs'] ?? {}) as Record<string, unknown>).map(([envName, value]) => {
    if (typeof value !== 'string') throw RestError.badRequest(`envs.${envName} must be a string`, 'envs');
    return { name: envName, value };
  });
  const ports = body['additional_exposed_ports'];
  if (ports !== undefined && ports !== null && !(Array.isArray(ports) && ports.every((p) => typeof p === 'number'))) {
    throw RestError.badRequest('additional_exposed_ports must be a list of ports', 'additional_exposed_ports');
  }
  const gpuCount = resources['gpu_count'];
  if (gpuCount !== undefined && gpuCount !== null && typeof gpuCount !== 'number')
    throw RestError.badRequest('resources.gpu_count must be an integer', 'resources.gpu_count');
  return {
    name,
    image: imageRef,
    resources: {
      cpuMillicores: amountIn(resources['cpu_milicore'], 'resources.cpu_milicore'),
      memoryMegabytes: amountIn(resources['memory_megabytes'], 'resources.memory_megabytes'),
      storageMegabytes: amountIn(resources['storage_megabytes'], 'resources.storage_megabytes'),
      gpuCount: gpuCount ?? null,
    },
    envs,
    additionalExposedPorts: (ports as number[] | undefined) ?? null,
  };
}

/** LLMariner workspaces (reference §4c): notebooks, with start and stop actions. */
export function notebookRoutes({ gateway }: { gateway: GatewayClient }) {
  const one = async (req: IncomingMessage, ctx: RouteContext, query: string, variables: Record<string, unknown>) => {
    const data = await gateway.request<Record<string, GraphQLNotebook | null>>(req, ctx.requestId, query, variables);
    const notebook = Object.values(data)[0];
    if (!notebook) throw RestError.notFound(`Notebook ${String(variables['id'] ?? '')} not found`);
    return toNotebook(notebook);
  };
  const action = (mutation: 'stopNotebook' | 'startNotebook' | 'deleteNotebook') => async (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) =>
    sendJson(
      res,
      200,
      await one(req, ctx, `mutation NotebookAction($id: ID!) { ${mutation}(id: $id) { ${NOTEBOOK_FIELDS} } }`, { id: ctx.params['id']! }),
      ctx.headers,
    );

  async function create(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const input = createInput(strictBody(await readJsonBody(req), CREATE_BODY));
    sendJson(
      res,
      200,
      await one(req, ctx, `mutation CreateNotebook($input: CreateNotebookInput!) { createNotebook(input: $input) { ${NOTEBOOK_FIELDS} } }`, { input }),
      ctx.headers,
    );
  }

  async function list(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const { after, limit } = listParams(ctx.url, 'desc');
    const { notebooks } = await gateway.request<{ notebooks: { items: GraphQLNotebook[]; hasMore: boolean; totalItems: number } }>(
      req,
      ctx.requestId,
      `query Notebooks($after: String, $limit: Int) { notebooks(after: $after, limit: $limit) { items { ${NOTEBOOK_FIELDS} } hasMore totalItems } }`,
      { after, limit: ctx.url.searchParams.has('limit') ? limit : 20 },
    );
    sendJson(res, 200, { notebooks: notebooks.items.map(toNotebook), has_more: notebooks.hasMore, total_items: notebooks.totalItems }, ctx.headers);
  }

  const retrieve = async (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) =>
    sendJson(res, 200, await one(req, ctx, `query Notebook($id: ID!) { notebook(id: $id) { ${NOTEBOOK_FIELDS} } }`, { id: ctx.params['id']! }), ctx.headers);

  return [
    { method: 'POST', path: '/v1/workspaces/notebooks', handler: create },
    { method: 'GET', path: '/v1/workspaces/notebooks', handler: list },
    { method: 'GET', path: '/v1/workspaces/notebooks/:id', handler: retrieve },
    { method: 'DELETE', path: '/v1/workspaces/notebooks/:id', handler: action('deleteNotebook') },
    { method: 'POST', path: '/v1/workspaces/notebooks/:id/actions:stop', handler: action('stopNotebook') },
    { method: 'POST', path: '/v1/workspaces/notebooks/:id/actions:start', handler: action('startNotebook') },
  ];
}
