import { defineComponent } from '../../lib/component.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import { logBootstrap, saveGeneratedAdminKey } from './bootstrap.js';
import type { UsersContext } from './context.js';
import { createUsersLoaders } from './loaders.js';
import { migrations } from './migrations/index.js';
import { announcingPrincipalChanges, principalChanges } from './principalChanges.js';
import { resolvers } from './resolvers.js';
import { gpuQuotaResolvers } from './gpuQuotas.js';
import { GpuQuotaStore } from './gpuQuotasStore.js';
import { ClusterAccessDirectory } from '../../lib/clusterAccess.js';
import { DEFAULT_TENANT_ID, SCHEMA, UserStore } from './store.js';

export { UserStore, hashSecret, DEFAULT_TENANT_ID, type BootstrapResult } from './store.js';
export { logBootstrap, saveGeneratedAdminKey, GENERATED_ADMIN_API_KEY_FILE } from './bootstrap.js';

/**
 * The users component: organizations, projects, users, API keys. Each start bootstraps the default
 * organization and project and the admin API key (MARINER_ADMIN_API_KEY, else one generated on the
 * first start): `mariner up` prints a generated key once in its banner, to the person at the terminal;
 * `mariner serve` never logs it (its output is a pod's log) but writes it to an owner-only file.
 * Every change to a principal is announced on pub/sub, for the gateways' principal caches
 * (principalChanges.ts).
 */
export const usersComponent = defineComponent({
  name: 'users',
  subgraphs: ['users'],
  // The clusters subgraph, when there, says which clusters a project's GPU quotas may name (gpuQuotas.ts).
  needs: { database: true, pubsub: true, optionalSubgraphs: ['clusters'] },
  migrations: { schema: SCHEMA, migrations },
  settings: (config) => ({
    adminEmail: config.adminEmail,
    adminApiKey: config.adminApiKey,
    dataDir: config.dataDir,
    reservedNamespaces: config.reservedNamespaces,
  }),
  async create({ db, pubsub, settings, logger, embedded, tokens, subgraphUrl }) {
    const store = new UserStore(db.knex);
    const gpuQuotas = new GpuQuotaStore(db.knex);
    const clustersUrl = subgraphUrl.clusters;
    const clusterAccess = clustersUrl ? new ClusterAccessDirectory({ clustersUrl, tokens, ttlMs: 0 }) : null;
    const principalsChanged = principalChanges(pubsub, logger);
    const bootstrap = await store.bootstrap({ adminEmail: settings.adminEmail, adminApiKey: settings.adminApiKey });
    // A rotated MARINER_ADMIN_API_KEY revoked the previous key, which running gateways may hold.
    if (bootstrap.revokedPreviousKey) await principalsChanged(DEFAULT_TENANT_ID);
    logBootstrap(bootstrap, logger);
    if (bootstrap.adminApiKey && !embedded) await saveGeneratedAdminKey(bootstrap.adminApiKey, settings.dataDir, logger);
    const definition: SubgraphDefinition<UsersContext> = {
      name: 'users',
      typeDefs: subgraphTypeDefs('users'),
      resolvers: {
        ...resolvers,
        Query: { ...resolvers.Query, ...gpuQuotaResolvers.Query },
        Mutation: { ...announcingPrincipalChanges(resolvers.Mutation!, principalsChanged), ...gpuQuotaResolvers.Mutation },
        Project: { ...resolvers.Project, ...gpuQuotaResolvers.Project },
        BatchJob: gpuQuotaResolvers.BatchJob,
        FineTuningJob: gpuQuotaResolvers.FineTuningJob,
      } as SubgraphDefinition<UsersContext>['resolvers'],
      policy: policyFor('users'),
      createContext: (base) => ({
        ...base,
        store,
        loaders: createUsersLoaders(store),
        reservedNamespaces: settings.reservedNamespaces,
        gpuQuotas,
        clusterAccess,
      }),
    };
    return { subgraphs: [definition], exposed: { store, bootstrap } };
  },
});
