import type { ObjectStore } from '../../lib/objectStore/index.js';
import type { SubgraphContext } from '../../lib/subgraphServer.js';
import type { EmbeddingsClient, FilesClient } from './clients.js';
import type { IngestionWorker } from './ingestion/worker.js';
import type { VectorStoreLoaders } from './loaders.js';
import type { VectorStoreStore } from './store.js';
import type { Metric, VectorIndex } from './vectorIndex/types.js';

export interface VectorStoresSettings {
  defaultEmbeddingModel: string;
  metric: Metric;
}

export interface VectorStoresContext extends SubgraphContext {
  store: VectorStoreStore;
  /** null: no vector index is configured or available (vector operations answer FAILED_PRECONDITION). */
  index: VectorIndex | null;
  objectStore: ObjectStore;
  files: FilesClient;
  embeddings: EmbeddingsClient;
  ingestion: IngestionWorker | null;
  settings: VectorStoresSettings;
  loaders: VectorStoreLoaders;
}
