import { ClusterAccessDirectory } from '../../lib/clusterAccess.js';
import type { MarinerConfig } from '../../lib/config.js';
import type { Database } from '../../lib/db.js';
import { migrate } from '../../lib/db.js';
import type { InternalTokens } from '../../lib/identity.js';
import type { Logger } from '../../lib/logging.js';
import type { PubSub } from '../../lib/pubsub.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { JobsContext } from './context.js';
import { CreatorCredentials } from './creatorCredentials.js';
import { DispatchGuard } from './dispatchGuard.js';
import { JobDispatcher, type JobTransport } from './dispatcher.js';
import { JobEvents } from './events.js';
import { migrations } from './migrations/index.js';
import { createJobDependencies, type JobDependencyUrls } from './dependencies.js';
import { JobRescheduler } from './rescheduler.js';
import { resolvers } from './resolvers.js';
import { SecretBox } from './secrets.js';
import { JobStore, SCHEMA, type JobRow } from './store.js';

export type { JobTransport } from './dispatcher.js';
export { parseTrainerLine } from './events.js';

export interface JobsOptions {
  /** Where the subgraphs the jobs subgraph asks run (files, models, users, clusters). */
  peers: JobDependencyUrls;
  tokens: InternalTokens;
  /** How jobs reach agents: the sessions tunnel registry. */
  transport: JobTransport;
  pubsub: PubSub;
  /**
   * The jobs settings (lib/config.ts `jobs`): how often waiting jobs are dispatched (also at once on
   * changes), after how long a silent cluster's jobs move, the image presets.
   */
  settings: Pick<MarinerConfig['jobs'], 'dispatchIntervalMs' | 'rescheduleAfterSeconds' | 'batchImages' | 'notebookImages'>;
  /** The platform's internal secret: notebook secrets are sealed with a key derived from it. */
  secretKey: string;
  logger: Logger;
}

/** Runs the jobs subgraph's migrations, starts its dispatcher and returns its definition, ready to serve. */
export async function createJobsSubgraph(
  db: Database,
  options: JobsOptions,
): Promise<{ definition: SubgraphDefinition<JobsContext>; store: JobStore; dispatcher: JobDispatcher; stop(): Promise<void> }> {
  await migrate(db.knex, SCHEMA, migrations);
  const store = new JobStore(db.knex);
  const events = new JobEvents(store, options.pubsub);
  const dependencies = createJobDependencies(options.peers, options.tokens);
  const secrets = new SecretBox(options.secretKey);
  // A deleted notebook's API key goes with it (as its creator, who made it).
  const removed = async (job: JobRow) => {
    if (job.kind !== 'notebook') return;
    await dependencies.deleteApiKey({ requestId: `jobs:${job.id}`, identity: job.creator }, job.secrets.apiKeyId).catch((error: Error) => {
      options.logger.warn({ jobId: job.id, err: error.message }, "could not delete a deleted notebook's API key");
    });
  };
  const logger = options.logger.child({ component: 'jobs' });
  // Every six dispatch intervals (30 s by default): clusters are given minutes, not seconds.
  const watchIntervalMs = Math.max(options.settings.dispatchIntervalMs * 6, 1000);
  const credentials = new CreatorCredentials(store, dependencies, events, logger, { intervalMs: watchIntervalMs, onChanged: () => dispatcher.nudge() });
  // Whom clusters serve, asked afresh for every dispatch pass (ttl 0): a revoked grant counts at once.
  const access = new ClusterAccessDirectory({ clustersUrl: () => options.peers.clusters, tokens: options.tokens, ttlMs: 0 });
  const guard = new DispatchGuard(access, credentials, dependencies, () => options.transport.allConnectedClusters());
  const dispatcher = new JobDispatcher(
    store,
    options.transport,
    events,
    logger,
    options.settings.dispatchIntervalMs,
    { notebookSecrets: (job) => ({ token: secrets.open(job.secrets.token), apiKey: secrets.open(job.secrets.apiKey) }), removed },
    guard,
  );
  dispatcher.start();
  const rescheduler = new JobRescheduler(store, dependencies, options.transport, events, logger, {
    abandonAfterSeconds: options.settings.rescheduleAfterSeconds,
    intervalMs: watchIntervalMs,
    onQueued: () => dispatcher.nudge(),
    removed,
  });
  rescheduler.start();
  credentials.start();
  return {
    store,
    dispatcher,
    stop: async () => {
      await credentials.stop();
      await rescheduler.stop();
      await dispatcher.stop();
    },
    definition: {
      name: 'jobs',
      typeDefs: subgraphTypeDefs('jobs'),
      resolvers: resolvers as SubgraphDefinition<JobsContext>['resolvers'],
      policy: policyFor('jobs'),
      createContext: (base) => ({ ...base, store, dependencies, events, dispatcher, transport: options.transport, pubsub: options.pubsub, credentials, batchImages: options.settings.batchImages, notebookImages: options.settings.notebookImages, secrets }),
    },
  };
}
