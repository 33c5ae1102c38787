import { keyBelongsTo } from '../../lib/objectStore/index.js';
import { badInput, conflict, ErrorCode, failedPrecondition, forbidden, MarinerError, notFound, unauthenticated } from '../../lib/errors.js';
import { assertId } from '../../lib/ids.js';
import type { ModelsContext } from './context.js';
import type { Resolvers } from './generated/resolvers.js';
import { projectScopeOf, type ProjectScope, type Worker } from '../../lib/identity.js';
import { loadTaskOf, storedModelKey } from './loading.js';
import type { LoadReport, ModelRow } from './store.js';
import { DEFAULT_MODEL_CONFIG, loaderMessage, mergeModelConfig, normaliseModelId, validSuffix } from './validation.js';

const scopeOf = (ctx: ModelsContext): ProjectScope => projectScopeOf(ctx.identity);

/** Tenant-wide base models affect every project: only organization owners change them. */
function requireManager(ctx: ModelsContext, model: ModelRow): void {
  if (model.project_id === null && scopeOf(ctx).role !== 'organizationOwner') {
    throw forbidden(`model ${model.id} is shared by the whole tenant: only organization owners change it`);
  }
}

async function visibleModel(ctx: ModelsContext, rawId: string, field = 'id'): Promise<ModelRow> {
  const id = normaliseModelId(rawId, field);
  const model = await ctx.store.model(scopeOf(ctx), id);
  if (!model) throw notFound('model', id);
  return model;
}

const HF_REPO = /^[A-Za-z0-9][\w.-]{0,95}\/[A-Za-z0-9][\w.-]{0,95}$/;
const OLLAMA_REF = /^[a-z0-9][\w.-]{0,95}(:[\w.-]{1,64})?$/;

/** The calling agent's cluster; the policy map admits only workers to the loader API. */
function workerOf(ctx: ModelsContext): Worker {
  if (!ctx.worker) throw unauthenticated('A cluster registration key is required');
  return ctx.worker;
}

/** The model whose load the worker's cluster holds; NOT_FOUND or FAILED_PRECONDITION otherwise. */
async function heldLoad(ctx: ModelsContext, worker: Worker, id: string): Promise<ModelRow> {
  const model = await ctx.store.modelOfTenant(worker.tenantId, id);
  if (!model) throw notFound('model', id);
  if (model.loading_status !== 'LOADING') {
    throw failedPrecondition(`model ${id} is not being loaded (loading status ${model.loading_status}): acquire a load first`);
  }
  if (model.loading_cluster_id !== worker.clusterId) {
    throw failedPrecondition(`model ${id} is being loaded by another cluster (a lease that runs out is taken over): this cluster's report is refused`);
  }
  return model;
}

/**
 * A base model from a File of the caller's project. The files subgraph owns files: it is asked with
 * the caller's identity, so its policy and project ownership apply. Returns the file's object (the
 * loader reads the model from there) and the formats its name implies.
 */
async function fileSource(ctx: ModelsContext, raw: string): Promise<{ source: string; formats: ModelRow['formats'] }> {
  const id = assertId('file', raw, 'input.source');
  const file = await ctx.files.file(ctx, id);
  if (!file) throw new MarinerError(ErrorCode.NOT_FOUND, `input.source: file ${id} not found in the current project`, { field: 'input.source' });
  if (file.status === 'ERROR') throw badInput(`input.source: file ${id} failed processing`, 'input.source');
  if (!ctx.objectStore.keyFromUri(file.objectStorePath)) {
    throw badInput(`input.source: the bytes of file ${id} are not in this platform's store`, 'input.source');
  }
  return { source: file.objectStorePath, formats: file.filename.toLowerCase().endsWith('.gguf') ? ['GGUF'] : [] };
}

/** The source of a base model, checked for its repository; returns the formats it implies. */
function checkSource(ctx: ModelsContext, repository: string, source: string): ModelRow['formats'] {
  switch (repository) {
    case 'OBJECT_STORE': {
      const key = ctx.objectStore.keyFromUri(source);
      if (!key) throw badInput(`input.source: "${source.slice(0, 200)}" is not an object in this platform's store`, 'input.source');
      if (!keyBelongsTo(key, scopeOf(ctx))) throw forbidden('input.source: that object belongs to another project');
      return source.toLowerCase().endsWith('.gguf') ? ['GGUF'] : [];
    }
    case 'HUGGING_FACE':
      if (!HF_REPO.test(source)) throw badInput('input.source: a Hugging Face repository looks like org/name', 'input.source');
      return ['HUGGING_FACE'];
    case 'OLLAMA':
      if (!OLLAMA_REF.test(source)) throw badInput('input.source: an Ollama model looks like name or name:tag', 'input.source');
      return ['OLLAMA'];
    default:
      throw badInput('input.sourceRepository: fine-tuned models are registered with registerFineTunedModel', 'input.sourceRepository');
  }
}

