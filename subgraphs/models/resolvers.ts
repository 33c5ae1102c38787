import { badInput, conflict, failedPrecondition, notFound, unauthenticated } from '../../lib/errors.js';
import type { ModelsContext } from './context.js';
import type { Resolvers } from './generated/resolvers.js';
import { projectScopeOf, type ProjectScope, type Worker } from '../../lib/identity.js';
import { requireActivator, requireCatalogAdmin, requireManager } from './catalog.js';
import { clusterScopeOf } from './clusterScope.js';
import { loadTaskOf, storedModelKey } from './loading.js';
import { baseModelSource, fineTunedSource, registrationSuffix } from './sources.js';
import { ADAPTER_FORMATS, type ClusterScope, type LoadReport, type ModelRow } from './store.js';
import { DEFAULT_PREFIX_HASH } from '../../lib/prefixHashRing.js';
import { DEFAULT_MODEL_CONFIG, loaderMessage, mergeModelConfig, normaliseModelId, validSuffix } from './validation.js';

const scopeOf = (ctx: ModelsContext): ProjectScope => projectScopeOf(ctx.identity);

async function visibleModel(ctx: ModelsContext, rawId: string, field = 'id'): Promise<ModelRow> {
  const id = normaliseModelId(rawId, field);
  const model = await ctx.store.model(scopeOf(ctx), id);
  if (!model) throw notFound('model', id);
  return model;
}

/** The calling agent's cluster; the policy map admits only workers to the loader API. */
function workerOf(ctx: ModelsContext): Worker {
  if (!ctx.worker) throw unauthenticated('A cluster registration key is required');
  return ctx.worker;
}

/**
 * The model whose load the worker's cluster holds; NOT_FOUND or FAILED_PRECONDITION otherwise. A model
 * the cluster may not load (another organization's) is NOT_FOUND, as one that does not exist.
 */
async function heldLoad(ctx: ModelsContext, cluster: ClusterScope, id: string): Promise<ModelRow> {
  const model = await ctx.store.loadableModel(cluster, id);
  if (!model) throw notFound('model', id);
  if (model.loading_status !== 'LOADING') {
    throw failedPrecondition(`model ${id} is not being loaded (loading status ${model.loading_status}): acquire a load first`);
  }
  if (model.loading_cluster_id !== cluster.clusterId) {
    throw failedPrecondition(`model ${id} is being loaded by another cluster (a lease that runs out is taken over): this cluster's report is refused`);
  }
  return model;
}

/**
 * Returns `value` once the change of a model of the tenant is announced (events.ts): every mutation that
 * changes a model answers through it, so the inference component's cache of models drops what it kept.
 */
async function announced<T>(ctx: ModelsContext, tenantId: string, value: T): Promise<T> {
  await ctx.modelChanges.announce(tenantId);
  return value;
}

/** The most model ids one `modelOwners` call takes (a routing table's worth). */
const MAX_OWNER_IDS = 1000;

/** Fine-tuned model ids (`ft:<base>:<suffix>`) are not base models' to take. */
const FINE_TUNED_ID = /^ft:/i;

/** Whether a model is a LoRA adapter of its base model (its formats are adapter formats). */
const isAdapter = (m: Pick<ModelRow, 'is_base_model' | 'formats'>) =>
  !m.is_base_model && m.formats.some((format) => (ADAPTER_FORMATS as readonly string[]).includes(format));

/**
 * The formats of a fine-tuning output: a single `.gguf` object is a GGUF model; a folder holding a PEFT
 * adapter (adapter_config.json) and/or a GGUF adapter (a `.gguf` beside it, as the demo trainer and
 * LLMariner's `convert-lora-to-ggml.py` step write) is a LoRA adapter in those formats; anything else a
 * Hugging Face model.
 */
async function fineTunedFormats(ctx: ModelsContext, key: string): Promise<ModelRow['formats']> {
  if (key.toLowerCase().endsWith('.gguf')) return ['GGUF'];
  const names: string[] = [];
  for await (const object of ctx.objectStore.list(key.endsWith('/') ? key : `${key}/`)) {
    names.push(object.key.slice(object.key.lastIndexOf('/') + 1).toLowerCase());
    if (names.length >= 1000) break;
  }
  const peft = names.includes('adapter_config.json');
  if (!peft) return ['HUGGING_FACE'];
  const formats: ModelRow['formats'] = [];
  if (names.some((name) => name.endsWith('.gguf'))) formats.push('GGUF_ADAPTER');
  formats.push('PEFT_SAFETENSORS');
  return formats;
}

