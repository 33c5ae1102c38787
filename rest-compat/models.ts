import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from '../lib/http.js';
import { unixSeconds } from '../lib/unixSeconds.js';
import { RestError } from './errors.js';
import type { GatewayClient } from './gatewayClient.js';
import { readJsonBody } from './json.js';
import { strictBody, type BodyShape } from './strictBody.js';
import { activationStatusName, loadingStatusName, modelFormatName, sourceRepositoryName } from './llmarinerJson.js';
import type { RouteContext } from './router.js';

const MODEL_FIELDS = `id createdAt ownedBy isBaseModel baseModelId sourceRepository source loadingStatus loadingStatusMessage
  loadingFailureReason formats activationStatus projectId adapter { kind baseModelId formats }
  config { runtime { gpu replicas extraArgs } clusterAllocationPolicy { allowedClusterIds enableOnDemandAllocation } }`;

interface GraphQLModel {
  id: string;
  createdAt: string;
  ownedBy: string;
  isBaseModel: boolean;
  baseModelId: string | null;
  sourceRepository: string;
  source: string;
  loadingStatus: string;
  loadingStatusMessage: string | null;
  loadingFailureReason: string | null;
  formats: string[];
  activationStatus: string;
  projectId: string | null;
  adapter: { kind: string; baseModelId: string; formats: string[] } | null;
  config: {
    runtime: { gpu: number; replicas: number; extraArgs: string[] };
    clusterAllocationPolicy: { allowedClusterIds: string[]; enableOnDemandAllocation: boolean };
  };
}

/**
 * OpenAI API: the Model object, with LLMariner's fields beside OpenAI's in LLMariner's JSON (snake_case,
 * enums by their proto names: `MODEL_LOADING_STATUS_SUCCEEDED`); OpenAI's own fields keep OpenAI's shape.
 */
export function toOpenAIModel(model: GraphQLModel) {
  return {
    id: model.id,
    object: 'model' as const,
    created: unixSeconds(model.createdAt),
    owned_by: model.ownedBy,
    is_base_model: model.isBaseModel,
    base_model_id: model.baseModelId ?? '',
    source_repository: sourceRepositoryName(model.sourceRepository),
    loading_status: loadingStatusName(model.loadingStatus),
    loading_status_message: model.loadingStatusMessage ?? '',
    loading_failure_reason: model.loadingFailureReason ?? '',
    formats: model.formats.map(modelFormatName),
    activation_status: activationStatusName(model.activationStatus),
    // A fine-tuned model that is a LoRA adapter of base_model_id (served on its runtime); null otherwise.
    adapter: model.adapter ? { kind: model.adapter.kind, base_model_id: model.adapter.baseModelId, formats: model.adapter.formats } : null,
    config: {
      runtime_config: {
        resources: { gpu: model.config.runtime.gpu },
        replicas: model.config.runtime.replicas,
        extra_args: model.config.runtime.extraArgs,
      },
      cluster_allocation_policy: {
        allowed_cluster_ids: model.config.clusterAllocationPolicy.allowedClusterIds,
        enable_on_demand_allocation: model.config.clusterAllocationPolicy.enableOnDemandAllocation,
      },
    },
  };
}

/** LLMariner ModelConfig. */
const CONFIG: BodyShape = {
  runtime_config: { resources: { gpu: null }, replicas: null, extra_args: null },
  cluster_allocation_policy: { allowed_cluster_ids: null, enable_on_demand_allocation: null },
};
/** LLMariner CreateModelRequest, and Mariner's `file_id` (a File as the weights). */
const CREATE_BODY: BodyShape = {
  id: null,
  source_repository: null,
  is_fine_tuned_model: null,
  base_model_id: null,
  suffix: null,
  model_file_location: null,
  file_id: null,
  config: CONFIG,
  is_project_scoped: null,
};
/** LLMariner UpdateModelRequest (the Model as read may be sent back whole; only its config is updated), and Mariner's `config`. */
const UPDATE_BODY: BodyShape = {
  model: {
    id: null,
    created: null,
    object: null,
    owned_by: null,
    loading_status: null,
    source_repository: null,
    loading_failure_reason: null,
    loading_status_message: null,
    formats: null,
    is_base_model: null,
    base_model_id: null,
    activation_status: null,
    config: CONFIG,
    project: null,
  },
  update_mask: null,
  config: CONFIG,
};