/** An object at `key`, or a folder of objects under it (a fine-tuning job's output: adapter config and weights). */
async function storedAt(ctx: ModelsContext, key: string): Promise<boolean> {
  if (await ctx.objectStore.head(key)) return true;
  for await (const _object of ctx.objectStore.list(key.endsWith('/') ? key : `${key}/`)) return true;
  return false;
}

export const resolvers: Resolvers<ModelsContext> = {
  Query: {
    workerActiveModels: async (_p, _a, ctx) => {
      if (!ctx.worker) throw unauthenticated('A cluster registration key is required');
      const rows = await ctx.store.activeModelsFor(ctx.worker.tenantId, ctx.worker.clusterId);
      return rows.map((m) => ({ id: m.id, source: m.source, formats: m.formats, ...m.config.runtime }));
    },
    models: (_p, { includeLoading, after, limit }, ctx) => ctx.store.list(scopeOf(ctx), includeLoading ?? false, { after, limit }),
    model: async (_p, { id, includeLoading }, ctx) => {
      const model = await ctx.store.model(scopeOf(ctx), normaliseModelId(id));
      if (!model || (!includeLoading && model.loading_status !== 'SUCCEEDED')) return null;
      return model;
    },
  },
  Mutation: {
    createBaseModel: async (_p, { input }, ctx) => {
      const scope = scopeOf(ctx);
      const id = normaliseModelId(input.id, 'input.id');
      const projectScoped = input.isProjectScoped ?? true;
      if (!projectScoped && scope.role !== 'organizationOwner') {
        throw forbidden('only organization owners create models shared by the whole tenant');
      }
      const { source, formats } =
        input.sourceRepository === 'FILE'
          ? await fileSource(ctx, input.source.trim())
          : { source: input.source.trim(), formats: checkSource(ctx, input.sourceRepository, input.source.trim()) };
      const created = await ctx.store.insert({
        tenant_id: scope.tenantId,
        id,
        project_id: projectScoped ? scope.projectId : null,
        organization_id: projectScoped ? scope.organizationId : null,
        is_base_model: true,
        base_model_id: null,
        source_repository: input.sourceRepository,
        source,
        loading_status: 'REQUESTED',
        loading_status_message: 'waiting for a loader',
        loading_failure_reason: null,
        formats,
        activation_status: 'INACTIVE',
        config: mergeModelConfig(DEFAULT_MODEL_CONFIG, input.config),
        owned_by: projectScoped ? scope.organizationId : 'system',
      });
      if (!created) throw conflict(`a model named ${id} already exists`);
      return created;
    },
    registerFineTunedModel: async (_p, { input }, ctx) => {
      const scope = scopeOf(ctx);
      const base = await visibleModel(ctx, input.baseModelId, 'input.baseModelId');
      if (!base.is_base_model) throw badInput(`input.baseModelId: ${base.id} is not a base model`, 'input.baseModelId');
      const suffix = validSuffix(input.suffix);
      const key = ctx.objectStore.keyFromUri(input.source.trim());
      if (!key) throw badInput(`input.source: "${input.source.slice(0, 200)}" is not an object in this platform's store`, 'input.source');
      if (!keyBelongsTo(key, scope)) throw forbidden('input.source: that object belongs to another project');
      if (!(await storedAt(ctx, key))) throw badInput(`input.source: nothing is stored at ${input.source.slice(0, 200)}`, 'input.source');
      // LLMariner models.go createFineTunedModel: ft:<base>:<suffix>.
      const id = `ft:${base.id}:${suffix}`;
      const created = await ctx.store.insert({
        tenant_id: scope.tenantId,
        id,
        project_id: scope.projectId,
        organization_id: scope.organizationId,
        is_base_model: false,
        base_model_id: base.id,
        source_repository: 'FINE_TUNING',
        source: ctx.objectStore.uri(key),
        loading_status: 'SUCCEEDED',
        loading_status_message: null,
        loading_failure_reason: null,
        formats: key.toLowerCase().endsWith('.gguf') ? ['GGUF'] : ['HUGGING_FACE'],
        activation_status: 'INACTIVE',
        config: mergeModelConfig(base.config, input.config),
        owned_by: scope.organizationId,
      });
      if (!created) throw conflict(`a model named ${id} already exists`);
      return created;
    },
    updateModelConfig: async (_p, { input }, ctx) => {
      const model = await visibleModel(ctx, input.id, 'input.id');
      requireManager(ctx, model);
      return (await ctx.store.update(scopeOf(ctx), model.id, { config: mergeModelConfig(model.config, input.config) }))!;
    },
    activateModel: async (_p, { id }, ctx) => {
      const model = await visibleModel(ctx, id);
      requireManager(ctx, model);
      if (model.loading_status !== 'SUCCEEDED') {
        throw failedPrecondition(`model ${model.id} is not loaded yet (loading status ${model.loading_status})`);
      }
      return (await ctx.store.update(scopeOf(ctx), model.id, { activation_status: 'ACTIVE' }))!;
    },
    deactivateModel: async (_p, { id }, ctx) => {
      const model = await visibleModel(ctx, id);
      requireManager(ctx, model);
      return (await ctx.store.update(scopeOf(ctx), model.id, { activation_status: 'INACTIVE' }))!;
    },
    deleteModel: async (_p, { id }, ctx) => {
      const model = await visibleModel(ctx, id);
      requireManager(ctx, model);
      const outcome = await ctx.store.deleteInactive(scopeOf(ctx), model.id);
      if (outcome === 'active') throw failedPrecondition(`model ${model.id} is active: deactivate it before deleting`);
      if (outcome === 'missing') throw notFound('model', model.id);
      return { id: model.id, deleted: true };
    },
    // The model loader's worker API (LLMariner ModelsWorkerService AcquireUnloadedBaseModel,
    // UpdateBaseModelLoadingStatus), for registration keys only.
    acquireModelLoad: async (_p, _a, ctx) => {
      const worker = workerOf(ctx);
      const claimed = await ctx.store.acquireLoad(worker, ctx.loadLeaseSeconds, `loading on cluster ${worker.clusterName}`);
      return claimed ? loadTaskOf(ctx.objectStore, claimed) : null;
    },
    reportModelLoading: async (_p, { input }, ctx) => {
      const worker = workerOf(ctx);
      const id = normaliseModelId(input.id, 'input.id');
      const message = loaderMessage(input.message);
      const formats = input.formats ? [...new Set(input.formats)] : null;
      // Checked first so a wrong cluster learns so before the store is read; the update below checks again.
      const held = await heldLoad(ctx, worker, id);
      let report: LoadReport;
      if (input.status === 'LOADING') {
        report = { status: 'LOADING', message, formats, leaseSeconds: ctx.loadLeaseSeconds };
      } else if (input.status === 'SUCCEEDED') {
        const key = await storedModelKey(ctx.objectStore, held, input.objectPath);
        const final = formats ?? held.formats;
        if (final.length === 0) throw badInput('input.formats: a loaded model needs at least one format', 'input.formats');
        report = { status: 'SUCCEEDED', message, formats: final, source: ctx.objectStore.uri(key) };
      } else {
        if (!message) throw badInput('input.message: a FAILED report says why', 'input.message');
        report = { status: 'FAILED', reason: message };
      }
      const updated = await ctx.store.reportLoad(worker, id, report);
      if (!updated) {
        // The load changed hands (or the model was deleted) between the check and the update.
        await heldLoad(ctx, worker, id);
        throw failedPrecondition(`model ${id}: the load changed while reporting; nothing was recorded`);
      }
      return loadTaskOf(ctx.objectStore, updated);
    },
  },
  Model: {
    __resolveReference: async (ref, ctx) => (await ctx.store.model(scopeOf(ctx), ref.id)) ?? null,
    createdAt: (m) => m.created_at.toISOString(),
    ownedBy: (m) => m.owned_by,
    isBaseModel: (m) => m.is_base_model,
    baseModelId: (m) => m.base_model_id,
    sourceRepository: (m) => m.source_repository,
    loadingStatus: (m) => m.loading_status,
    loadingStatusMessage: (m) => m.loading_status_message,
    loadingFailureReason: (m) => m.loading_failure_reason,
    activationStatus: (m) => m.activation_status,
    projectId: (m) => m.project_id,
    loadingClusterId: (m) => m.loading_cluster_id,
  },
};
