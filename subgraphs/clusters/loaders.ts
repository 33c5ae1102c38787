import DataLoader from 'dataloader';
import type { ClusterStore, ComponentStatusRow } from './store.js';

/** Per-request batching: one query for the component statuses of every cluster in a list. */
export function createClusterLoaders(store: ClusterStore) {
  return {
    componentStatuses: new DataLoader<string, ComponentStatusRow[]>(async (clusterIds) => {
      const rows = await store.componentStatuses(clusterIds);
      return clusterIds.map((id) => rows.filter((row) => row.cluster_id === id));
    }),
  };
}

export type ClusterLoaders = ReturnType<typeof createClusterLoaders>;
