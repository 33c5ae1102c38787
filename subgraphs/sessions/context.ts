import type { SubgraphContext } from '../../lib/subgraphServer.js';
import type { ClusterTransportRouter } from './peers.js';
import type { TunnelRegistry } from './tunnelRegistry.js';

export interface SessionsContext extends SubgraphContext {
  registry: TunnelRegistry;
  /** Whether a cluster is connected to any replica. */
  transport: ClusterTransportRouter;
}

/** A Cluster as this subgraph knows it: by id only (the clusters subgraph owns the rest). */
export interface ClusterRef {
  id: string;
}
