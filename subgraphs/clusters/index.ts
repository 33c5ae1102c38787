import type { Database } from '../../lib/db.js';
import { migrate } from '../../lib/db.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { ClustersContext } from './context.js';
import { createClusterLoaders } from './loaders.js';
import { migrations } from './migrations/index.js';
import { resolvers } from './resolvers.js';
import { ClusterStore, SCHEMA } from './store.js';

export { ClusterStore } from './store.js';

/** Runs the clusters subgraph's migrations and returns its definition, ready to serve. */
export async function createClustersSubgraph(
  db: Database,
  options: { statusStaleSeconds: number },
): Promise<{ definition: SubgraphDefinition<ClustersContext>; store: ClusterStore }> {
  await migrate(db.knex, SCHEMA, migrations);
  const store = new ClusterStore(db.knex);
  return {
    store,
    definition: {
      name: 'clusters',
      typeDefs: subgraphTypeDefs('clusters'),
      resolvers: resolvers as SubgraphDefinition<ClustersContext>['resolvers'],
      policy: policyFor('clusters'),
      createContext: (base) => ({ ...base, store, loaders: createClusterLoaders(store), statusStaleSeconds: options.statusStaleSeconds }),
    },
  };
}
