import type { Database } from '../../lib/db.js';
import { migrate } from '../../lib/db.js';
import type { Logger } from '../../lib/logging.js';
import type { ObjectStore } from '../../lib/objectStore/index.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { FilesContext, FilesSettings } from './context.js';
import { migrations } from './migrations/index.js';
import { resolvers } from './resolvers.js';
import { FileStore, SCHEMA } from './store.js';
import { startUploadSweeper } from './sweeper.js';

export { sweepExpiredUploads } from './sweeper.js';
export { PURPOSES } from './validation.js';

/** Runs the files subgraph's migrations, starts the upload sweeper, and returns its definition. */
export async function createFilesSubgraph(
  db: Database,
  objectStore: ObjectStore,
  settings: FilesSettings,
  logger: Logger,
): Promise<{ definition: SubgraphDefinition<FilesContext>; store: FileStore; stop(): Promise<void> }> {
  await migrate(db.knex, SCHEMA, migrations);
  const store = new FileStore(db.knex);
  const stopSweeper = startUploadSweeper(store, objectStore, logger);
  return {
    store,
    stop: stopSweeper,
    definition: {
      name: 'files',
      typeDefs: subgraphTypeDefs('files'),
      resolvers: resolvers as SubgraphDefinition<FilesContext>['resolvers'],
      policy: policyFor('files'),
      createContext: (base) => ({ ...base, store, objectStore, settings }),
    },
  };
}
