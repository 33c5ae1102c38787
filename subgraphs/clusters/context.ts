import type { SubgraphContext } from '../../lib/subgraphServer.js';
import type { ClusterLoaders } from './loaders.js';
import type { ClusterStore } from './store.js';
import type { TelemetryStore } from './telemetryStore.js';

export interface ClustersContext extends SubgraphContext {
  store: ClusterStore;
  loaders: ClusterLoaders;
  /** The clusters' telemetry series (telemetry.ts). */
  telemetry: TelemetryStore;
  /** A status report older than this is stale. */
  statusStaleSeconds: number;
}
