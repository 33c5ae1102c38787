import { ClusterAccessDirectory } from '../../lib/clusterAccess.js';
import { defineComponent } from '../../lib/component.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { JobsContext } from './context.js';
import { CreatorCredentials } from './creatorCredentials.js';
import { DispatchGuard } from './dispatchGuard.js';
import { JobDispatcher } from './dispatcher.js';
import { JobEvents } from './events.js';
import { migrations } from './migrations/index.js';
import { createJobDependencies } from './dependencies.js';
import { JobRescheduler } from './rescheduler.js';
import { resolvers } from './resolvers.js';
import { SecretBox } from './secrets.js';
import { JobStore, SCHEMA, type JobRow } from './store.js';

export { parseTrainerLine } from './events.js';

/**
 * The jobs component: fine-tuning jobs, batch jobs and notebooks, scheduled onto clusters and dispatched
 * to their agents through the tunnels. Files, models, users (creators' API keys) and clusters (whom
 * they serve) are asked of their subgraphs.
 */
export const jobsComponent = defineComponent({
  name: 'jobs',
  subgraphs: ['jobs'],
  needs: { database: true, pubsub: true, tunnels: true, subgraphs: ['files', 'models', 'users', 'clusters'] },
  migrations: { schema: SCHEMA, migrations },
  /** How often waiting jobs are dispatched (also at once on changes), after how long a silent cluster's jobs move, the image presets. */
  settings: (config) => config.jobs,
  async create({ db, pubsub, tunnels, settings, tokens, secretKey, subgraphUrl, logger: hostLogger, observers }) {
    const store = new JobStore(db.knex);
    const events = new JobEvents(store, pubsub);
    const dependencies = createJobDependencies(
      { files: subgraphUrl.files(), models: subgraphUrl.models(), users: subgraphUrl.users(), clusters: subgraphUrl.clusters() },
      tokens,
    );
    // Notebook secrets are sealed with a key derived from the platform's internal secret.
    const secrets = new SecretBox(secretKey);
    // A deleted notebook's API key goes with it (as its creator, who made it).
    const removed = async (job: JobRow) => {
      if (job.kind !== 'notebook') return;
      await dependencies.deleteApiKey({ requestId: `jobs:${job.id}`, identity: job.creator }, job.secrets.apiKeyId).catch((error: Error) => {
        hostLogger.warn({ jobId: job.id, err: error.message }, "could not delete a deleted notebook's API key");
      });
    };
    const logger = hostLogger.child({ component: 'jobs' });
    // Every six dispatch intervals (30 s by default): clusters are given minutes, not seconds.
    const watchIntervalMs = Math.max(settings.dispatchIntervalMs * 6, 1000);
    const credentials = new CreatorCredentials(store, dependencies, events, logger, { intervalMs: watchIntervalMs, onChanged: () => dispatcher.nudge() });
    // Whom clusters serve, asked afresh for every dispatch pass (ttl 0): a revoked grant counts at once.
    const access = new ClusterAccessDirectory({ clustersUrl: subgraphUrl.clusters, tokens, ttlMs: 0 });
    const guard = new DispatchGuard(access, credentials, dependencies, () => tunnels.allConnectedClusters());
    const dispatcher = new JobDispatcher(
      store,
      tunnels,
      events,
      logger,
      settings.dispatchIntervalMs,
      { notebookSecrets: (job) => ({ token: secrets.open(job.secrets.token), apiKey: secrets.open(job.secrets.apiKey) }), removed },
      guard,
    );
    dispatcher.start();
    const rescheduler = new JobRescheduler(store, dependencies, tunnels, events, logger, {
      abandonAfterSeconds: settings.rescheduleAfterSeconds,
      intervalMs: watchIntervalMs,
      onQueued: () => dispatcher.nudge(),
      removed,
    });
    rescheduler.start();
    credentials.start();
    observers.observeJobs(() => store.countByStatus());
    const definition: SubgraphDefinition<JobsContext> = {
      name: 'jobs',
      typeDefs: subgraphTypeDefs('jobs'),
      resolvers: resolvers as SubgraphDefinition<JobsContext>['resolvers'],
      policy: policyFor('jobs'),
      createContext: (base) => ({
        ...base,
        store,
        dependencies,
        events,
        dispatcher,
        transport: tunnels,
        pubsub,
        credentials,
        batchImages: settings.batchImages,
        notebookImages: settings.notebookImages,
        secrets,
      }),
    };
    return {
      subgraphs: [definition],
      stop: async () => {
        await credentials.stop();
        await rescheduler.stop();
        await dispatcher.stop();
      },
      exposed: { store, dispatcher },
    };
  },
});
