import DataLoader from 'dataloader';
import { projectScopeOf } from '../../lib/identity.js';
import type { SubgraphContext } from '../../lib/subgraphServer.js';
import type { RuntimeAccess } from './runtimeAccess.js';
import type { RuntimeRow, RuntimeStore } from './store.js';

/**
 * Per-request batching: a page of models costs one runtimes query and one model-owners lookup, not
 * one of each per model. Not cached: a subscription's context lives on, and each event reads anew.
 */
export function createInferenceLoaders(base: SubgraphContext, store: RuntimeStore, access: RuntimeAccess) {
  return {
    /** A model's runtimes the caller may see (RuntimeAccess.visible). */
    modelRuntimes: new DataLoader<string, RuntimeRow[]>(
      async (modelIds) => {
        const scope = projectScopeOf(base.identity);
        const rows = await access.visible(scope, base.requestId, await store.forModels(scope.tenantId, modelIds));
        return modelIds.map((id) => rows.filter((row) => row.model_id === id));
      },
      { cache: false },
    ),
  };
}

export type InferenceLoaders = ReturnType<typeof createInferenceLoaders>;