/** LLMariner's REST config (snake_case, runtime_config.resources.gpu) as the GraphQL ModelConfigInput. */
function configInput(raw: unknown): Record<string, unknown> | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'object') throw RestError.badRequest('config must be an object', 'config');
  const config = raw as Record<string, any>;
  const runtime = config['runtime_config'] ?? {};
  const policy = config['cluster_allocation_policy'] ?? {};
  return {
    runtime: { gpu: runtime.resources?.gpu ?? null, replicas: runtime.replicas ?? null, extraArgs: runtime.extra_args ?? null },
    clusterAllocationPolicy: {
      allowedClusterIds: policy.allowed_cluster_ids ?? null,
      enableOnDemandAllocation: policy.enable_on_demand_allocation ?? null,
    },
  };
}

function str(body: Record<string, unknown>, name: string, required = true): string | undefined {
  const value = body[name];
  if (value === undefined || value === null || value === '') {
    if (required) throw RestError.badRequest(`Missing required parameter: '${name}'`, name);
    return undefined;
  }
  if (typeof value !== 'string') throw RestError.badRequest(`'${name}' must be a string`, name);
  return value;
}

/**
 * Where a base model comes from, by repository: an object path (`model_file_location`), a File
 * (`file_id`, or its id in `model_file_location`), else the repository reference, which is the id.
 */
function sourceOf(body: Record<string, unknown>, sourceRepository: string): string | undefined {
  if (sourceRepository === 'FILE') return str(body, 'file_id', false) ?? str(body, 'model_file_location', false) ?? str(body, 'file_id');
  return str(body, sourceRepository === 'OBJECT_STORE' ? 'model_file_location' : 'id');
}

