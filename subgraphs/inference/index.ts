import type { ApiCallRecord } from '../../lib/apiCallRecord.js';
import { defineComponent } from '../../lib/component.js';
import type { SubgraphContext, SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { InferenceContext } from './context.js';
import { createInferencePlaneServer, dataPlaneRoutes } from './dataPlane.js';
import { markRuntimesOfDisconnectedAgents } from './disconnectedAgents.js';
import { createInferenceLoaders } from './loaders.js';
import { migrations } from './migrations/index.js';
import { CachedModels } from './modelCache.js';
import { createModelsClient } from './modelsClient.js';
import { createVectorStoreSearch } from './rag.js';
import { resolvers } from './resolvers.js';
import { BudgetGuard } from './budgets.js';
import { BudgetStore } from './budgetsStore.js';
import { RateLimiter } from './rateLimits.js';
import { RefusedModels } from './refusedModels.js';
import { ReadyRuntimes } from './readyRuntimes.js';
import { InferenceRouter } from './router.js';
import { RuntimeAccess } from './runtimeAccess.js';
import { RateLimitStore, RuntimeStore, SCHEMA, UsageStore } from './store.js';
import { createTranscriptionAudio } from './transcriptions.js';
import { UsageRecorder } from './usage.js';

/**
 * The inference component: routing chat completions, completions and embeddings to the runtimes of
 * agents (through their tunnels), rate limits and usage records. Model visibility is asked of the
 * models subgraph, as the caller; the `rag` tool searches vector stores, as the caller, when the
 * vectorstores subgraph is there (else the tool is refused).
 */
export const inferenceComponent = defineComponent({
  name: 'inference',
  subgraphs: ['inference'],
  needs: {
    database: true,
    pubsub: true,
    clusterAccess: true,
    tunnels: true,
    objectStore: true,
    subgraphs: ['models', 'clusters'],
    optionalSubgraphs: ['vectorstores', 'files'],
  },
  provides: ['inferencePlane', 'apiCallSink'],
  migrations: { schema: SCHEMA, migrations },
  /**
   * How fresh a runtime report must be to route to it, how long a request waits for a ready runtime,
   * the per-API-key rate limits (0: none), how often usage records are written and how long they are
   * kept; and the largest request body the data plane reads (the gateway's limit).
   */
  settings: (config) => ({ ...config.inference, maxBodyBytes: config.limits.maxBodyBytes }),
  async create({ db, pubsub, clusterAccess, tunnels, settings, tokens, subgraphUrl, objectStore, logger: hostLogger, observers }) {
    // An unchanged runtime report is written again (its time only) a third of the freshness window after the last write.
    const store = new RuntimeStore(db.knex, settings.runtimeFreshSeconds / 3);
    const logger = hostLogger.child({ component: 'inference' });
    // Routing reads runtimes and models from memory, kept current by the reports' and the models
    // subgraph's announcements (readyRuntimes.ts, modelCache.ts).
    const readyRuntimes = new ReadyRuntimes(store, logger, { freshSeconds: settings.runtimeFreshSeconds });
    const router = new InferenceRouter(readyRuntimes, tunnels, clusterAccess, logger, settings.requestWaitSeconds, (tenantId, modelId) =>
      store.forModels(tenantId, [modelId]),
    );
    const models = new CachedModels(createModelsClient({ url: subgraphUrl.models(), tokens }), logger);
    const listening = [await readyRuntimes.listen(pubsub), await models.listen(pubsub), markRuntimesOfDisconnectedAgents(tunnels, store, pubsub, logger)];
    const access = new RuntimeAccess(clusterAccess, models);
    const refused = new RefusedModels(readyRuntimes, store, access, tunnels);
    const vectorStores = subgraphUrl.vectorstores ? createVectorStoreSearch({ url: subgraphUrl.vectorstores, tokens }) : null;
    const transcriptionAudio = subgraphUrl.files ? createTranscriptionAudio({ url: subgraphUrl.files, tokens, objectStore }) : null;
    const rateLimiter = new RateLimiter(new RateLimitStore(db.knex), {
      requestsPerMinute: settings.rateLimitRequestsPerMinute,
      tokensPerMinute: settings.rateLimitTokensPerMinute,
    });
    const usageStore = new UsageStore(db.knex);
    // Budgets read the usage records: their cache lags no more than the records' own batching.
    const budgetStore = new BudgetStore(db.knex);
    const budgets = new BudgetGuard(budgetStore, hostLogger.child({ component: 'budgets' }), settings.usageFlushIntervalMs, undefined, settings.modelPrices);
    const usage = new UsageRecorder(
      usageStore,
      { flushIntervalMs: settings.usageFlushIntervalMs, maxBatch: 500, maxPending: 100_000, retentionDays: settings.usageRetentionDays },
      hostLogger.child({ component: 'usage' }),
      observers.inferenceObserver(),
    );
    observers.observeRuntimes(() => store.all());
    const policy = policyFor('inference');
    const createContext = (base: SubgraphContext): InferenceContext => ({
      ...base,
      store,
      router,
      refused,
      models,
      access,
      loaders: createInferenceLoaders(base, store, access),
      pubsub,
      vectorStores,
      transcriptionAudio,
      rateLimiter,
      budgets,
      budgetStore,
      usage,
      usageStore,
      logger,
    });
    // The REST layer's inference requests, without GraphQL on the way: called in process by a gateway
    // beside it, else over HTTP (the route below).
    const inferencePlane = createInferencePlaneServer({ contextOf: createContext, policy, logger });
    const definition: SubgraphDefinition<InferenceContext> = {
      name: 'inference',
      typeDefs: subgraphTypeDefs('inference'),
      resolvers: resolvers as SubgraphDefinition<InferenceContext>['resolvers'],
      policy,
      createContext,
      // The REST layer's inference requests from a gateway in another process (lib/inferencePlane.ts).
      routes: dataPlaneRoutes(inferencePlane, settings.maxBodyBytes),
    };
    // Stopping writes the usage records still queued (and stops listening for announcements).
    const stop = async () => {
      for (const unsubscribe of listening) await unsubscribe();
      await usage.stop();
    };
    // The gateway's API call records, written straight into the store by a gateway beside it (what
    // recordApiCalls does for one in another process).
    const apiCallSink = async (calls: ApiCallRecord[]) => {
      await usageStore.apiCalls.insert(calls);
    };
    return { subgraphs: [definition], inferencePlane, apiCallSink, stop, exposed: { store } };
  },
});
