import { defineComponent } from '../../lib/component.js';
import { PeriodicTask } from '../../lib/periodicTask.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { ClustersContext } from './context.js';
import { createClusterLoaders } from './loaders.js';
import { migrations } from './migrations/index.js';
import { resolvers } from './resolvers.js';
import { ClusterStore, SCHEMA } from './store.js';
import { TelemetryStore } from './telemetryStore.js';

export { ClusterStore } from './store.js';
export { TelemetryStore } from './telemetryStore.js';

const DAY_MS = 24 * 3600 * 1000;

/** The clusters component: worker clusters, their registration keys, grants, status reports and telemetry (with its retention cleaner). */
export const clustersComponent = defineComponent({
  name: 'clusters',
  subgraphs: ['clusters'],
  needs: { database: true },
  migrations: { schema: SCHEMA, migrations },
  settings: (config) => config.clusters,
  async create({ db, settings, logger }) {
    const store = new ClusterStore(db.knex);
    const telemetry = new TelemetryStore(db.knex);
    const cleanTelemetry = async () => {
      if (settings.telemetryRetentionDays === 0) return;
      const removed = await telemetry.deleteOlderThan(new Date(Date.now() - settings.telemetryRetentionDays * DAY_MS));
      if (removed > 0) logger.info({ removed, retentionDays: settings.telemetryRetentionDays }, 'telemetry retention removed old rows');
    };
    const cleaner = new PeriodicTask(cleanTelemetry, 3600_000, (err) => logger.error({ err }, 'telemetry retention failed'));
    cleaner.start();
    const definition: SubgraphDefinition<ClustersContext> = {
      name: 'clusters',
      typeDefs: subgraphTypeDefs('clusters'),
      resolvers: resolvers as SubgraphDefinition<ClustersContext>['resolvers'],
      policy: policyFor('clusters'),
      createContext: (base) => ({
        ...base,
        store,
        telemetry,
        loaders: createClusterLoaders(store, telemetry),
        statusStaleSeconds: settings.statusStaleSeconds,
      }),
    };
    return { subgraphs: [definition], stop: () => cleaner.stop(), exposed: { store, telemetry, cleanTelemetry } };
  },
});
