import type { Database } from '../../lib/db.js';
import { migrate } from '../../lib/db.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { UsersContext } from './context.js';
import { createUsersLoaders } from './loaders.js';
import { migrations } from './migrations/index.js';
import { resolvers } from './resolvers.js';
import { SCHEMA, UserStore } from './store.js';

export { UserStore, hashSecret, DEFAULT_TENANT_ID, type BootstrapResult } from './store.js';
export { logBootstrap, saveGeneratedAdminKey, GENERATED_ADMIN_API_KEY_FILE } from './bootstrap.js';

/** Runs the users subgraph's migrations and returns its definition, ready to serve. */
export async function createUsersSubgraph(db: Database): Promise<{ definition: SubgraphDefinition<UsersContext>; store: UserStore }> {
  await migrate(db.knex, SCHEMA, migrations);
  const store = new UserStore(db.knex);
  return {
    store,
    definition: {
      name: 'users',
      typeDefs: subgraphTypeDefs('users'),
      resolvers: resolvers as SubgraphDefinition<UsersContext>['resolvers'],
      policy: policyFor('users'),
      createContext: (base) => ({ ...base, store, loaders: createUsersLoaders(store) }),
    },
  };
}
