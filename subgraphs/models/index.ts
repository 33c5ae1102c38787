import type { Database } from '../../lib/db.js';
import { migrate } from '../../lib/db.js';
import type { InternalTokens } from '../../lib/identity.js';
import type { ObjectStore } from '../../lib/objectStore/index.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { ModelsContext } from './context.js';
import { createFilesClient } from './filesClient.js';
import { migrations } from './migrations/index.js';
import { resolvers } from './resolvers.js';
import { ModelStore, SCHEMA } from './store.js';

export interface ModelsSubgraphOptions {
  /** The files subgraph's GraphQL URL: base models made from a File are looked up there. */
  filesUrl: string;
  /** Mints the internal tokens for those lookups (the caller's identity, audience `files`). */
  tokens: InternalTokens;
  /** How long a loader's claim on a model lasts without a progress report (config `models.loadLeaseSeconds`). */
  loadLeaseSeconds: number;
}

/** Runs the models subgraph's migrations and returns its definition, ready to serve. */
export async function createModelsSubgraph(
  db: Database,
  objectStore: ObjectStore,
  options: ModelsSubgraphOptions,
): Promise<{ definition: SubgraphDefinition<ModelsContext>; store: ModelStore }> {
  await migrate(db.knex, SCHEMA, migrations);
  const store = new ModelStore(db.knex);
  const files = createFilesClient({ url: options.filesUrl, tokens: options.tokens });
  return {
    store,
    definition: {
      name: 'models',
      typeDefs: subgraphTypeDefs('models'),
      resolvers: resolvers as SubgraphDefinition<ModelsContext>['resolvers'],
      policy: policyFor('models'),
      createContext: (base) => ({ ...base, store, objectStore, files, loadLeaseSeconds: options.loadLeaseSeconds }),
    },
  };
}
