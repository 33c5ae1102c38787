import { defineComponent } from '../../lib/component.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { ModelsContext } from './context.js';
import { modelChangesOn } from './events.js';
import { createFilesClient } from './filesClient.js';
import { migrations } from './migrations/index.js';
import { resolvers } from './resolvers.js';
import { ModelStore, SCHEMA } from './store.js';

/**
 * The models component: base and fine-tuned models, their weights in the object store, and loading
 * them onto clusters. Base models made from a File are looked up in the files subgraph, as the caller.
 * Every change of a model is announced on pubsub (events.ts), for the inference component's cache.
 */
export const modelsComponent = defineComponent({
  name: 'models',
  subgraphs: ['models'],
  needs: { database: true, objectStore: true, pubsub: true, subgraphs: ['files'] },
  migrations: { schema: SCHEMA, migrations },
  settings: (config) => config.models,
  async create({ db, objectStore, pubsub, settings, tokens, subgraphUrl, logger }) {
    const store = new ModelStore(db.knex);
    const files = createFilesClient({ url: subgraphUrl.files(), tokens });
    const modelChanges = modelChangesOn(pubsub, logger.child({ component: 'models' }));
    const definition: SubgraphDefinition<ModelsContext> = {
      name: 'models',
      typeDefs: subgraphTypeDefs('models'),
      resolvers: resolvers as SubgraphDefinition<ModelsContext>['resolvers'],
      policy: policyFor('models'),
      createContext: (base) => ({ ...base, store, objectStore, files, modelChanges, loadLeaseSeconds: settings.loadLeaseSeconds }),
    };
    return { subgraphs: [definition], exposed: { store } };
  },
});
