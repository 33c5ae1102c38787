import type { ClusterAccessDirectory } from '../../lib/clusterAccess.js';
import type { MarinerConfig } from '../../lib/config.js';
import type { Database } from '../../lib/db.js';
import { migrate } from '../../lib/db.js';
import type { InternalTokens } from '../../lib/identity.js';
import type { Logger } from '../../lib/logging.js';
import type { PubSub } from '../../lib/pubsub.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { InferenceContext } from './context.js';
import { createInferenceLoaders } from './loaders.js';
import { migrations } from './migrations/index.js';
import { createModelsClient } from './modelsClient.js';
import { createVectorStoreSearch } from './rag.js';
import { resolvers } from './resolvers.js';
import { RateLimiter } from './rateLimits.js';
import { InferenceRouter, type ClusterTransport } from './router.js';
import { RuntimeAccess } from './runtimeAccess.js';
import { RateLimitStore, RuntimeStore, SCHEMA, UsageStore, type UsageRecord } from './store.js';
import { UsageRecorder } from './usage.js';

export type { ClusterTransport } from './router.js';

export interface InferenceOptions {
  /** Where the models subgraph runs (model visibility is asked there, as the caller). */
  modelsUrl: string;
  /** Which clusters each organization may use (lib/clusterAccess.ts; the sessions proxies share it). */
  clusterAccess: ClusterAccessDirectory;
  tokens: InternalTokens;
  /** How requests reach agents: the sessions tunnel registry. */
  transport: ClusterTransport;
  /**
   * The inference settings (lib/config.ts `inference`): how fresh a runtime report must be to route to
   * it, how long a request waits for a ready runtime, the per-API-key rate limits (0: none), how often
   * usage records are written and how long they are kept.
   */
  settings: MarinerConfig['inference'];
  logger: Logger;
  /** Runtime changes are announced here (LISTEN/NOTIFY across replicas). */
  pubsub: PubSub;
  /** Where the vectorstores subgraph runs, for the `rag` tool (absent: the tool is refused). */
  vectorStoresUrl?: () => string;
  /** Sees every request's usage record as it is made (metrics: time to first token, tokens). */
  onUsage?: (record: UsageRecord) => void;
}

/** Runs the inference subgraph's migrations and returns its definition, ready to serve. */
export async function createInferenceSubgraph(db: Database, options: InferenceOptions): Promise<{ definition: SubgraphDefinition<InferenceContext>; store: RuntimeStore; stop(): Promise<void> }> {
  await migrate(db.knex, SCHEMA, migrations);
  const store = new RuntimeStore(db.knex);
  const logger = options.logger.child({ component: 'inference' });
  const { clusterAccess } = options;
  const router = new InferenceRouter(store, options.transport, clusterAccess, logger, options.settings.runtimeFreshSeconds, options.settings.requestWaitSeconds);
  const models = createModelsClient({ url: options.modelsUrl, tokens: options.tokens });
  const access = new RuntimeAccess(clusterAccess, models);
  const vectorStores = options.vectorStoresUrl ? createVectorStoreSearch({ url: options.vectorStoresUrl, tokens: options.tokens }) : null;
  const { settings } = options;
  const rateLimiter = new RateLimiter(new RateLimitStore(db.knex), { requestsPerMinute: settings.rateLimitRequestsPerMinute, tokensPerMinute: settings.rateLimitTokensPerMinute });
  const usageStore = new UsageStore(db.knex);
  const usage = new UsageRecorder(usageStore, { flushIntervalMs: settings.usageFlushIntervalMs, maxBatch: 500, maxPending: 100_000, retentionDays: settings.usageRetentionDays }, options.logger.child({ component: 'usage' }), options.onUsage);
  return {
    store,
    /** Writes the usage records still queued. */
    stop: () => usage.stop(),
    definition: {
      name: 'inference',
      typeDefs: subgraphTypeDefs('inference'),
      resolvers: resolvers as SubgraphDefinition<InferenceContext>['resolvers'],
      policy: policyFor('inference'),
      createContext: (base) => ({
        ...base,
        store,
        router,
        models,
        access,
        loaders: createInferenceLoaders(base, store, access),
        pubsub: options.pubsub,
        vectorStores,
        rateLimiter,
        usage,
        usageStore,
        logger,
      }),
    },
  };
}
