import type { InternalTokens } from '../../lib/identity.js';
import { asCaller, asSystem, createInternalClient } from '../../lib/internalClient.js';
import type { SubgraphContext } from '../../lib/subgraphServer.js';
import {
  InferenceActivateDocument,
  InferenceModelDocument,
  InferenceModelOwnersDocument,
  type InferenceModelOwnersQuery,
  type InferenceModelQuery,
} from './generated/modelsOperations.js';

/** What routing needs of a model. */
export type ServableModel = NonNullable<InferenceModelQuery['model']>;

/** Whose a model is (the models subgraph's `modelOwners`): null organization and project for the tenant's shared catalog. */
export type ModelOwner = InferenceModelOwnersQuery['modelOwners'][number];

export interface ModelsClient {
  /** The model as the caller sees it (visibility rules of the models subgraph), or null. */
  model(caller: Pick<SubgraphContext, 'requestId' | 'identity'>, id: string): Promise<ServableModel | null>;
  /** Activates the model as the caller (on-demand activation: the caller's own rights apply). */
  activate(caller: Pick<SubgraphContext, 'requestId' | 'identity'>, id: string): Promise<void>;
  /**
   * The owners of those of `ids` that exist in the tenant, asked as the system (a cluster's report and
   * the status views judge runtimes of models the caller may not see by name).
   */
  owners(requestId: string, tenantId: string, ids: readonly string[]): Promise<Map<string, ModelOwner>>;
}

/** The most ids the models subgraph takes in one `modelOwners` call. */
const MAX_OWNER_IDS = 1000;

/**
 * The inference subgraph does not own models: it asks the models subgraph (operations/models.graphql)
 * on behalf of the caller, so a caller reaches only models its project may see (the same pattern as
 * models → files).
 */
export function createModelsClient(options: { url: string; tokens: InternalTokens }): ModelsClient {
  const models = createInternalClient({ subgraph: 'models', url: options.url, tokens: options.tokens });
  return {
    model: async (caller, id) => (await models.request(asCaller(caller), InferenceModelDocument, { id })).model,
    activate: async (caller, id) => {
      await models.request(asCaller(caller), InferenceActivateDocument, { id });
    },
    owners: async (requestId, tenantId, ids) => {
      const unique = [...new Set(ids)];
      if (unique.length === 0) return new Map();
      const batches: string[][] = [];
      for (let i = 0; i < unique.length; i += MAX_OWNER_IDS) batches.push(unique.slice(i, i + MAX_OWNER_IDS));
      const answers = await Promise.all(batches.map((batch) => models.request(asSystem(requestId), InferenceModelOwnersDocument, { tenantId, ids: batch })));
      return new Map(answers.flatMap(({ modelOwners }) => modelOwners.map((owner) => [owner.id, owner] as const)));
    },
  };
}
