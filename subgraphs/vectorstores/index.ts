import type { VectorStoresConfig } from '../../lib/config.js';
import type { Database } from '../../lib/db.js';
import { migrate } from '../../lib/db.js';
import type { InternalTokens } from '../../lib/identity.js';
import type { Logger } from '../../lib/logging.js';
import type { ObjectStore } from '../../lib/objectStore/index.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import { createEmbeddingsClient, createFilesClient } from './clients.js';
import type { VectorStoresContext } from './context.js';
import { startIngestionWorker, type IngestionWorker } from './ingestion/worker.js';
import { createLoaders } from './loaders.js';
import { migrations } from './migrations/index.js';
import { resolvers } from './resolvers.js';
import { SCHEMA, VectorStoreStore } from './store.js';
import { openVectorIndex, type VectorIndex } from './vectorIndex/index.js';

export { chunkText, chunkingStrategyOf, DEFAULT_CHUNKING } from './ingestion/chunking.js';
export { extractText } from './ingestion/extract.js';
export * from './vectorIndex/index.js';

export interface VectorStoresOptions {
  config: VectorStoresConfig;
  objectStore: ObjectStore;
  tokens: InternalTokens;
  /** Where the files subgraph runs (file lookups are asked there, as the caller). */
  filesUrl: () => string;
  /** Where the inference subgraph runs (embeddings go through it). */
  inferenceUrl: () => string;
  logger: Logger;
  /** Run the ingestion worker in this process (default true). */
  ingest?: boolean;
  /** A ready index instead of one from config (tests, benchmarks). */
  index?: VectorIndex | null;
}

/**
 * Runs the vectorstores subgraph's migrations, opens the vector index, starts the ingestion worker
 * and returns the subgraph's definition.
 */
export async function createVectorStoresSubgraph(
  db: Database,
  options: VectorStoresOptions,
): Promise<{
  definition: SubgraphDefinition<VectorStoresContext>;
  store: VectorStoreStore;
  index: VectorIndex | null;
  worker: IngestionWorker | null;
  stop(): Promise<void>;
}> {
  await migrate(db.knex, SCHEMA, migrations);
  const store = new VectorStoreStore(db.knex);
  const logger = options.logger.child({ component: 'vectorstores' });
  const index = options.index !== undefined ? options.index : await openVectorIndex(options.config, db, logger);
  const files = createFilesClient({ url: options.filesUrl, tokens: options.tokens });
  const embeddings = createEmbeddingsClient({ url: options.inferenceUrl, tokens: options.tokens, timeoutMs: 300_000 });
  const worker =
    index && options.ingest !== false
      ? startIngestionWorker({
          store,
          index,
          objectStore: options.objectStore,
          embeddings,
          logger,
          batchSize: options.config.embeddingBatchSize,
          concurrency: options.config.ingestionConcurrency,
          leaseSeconds: options.config.ingestionLeaseSeconds,
        })
      : null;
  const settings = { defaultEmbeddingModel: options.config.defaultEmbeddingModel, metric: options.config.metric };
  return {
    store,
    index,
    worker,
    stop: async () => {
      await worker?.stop();
      await index?.close();
    },
    definition: {
      name: 'vectorstores',
      typeDefs: subgraphTypeDefs('vectorstores'),
      resolvers: resolvers as SubgraphDefinition<VectorStoresContext>['resolvers'],
      policy: policyFor('vectorstores'),
      createContext: (base) => ({
        ...base,
        store,
        index,
        objectStore: options.objectStore,
        files,
        embeddings,
        ingestion: worker,
        settings,
        loaders: createLoaders(store),
      }),
    },
  };
}
