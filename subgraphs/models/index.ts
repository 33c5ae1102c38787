import type { Database } from '../../lib/db.js';
import { migrate } from '../../lib/db.js';
import type { ObjectStore } from '../../lib/objectStore/index.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { ModelsContext } from './context.js';
import { migrations } from './migrations/index.js';
import { resolvers } from './resolvers.js';
import { ModelStore, SCHEMA } from './store.js';

/** Runs the models subgraph's migrations and returns its definition, ready to serve. */
export async function createModelsSubgraph(db: Database, objectStore: ObjectStore): Promise<{ definition: SubgraphDefinition<ModelsContext>; store: ModelStore }> {
  await migrate(db.knex, SCHEMA, migrations);
  const store = new ModelStore(db.knex);
  return {
    store,
    definition: {
      name: 'models',
      typeDefs: subgraphTypeDefs('models'),
      resolvers: resolvers as SubgraphDefinition<ModelsContext>['resolvers'],
      policy: policyFor('models'),
      createContext: (base) => ({ ...base, store, objectStore }),
    },
  };
}
