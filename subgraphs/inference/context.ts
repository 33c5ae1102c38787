import type { PubSub } from '../../lib/pubsub.js';
import type { SubgraphContext } from '../../lib/subgraphServer.js';
import type { ModelsClient } from './modelsClient.js';
import type { VectorStoreSearch } from './rag.js';
import type { InferenceRouter } from './router.js';
import type { RuntimeRow, RuntimeStore } from './store.js';

export interface InferenceContext extends SubgraphContext {
  store: RuntimeStore;
  router: InferenceRouter;
  models: ModelsClient;
  pubsub: PubSub;
  /** The `rag` tool's search (null: no vectorstores subgraph to ask). */
  vectorStores: VectorStoreSearch | null;
}

/** A Model as this subgraph knows it: by id only. */
export interface ModelRef {
  id: string;
}

export interface InferenceStatusModel {
  runtimes: RuntimeRow[];
  readyModelIds: string[];
}
