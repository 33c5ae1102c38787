import type { AgentTunnels } from '../../lib/agentContract.js';
import type { Logger } from '../../lib/logging.js';
import type { PubSub } from '../../lib/pubsub.js';
import { RUNTIMES_CHANNEL } from './channels.js';
import type { RuntimeStore } from './store.js';

/**
 * When a cluster's last tunnel closes (to this replica or, through the tunnel directory, to any), its
 * runtimes are marked not ready at once and the change is announced (issue 24 item 8): `runtimeScaling`
 * and `inferenceStatus` stop showing a runtime as ready, with the pid of a process that may be gone,
 * for as long as its last report stays fresh. The agent's next report, once it is back, replaces them.
 * Every replica does it; the first one's update is the only one that changes rows (and announces).
 * Returns the stop.
 */
export function markRuntimesOfDisconnectedAgents(
  tunnels: Pick<AgentTunnels, 'onChange' | 'allConnectedClusters'>,
  store: Pick<RuntimeStore, 'markDisconnected'>,
  pubsub: Pick<PubSub, 'publish'>,
  logger: Logger,
): () => Promise<void> {
  const stop = tunnels.onChange((clusterId) => {
    if (tunnels.allConnectedClusters().includes(clusterId)) return;
    store
      .markDisconnected(clusterId)
      .then(async (tenants) => {
        for (const tenantId of tenants) await pubsub.publish(RUNTIMES_CHANNEL, tenantId);
        if (tenants.length > 0) logger.info({ clusterId }, "the cluster's agent disconnected: its runtimes are marked not ready");
      })
      .catch((error: Error) =>
        logger.warn({ err: error.message, clusterId }, 'could not mark the runtimes of a disconnected agent; they go stale on their own'),
      );
  });
  return async () => void stop();
}
