import { defineComponent } from '../../lib/component.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import { createBatchCreators, createBatchFiles, createBatchResponses } from './clients.js';
import type { BatchesContext } from './context.js';
import { BatchEvents } from './events.js';
import { migrations } from './migrations/index.js';
import { createRequestRunner } from './requestRunner.js';
import { resolvers } from './resolvers.js';
import { BatchStore, SCHEMA } from './store.js';
import { startBatchWorker } from './worker.js';

export { requestIdOf } from './worker.js';

/**
 * The batches component: OpenAI's Batch API (`/v1/batches`). Batches and their requests are in its
 * tables; its worker runs the requests on every replica, as each batch's creator, through the
 * inference data plane (in process under `mariner up`, over HTTP otherwise); input, output and error
 * files are the files subgraph's Files, their bytes in the object store.
 */
export const batchesComponent = defineComponent({
  name: 'batches',
  subgraphs: ['batches'],
  needs: { database: true, objectStore: true, pubsub: true, inferencePlane: true, subgraphs: ['files', 'users', 'inference', 'responses'] },
  migrations: { schema: SCHEMA, migrations },
  settings: (config) => config.batches,
  async create({ db, objectStore, pubsub, settings, tokens, subgraphUrl, inferencePlane, logger: hostLogger }) {
    const logger = hostLogger.child({ component: 'batches' });
    const store = new BatchStore(db.knex);
    const files = createBatchFiles({ url: subgraphUrl.files, tokens, objectStore });
    const events = new BatchEvents(pubsub, logger);
    const runner = createRequestRunner({
      local: inferencePlane,
      inferenceUrl: subgraphUrl.inference,
      tokens,
      yieldToInteractive: settings.yieldToInteractive,
      responses: createBatchResponses({ url: subgraphUrl.responses, tokens }),
    });
    const worker = startBatchWorker({ store, files, creators: createBatchCreators({ url: subgraphUrl.users, tokens }), runner, events, settings, logger });
    const definition: SubgraphDefinition<BatchesContext> = {
      name: 'batches',
      typeDefs: subgraphTypeDefs('batches'),
      resolvers: resolvers as SubgraphDefinition<BatchesContext>['resolvers'],
      policy: policyFor('batches'),
      createContext: (base) => ({
        ...base,
        store,
        files,
        objectStore,
        batchWorker: worker,
        events,
        pubsub,
        settings: { completionWindowSeconds: settings.completionWindowSeconds, maxRequests: settings.maxRequests },
      }),
    };
    return {
      subgraphs: [definition],
      stop: async () => {
        await worker.stop();
        events.stop();
      },
      exposed: { store, worker },
    };
  },
});
