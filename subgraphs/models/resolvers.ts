import { badInput, conflict, failedPrecondition, forbidden, notFound } from '../../lib/errors.js';
import type { ModelsContext } from './context.js';
import type { Resolvers } from './generated/resolvers.js';
import { projectScopeOf, type ProjectScope } from '../../lib/identity.js';
import type { ModelRow } from './store.js';
import { DEFAULT_MODEL_CONFIG, mergeModelConfig, normaliseModelId, validSuffix } from './validation.js';

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

/** The source of a base model, checked for its repository; returns the formats it implies. */
function checkSource(ctx: ModelsContext, repository: string, source: string): ModelRow['formats'] {
  switch (repository) {
    case 'OBJECT_STORE':
      if (!ctx.objectStore.keyFromUri(source)) throw badInput(`input.source: "${source.slice(0, 200)}" is not an object in this platform's store`, 'input.source');
      return source.toLowerCase().endsWith('.gguf') ? ['GGUF'] : [];
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

export const resolvers: Resolvers<ModelsContext> = {
  Query: {
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
      const formats = checkSource(ctx, input.sourceRepository, input.source.trim());
      const projectScoped = input.isProjectScoped ?? true;
      if (!projectScoped && scope.role !== 'organizationOwner') {
        throw forbidden('only organization owners create models shared by the whole tenant');
      }
      const created = await ctx.store.insert({
        tenant_id: scope.tenantId,
        id,
        project_id: projectScoped ? scope.projectId : null,
        organization_id: projectScoped ? scope.organizationId : null,
        is_base_model: true,
        base_model_id: null,
        source_repository: input.sourceRepository,
        source: input.source.trim(),
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
      if (!(await ctx.objectStore.head(key))) throw badInput(`input.source: nothing is stored at ${input.source.slice(0, 200)}`, 'input.source');
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
  },
};
