import { defineComponent } from '../../lib/component.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { FilesContext } from './context.js';
import { migrations } from './migrations/index.js';
import { resolvers } from './resolvers.js';
import { FileStore, SCHEMA } from './store.js';
import { startUploadSweeper } from './sweeper.js';

export { sweepExpiredUploads } from './sweeper.js';
export { PURPOSES } from './validation.js';

/** The files component: files and two-step uploads in the object store, and the sweeper of abandoned uploads. */
export const filesComponent = defineComponent({
  name: 'files',
  subgraphs: ['files'],
  needs: { database: true, objectStore: true },
  migrations: { schema: SCHEMA, migrations },
  settings: (config) => config.files,
  async create({ db, objectStore, settings, logger }) {
    const store = new FileStore(db.knex);
    const stopSweeper = startUploadSweeper(store, objectStore, logger);
    const definition: SubgraphDefinition<FilesContext> = {
      name: 'files',
      typeDefs: subgraphTypeDefs('files'),
      resolvers: resolvers as SubgraphDefinition<FilesContext>['resolvers'],
      policy: policyFor('files'),
      createContext: (base) => ({ ...base, store, objectStore, settings }),
    };
    return { subgraphs: [definition], stop: stopSweeper, exposed: { store } };
  },
});