/** The OpenAI models routes plus LLMariner's create, update, activate and deactivate. */
export function modelRoutes({ gateway }: { gateway: GatewayClient }) {
  const single = async (req: IncomingMessage, ctx: RouteContext, mutation: string, variables: Record<string, unknown>) => {
    const data = await gateway.request<Record<string, GraphQLModel>>(req, ctx.requestId, mutation, variables);
    return toOpenAIModel(Object.values(data)[0]!);
  };

  async function list(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const includeLoading = ctx.url.searchParams.get('include_loading_models') === 'true';
    const data: ReturnType<typeof toOpenAIModel>[] = [];
    // OpenAI's models list is not paginated: gather every page.
    let after: string | null = null;
    for (;;) {
      const { models }: { models: { items: GraphQLModel[]; hasMore: boolean } } = await gateway.request(
        req,
        ctx.requestId,
        `query Models($includeLoading: Boolean, $after: String) { models(includeLoading: $includeLoading, after: $after, limit: 100) { items { ${MODEL_FIELDS} } hasMore } }`,
        { includeLoading, after },
      );
      data.push(...models.items.map(toOpenAIModel));
      if (!models.hasMore || models.items.length === 0) break;
      after = models.items.at(-1)!.id;
    }
    sendJson(res, 200, { object: 'list', data }, ctx.headers);
  }

  async function retrieve(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const id = ctx.params['id']!;
    const { model } = await gateway.request<{ model: GraphQLModel | null }>(
      req,
      ctx.requestId,
      `query Model($id: ID!, $includeLoading: Boolean) { model(id: $id, includeLoading: $includeLoading) { ${MODEL_FIELDS} } }`,
      { id, includeLoading: ctx.url.searchParams.get('include_loading_model') === 'true' },
    );
    if (!model) throw RestError.notFound(await notFoundMessage(req, ctx, id));
    sendJson(res, 200, toOpenAIModel(model), ctx.headers);
  }

  async function remove(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const { deleteModel } = await gateway.request<{ deleteModel: { id: string } }>(
      req,
      ctx.requestId,
      `mutation DeleteModel($id: ID!) { deleteModel(id: $id) { id } }`,
      { id: ctx.params['id']! },
    );
    sendJson(res, 200, { id: deleteModel.id, object: 'model', deleted: true }, ctx.headers);
  }

  /** POST /v1/models (LLMariner): a base model to load, or a fine-tuned model to register. */
  async function create(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const body = strictBody(await readJsonBody(req), CREATE_BODY);
    const config = configInput(body['config']);
    let model;
    if (body['is_fine_tuned_model'] === true) {
      model = await single(
        req,
        ctx,
        `mutation Register($input: RegisterFineTunedModelInput!) { m: registerFineTunedModel(input: $input) { ${MODEL_FIELDS} } }`,
        {
          input: { baseModelId: str(body, 'base_model_id'), suffix: str(body, 'suffix'), source: str(body, 'model_file_location'), config },
        },
      );
    } else {
      const repository = str(body, 'source_repository', false) ?? 'OBJECT_STORE';
      const sourceRepository = repository.replace(/^SOURCE_REPOSITORY_/, '');
      model = await single(req, ctx, `mutation Create($input: CreateBaseModelInput!) { m: createBaseModel(input: $input) { ${MODEL_FIELDS} } }`, {
        input: {
          id: str(body, 'id'),
          sourceRepository,
          source: sourceOf(body, sourceRepository),
          isProjectScoped: body['is_project_scoped'] === undefined ? null : body['is_project_scoped'] === true,
          config,
        },
      });
    }
    // LLMariner stores `/` in an id as `-`: the answer says which id was asked for (the original keeps
    // working as an alias on GET, DELETE, activate and inference).
    const requested = typeof body['id'] === 'string' ? body['id'].trim() : null;
    sendJson(res, 200, requested && requested !== model.id ? { ...model, requested_id: requested } : model, ctx.headers);
  }

  /** The 404 of GET /v1/models/{id}: a model still loading is hidden unless asked for, and the answer says so. */
  async function notFoundMessage(req: IncomingMessage, ctx: RouteContext, id: string): Promise<string> {
    if (ctx.url.searchParams.get('include_loading_model') !== 'true') {
      const { model } = await gateway.request<{ model: { id: string; loadingStatus: string } | null }>(
        req,
        ctx.requestId,
        `query LoadingModel($id: ID!) { model(id: $id, includeLoading: true) { id loadingStatus } }`,
        { id },
      );
      if (model) {
        return `The model '${id}'${model.id === id ? '' : ` (stored as '${model.id}')`} is not loaded yet (loading status ${model.loadingStatus}); add ?include_loading_model=true to see it while it loads`;
      }
    }
    return `The model '${id}' does not exist`;
  }

  /** PATCH /v1/models/{id} (LLMariner): update the config; `model.config` or `config`. */
  async function update(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const body = strictBody(await readJsonBody(req), UPDATE_BODY);
    const raw = (body['model'] as Record<string, unknown> | undefined)?.['config'] ?? body['config'];
    const config = configInput(raw);
    if (!config) throw RestError.badRequest('Nothing to update: give model.config', 'model.config');
    sendJson(
      res,
      200,
      await single(req, ctx, `mutation Update($input: UpdateModelConfigInput!) { m: updateModelConfig(input: $input) { ${MODEL_FIELDS} } }`, {
        input: { id: ctx.params['id']!, config },
      }),
      ctx.headers,
    );
  }

  /** POST /v1/models/{id}:activate and :deactivate (LLMariner); ids may themselves contain `:` and `/`. */
  async function action(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const match = /^(.+):(activate|deactivate)$/.exec(ctx.params['rest']!);
    if (!match) throw RestError.notFound(`Invalid URL (POST ${ctx.url.pathname})`);
    const [, id, verb] = match;
    const field = verb === 'activate' ? 'activateModel' : 'deactivateModel';
    await gateway.request(req, ctx.requestId, `mutation Activation($id: ID!) { ${field}(id: $id) { id } }`, { id });
    sendJson(res, 200, {}, ctx.headers);
  }

  return [
    { method: 'GET', path: '/v1/models', handler: list },
    { method: 'POST', path: '/v1/models', handler: create },
    { method: 'GET', path: '/v1/models/*id', handler: retrieve },
    { method: 'DELETE', path: '/v1/models/*id', handler: remove },
    { method: 'PATCH', path: '/v1/models/*id', handler: update },
    { method: 'POST', path: '/v1/models/*rest', handler: action },
  ] as const;
}
