import type { Logger } from '../../lib/logging.js';
import type { PubSub } from '../../lib/pubsub.js';

/**
 * The channel this subgraph announces model changes on (lib/pubsub.ts: LISTEN/NOTIFY across replicas);
 * the payload is the tenant id. The inference component keeps the models' answers in memory and drops
 * a tenant's on each announcement (subgraphs/inference/modelCache.ts, which names the channel in
 * subgraphs/inference/channels.ts: a subgraph may not import another's modules).
 */
export const MODELS_CHANGED_CHANNEL = 'models_changed';

/** Announces that a model of a tenant changed: created, deleted, activated, deactivated, configured, or its load moved on. */
export interface ModelChanges {
  announce(tenantId: string): Promise<void>;
}

/**
 * Announcements on `pubsub`. One that fails (the database just went) is logged, not thrown: the change
 * itself is committed, and the caches that missed it expire on their own within seconds.
 */
export function modelChangesOn(pubsub: PubSub, logger: Logger): ModelChanges {
  return {
    async announce(tenantId) {
      await pubsub.publish(MODELS_CHANGED_CHANNEL, tenantId).catch((error: Error) => {
        logger.warn({ err: error.message, tenantId }, 'a model change could not be announced; caches catch up when they expire');
      });
    },
  };
}
