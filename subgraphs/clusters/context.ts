import type { SubgraphContext } from '../../lib/subgraphServer.js';
import type { ClusterLoaders } from './loaders.js';
import type { ClusterStore } from './store.js';

export interface ClustersContext extends SubgraphContext {
  store: ClusterStore;
  loaders: ClusterLoaders;
  /** A status report older than this is stale. */
  statusStaleSeconds: number;
}
