import type { MarinerConfig } from '../../lib/config.js';
import { ErrorCode, MarinerError } from '../../lib/errors.js';
import { graphqlRequest } from '../../lib/graphqlClient.js';
import type { Worker } from '../../lib/identity.js';
import type { Logger } from '../../lib/logging.js';
import type { SubgraphDefinition } from '../../lib/subgraphServer.js';
import { policyFor } from '../../schema/rbac/policy.js';
import { subgraphTypeDefs } from '../../schema/subgraphs.js';
import type { SessionsContext } from './context.js';
import { createKubeProxy, type KubeProxy } from './kubeProxy.js';
import { resolvers } from './resolvers.js';
import { createTunnelEndpoint, type TunnelEndpoint } from './tunnelEndpoint.js';
import { TunnelRegistry } from './tunnelRegistry.js';

export { classifyKubePath, SESSIONS_PREFIX } from './kubeProxy.js';
export { NoTunnelError, TunnelRegistry, type TunnelInfo } from './tunnelRegistry.js';

export interface Sessions {
  definition: SubgraphDefinition<SessionsContext>;
  registry: TunnelRegistry;
  /** Agents dial here (`/v1/sessions-worker-service/...`, upgrade requests only). */
  tunnelEndpoint: TunnelEndpoint;
  /** Users' Kubernetes API requests (`/v1/sessions/<cluster>/...`). */
  kubeProxy: KubeProxy;
  close(): Promise<void>;
}

const WORKER_CLUSTER = 'query AgentTunnelWorker { workerCluster { clusterId clusterName tenantId } }';

/**
 * The sessions component (LLMariner session manager): the tunnel registry, the endpoint agents
 * dial, the user-facing Kubernetes proxy, and the subgraph that shows tunnel state. Registration
 * keys and user credentials are checked by the gateway, like every other request.
 */
export function createSessions(options: { config: MarinerConfig; graphqlUrl: () => string; logger: Logger }): Sessions {
  const logger = options.logger.child({ component: 'sessions' });
  const verifyRegistrationKey = async (key: string): Promise<Worker | null> => {
    try {
      const { workerCluster } = await graphqlRequest<{ workerCluster: Worker }>(options.graphqlUrl(), WORKER_CLUSTER, {}, { authorization: `Bearer ${key}` });
      return workerCluster;
    } catch (error) {
      if (error instanceof MarinerError && (error.code === ErrorCode.UNAUTHENTICATED || error.code === ErrorCode.FORBIDDEN)) return null;
      throw error;
    }
  };
  const registry = new TunnelRegistry({ ...options.config.sessions, logger, revalidate: verifyRegistrationKey });
  const tunnelEndpoint = createTunnelEndpoint({ registry, verifyRegistrationKey, logger });
  const kubeProxy = createKubeProxy({ registry, graphqlUrl: options.graphqlUrl, authCacheMs: options.config.sessions.authCacheMs, logger });
  return {
    registry,
    tunnelEndpoint,
    kubeProxy,
    definition: {
      name: 'sessions',
      typeDefs: subgraphTypeDefs('sessions'),
      resolvers: resolvers as SubgraphDefinition<SessionsContext>['resolvers'],
      policy: policyFor('sessions'),
      createContext: (base) => ({ ...base, registry }),
    },
    async close() {
      tunnelEndpoint.close();
      await registry.close();
    },
  };
}
