import type { Database } from '../../lib/db.js';
import { migrate } from '../../lib/db.js';
import type { InternalTokens } from '../../lib/identity.js';
import type { Logger } from '../../lib/logging.js';
import type { PubSub } from '../../lib/pubsub.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { InferenceContext } from './context.js';
import { migrations } from './migrations/index.js';
import { createModelsClient } from './modelsClient.js';
import { createVectorStoreSearch } from './rag.js';
import { resolvers } from './resolvers.js';
import { InferenceRouter, type ClusterTransport } from './router.js';
import { RuntimeStore, SCHEMA } from './store.js';

export type { ClusterTransport } from './router.js';

export interface InferenceOptions {
  /** Where the models subgraph runs (model visibility is asked there, as the caller). */
  modelsUrl: string;
  tokens: InternalTokens;
  /** How requests reach agents: the sessions tunnel registry. */
  transport: ClusterTransport;
  /** A runtime report older than this is not routed to. */
  runtimeFreshSeconds: number;
  /** How long a request waits for a runtime to become ready (scale from zero). */
  requestWaitSeconds: number;
  logger: Logger;
  /** Runtime changes are announced here (LISTEN/NOTIFY across replicas). */
  pubsub: PubSub;
  /** Where the vectorstores subgraph runs, for the `rag` tool (absent: the tool is refused). */
  vectorStoresUrl?: () => string;
}

/** Runs the inference subgraph's migrations and returns its definition, ready to serve. */
export async function createInferenceSubgraph(db: Database, options: InferenceOptions): Promise<{ definition: SubgraphDefinition<InferenceContext>; store: RuntimeStore }> {
  await migrate(db.knex, SCHEMA, migrations);
  const store = new RuntimeStore(db.knex);
  const router = new InferenceRouter(store, options.transport, options.logger.child({ component: 'inference' }), options.runtimeFreshSeconds, options.requestWaitSeconds);
  const models = createModelsClient({ url: options.modelsUrl, tokens: options.tokens });
  const vectorStores = options.vectorStoresUrl ? createVectorStoreSearch({ url: options.vectorStoresUrl, tokens: options.tokens }) : null;
  return {
    store,
    definition: {
      name: 'inference',
      typeDefs: subgraphTypeDefs('inference'),
      resolvers: resolvers as SubgraphDefinition<InferenceContext>['resolvers'],
      policy: policyFor('inference'),
      createContext: (base) => ({ ...base, store, router, models, pubsub: options.pubsub, vectorStores }),
    },
  };
}