export const resolvers: Resolvers<ModelsContext> = {
  Query: {
    workerActiveModels: async (_p, _a, ctx) => {
      // LoRA adapters get no runtime of their own: they run on their base model's, which lists them.
      const active = await ctx.store.activeModelsFor(clusterScopeOf(workerOf(ctx)));
      const adaptersOf = new Map<string, string[]>();
      for (const m of active.filter(isAdapter)) adaptersOf.set(m.base_model_id!, [...(adaptersOf.get(m.base_model_id!) ?? []), m.id]);
      return active
        .filter((m) => !isAdapter(m))
        .map((m) => ({
          id: m.id,
          source: m.source,
          formats: m.formats,
          ...m.config.runtime,
          scalingSchedules: m.config.runtime.scalingSchedules ?? [],
          loadBalancing: m.config.runtime.loadBalancing ?? 'LEAST_IN_FLIGHT',
          prefixHashChars: m.config.runtime.prefixHashChars ?? DEFAULT_PREFIX_HASH.prefixChars,
          loraAdapters: adaptersOf.get(m.id) ?? [],
        }));
    },
    // For the inference subgraph (the system): whom the models its runtimes report belong to.
    modelOwners: async (_p, { tenantId, ids }, ctx) => {
      if (ids.length > MAX_OWNER_IDS) throw badInput(`ids: at most ${MAX_OWNER_IDS} model ids at a time (${ids.length} given)`, 'ids');
      const owners = await ctx.store.owners(tenantId, [...new Set(ids)]);
      return owners.map((o) => ({ id: o.id, organizationId: o.organization_id, projectId: o.project_id, isBaseModel: o.is_base_model }));
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
      requireCatalogAdmin(ctx);
      const scope = scopeOf(ctx);
      const id = normaliseModelId(input.id, 'input.id');
      if (FINE_TUNED_ID.test(id)) throw badInput('input.id: ids starting with ft: are fine-tuned models’ (ft:<base>:<suffix>)', 'input.id');
      const projectScoped = input.isProjectScoped ?? true;
      const { source, formats } = await baseModelSource(ctx, input.sourceRepository, input.source);
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
      // Only platform admins create base models, and no fine-tuned id can be one: the id they collide
      // with is a base model's (the catalog or an admin's project), never an organization's private model.
      if (!created) throw conflict(`a model named ${id} already exists`);
      return announced(ctx, scope.tenantId, created);
    },
    registerFineTunedModel: async (_p, { input }, ctx) => {
      const scope = scopeOf(ctx);
      const base = await visibleModel(ctx, input.baseModelId, 'input.baseModelId');
      if (!base.is_base_model) throw badInput(`input.baseModelId: ${base.id} is not a base model`, 'input.baseModelId');
      const suffix = validSuffix(input.suffix);
      const source = await fineTunedSource(ctx, input.source, suffix);
      const formats = await fineTunedFormats(ctx, source.key);
      // An adapter is servable at once on its base model's runtimes (OpenAI: no activation step);
      // deactivating it stops that. A full model is activated like any other.
      const adapter = isAdapter({ is_base_model: false, formats });
      // LLMariner models.go createFineTunedModel: ft:<base>:<suffix>. sources.ts registrationSuffix says
      // why a registration other than a job's gets a random tag; a tag that collides is drawn again.
      for (let attempt = 1; ; attempt++) {
        const id = `ft:${base.id}:${registrationSuffix(suffix, source)}`;
        const created = await ctx.store.insert({
          tenant_id: scope.tenantId,
          id,
          project_id: scope.projectId,
          organization_id: scope.organizationId,
          is_base_model: false,
          base_model_id: base.id,
          source_repository: 'FINE_TUNING',
          source: ctx.objectStore.uri(source.key),
          loading_status: 'SUCCEEDED',
          loading_status_message: null,
          loading_failure_reason: null,
          formats,
          activation_status: adapter ? 'ACTIVE' : 'INACTIVE',
          config: mergeModelConfig(base.config, input.config),
          owned_by: scope.organizationId,
        });
        if (created) return announced(ctx, scope.tenantId, created);
        // A job registering again (its first answer was lost) finds the model it registered: the
        // jobs subgraph takes CONFLICT as done. Its id ends with the job's tag: only the job's project knows it.
        if (source.fromJob || attempt === 3) throw conflict(`a model named ${id} already exists`);
      }
    },
    updateModelConfig: async (_p, { input }, ctx) => {
      const model = await visibleModel(ctx, input.id, 'input.id');
      requireManager(ctx, model, 'configure');
      return announced(ctx, model.tenant_id, (await ctx.store.update(scopeOf(ctx), model.id, { config: mergeModelConfig(model.config, input.config) }))!);
    },
    activateModel: async (_p, { id }, ctx) => {
      const model = await visibleModel(ctx, id);
      requireActivator(ctx, model);
      if (model.loading_status !== 'SUCCEEDED') {
        throw failedPrecondition(`model ${model.id} is not loaded yet (loading status ${model.loading_status})`);
      }
      return announced(ctx, model.tenant_id, (await ctx.store.update(scopeOf(ctx), model.id, { activation_status: 'ACTIVE' }))!);
    },
    deactivateModel: async (_p, { id }, ctx) => {
      const model = await visibleModel(ctx, id);
      requireManager(ctx, model, 'deactivate');
      return announced(ctx, model.tenant_id, (await ctx.store.update(scopeOf(ctx), model.id, { activation_status: 'INACTIVE' }))!);
    },
    deleteModel: async (_p, { id }, ctx) => {
      const model = await visibleModel(ctx, id);
      requireManager(ctx, model, 'delete');
      const outcome = await ctx.store.deleteInactive(scopeOf(ctx), model.id);
      if (outcome === 'active') throw failedPrecondition(`model ${model.id} is active: deactivate it before deleting`);
      if (outcome === 'missing') throw notFound('model', model.id);
      if (typeof outcome === 'object') {
        // The count only: the adapters may be other projects' models.
        throw failedPrecondition(
          `model ${model.id} is the base model of ${outcome.adapters} fine-tuned LoRA adapter${outcome.adapters === 1 ? '' : 's'} that run on its weights: delete them before deleting it`,
        );
      }
      return announced(ctx, model.tenant_id, { id: model.id, deleted: true });
    },
    // The model loader's worker API (LLMariner ModelsWorkerService AcquireUnloadedBaseModel,
    // UpdateBaseModelLoadingStatus), for registration keys only.
    acquireModelLoad: async (_p, _a, ctx) => {
      const worker = workerOf(ctx);
      const claimed = await ctx.store.acquireLoad(clusterScopeOf(worker), ctx.loadLeaseSeconds, `loading on cluster ${worker.clusterName}`);
      return claimed ? announced(ctx, worker.tenantId, loadTaskOf(ctx.objectStore, claimed)) : null;
    },
    reportModelLoading: async (_p, { input }, ctx) => {
      const cluster = clusterScopeOf(workerOf(ctx));
      const id = normaliseModelId(input.id, 'input.id');
      const message = loaderMessage(input.message);
      const formats = input.formats ? [...new Set(input.formats)] : null;
      // Checked first so a wrong cluster learns so before the store is read; the update below checks again.
      const held = await heldLoad(ctx, cluster, id);
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
      const updated = await ctx.store.reportLoad(cluster, id, report);
      if (!updated) {
        // The load changed hands (or the model was deleted) between the check and the update.
        await heldLoad(ctx, cluster, id);
        throw failedPrecondition(`model ${id}: the load changed while reporting; nothing was recorded`);
      }
      return announced(ctx, cluster.tenantId, loadTaskOf(ctx.objectStore, updated));
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
    config: (m) => ({
      ...m.config,
      runtime: {
        ...m.config.runtime,
        scalingSchedules: m.config.runtime.scalingSchedules ?? [],
        loadBalancing: m.config.runtime.loadBalancing ?? 'LEAST_IN_FLIGHT',
        prefixHashChars: m.config.runtime.prefixHashChars ?? DEFAULT_PREFIX_HASH.prefixChars,
      },
    }),
    adapter: (m) =>
      isAdapter(m) && m.base_model_id
        ? { kind: 'LORA' as const, baseModelId: m.base_model_id, formats: m.formats.filter((f) => (ADAPTER_FORMATS as readonly string[]).includes(f)) }
        : null,
  },
};
