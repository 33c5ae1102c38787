import { defineComponent } from '../../lib/component.js';
import { PeriodicTask } from '../../lib/periodicTask.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { AuditContext } from './context.js';
import { migrations } from './migrations/index.js';
import { resolvers } from './resolvers.js';
import { auditSettings } from './settings.js';
import { AuditStore, SCHEMA } from './store.js';

export { AuditStore } from './store.js';
export type { AuditEventRecord, AuditAction, AuditArgument } from './store.js';

const DAY_MS = 24 * 60 * 60 * 1000;

/** The audit component: the audit log's table, its query for organization owners, and the retention cleaner. */
export const auditComponent = defineComponent({
  name: 'audit',
  subgraphs: ['audit'],
  needs: { database: true },
  migrations: { schema: SCHEMA, migrations },
  settings: (config) => auditSettings(config),
  async create({ db, settings, logger }) {
    const store = new AuditStore(db.knex);
    const clean = async () => {
      if (settings.retentionDays === 0) return;
      const removed = await store.deleteOlderThan(new Date(Date.now() - settings.retentionDays * DAY_MS));
      if (removed > 0) logger.info({ removed, retentionDays: settings.retentionDays }, 'audit retention removed old entries');
    };
    const cleaner = new PeriodicTask(clean, settings.cleanIntervalMs, (err) => logger.error({ err }, 'audit retention failed'));
    cleaner.start();
    const definition: SubgraphDefinition<AuditContext> = {
      name: 'audit',
      typeDefs: subgraphTypeDefs('audit'),
      resolvers: resolvers as SubgraphDefinition<AuditContext>['resolvers'],
      policy: policyFor('audit'),
      createContext: (base) => ({ ...base, store }),
    };
    return { subgraphs: [definition], stop: () => cleaner.stop(), exposed: { store, clean } };
  },
});
