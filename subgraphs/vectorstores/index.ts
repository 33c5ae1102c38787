import { defineComponent } from '../../lib/component.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import { createEmbeddingsClient, createFilesClient } from './clients.js';
import type { VectorStoresContext } from './context.js';
import { startIngestionWorker } from './ingestion/worker.js';
import { createLoaders } from './loaders.js';
import { migrations } from './migrations/index.js';
import { resolvers } from './resolvers.js';
import { SCHEMA, VectorStoreStore } from './store.js';
import { openVectorIndex } from './vectorIndex/index.js';

export { chunkText, chunkingStrategyOf, DEFAULT_CHUNKING } from './ingestion/chunking.js';
export { extractText } from './ingestion/extract.js';
export * from './vectorIndex/index.js';

/**
 * The vectorstores component: vector stores, their files and search; the ingestion worker (extract,
 * chunk, embed) and the vector index (pgvector or Milvus). File lookups are asked of the files subgraph
 * and embeddings of the inference subgraph, as the caller.
 */
export const vectorStoresComponent = defineComponent({
  name: 'vectorstores',
  subgraphs: ['vectorstores'],
  needs: { database: true, objectStore: true, subgraphs: ['files', 'inference'] },
  migrations: { schema: SCHEMA, migrations },
  settings: (config) => config.vectorStores,
  async create({ db, objectStore, settings, tokens, subgraphUrl, logger: hostLogger }) {
    const store = new VectorStoreStore(db.knex);
    const logger = hostLogger.child({ component: 'vectorstores' });
    const index = await openVectorIndex(settings, db, logger);
    const files = createFilesClient({ url: subgraphUrl.files, tokens });
    const embeddings = createEmbeddingsClient({ url: subgraphUrl.inference, tokens, timeoutMs: 300_000 });
    const worker = index
      ? startIngestionWorker({
          store,
          index,
          objectStore,
          embeddings,
          logger,
          batchSize: settings.embeddingBatchSize,
          concurrency: settings.ingestionConcurrency,
          leaseSeconds: settings.ingestionLeaseSeconds,
        })
      : null;
    const searchSettings = { defaultEmbeddingModel: settings.defaultEmbeddingModel, metric: settings.metric };
    const definition: SubgraphDefinition<VectorStoresContext> = {
      name: 'vectorstores',
      typeDefs: subgraphTypeDefs('vectorstores'),
      resolvers: resolvers as SubgraphDefinition<VectorStoresContext>['resolvers'],
      policy: policyFor('vectorstores'),
      createContext: (base) => ({
        ...base,
        store,
        index,
        objectStore,
        files,
        embeddings,
        ingestion: worker,
        settings: searchSettings,
        loaders: createLoaders(store),
      }),
    };
    return {
      subgraphs: [definition],
      stop: async () => {
        await worker?.stop();
        await index?.close();
      },
      exposed: { store, index, worker },
    };
  },
});
