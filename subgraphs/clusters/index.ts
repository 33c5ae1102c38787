import { defineComponent } from '../../lib/component.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { ClustersContext } from './context.js';
import { createClusterLoaders } from './loaders.js';
import { migrations } from './migrations/index.js';
import { resolvers } from './resolvers.js';
import { ClusterStore, SCHEMA } from './store.js';

export { ClusterStore } from './store.js';

/** The clusters component: worker clusters, their registration keys, grants and status reports. */
export const clustersComponent = defineComponent({
  name: 'clusters',
  subgraphs: ['clusters'],
  needs: { database: true },
  migrations: { schema: SCHEMA, migrations },
  settings: (config) => config.clusters,
  async create({ db, settings }) {
    const store = new ClusterStore(db.knex);
    const definition: SubgraphDefinition<ClustersContext> = {
      name: 'clusters',
      typeDefs: subgraphTypeDefs('clusters'),
      resolvers: resolvers as SubgraphDefinition<ClustersContext>['resolvers'],
      policy: policyFor('clusters'),
      createContext: (base) => ({ ...base, store, loaders: createClusterLoaders(store), statusStaleSeconds: settings.statusStaleSeconds }),
    };
    return { subgraphs: [definition], exposed: { store } };
  },
});
