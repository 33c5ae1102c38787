import type { SubgraphContext } from '../../lib/subgraphServer.js';
import type { TunnelRegistry } from './tunnelRegistry.js';

export interface SessionsContext extends SubgraphContext {
  registry: TunnelRegistry;
}

/** A Cluster as this subgraph knows it: by id only (the clusters subgraph owns the rest). */
export interface ClusterRef {
  id: string;
}
